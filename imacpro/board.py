"""The board: every device of the iMac Pro's platform, as one table.

A row says where a device answers (I/O ports, an MMIO range, a PCI function), which interrupt it
raises (an ISA IRQ and the I/O APIC pin it reaches, or a PCI interrupt pin and its GSI) and how
ACPI describes it. The builder (machine.py) makes the machine from the rows; the firmware makes
the MADT's interrupt source overrides, the DSDT's devices, resources and `_PRT`, the FADT's
SCI and reset register, and the PCI set-up from the same rows. A platform constant lives here,
or in memory/layout.py for addresses, and nowhere else.

    | device      | ports / MMIO               | interrupt                | ACPI               |
    |-------------|----------------------------|--------------------------|--------------------|
    | pic         | 0x20, 0xA0, ELCR 0x4D0     | (the 8259 pair)          |                    |
    | pit         | 0x40-0x43                  | IRQ 0 → GSI 2            |                    |
    | port_b      | 0x61                       |                          |                    |
    | kbc         | 0x60, 0x64 (reset only)    | IRQ 1, 12 (never raised) | none: no PS/2      |
    | uart        | 0x3F8-0x3FF (COM1)         | IRQ 4                    | LPCB.COM1 PNP0501  |
    | rtc         | 0x70-0x73                  | IRQ 8                    | LPCB.RTC  PNP0B00  |
    | fast_a20    | 0x92                       |                          |                    |
    | pci_config  | 0xCF8-0xCFF (0xCF9 reset)  |                          | PCI0 _CRS          |
    | acpi_pm     | 0x600-0x60F                | IRQ 9 (SCI, level, high) | MBRD _CRS          |
    | ioapic      | 0xFEC0_0000                |                          | (MADT)             |
    | hpet        | 0xFED0_0000                | IRQ 0/8 (legacy), GSIs   | LPCB.HPET PNP0103  |
    | smc         | 0xFEF0_0000, 0x300-0x31F   |                          | LPCB.SMC APP0001   |
    | ecam        | 0xE000_0000, 256 MiB       |                          | MBRD _CRS, MCFG    |
    | lapic       | 0xFEE0_0000 (each CPU)     |                          | (MADT)             |
    | host_bridge | PCI 00:00.0                |                          |                    |
    | t2_port     | PCI 00:1c.0 → bus 02       | INTA# → GSI 16           | (_PRT)             |
    | nvme        | PCI 02:00.0 (the T2's fn 0)| INTA# → GSI 16, MSI      | (via t2_port)      |
    | t2_bridge, t2_sep, t2_audio: PCI 02:00.1-3, the T2's other functions (no interrupts used) |
    | wifi_port   | PCI 00:1b.0 → bus 01       | INTA# → GSI 17           | (_PRT)             |
    | wifi        | PCI 01:00.0 (BCM4364)      | INTA# → GSI 17 (unused)  | (via wifi_port)    |
    | cbdma0-7    | PCI 00:04.0-7 (CBDMA)      | INTA# → GSI 16, MSI-X    | (_PRT)             |
    | mei         | PCI 00:16.0 (HECI)         | INTA# → GSI 19, MSI      | (_PRT)             |
    | lpss_uart0/1| PCI 00:1e.0, 00:1e.1       | INTA# → 18, INTB# → 19   | (_PRT)             |
    | lpc, pmc    | PCI 00:1f.0, 00:1f.2       |                          | (LPCB: lpc_bridge) |
    | smbus       | PCI 00:1f.4, I/O BAR       | INTA# → GSI 16           | (_PRT)             |
    | xhci        | PCI 00:14.0                | INTA# → GSI 17, MSI      | (_PRT)             |
    | net_port    | PCI 03:00.0 → bus 04       | INTA# → GSI 18           | PC03 (_PRT)        |
    | nic         | PCI 04:00.0 (AQC107)       | INTA# → GSI 18, MSI-X    | (via net_port)     |
    | tb1_*, tb2_*: PCI 05:02.0/05:03.0 → the Thunderbolt 3 controllers' bridges, buses 06-11  |
    | uncore_BB_DD_F: the Xeon's uncore functions on buses 00, 03, 05, f0 (configuration only) |
    | gpu_port    | PCI f0:00.0 → bus f1       |                          | PCF0               |
    | gpu_switch_up, gpu_switch_down: PCI f1:00.0 → bus f2, f2:00.0 → bus f3                     |
    | gpu         | PCI f3:00.0                | (none modelled)          |                    |
    | gpu_audio   | PCI f3:00.1                | (none modelled)          |                    |

ISA IRQs reach the 8259 input of the same number and the I/O APIC pin the row names (identity
unless `gsi` says otherwise); PCI interrupt pins are level triggered, active low, and shared
(wired-OR) by the devices routed to one GSI, on 16-19 (20-23 are the HPET's).

PCI has four root buses, each a host bridge in the DSDT (`root_buses`), one per IIO stack of
the Xeon, as on the real machine: bus 00 (PCI0) with the PCH's functions and the T2 behind its
root port, bus 03 (PC03) with the root port of the 10GbE port and the CHA and PCU functions,
bus 05 (PC05) with the Thunderbolt 3 root ports and the memory controllers, and bus f0 (PCF0)
with the root port of the GPU. Rows with a `function` are made from their data alone (their
configuration space; docs/LINUX.md lists the tree against the real machine's lspci); a row's
`min_cores` leaves it out of smaller dies (the per-core CHA functions). A function behind a root port has no
_PRT of its own: Linux swizzles its pin to the port's and looks the port up on its root bus
(PCI-to-PCI Bridge Architecture 1.2 §9.1), so the port's row carries the route.
A row's PCI slot names its bus as the firmware numbers it; a bridge's slot names the bus on
its secondary side (`bridge_to`).

USB connectors (`usb`): each of the machine's USB connectors and the xHCI root ports its USB 2
and USB 3 lanes reach; devices/usb/peripherals.py plugs the machine's devices into them.
"""

