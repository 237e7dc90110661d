"""The 64-bit entry state firmware hands to a kernel (Linux x86 boot protocol, 64-bit entry).

Tables live in low memory, below the 1 MiB boot area:

    0x0000_0500  GDT: null, null, 0x10 64-bit code (__BOOT_CS), 0x18 data (__BOOT_DS)
    0x0000_1000  PML4
    0x0000_2000  PDPT
    0x0000_3000  4 page directories of 2 MiB pages: identity map of the first 4 GiB

The boot protocol requires an identity map covering the kernel, boot_params and command line,
segments __BOOT_CS/__BOOT_DS with base 0 and limit 4 GiB, and interrupts disabled.
"""

from __future__ import annotations

import struct

from imacpro.cpu.engine import x86_const as x

GDT_BASE = 0x500
PML4_BASE = 0x1000
PDPT_BASE = 0x2000
PD_BASE = 0x3000
BOOT_CS = 0x10
BOOT_DS = 0x18

GDT = (
    0,
    0,
    0x00AF_9B00_0000_FFFF,  # 0x10: 64-bit code, DPL 0, accessed
    0x00CF_9300_0000_FFFF,  # 0x18: data, read/write, accessed
)

PRESENT, WRITABLE, HUGE = 1, 2, 0x80
CR0_PE, CR0_ET, CR0_PG = 1, 1 << 4, 1 << 31
CR4_PAE = 1 << 5
EFER = 0xC000_0080
EFER_LME, EFER_LMA = 1 << 8, 1 << 10


def write_tables(ram) -> None:
    ram.write(GDT_BASE, struct.pack(f"<{len(GDT)}Q", *GDT))
    ram.write(PML4_BASE, struct.pack("<Q", PDPT_BASE | PRESENT | WRITABLE) + bytes(4088))
    ram.write(PDPT_BASE, struct.pack("<4Q", *(PD_BASE + 0x1000 * i | PRESENT | WRITABLE
                                              for i in range(4))) + bytes(4096 - 32))
    entries = [(i << 21) | PRESENT | WRITABLE | HUGE for i in range(4 * 512)]
    ram.write(PD_BASE, struct.pack(f"<{len(entries)}Q", *entries))


def enter(uc, ram, rip: int, rsp: int = 0, rsi: int = 0) -> None:
    """Put a CPU in 64-bit mode with the tables above; it starts at `rip`."""
    write_tables(ram)
    uc.reg_write(x.UC_X86_REG_GDTR, (0, GDT_BASE, 8 * len(GDT) - 1, 0))
    uc.reg_write(x.UC_X86_REG_CR3, PML4_BASE)
    uc.reg_write(x.UC_X86_REG_CR4, CR4_PAE)
    uc.msr_write(EFER, EFER_LME | EFER_LMA)
    uc.reg_write(x.UC_X86_REG_CR0, CR0_PE | CR0_ET | CR0_PG)
    uc.reg_write(x.UC_X86_REG_CS, BOOT_CS)
    for reg in (x.UC_X86_REG_DS, x.UC_X86_REG_ES, x.UC_X86_REG_SS):
        uc.reg_write(reg, BOOT_DS)
    uc.reg_write(x.UC_X86_REG_RFLAGS, 0x2)  # interrupts disabled
    uc.reg_write(x.UC_X86_REG_RSP, rsp)
    uc.reg_write(x.UC_X86_REG_RSI, rsi)
    uc.reg_write(x.UC_X86_REG_RIP, rip)
