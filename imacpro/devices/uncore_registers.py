"""The configuration registers of the Xeon W's uncore functions that Linux reads.

The uncore functions (board.py) are configuration space only; these are the registers in them
that tell software about the platform, with the values the machine's configuration gives:

    | function                | off   | register: value                                       |
    |-------------------------|-------|-------------------------------------------------------|
    | 00:08.2 Ubox (2016)     | 0xCC  | CPUBUSNO: the root bus of IIO stacks 0-3, a byte each |
    | 03:1e.3 PCU (2083)      | 0x9C  | CAPID6: a bit per CHA (one per core)                  |
    | each stack's VT-d (2034)| 0xD0  | TOLM: the top of RAM below 4 GiB                      |
    |                         | 0xD4/8| TOHM: the top of RAM above it (64 bits)               |
    | 03:1d.0 CHA (2054)      | 0x60+8i, 0x64+8i | SAD rule i (limit, interleave, enable) and |
    |                         |       | its interleave list (target i: local channel)          |
    | each CHA's 208e         | 0xB4  | MCROUTE: each logical channel's controller and channel |
    | IMC n channel c (2040,  | 0x80  | MTR of DIMM 0: present 15, ranks 13:12 (log2), rows   |
    |   2044, 2048 for c 0-2) |       | 4:2 (bits - 12), columns 1:0 (bits - 10), width 9:8 x4 |
    |                         | 0x87C | MCMTR (channel 0): ECC on (bit 2), open page          |
    |                         | 0x850+4i, 0x880+4i | TAD rule i (channel 0): base and its      |
    |                         |       | granularities; limit and the ways                     |
    |                         | 0x90+4i | the channel's offset for TAD rule i                 |
    |                         | 0x108, 0x120+16n | RIR rule 0: limit, ways (ranks); rank n  |

How memory is laid out, as those registers say it and Linux's skx_edac decodes an address:
four DIMMs, one per channel, each a quarter of the RAM: CPU1_DIMM_A0 on memory controller 0
channel 0, B0 on 0/1, C0 on 1/0, D0 on 1/1 (the SMBIOS names them so). The RAM below 2 GiB
and the RAM above 4 GiB (layout.py) are two SAD rules, each interleaved over the four
channels in 4 KiB lines (address bits 12-13 pick the channel: bits 12-14 index the
interleave list, whose eight entries repeat the four); the channel address is the address
less the hole below it (2 GiB for the rule above 4 GiB), divided by four at 4 KiB grain; the
ranks of a DIMM interleave at 8 KiB (open page). `locate()` is that decode, so `imacpro
inject` can name an address on a DIMM the way the guest's EDAC will read it back.

The geometry of a DIMM (DDR4, x4 chips, 16 banks, 1024 columns) follows its size: 8 GB one
rank of 64Ki rows, 16 GB two, 32 GB two of 128Ki rows, 64 GB four.
"""

from __future__ import annotations

from imacpro.memory import layout

DIMMS = {"A0": (0, 0), "B0": (0, 1), "C0": (1, 0), "D0": (1, 1)}   # → (controller, channel)
CHANNELS = tuple(DIMMS.values())           # logical channel n: the nth of these
CHANNEL_FUNCTIONS = {0: (0, 0x2040), 1: (4, 0x2044), 2: (8, 0x2048)}   # offset in the IMC's
IMC_BUS, IMC_FIRST_DEVICE = 0x05, 0x0A      # IMC n's functions: devices 0a + 2n, 0b + 2n
LINE = 12                                   # the interleave grain: 4 KiB
RANK_SHIFT = 13                             # open page: ranks interleave at 8 KiB
CPUBUSNO, CAPID6, TOLM, TOHM, MCROUTE = 0xCC, 0x9C, 0xD0, 0xD4, 0xB4
MTR, AMAP, MCMTR, MCDDRTCFG = 0x80, 0x8C, 0x87C, 0x400
SAD, TAD_BASE, TAD_WAYNESS, TAD_OFFSET, RIR_WAYNESS, RIR_ILV = (0x60, 0x850, 0x880, 0x90,
                                                               0x108, 0x120)
MTR_PRESENT, MCMTR_ECC, RIR_VALID, SAD_ENABLE = 1 << 15, 1 << 2, 1 << 31, 1
GRANULARITY_4K = 2                          # SAD/TAD granularity code for 4 KiB
LOCAL = 8                                   # an interleave target on this socket
GEOMETRY = {8: (0, 16), 16: (1, 16), 32: (1, 17), 64: (2, 17)}   # GB → (log2 ranks, row bits)
COLUMN_BITS = 10


def dimm_geometry(dimm_bytes: int) -> tuple[int, int]:
    """(log2 of its ranks, row address bits) of a DIMM of this size."""
    return GEOMETRY[dimm_bytes >> 30]


