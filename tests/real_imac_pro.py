"""The real iMac Pro's PCI functions, as `lspci -nn` lists them under Linux (linux-hardware.org
probes of real iMacPro1,1), for the tests to compare the virtual machine with.

Each entry: "bus:device.function" → (vendor, device, class). Classes are the three bytes lspci
prints as `[cccc]` plus the programming interface (lspci -n shows it as `pi`). The CHA functions
follow the core count (ten pairs on the 10-core chip), so they are made per core count. The
Thunderbolt controllers' own bus numbers are not in the probes: `THUNDERBOLT` lists their
functions by ID under each root port.
"""

UNCORE = 0x8086
SYSTEM_PERIPHERAL, PERFORMANCE_COUNTERS, IOXAPIC = 0x088000, 0x110100, 0x080020
PCI_BRIDGE = 0x060400


def _stack(bus: str) -> dict:
    return {f"{bus}:05.0": (UNCORE, 0x2034, SYSTEM_PERIPHERAL),
            f"{bus}:05.2": (UNCORE, 0x2035, SYSTEM_PERIPHERAL),
            f"{bus}:05.4": (UNCORE, 0x2036, IOXAPIC)}


def real_functions(cores: int) -> dict[str, tuple[int, int, int]]:
    f = {
        "00:00.0": (UNCORE, 0x2020, 0x060000),
        **{f"00:04.{n}": (UNCORE, 0x2021, SYSTEM_PERIPHERAL) for n in range(8)},
        "00:05.0": (UNCORE, 0x2024, SYSTEM_PERIPHERAL),
        "00:05.2": (UNCORE, 0x2025, SYSTEM_PERIPHERAL),
        "00:05.4": (UNCORE, 0x2026, IOXAPIC),
        "00:08.0": (UNCORE, 0x2014, SYSTEM_PERIPHERAL),
        "00:08.1": (UNCORE, 0x2015, PERFORMANCE_COUNTERS),
        "00:08.2": (UNCORE, 0x2016, SYSTEM_PERIPHERAL),
        "00:14.0": (0x8086, 0xA2AF, 0x0C0330),
        "00:16.0": (0x8086, 0xA2BA, 0x078000),
        "00:1b.0": (0x8086, 0xA2EB, PCI_BRIDGE),
        "00:1c.0": (0x8086, 0xA294, PCI_BRIDGE),
        "00:1e.0": (0x8086, 0xA2A7, 0x118000),
        "00:1e.1": (0x8086, 0xA2A8, 0x118000),
        "00:1f.0": (0x8086, 0xA2D4, 0x060100),
        "00:1f.2": (0x8086, 0xA2A1, 0x058000),
        "00:1f.4": (0x8086, 0xA2A3, 0x0C0500),
        "01:00.0": (0x14E4, 0x4464, 0x028000),
        "02:00.0": (0x106B, 0x2005, 0x018002),
        "02:00.1": (0x106B, 0x1801, 0x000000),
        "02:00.2": (0x106B, 0x1802, 0x000000),
        "02:00.3": (0x106B, 0x1803, 0x040100),
        "03:00.0": (UNCORE, 0x2030, PCI_BRIDGE),
        **_stack("03"),
        **{f"03:{0x08 + n // 8:02x}.{n % 8}": (UNCORE, 0x208D, SYSTEM_PERIPHERAL)
           for n in range(cores)},
        **{f"03:{0x0E + n // 8:02x}.{n % 8}": (UNCORE, 0x208E, SYSTEM_PERIPHERAL)
           for n in range(cores)},
        **{f"03:1d.{n}": (UNCORE, 0x2054 + n, SYSTEM_PERIPHERAL) for n in range(4)},
        **{f"03:1e.{n}": (UNCORE, 0x2080 + n, SYSTEM_PERIPHERAL) for n in range(7)},
        "04:00.0": (0x1D6A, 0x07B1, 0x020000),
        "05:02.0": (UNCORE, 0x2032, PCI_BRIDGE),
        "05:03.0": (UNCORE, 0x2033, PCI_BRIDGE),
        **_stack("05"),
        "05:08.0": (UNCORE, 0x2066, SYSTEM_PERIPHERAL),
        "05:09.0": (UNCORE, 0x2066, SYSTEM_PERIPHERAL),
        **{f"05:{0x0A + 2 * imc + n // 8:02x}.{n % 8}": (UNCORE, 0x2040 + n, SYSTEM_PERIPHERAL)
           for imc in range(2) for n in range(12)},
        "f0:00.0": (UNCORE, 0x2030, PCI_BRIDGE),
        **_stack("f0"),
        "f0:12.0": (UNCORE, 0x204C, PERFORMANCE_COUNTERS),
        "f0:12.1": (UNCORE, 0x204D, PERFORMANCE_COUNTERS),
        "f0:12.2": (UNCORE, 0x204E, SYSTEM_PERIPHERAL),
        **{f"f0:{a}": (UNCORE, 0x2018, SYSTEM_PERIPHERAL)
           for a in ("15.0", "16.0", "16.4", "17.0")},
    }
    return f


# Under each of bus 05's root ports: an Alpine Ridge controller's upstream port (1578), its
# downstream ports (15d3), its NHI (15d2, class 0880) and its USB controller (15d4, 0c0330).
THUNDERBOLT = {"05:02.0": (0x1578, 0x15D3, 0x15D2, 0x15D4),
               "05:03.0": (0x1578, 0x15D3, 0x15D2, 0x15D4)}

# What the virtual machine leaves out, each with its reason; docs/LINUX.md lists the same.
ABSENT: dict[str, str] = {}   # every function of the lists above is modelled
ABSENT_THUNDERBOLT = (0x15D2, 0x15D4)     # NHI (thunderbolt) and USB controller: not modelled