from __future__ import annotations

from dataclasses import dataclass

from imacpro.memory import layout

ISA_IRQS = 16            # 8259 inputs (two cascaded chips)
IOAPIC_PINS = 24         # the PCH's I/O APIC: GSIs 0-23
PIN_INTA, PIN_INTB = 1, 2   # PCI interrupt pin register values (PCI 3.0 §6.2.4)

# Polarity and trigger of an ISA interrupt as the MADT says them (ACPI 6.4 Table 5.26).
CONFORMS, HIGH, LOW = "conforms", "high", "low"
EDGE, LEVEL = "edge", "level"


@dataclass(frozen=True)
class Ports:
    """I/O ports [base, base + count) answered by the device's `view` attribute (the device
    itself when empty), whose register `offset` the first port is."""
    base: int
    count: int
    view: str = ""
    offset: int = 0


@dataclass(frozen=True)
class Mmio:
    base: int
    size: int
    per_cpu: bool = False     # each CPU sees its own (the local APIC): the vCPU maps it
    read_only: bool = False   # what ACPI's resource descriptor says


@dataclass(frozen=True)
class IsaIrq:
    irq: int                  # the ISA IRQ (8259 input)
    gsi: int | None = None    # the I/O APIC pin, when not `irq`
    polarity: str = CONFORMS  # as wired into the I/O APIC; CONFORMS: the ISA default
    trigger: str = CONFORMS

    @property
    def pin(self) -> int:
        return self.irq if self.gsi is None else self.gsi

    @property
    def needs_override(self) -> bool:
        """An ISA IRQ the MADT must describe (ACPI 6.4 §5.2.12.5)."""
        return self.pin != self.irq or self.polarity != CONFORMS or self.trigger != CONFORMS


