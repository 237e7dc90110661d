"""The iMac Pro (iMacPro1,1) spec sheet as data.

Every fact carries the keys of its sources (see `SOURCES`) so a reader can check it. Where the seed
spec sheet is coarse (it gives "up to 4.3 GHz" turbo for every processor), the per-SKU figures come
from Apple's technical specifications page and Intel's processor pages.

Sale windows are half-open: an option is on sale from `offered_from` up to, not including,
`offered_until` (the day it was dropped). `None` means it lasted as long as the machine was sold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

SOURCES: dict[str, str] = {
    "seed": "shared/seed/imac-pro.txt (Wikipedia, 'iMac Pro', technical specifications)",
    "apple-specs": "Apple, 'iMac Pro - Technical Specifications' (support.apple.com/kb/SP771)",
    "apple-newsroom-2017": "Apple Newsroom 2017-12-12, 'iMac Pro available to order December 14'",
    "macrumors-2019": "MacRumors 2019-03-19: 256GB memory and Radeon Pro Vega 64X options added",
    "macrumors-2020": "MacRumors 2020-08-04: 10-core becomes the base model, 8-core dropped",
    "macrumors-2021-03-05": "MacRumors 2021-03-05: no longer custom configurable, 'while supplies last'",
    "macrumors-2021-03-19": "MacRumors 2021-03-19: delisted from Apple's online store",
    "intel-ark": "Intel ARK, Xeon W-2100 (Skylake-W) processor pages, LGA2066",
    "intel-sdm": "Intel SDM vol. 4 / CPUID: family 6, model 0x55 (Skylake-SP/W), stepping 4",
    "opencore-macserial": "OpenCore macserial model table (board-id, serial model codes)",
    "clover-platformdata": "Clover platformdata (iMacPro1,1 board-id and boot ROM version)",
    "apple-serial-format": "Apple 12-character serial format PPPYWSSSCCCC (MacRumors 2010-04-16)",
    "ieee-oui": "IEEE MA-L registry, assignments to Apple, Inc.",
    "linux-hardware": "linux-hardware.org probes of iMacPro1,1 under Linux (lspci IDs, BARs)",
    "linux-hid-ids": "Linux drivers/hid/hid-ids.h: USB product IDs of Apple's Magic devices",
}


@dataclass(frozen=True)
class Window:
    """When an option was on sale: [offered_from, offered_until)."""

    offered_from: date
    offered_until: date | None = None

    def contains(self, day: date) -> bool:
        return self.offered_from <= day and (self.offered_until is None or day < self.offered_until)

    def describe(self) -> str:
        """The sale dates, last day inclusive: 'from 2017-12-14 to 2020-08-03'."""
        if self.offered_until is None:
            return f"from {self.offered_from.isoformat()}"
        last = self.offered_until - timedelta(days=1)
        return f"from {self.offered_from.isoformat()} to {last.isoformat()}"


@dataclass(frozen=True)
class Processor:
    key: int  # the CLI's --cpu value: the core count
    name: str  # Intel's name, as the brand string has it
    cores: int
    threads: int
    base_ghz: float
    turbo_ghz: float
    l2_per_core_kib: int
    l3_kib: int
    window: Window
    sources: tuple[str, ...]
    tdp_w: int = 140      # Intel's thermal design power (intel-ark)
    # Skylake-W CPUID signature, shared by every SKU.
    family: int = 6
    model: int = 0x55
    stepping: int = 4
    socket: str = "LGA2066"
    microarchitecture: str = "Skylake-W"

    @property
    def brand_string(self) -> str:
        return f"Intel(R) Xeon(R) {self.name} CPU @ {self.base_ghz:.2f}GHz"

    @property
    def marketing_name(self) -> str:
        return f"{self.cores}-Core Intel Xeon W"


@dataclass(frozen=True)
class MemoryOption:
    key: int  # the CLI's --memory value, in GB (GiB, as Apple counts memory)
    dimm_gb: int
    window: Window
    sources: tuple[str, ...]
    apple: bool = True  # False: only possible with third-party modules

    @property
    def size_bytes(self) -> int:
        return self.key << 30


@dataclass(frozen=True)
class GraphicsOption:
    key: str
    name: str
    vram_gb: int
    vram_type: str
    window: Window
    sources: tuple[str, ...]
    pci_device: int = 0          # AMD's device ID (vendor 1002)
    pci_subsystem: int = 0       # Apple's subsystem ID (vendor 106b)


@dataclass(frozen=True)
class StorageOption:
    key: str
    capacity_tb: int
    window: Window
    sources: tuple[str, ...]

    @property
    def capacity_bytes(self) -> int:
        # Apple counts storage in decimal terabytes.
        return self.capacity_tb * 10**12


@dataclass(frozen=True)
class PointerOption:
    """The pointing device in the box: the machine came with the black Magic Mouse 2 or the
    Magic Trackpad 2, or both for a price."""
    key: str
    name: str
    devices: tuple[str, ...]      # "mouse", "trackpad"
    window: Window
    sources: tuple[str, ...]


RELEASED = date(2017, 12, 14)
EIGHT_CORE_DROPPED = date(2020, 8, 4)
LATE_OPTIONS_ADDED = date(2019, 3, 19)  # 256 GB memory and Vega 64X
NO_LONGER_CONFIGURABLE = date(2021, 3, 5)
DELISTED = date(2021, 3, 19)

WHOLE_LIFE = Window(RELEASED, DELISTED)

PROCESSORS: dict[int, Processor] = {
    p.key: p
    for p in (
        Processor(8, "W-2140B", 8, 16, 3.2, 4.2, 1024, 11 * 1024,
                  Window(RELEASED, EIGHT_CORE_DROPPED),
                  ("seed", "apple-specs", "intel-ark", "macrumors-2020"), tdp_w=120),
        Processor(10, "W-2150B", 10, 20, 3.0, 4.5, 1024, 13 * 1024 + 768,
                  WHOLE_LIFE, ("seed", "apple-specs", "intel-ark"), tdp_w=120),
        Processor(14, "W-2170B", 14, 28, 2.5, 4.3, 1024, 19 * 1024 + 256,
                  WHOLE_LIFE, ("seed", "apple-specs", "intel-ark"), tdp_w=140),
        Processor(18, "W-2191B", 18, 36, 2.3, 4.3, 1024, 24 * 1024 + 768,
                  WHOLE_LIFE, ("seed", "apple-specs", "intel-ark"), tdp_w=140),
    )
}

MEMORY_SLOTS = 4
MEMORY_TYPE = "DDR4"
MEMORY_SPEED_MTS = 2666
MEMORY_ECC = True

MEMORY: dict[int, MemoryOption] = {
    m.key: m
    for m in (
        MemoryOption(32, 8, WHOLE_LIFE, ("seed", "apple-specs")),
        MemoryOption(64, 16, WHOLE_LIFE, ("seed", "apple-specs")),
        MemoryOption(128, 32, WHOLE_LIFE, ("seed", "apple-specs")),
        MemoryOption(256, 64, Window(LATE_OPTIONS_ADDED, DELISTED),
                     ("seed", "macrumors-2019")),
        # "Expandable to 512 GB with third party modules" (seed): never sold by Apple.
        MemoryOption(512, 128, WHOLE_LIFE, ("seed",), apple=False),
    )
}

GRAPHICS: dict[str, GraphicsOption] = {
    g.key: g
    for g in (
        GraphicsOption("vega56", "Radeon Pro Vega 56", 8, "HBM2", WHOLE_LIFE,
                       ("seed", "apple-specs", "linux-hardware"), 0x6867, 0x017B),
        GraphicsOption("vega64", "Radeon Pro Vega 64", 16, "HBM2", WHOLE_LIFE,
                       ("seed", "apple-specs", "linux-hardware"), 0x6860, 0x017C),
        # No probe of a Vega 64X was found: it answers with the Vega 64's IDs.
        GraphicsOption("vega64x", "Radeon Pro Vega 64X", 16, "HBM2",
                       Window(LATE_OPTIONS_ADDED, DELISTED), ("seed", "macrumors-2019"),
                       0x6860, 0x017C),
    )
}

STORAGE: dict[str, StorageOption] = {
    s.key: s
    for s in (
        StorageOption("1TB", 1, WHOLE_LIFE, ("seed", "apple-specs")),
        StorageOption("2TB", 2, WHOLE_LIFE, ("seed", "apple-specs")),
        StorageOption("4TB", 4, WHOLE_LIFE, ("seed", "apple-specs")),
    )
}


@dataclass(frozen=True)
class BaseConfiguration:
    """The stock configuration Apple sold during `window`: (cpu, memory, graphics, storage)."""

    cpu: int
    memory: int
    graphics: str
    storage: str
    window: Window


BASE_CONFIGURATIONS: tuple[BaseConfiguration, ...] = (
    BaseConfiguration(8, 32, "vega56", "1TB", Window(RELEASED, EIGHT_CORE_DROPPED)),
    BaseConfiguration(10, 32, "vega56", "1TB", Window(EIGHT_CORE_DROPPED, DELISTED)),
)


@dataclass(frozen=True)
class Fact:
    value: str
    sources: tuple[str, ...]


# The machine itself: identity, dates and the parts every configuration shares.
MODEL: dict[str, Fact] = {
    "model_name": Fact("iMac Pro", ("seed",)),
    "model_identifier": Fact("iMacPro1,1", ("seed",)),
    "board_id": Fact("Mac-7BA5B2D9E42DDD94", ("opencore-macserial", "clover-platformdata")),
    "model_number": Fact("A1862", ("apple-specs",)),
    "order_number": Fact("MQ2Y2", ("seed",)),
    "base_price": Fact("$4,999", ("seed",)),
    "boot_rom_version": Fact("IMP11.88Z.F000.B00.2107050205", ("clover-platformdata",)),
    "final_macos": Fact("macOS Monterey (12)", ("seed",)),
    "introduced": Fact("2017-06-05", ("seed",)),
    "released": Fact(RELEASED.isoformat(), ("seed", "apple-newsroom-2017")),
    "eight_core_dropped": Fact(EIGHT_CORE_DROPPED.isoformat(), ("seed", "macrumors-2020")),
    "discontinued": Fact(NO_LONGER_CONFIGURABLE.isoformat(), ("seed", "macrumors-2021-03-05")),
    "delisted": Fact(DELISTED.isoformat(), ("seed", "macrumors-2021-03-19")),
    "display": Fact("27-inch Retina 5K, 5120 × 2880, 60 Hz, P3, 10-bit (1.07 billion colors), "
                    "500 nits", ("seed", "apple-specs")),
    "ethernet": Fact("10 Gigabit Ethernet (Nbase-T, 1/2.5/5/10 Gb/s)", ("seed", "apple-specs")),
    "wifi": Fact("Wi-Fi 5 (802.11ac)", ("seed",)),
    "bluetooth": Fact("Bluetooth 5.0", ("seed",)),
    "usb": Fact("4 × USB 3 (USB-A)", ("seed", "apple-specs")),
    "thunderbolt": Fact("4 × Thunderbolt 3 (USB-C); two 5K or four 4K external displays",
                        ("seed", "apple-specs")),
    "card_reader": Fact("SDXC card slot, UHS-II", ("seed",)),
    "camera": Fact("1080p FaceTime HD camera", ("seed",)),
    "security_chip": Fact("Apple T2 Security Chip", ("seed",)),
    "weight": Fact("9.75 kg (21.5 lb)", ("seed",)),
}

# Serial numbers: PPP (plant) Y (half-year) W (week) SSS (unit) CCCC (model code).
SERIAL_PLANT = Fact("C02", ("opencore-macserial", "clover-platformdata"))
SERIAL_MODEL_CODES = Fact(
    "HX87 HX8F JL53 JL54 JL55 JLCN JLCP JLCR JLCT JLCV JLCW JLCX JLCY JLD0 JLD1 JLD2",
    ("opencore-macserial",),
)
# Organizationally unique identifiers assigned to Apple, Inc. used for the machine's MACs.
APPLE_OUIS = Fact("00:03:93 00:0A:27 00:0A:95 00:1C:B3 00:25:00 3C:07:54 F0:18:98 8C:85:90",
                  ("ieee-oui",))

# The keyboard, the black Magic Keyboard with Numeric Keypad (USB 05ac:026c), came with every one.
KEYBOARD = "Magic Keyboard with Numeric Keypad"

POINTERS: dict[str, PointerOption] = {
    p.key: p
    for p in (
        PointerOption("mouse", "Magic Mouse 2", ("mouse",), WHOLE_LIFE,
                      ("seed", "apple-specs", "linux-hid-ids")),
        PointerOption("trackpad", "Magic Trackpad 2", ("trackpad",), WHOLE_LIFE,
                      ("seed", "apple-specs", "linux-hid-ids")),
        PointerOption("both", "Magic Mouse 2 and Magic Trackpad 2", ("mouse", "trackpad"),
                      WHOLE_LIFE, ("apple-specs", "linux-hid-ids")),
    )
}