def _regions(ram_bytes: int) -> list[tuple[int, int, int]]:
    """(start, end, hole below it) of each stretch of RAM in the physical address space."""
    return [(r.guest_start, r.guest_start + r.size, r.guest_start - r.host_offset)
            for r in layout.ram_ranges(ram_bytes)]


def locate(address: int, ram_bytes: int) -> tuple[str, int] | None:
    """The DIMM (its name) that holds physical `address`, and the rank; None outside RAM."""
    for start, end, hole in _regions(ram_bytes):
        if start <= address < end:
            channel = (address >> LINE) % len(CHANNELS)
            name = next(n for n, c in DIMMS.items() if c == CHANNELS[channel])
            channel_address = ((address - hole) >> LINE) // len(CHANNELS) << LINE
            ranks = 1 << dimm_geometry(ram_bytes // len(DIMMS))[0]
            return name, (channel_address >> RANK_SHIFT) % ranks
    return None


def address_on(dimm: str, ram_bytes: int, nth_line: int = 0) -> int:
    """A physical address on `dimm`: its `nth_line` 4 KiB line (counting from the top of the
    RAM above 4 GiB, away from the kernel's own pages)."""
    start, end, _ = _regions(ram_bytes)[-1]
    channel = CHANNELS.index(DIMMS[dimm])
    top = (end >> LINE) // len(CHANNELS) * len(CHANNELS) - len(CHANNELS) * (nth_line + 1)
    address = (top + channel) << LINE
    if address < start:
        raise ValueError("no such line")
    return address


def registers(ram_bytes: int, cores: int, root_buses: list[int]) -> dict:
    """{(bus, device, function): {offset: 32-bit value}} for the uncore functions."""
    regs: dict[tuple[int, int, int], dict[int, int]] = {}

    def put(slot, offset, value):
        regs.setdefault(slot, {})[offset] = value & 0xFFFF_FFFF

    put((0x00, 0x08, 2), CPUBUSNO, int.from_bytes(bytes((root_buses + [0] * 4)[:4]), "little"))
    put((0x03, 0x1E, 3), CAPID6, (1 << cores) - 1)
    regions = _regions(ram_bytes)
    tolm = regions[0][1]
    tohm = regions[-1][1] if len(regions) > 1 else layout.HIGH_RAM_START
    for bus in root_buses[1:]:
        put((bus, 0x05, 0), TOLM, tolm)
        put((bus, 0x05, 0), TOHM, tohm)
        put((bus, 0x05, 0), TOHM + 4, tohm >> 32)
    # SAD: one rule per stretch of RAM (the hole between them is a rule's gap: the next
    # rule starts where the last one's limit ends), 4 KiB interleave over the channels.
    targets = sum((LOCAL | n % len(CHANNELS)) << 4 * n for n in range(8))
    for i, (_, end, _) in enumerate(regions):
        put((0x03, 0x1D, 0), SAD + 8 * i,
            ((end - 1) >> 26) << 7 | GRANULARITY_4K << 1 | SAD_ENABLE)
        put((0x03, 0x1D, 0), SAD + 8 * i + 4, targets)
    mcroute = 0
    for n, (imc, channel) in enumerate(CHANNELS):
        mcroute |= imc << 3 * n | channel << (18 + 2 * n)
    for n in range(cores):
        put((0x03, 0x0E + n // 8, n % 8), MCROUTE, mcroute)
    ranks_log2, rows = dimm_geometry(ram_bytes // len(DIMMS))
    mtr = MTR_PRESENT | ranks_log2 << 12 | (rows - 12) << 2 | (COLUMN_BITS - 10)
    channel_bytes = ram_bytes // len(DIMMS)
    for imc in range(2):
        device = IMC_FIRST_DEVICE + 2 * imc
        chan0 = (IMC_BUS, device, 0)
        put(chan0, MCMTR, MCMTR_ECC)
        for i, (start, end, hole) in enumerate(regions):
            # Ways: two across the controllers ("socket" ways at the SAD), two channels here.
            put(chan0, TAD_BASE + 4 * i,
                (start >> 26) << 12 | GRANULARITY_4K << 6 | GRANULARITY_4K << 4)
            put(chan0, TAD_WAYNESS + 4 * i, ((end - 1) >> 26) << 12 | 1 << 10 | 1 << 8)
            for channel in (0, 1):
                offset, _ = CHANNEL_FUNCTIONS[channel]
                put((IMC_BUS, device + offset // 8, offset % 8), TAD_OFFSET + 4 * i,
                    (hole >> 26) << 4)
        for channel in (0, 1):
            offset, _ = CHANNEL_FUNCTIONS[channel]
            slot = (IMC_BUS, device + offset // 8, offset % 8)
            put(slot, MTR, mtr)
            put(slot, RIR_WAYNESS, RIR_VALID | ranks_log2 << 28 | ((channel_bytes - 1) >> 29) << 1)
            for rank in range(1 << ranks_log2):
                put(slot, RIR_ILV + 16 * rank, rank << 16)
    return regs