@dataclass(frozen=True)
class PciSlot:
    device: int
    function: int = 0
    bus: int = 0
    pin: int = 0              # interrupt pin: 0 none, PIN_INTA to INTD (1-4)
    gsi: int | None = None    # the I/O APIC pin that interrupt pin is wired to
    bridge_to: int | None = None   # a bridge: the bus on its secondary side

    @property
    def address(self) -> int:
        """_ADR / _PRT address: device in the high word, function in the low."""
        return self.device << 16 | self.function


@dataclass(frozen=True)
class RootBus:
    """A PCI host bridge (the DSDT's PNP0A08 node `name`): root bus `bus` and the bus numbers
    up to `last_bus` below it, and its share of the 32-bit PCI memory window and of the I/O
    ports, each [start, end). The first root bus also has the 64-bit window."""
    name: str
    bus: int
    last_bus: int
    memory: tuple[int, int]
    io: tuple[int, int]


@dataclass(frozen=True)
class Acpi:
    """How the DSDT shows a device: a node `name` (a NameSeg) with `hid` under `parent`
    ("LPCB": the ISA devices behind the LPC bridge), or, with no name, its resources listed by
    the motherboard-resources device ("MBRD") so the OS leaves them alone."""
    parent: str
    name: str = ""
    hid: str = ""
    uid: int | None = None
    status: bool = False      # give a _STA (present, enabled, shown, functioning)


@dataclass(frozen=True)
class Port:
    """A PCI Express port's type ("root", "upstream", "downstream") and its link."""
    kind: str
    gts: float
    width: int


@dataclass(frozen=True)
class Function:
    """A PCI function the builder makes from this row alone: its identity and configuration
    space, with no register model behind it (or, for a bridge, `port`). The builder adds the
    configuration registers drivers read from the uncore's (devices/uncore_registers.py)."""
    vendor: int
    device: int
    class_code: int
    revision: int = 0
    subsystem: tuple[int, int] = (0, 0)
    port: Port | None = None


@dataclass(frozen=True)
class Row:
    name: str                         # the machine's attribute that holds the device
    what: str                         # what it is, for people
    ports: tuple[Ports, ...] = ()
    mmio: Mmio | None = None
    irqs: tuple[IsaIrq, ...] = ()
    pci: PciSlot | None = None
    acpi: Acpi | None = None
    optional: bool = False            # absent on some machines (the SSD when unreadable)
    function: Function | None = None  # made from data (see Function)
    min_cores: int = 0                # present only on processors with at least this many cores


@dataclass(frozen=True)
class UsbConnector:
    """A USB connector of the machine and the xHCI root ports its lanes reach (None: no such
    lane). `internal`: inside the case, not for the user's plugs."""
    name: str
    usb2: int | None
    usb3: int | None
    internal: bool = False


ONE_ROOT_BUS = (RootBus("PCI0", 0, 0xFF, (layout.PCI_MMIO_START, layout.PCI_MMIO_END),
                        (layout.PCI_IO_START, 0x10000)),)


