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


DIRTY_PROGRAM = r"""
.macro COLLECT
    push %rdx
    mov $0x510, %dx
    out %al, (%dx)
    pop %rdx
.endm
main:
    mov $0xC0000000, %rdi
    movl $1, (%rdi)                         # page 0
    movl $1, 0x5000(%rdi)                   # page 5
    COLLECT                                 # the host collects: {0, 5}
    movl $2, 0x5004(%rdi)                   # page 5 again: logged again after a collect
    movq $3, 0x64000(%rdi)                  # page 100
    mov 0x7000(%rdi), %rax                  # a read logs nothing
    COLLECT                                 # {5, 100}
    COLLECT                                 # nothing
    lea 0xC8000(%rdi), %rdi                 # rep stos over pages 200-203
    mov $0x4000, %rcx
    mov $0xAB, %al
    rep stosb
    COLLECT                                 # {200, 201, 202, 203}
    jmp finish
"""


class Collector:
    """Port 0x510: each write collects the framebuffer's dirty log."""

    def __init__(self, machine):
        from imacpro.cpu.engine import DirtyLog
        aperture = machine.devices["gpu"].aperture
        self.log = DirtyLog(aperture.host_address, aperture.size)
        machine.bsp.engine.join_dirty_log(self.log)
        self.collected = []
        machine.pio.register(0x510, 1, self)

    def read(self, offset, size):
        return 0

    def write(self, offset, size, value):
        bits = self.log.collect()
        self.collected.append({n for n in range(self.log.pages) if bits[n // 8] >> n % 8 & 1})

    def reset(self):
        pass


def run_dirty_program(host_threads):
    holder = {}

    def setup(machine):
        assign_resources(machine.pci, machine.board)
        holder["collector"] = Collector(machine)
    values, output, machine, result = run_program(DIRTY_PROGRAM, setup=setup,
                                                  host_threads=host_threads)
    assert "DONE" in output, (result, output)
    return machine, holder["collector"]


def test_the_dirty_log_names_the_framebuffer_pages_the_guest_wrote_since_the_last_look():
    machine, collector = run_dirty_program(host_threads=1)
    assert collector.collected == [{0, 5}, {5, 100}, set(), {200, 201, 202, 203}]
    assert bytes(machine.devices["gpu"].aperture.view[0xC8000:0xCC000]) == b"\xAB" * 0x4000
    collector.log.close()


def test_on_host_threads_a_page_written_after_a_look_is_in_a_later_look_if_not_the_next():
    # An engine that may be running learns of a collect before its next block, not at once:
    # the pages it could still write at full speed until then count as written in a later
    # collect, so a write is reported late rather than lost (engine.py, DirtyLog).
    machine, collector = run_dirty_program(host_threads=2)
    first, *later = collector.collected
    assert first == {0, 5}
    assert 5 in set().union(*later) and 100 in later[0]
    assert {200, 201, 202, 203} <= later[-1]
    assert bytes(machine.devices["gpu"].aperture.view[0xC8000:0xCC000]) == b"\xAB" * 0x4000
    collector.log.close()


BANDS_PROGRAM = r"""
main:
    mov $0xC0000000, %rdi
    movl $1, (%rdi)                         # row 0: page 0 is bytes 0-4095 of row 0
    movl $1, 153620(%rdi)                   # row 10 (stride 15360): page 37, rows 9-10
    movq $1, 1551356(%rdi)                  # rows 100-101: page 378
    mov $0x510, %dx
    out %al, (%dx)
    out %al, (%dx)                          # nothing since
    jmp finish
"""


def test_screen_changes_are_bands_of_the_rows_the_written_pages_cover():
    from imacpro.devices.display.changes import ScreenChanges
    from imacpro.devices.display.framebuffer import COMPAT
    looks = []

    class Look:
        def read(self, offset, size):
            return 0

        def write(self, offset, size, value):
            looks.append(changes.bands(COMPAT))

        def reset(self):
            pass

    def setup(machine):
        nonlocal changes
        assign_resources(machine.pci, machine.board)
        changes = ScreenChanges(machine)
        machine.pio.register(0x510, 1, Look())
    changes = None
    values, output, machine, result = run_program(BANDS_PROGRAM, setup=setup, cpus=2)
    assert "DONE" in output, (result, output)
    assert looks == [[(0, 1), (9, 11), (100, 102)], []]
    changes.close()
