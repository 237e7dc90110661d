"""The GPU's VRAM aperture from the CPU: plain memory at BAR0 (the engines map it directly),
following the BAR when the guest moves it or turns decoding off, as a program on the machine
sees it through ECAM."""

from baremetal import run_program

from imacpro.firmware.pci import assign_resources
from imacpro.memory import layout

ECAM = layout.ECAM_BASE
GPU = ECAM + (0xF3 << 20)                        # f3:00.0's configuration space
BRIDGES = [ECAM + (bus << 20) for bus in (0xF0, 0xF1, 0xF2)]

PROGRAM = r"""
.macro STORE size, value, address        # addresses above 2 GiB go through a register
    mov $\address, %rdi
    mov\size $\value, (%rdi)
.endm
.macro LOAD name, address
    mov $\address, %rdi
    movl (%rdi), %eax
    PRINT \name
.endm
main:
    call setup_gdt
    GATE 8, h8
    GATE 14, h14
    STORE l, 0x11223344, 0xC0000000         # the framebuffer's first pixel
    LOAD first, 0xC0000000
    STORE w, 0, GPU+4                       # memory decoding off: a master abort
    LOAD decoding_off, 0xC0000000
    .irp bridge, BRIDGE0, BRIDGE1, BRIDGE2   # prefetchable windows: all of 0xC0000000-0xDFFFFFFF
    STORE l, 0xDFF1C001, \bridge+0x24
    .endr
    STORE l, 0xC000000C, GPU+0x18           # BAR2 moves down, BAR0 up to 0xD0000000
    STORE l, 0xD000000C, GPU+0x10
    STORE w, 2, GPU+4
    LOAD moved, 0xD0000000
    STORE l, 0x55667788, 0xD0000004
    LOAD bar2, 0xC0000000                   # BAR2 now: registers not modelled, zero
    mov $0x4000000000, %rbx                 # beyond the identity map: a page fault, not #DF
    TRY fault, "mov (%rbx), %rax"
    jmp finish
h8: movq $8, vector(%rip)
    cli
    hlt
    RESUME_HANDLER 14, 1
.data
resume: .quad 0
vector: .quad 0
""".replace("GPU", hex(GPU)).replace("BRIDGE0", hex(BRIDGES[0])) \
   .replace("BRIDGE1", hex(BRIDGES[1])).replace("BRIDGE2", hex(BRIDGES[2]))


def test_the_aperture_is_memory_at_bar0_wherever_the_guest_puts_it():
    values, output, machine, result = run_program(
        PROGRAM, setup=lambda m: assign_resources(m.pci, m.board))
    assert "DONE" in output, (result, output)
    v = {key: int(value, 16) for key, value in values.items()}
    assert v["first"] == 0x11223344 and v["decoding_off"] == 0xFFFF_FFFF
    assert v["moved"] == 0x11223344 and v["bar2"] == 0
    assert v["fault"] == 14                       # the remaps left no fault behind
    aperture = machine.devices["gpu"].aperture.view
    assert bytes(aperture[:8]) == bytes.fromhex("4433221188776655")
    direct = [p for p in machine.bsp.windows.pieces if p.host is not None]
    assert [(p.start, p.end - p.start) for p in direct] == [(0xD000_0000, 256 << 20)]