class Board:
    def __init__(self, name: str, rows: tuple[Row, ...], lpc_bridge: PciSlot,
                 root_buses: tuple[RootBus, ...] = ONE_ROOT_BUS,
                 usb: tuple[UsbConnector, ...] = ()):
        self.name = name
        self.rows = rows
        self.usb = usb
        self.lpc_bridge = lpc_bridge  # where the DSDT's LPCB sits (_ADR)
        self.root_buses = root_buses
        self._by_name = {row.name: row for row in rows}
        if len(self._by_name) != len(rows):
            raise ValueError("two board rows share a name")
        self._check()

    def __getitem__(self, name: str) -> Row:
        return self._by_name[name]

    def _check(self) -> None:
        """No two rows claim one port, MMIO byte, PCI function or ISA IRQ."""
        ports: dict[int, str] = {}
        functions: dict[tuple[int, int, int], str] = {}
        ranges: list[tuple[int, int, str]] = []
        for row in self.rows:
            for p in row.ports:
                for port in range(p.base, p.base + p.count):
                    if port in ports:
                        raise ValueError(f"port {port:#x}: {ports[port]} and {row.name}")
                    ports[port] = row.name
            if row.mmio is not None:
                start, end = row.mmio.base, row.mmio.base + row.mmio.size
                for other_start, other_end, other in ranges:
                    if start < other_end and other_start < end:
                        raise ValueError(f"MMIO {start:#x}: {other} and {row.name}")
                ranges.append((start, end, row.name))
            if row.pci is not None:
                key = (row.pci.bus, row.pci.device, row.pci.function)
                if key in functions:
                    raise ValueError(f"PCI {key}: {functions[key]} and {row.name}")
                functions[key] = row.name
        routes: dict[tuple[int, int, int], int] = {}
        for row in self.pci_rows():
            if row.pci.pin and row.pci.gsi is not None:
                key = (row.pci.bus, row.pci.device, row.pci.pin)
                if routes.setdefault(key, row.pci.gsi) != row.pci.gsi:
                    raise ValueError(f"PCI {key}: routed to GSIs {routes[key]} and "
                                     f"{row.pci.gsi} ({row.name})")

    # --- what the builder and the firmware ask ---------------------------------------------

    def isa_pin(self, irq: int) -> int:
        """The I/O APIC pin ISA IRQ `irq` reaches."""
        for row in self.rows:
            for line in row.irqs:
                if line.irq == irq:
                    return line.pin
        return irq

    def isa_irq(self, name: str, index: int = 0) -> int:
        return self[name].irqs[index].irq

    def interrupt_overrides(self) -> list[IsaIrq]:
        """The ISA IRQs whose wiring differs from the ISA default, by IRQ."""
        seen: dict[int, IsaIrq] = {}
        for row in self.rows:
            for line in row.irqs:
                if line.needs_override:
                    seen.setdefault(line.irq, line)
        return [seen[irq] for irq in sorted(seen)]

    def root_bus_of(self, bus: int) -> RootBus:
        """The host bridge whose bus numbers hold `bus`."""
        for root in self.root_buses:
            if root.bus <= bus <= root.last_bus:
                return root
        raise ValueError(f"bus {bus:#x} is under no root bus")

    def pci_rows(self) -> list[Row]:
        return [row for row in self.rows if row.pci is not None]

    def pci_interrupt_routes(self) -> dict[tuple[int, int, int], int]:
        """{(bus, device, pin): GSI} for every routed interrupt pin (the _PRT's rows; the
        functions of a device share its pins)."""
        return {(row.pci.bus, row.pci.device, row.pci.pin): row.pci.gsi
                for row in self.pci_rows() if row.pci.pin and row.pci.gsi is not None}

    def acpi_rows(self, parent: str) -> list[Row]:
        return [row for row in self.rows if row.acpi is not None and row.acpi.parent == parent]


# --- the platform's PCI functions without a device model of their own ---------------------
# From lspci -nn of real iMacPro1,1 under Linux (linux-hardware.org probes). The Xeon's uncore
# functions say revision 04 (the W-2100's H0 stepping) and subsystem 8086:0000; the PCH's say
# subsystem 8086:7270. Classes: 0880 system peripheral, 1101 performance counters, 080020
# I/O APIC, 0600 host bridge, 0601 ISA bridge (LPC/eSPI), 0580 memory controller (the PMC),
# 0604 PCI bridge.
INTEL, APPLE = 0x8086, 0x106B
SYSTEM_PERIPHERAL, PERFORMANCE_COUNTERS, IOXAPIC = 0x088000, 0x110100, 0x080020
ISA_BRIDGE, PCI_BRIDGE, OTHER_MEMORY_CONTROLLER = 0x060100, 0x060400, 0x058000
UNCORE_REVISION, UNCORE_SUBSYSTEM = 0x04, (INTEL, 0x0000)
PCH_REVISION, PCH_PORT_REVISION, PCH_SUBSYSTEM = 0x00, 0xF0, (INTEL, 0x7270)
MAX_CORES = 18                     # the W-2191B's; the CHA functions follow the core count


def _uncore(bus: int, device: int, function: int, did: int, what: str,
            class_code: int = SYSTEM_PERIPHERAL, min_cores: int = 0,
            port: Port | None = None, bridge_to: int | None = None) -> Row:
    return Row(f"uncore_{bus:02x}_{device:02x}_{function}",
               f"Xeon W {what} ({INTEL:04x}:{did:04x})",
               pci=PciSlot(device, function, bus, bridge_to=bridge_to),
               function=Function(INTEL, did, class_code, UNCORE_REVISION, UNCORE_SUBSYSTEM,
                                 port),
               min_cores=min_cores)


def _stack(bus: int) -> tuple[Row, ...]:
    """Device 5 of IIO stacks 1-3: VT-d, RAS and I/O APIC configuration (stack 0's are
    2024-2026)."""
    return (_uncore(bus, 5, 0, 0x2034, "VT-d configuration"),
            _uncore(bus, 5, 2, 0x2035, "RAS configuration"),
            _uncore(bus, 5, 4, 0x2036, "IOxAPIC configuration", IOXAPIC))


def _chas() -> tuple[Row, ...]:
    """One pair of CHA functions per core on bus 03: 208d at devices 8-b, 208e at e-11."""
    return tuple(_uncore(0x03, first + n // 8, n % 8, did, f"CHA {n} registers",
                         min_cores=n + 1)
                 for first, did in ((0x08, 0x208D), (0x0E, 0x208E)) for n in range(MAX_CORES))


def _thunderbolt(number: int, root_device: int, root_did: int, bus: int) -> tuple[Row, ...]:
    """An Alpine Ridge Thunderbolt 3 controller as its bridges: the Xeon's root port on bus 05,
    the controller's upstream port on `bus`, its four downstream ports on `bus + 1` (to the
    NHI, two hot-plug ports and the USB controller, each its own bus)."""
    link = Port("downstream", 8.0, 4)
    rows = [_uncore(0x05, root_device, 0, root_did, f"PCIe root port of Thunderbolt {number}",
                    PCI_BRIDGE, port=Port("root", 8.0, 4), bridge_to=bus),
            Row(f"tb{number}_up", f"Thunderbolt 3 controller {number}, upstream port (8086:1578)",
                pci=PciSlot(0, bus=bus, bridge_to=bus + 1),
                function=Function(INTEL, 0x1578, PCI_BRIDGE, 0x02,
                                  port=Port("upstream", 8.0, 4)))]
    for n, device in enumerate((0, 1, 2, 4)):
        rows.append(Row(f"tb{number}_down{device}",
                        f"Thunderbolt 3 controller {number}, downstream port (8086:15d3)",
                        pci=PciSlot(device, bus=bus + 1, bridge_to=bus + 2 + n),
                        function=Function(INTEL, 0x15D3, PCI_BRIDGE, 0x02, port=link)))
    return tuple(rows)


def _pch(device: int, function: int, did: int, what: str, class_code: int, name: str,
         **slot) -> Row:
    port = slot.pop("port", None)
    return Row(name, f"PCH {what} ({INTEL:04x}:{did:04x})", pci=PciSlot(device, function, **slot),
               function=Function(INTEL, did, class_code,
                                 PCH_PORT_REVISION if port else PCH_REVISION,
                                 (0, 0) if port else PCH_SUBSYSTEM, port))


# The iMac Pro's platform as modelled today (docs/LINUX.md says what the real one has more of).
IMAC_PRO = Board("iMacPro1,1", rows=(
    Row("pic", "8259A interrupt controllers, master and slave, and the ELCR",
        ports=(Ports(0x20, 2, "master_ports"), Ports(0xA0, 2, "slave_ports"),
               Ports(0x4D0, 2, "elcr_ports"))),
    # ISA IRQ 0 (the PIT, and the HPET's legacy timer 0) is wired to I/O APIC pin 2, as on
    # every PC chipset: pin 0 carries the 8259's INTR.
    Row("pit", "8254 interval timer", ports=(Ports(0x40, 4),), irqs=(IsaIrq(0, gsi=2),)),
    Row("port_b", "system control port B (PIT channel 2 gate, speaker)", ports=(Ports(0x61, 1),)),
    # No PS/2: the ports decode only for the i8042's reset pulse, so ACPI shows no node.
    Row("kbc", "i8042 keyboard controller (reset line only)",
        ports=(Ports(0x60, 1, offset=0), Ports(0x64, 1, offset=4)),
        irqs=(IsaIrq(1), IsaIrq(12))),
    Row("uart", "16550A UART, COM1", ports=(Ports(0x3F8, 8),), irqs=(IsaIrq(4),),
        acpi=Acpi("LPCB", "COM1", "PNP0501", uid=1)),
    Row("rtc", "CMOS real-time clock", ports=(Ports(0x70, 4),), irqs=(IsaIrq(8),),
        acpi=Acpi("LPCB", "RTC", "PNP0B00")),
    Row("fast_a20", "fast A20 and reset (port 0x92)", ports=(Ports(0x92, 1),)),
    # The PCH's reset control register shares the CONFIG_ADDRESS dword (0xCF9).
    Row("pci_config", "PCI configuration ports and the reset control", ports=(Ports(0xCF8, 8),)),
    # The SCI is level triggered and driven active high into pin 9 (devices/acpi_pm.py).
    Row("acpi_pm", "ACPI PM1 event/control and PM timer",
        ports=(Ports(0x600, 0x10),), irqs=(IsaIrq(9, polarity=HIGH, trigger=LEVEL),),
        acpi=Acpi("MBRD")),
    Row("ioapic", "I/O APIC", mmio=Mmio(layout.IOAPIC_BASE, layout.IOAPIC_SIZE)),
    Row("hpet", "HPET", mmio=Mmio(layout.HPET_BASE, layout.HPET_SIZE, read_only=True),
        acpi=Acpi("LPCB", "HPET", "PNP0103", uid=0, status=True)),
    # The SMC's legacy ports are in its resources (Linux's T2 driver requires them), served by
    # nothing (devices/smc.py).
    Row("smc", "Apple SMC in the T2: its key window (APP0001)",
        ports=(Ports(0x300, 0x20, "legacy_ports"),), mmio=Mmio(layout.SMC_BASE, layout.SMC_SIZE),
        acpi=Acpi("LPCB", "SMC", "APP0001", status=True)),
    Row("ecam", "PCI Express configuration space (ECAM)",
        mmio=Mmio(layout.ECAM_BASE, layout.ECAM_SIZE), acpi=Acpi("MBRD")),
    Row("lapic", "local APIC (one per logical CPU)",
        mmio=Mmio(layout.LAPIC_BASE, layout.LAPIC_SIZE, per_cpu=True)),
    Row("host_bridge", "Xeon W host bridge, DMI3 (8086:2020)", pci=PciSlot(0)),
    _uncore(0x00, 5, 0, 0x2024, "MM/VT-d configuration"),
    _uncore(0x00, 5, 2, 0x2025, "RAS"),
    _uncore(0x00, 5, 4, 0x2026, "IOAPIC", IOXAPIC),
    _uncore(0x00, 8, 0, 0x2014, "Ubox"),
    _uncore(0x00, 8, 1, 0x2015, "Ubox performance counters", PERFORMANCE_COUNTERS),
    _uncore(0x00, 8, 2, 0x2016, "Ubox, DECS"),
    # The T2 behind the PCH's root port 1c.0: the SSD is its function 0 (02:00.0), then
    # its bridge, Secure Enclave and audio functions (devices/t2_functions.py).
    _pch(0x1C, 0, 0xA294, "PCIe root port of the T2", PCI_BRIDGE, "t2_port", bridge_to=0x02,
         pin=PIN_INTA, gsi=16, port=Port("root", 8.0, 4)),
    Row("nvme", "the SSD: Apple ANS2 NVMe controller in the T2 (106b:2005)",
        pci=PciSlot(0, bus=0x02, pin=PIN_INTA), optional=True),
    Row("t2_bridge", "the T2's bridge function (106b:1801)", pci=PciSlot(0, 1, bus=0x02)),
    Row("t2_sep", "the T2's Secure Enclave function (106b:1802)", pci=PciSlot(0, 2, bus=0x02)),
    Row("t2_audio", "the T2's audio function (106b:1803)", pci=PciSlot(0, 3, bus=0x02)),
    # The Wi-Fi card behind the PCH's root port 1b.0: a stock kernel finds the chip and no
    # firmware for it (devices/wifi/bcm4364.py).
    _pch(0x1B, 0, 0xA2EB, "PCIe root port of the Wi-Fi card", PCI_BRIDGE, "wifi_port",
         bridge_to=0x01, pin=PIN_INTA, gsi=17, port=Port("root", 5.0, 1)),
    Row("wifi", "Broadcom BCM4364 802.11ac Wi-Fi (14e4:4464)",
        pci=PciSlot(0, bus=0x01, pin=PIN_INTA)),
    # The Xeon's eight DMA engines (ioatdma), one channel a function.
    *(Row(f"cbdma{n}", f"Xeon W Crystal Beach DMA channel {n} (8086:2021)",
          pci=PciSlot(4, n, pin=PIN_INTA, gsi=16)) for n in range(8)),
    Row("mei", "PCH Management Engine Interface (8086:a2ba)",
        pci=PciSlot(0x16, pin=PIN_INTA, gsi=19)),
    # The PCH's two Serial IO UARTs: nothing is connected to them.
    Row("lpss_uart0", "PCH Serial IO UART 0 (8086:a2a7)",
        pci=PciSlot(0x1E, 0, pin=PIN_INTA, gsi=18)),
    Row("lpss_uart1", "PCH Serial IO UART 1 (8086:a2a8)",
        pci=PciSlot(0x1E, 1, pin=PIN_INTB, gsi=19)),
    _pch(0x1F, 0, 0xA2D4, "LPC/eSPI controller", ISA_BRIDGE, "lpc"),
    _pch(0x1F, 2, 0xA2A1, "power management controller", OTHER_MEMORY_CONTROLLER, "pmc"),
    Row("smbus", "PCH SMBus host controller (8086:a2a3)",
        pci=PciSlot(0x1F, 4, pin=PIN_INTA, gsi=16)),
    # The PCH's USB 3 controller; its INTA# has a pin of its own (the SSD's is 16).
    Row("xhci", "PCH xHCI USB 3 controller (8086:a2af)",
        pci=PciSlot(0x14, pin=PIN_INTA, gsi=17)),
    # The 10GbE port: the Xeon's root port on root bus 03 and the Aquantia controller.
    Row("net_port", "Xeon W PCIe root port (8086:2030) of the 10GbE port",
        pci=PciSlot(0, bus=0x03, bridge_to=0x04, pin=PIN_INTA, gsi=18)),
    Row("nic", "Aquantia AQC107 10 Gigabit Ethernet (1d6a:07b1)",
        pci=PciSlot(0, bus=0x04, pin=PIN_INTA)),
    *_stack(0x03),
    *_chas(),
    *(_uncore(0x03, 0x1D, n, 0x2054 + n, f"CHA registers, all ({n})") for n in range(4)),
    *(_uncore(0x03, 0x1E, n, 0x2080 + n, f"PCU registers ({n})") for n in range(7)),
    # Root bus 05: the Thunderbolt 3 controllers' root ports and the memory controllers.
    *_thunderbolt(1, 2, 0x2032, 0x06),
    *_thunderbolt(2, 3, 0x2033, 0x0C),
    *_stack(0x05),
    _uncore(0x05, 8, 0, 0x2066, "IMC 0 mesh-to-memory"),
    _uncore(0x05, 9, 0, 0x2066, "IMC 1 mesh-to-memory"),
    *(_uncore(0x05, 0x0A + 2 * imc + n // 8, n % 8, 0x2040 + n,
              f"IMC {imc} channel registers ({n})") for imc in range(2) for n in range(12)),
    # Root bus f0: the GPU's root port, the mesh-to-PCIe and mesh-to-UPI agents.
    *_stack(0xF0),
    _uncore(0xF0, 0x12, 0, 0x204C, "M3KTI registers", PERFORMANCE_COUNTERS),
    _uncore(0xF0, 0x12, 1, 0x204D, "M3KTI registers", PERFORMANCE_COUNTERS),
    _uncore(0xF0, 0x12, 2, 0x204E, "M3KTI registers"),
    *(_uncore(0xF0, device, function, 0x2018, "M2PCI registers")
      for device, function in ((0x15, 0), (0x16, 0), (0x16, 4), (0x17, 0))),
    # The GPU: the Xeon's root port on root bus f0, then the Vega package's own PCIe switch
    # (AMD's upstream and downstream ports) and the GPU with its HDMI/DP audio function.
    Row("gpu_port", "Xeon W PCIe root port A (8086:2030)",
        pci=PciSlot(0, bus=0xF0, bridge_to=0xF1)),
    Row("gpu_switch_up", "Radeon Pro Vega's PCIe switch, upstream port (1022:1470)",
        pci=PciSlot(0, bus=0xF1, bridge_to=0xF2)),
    Row("gpu_switch_down", "Radeon Pro Vega's PCIe switch, downstream port (1022:1471)",
        pci=PciSlot(0, bus=0xF2, bridge_to=0xF3)),
    Row("gpu", "Radeon Pro Vega 56/64 (1002:6867/6860) with its boot framebuffer",
        pci=PciSlot(0, bus=0xF3)),
    Row("gpu_audio", "Radeon Pro Vega HDMI/DP audio (1002:aaf8)",
        pci=PciSlot(0, function=1, bus=0xF3)),
), lpc_bridge=PciSlot(0x1F), root_buses=(
    RootBus("PCI0", 0x00, 0x02, (layout.PCI_MMIO_START, layout.PCI_NET_MMIO_START),
            (layout.PCI_IO_START, layout.PCI_NET_IO_START)),
    RootBus("PC03", 0x03, 0x04, (layout.PCI_NET_MMIO_START, layout.PCI_TB_MMIO_START),
            (layout.PCI_NET_IO_START, layout.PCI_TB_IO_START)),
    RootBus("PC05", 0x05, 0xEF, (layout.PCI_TB_MMIO_START, layout.PCI_GPU_MMIO_START),
            (layout.PCI_TB_IO_START, layout.PCI_GPU_IO_START)),
    RootBus("PCF0", 0xF0, 0xFF, (layout.PCI_GPU_MMIO_START, layout.PCI_MMIO_END),
            (layout.PCI_GPU_IO_START, 0x10000)),
), usb=(
    # The four USB-A ports on the back, each with a USB 2 and a USB 3 lane (the PCH's ports 1-4
    # and 17-20); inside, the SDXC card reader on a USB 3 lane and Apple's hub on a USB 2 one.
    # Which PCH port serves which connector is not in the probes: this numbering is ours.
    UsbConnector("USB-A 1", 1, 17), UsbConnector("USB-A 2", 2, 18),
    UsbConnector("USB-A 3", 3, 19), UsbConnector("USB-A 4", 4, 20),
    UsbConnector("SDXC card reader", None, 21, internal=True),
    UsbConnector("internal hub", 5, None, internal=True),
))
