"""The CPU engine: Unicorn 2.1.4 with imacpro's patch (third_party/unicorn/imacpro.patch).

Stock Unicorn is a user-mode emulator: it reports exceptions to a hook instead of delivering them,
treats SYSCALL as a no-op, has no interrupt pins and reads the host's TSC. The patch, built by
`tools/build-unicorn` into `_lib/libunicorn.so.2`, adds per-engine entry points:

  uc_imacpro_enable(uc, intack, msr, opaque)  exceptions through the guest IDT (QEMU's own
                                              delivery: gates, IST, CPL switch, error codes,
                                              #DF/triple fault), SYSCALL per the SDM, and
                                              callbacks for the INTA cycle and RDMSR/WRMSR
  uc_imacpro_set_irq(uc, level)               the INTR pin (taken when RFLAGS.IF=1 and no
                                              STI/MOV SS shadow)
  uc_imacpro_nmi(uc)                          the NMI pin
  uc_imacpro_mce(uc)                          a machine-check exception (#MC) at the next
                                              instruction; it wakes a halted CPU
  uc_imacpro_sipi(uc, vector)                 start-up IPI: CS:IP = vector<<8:0, not halted
  uc_imacpro_status(uc)                       bit 0 halted, bit 1 triple fault, bit 2 a
                                              pause-loop exit ended the slice (read clears)
  uc_imacpro_run(uc, timeout_us, end_ns)      one slice from the CPU's RIP: slice_end (if
                                              end_ns), uc_emu_start, then the status, or
                                              -uc_err
  uc_imacpro_wait_since(uc)                   CLOCK_MONOTONIC ns of the first PAUSE of the
                                              spin loop the CPU is in (PAUSEs more than
                                              2 us apart begin a new one, as VMX's PLE_Gap;
                                              a slice that ends in it goes on with it)
  uc_imacpro_queued_since(uc)                 CLOCK_MONOTONIC ns of the first PAUSE after
                                              the CPU's last locked read-modify-write
                                              (LOCK prefix, XCHG with memory) outside
                                              interrupt and exception handlers: its place
                                              in the queue of a lock it waits for
  uc_imacpro_xcr0(uc)                         XCR0 (CPUID leaf 0xD's sizes depend on it)
  uc_imacpro_power_on(uc)                     a platform reset: no INTR/NMI/INIT request
                                              pending, not halted (the registers come back
                                              with uc_context_restore)
  uc_imacpro_cut_slice(uc, timeout_ns)        end the running time slice sooner (a timer
                                              armed during it falls due first)
  uc_imacpro_slice_end(uc, end_ns)            the next slice ends by this CLOCK_MONOTONIC
                                              time however late it starts; RDTSC after a
                                              slice's end stops the slice and runs again
                                              in the next (a stalled host's TSC jump is
                                              never read before the timers due by then)
  uc_imacpro_until_interrupts_on(uc, on)      while on, a slice ends at the instruction
                                              that enables interrupts (STI, POPF, IRET)
  uc_imacpro_set_tsc(uc, tsc, anchor_ns, hz, running)
                                              TSC = tsc + (CLOCK_MONOTONIC - anchor_ns) * hz
  uc_imacpro_cpu_state(uc, buf, size)         the vCPU's state as bytes: CPUX86State up to
                                              end_reset_fields (registers, segments, control
                                              and debug registers, FPU/SSE, engine MSRs) and
                                              the MTRRs, host pointers cleared; the pending
                                              INTR/NMI requests and the halted flag
  uc_imacpro_set_cpu_state(uc, buf, size)     load it (breakpoints re-made from DR7, TLB
                                              flushed); refused unless of the same build
  uc_imacpro_codemap_new(host_base, size)     a code map for the engines sharing that RAM
  uc_imacpro_codemap_join(uc, map)            this engine joins the map and uses the
                                              machine's one set of translations (one code
                                              buffer, hash table and page table of blocks,
                                              as QEMU's vCPU threads share theirs): a write
                                              by any member to a page with code invalidates
                                              the code it changed, and pages without code
                                              are written at full speed; no member touches
                                              another's TLB or jump cache (it posts a note
                                              the other acts on before its next translated
                                              block), so members may run on
                                              threads of their own
  uc_imacpro_parallel(uc, on)                 the map's members run at the same time: guest
                                              atomics become host atomics (QEMU's
                                              CF_PARALLEL), and an instruction that cannot be
                                              one runs while every other member waits
                                              outside its translated code
  uc_imacpro_blocks(uc)                       how many translated blocks its translations hold
  uc_imacpro_hold_code_writes(uc, ns)         tests: each write of this engine that may change
                                              code another member holds waits ns between
                                              its notes and its landing (a host that stops
                                              the thread there)
  uc_imacpro_dirtylog_new(host_base, size)    a log of the pages of host memory (a framebuffer)
  uc_imacpro_dirtylog_join(uc, log)           that this engine writes: the first write to a
  uc_imacpro_dirtylog_collect(log, out, size) page after a collect takes the slow path and
  uc_imacpro_dirtylog_free(log)               marks it; collect copies the page bits out and
                                              clears them; a parallel member re-arms its
                                              own entries from a note (a page it could
                                              still write fast counts as written next time)

Beside the entry points, the patch changes how translated code runs (docs/CPU.md has each
change): a direct jump to another page, for one, is chained to the block it goes to and taken
only while the next-block lookup would find that same block.

The ordinary `unicorn` wheel supplies the Python binding; LIBUNICORN_PATH points it at our build.
"""

from __future__ import annotations

import ctypes
import typing

import unicorn  # imacpro.cpu has pointed LIBUNICORN_PATH at our build
from unicorn import x86_const
from unicorn.unicorn_py3.arch.intel import UcIntel
from unicorn.unicorn_py3.unicorn import uclib

from imacpro.errors import UserError

def _load_error() -> str:
    """Why our engine library did not load (the binding then falls back to stock Unicorn)."""
    import os
    path = os.environ.get("LIBUNICORN_PATH")
    if not path:
        return "not built"
    try:
        ctypes.CDLL(os.path.join(path, "libunicorn.so.2"))
    except OSError as exc:
        return str(exc)
    return "an older build"


if not hasattr(uclib, "uc_imacpro_parallel"):
    raise UserError(f"the CPU engine is stock Unicorn, without imacpro's patch ({_load_error()}): "
                    "run 'make' (tools/build-unicorn) to build it")

INTACK_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
MSR_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32,
                                ctypes.POINTER(ctypes.c_uint64))


def msr_callback(handler) -> MSR_CALLBACK:
    """`handler(is_write, index, value)` (Engine's `msr`) as the engine's C callback."""
    def on_msr(_opaque, is_write, index, value_ptr) -> int:
        handled, value = handler(bool(is_write), index, value_ptr[0])
        if handled > 0 and not is_write:
            value_ptr[0] = value & 0xFFFF_FFFF_FFFF_FFFF
        return handled
    return MSR_CALLBACK(on_msr)

uclib.uc_imacpro_enable.argtypes = [ctypes.c_void_p, INTACK_CALLBACK, MSR_CALLBACK,
                                    ctypes.c_void_p]
uclib.uc_imacpro_enable.restype = ctypes.c_int
uclib.uc_imacpro_set_irq.argtypes = [ctypes.c_void_p, ctypes.c_int]
uclib.uc_imacpro_set_irq.restype = None
uclib.uc_imacpro_nmi.argtypes = [ctypes.c_void_p]
uclib.uc_imacpro_nmi.restype = None
uclib.uc_imacpro_mce.argtypes = [ctypes.c_void_p]
uclib.uc_imacpro_mce.restype = None
uclib.uc_imacpro_sipi.argtypes = [ctypes.c_void_p, ctypes.c_int]
uclib.uc_imacpro_sipi.restype = None
uclib.uc_imacpro_power_on.argtypes = [ctypes.c_void_p]
uclib.uc_imacpro_power_on.restype = None
uclib.uc_imacpro_cut_slice.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
uclib.uc_imacpro_cut_slice.restype = None
uclib.uc_imacpro_slice_end.argtypes = [ctypes.c_void_p, ctypes.c_int64]
uclib.uc_imacpro_slice_end.restype = None
uclib.uc_imacpro_until_interrupts_on.argtypes = [ctypes.c_void_p, ctypes.c_bool]
uclib.uc_imacpro_until_interrupts_on.restype = None
uclib.uc_imacpro_status.argtypes = [ctypes.c_void_p]
uclib.uc_imacpro_status.restype = ctypes.c_int
uclib.uc_imacpro_run.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int64]
uclib.uc_imacpro_run.restype = ctypes.c_int
uclib.uc_imacpro_wait_since.argtypes = [ctypes.c_void_p]
uclib.uc_imacpro_wait_since.restype = ctypes.c_int64
uclib.uc_imacpro_queued_since.argtypes = [ctypes.c_void_p]
uclib.uc_imacpro_queued_since.restype = ctypes.c_int64
uclib.uc_imacpro_xcr0.argtypes = [ctypes.c_void_p]
uclib.uc_imacpro_xcr0.restype = ctypes.c_uint64
uclib.uc_imacpro_set_tsc.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int64,
                                     ctypes.c_uint64, ctypes.c_int]
uclib.uc_imacpro_set_tsc.restype = None
uclib.uc_imacpro_cpu_state.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
uclib.uc_imacpro_cpu_state.restype = ctypes.c_size_t
uclib.uc_imacpro_set_cpu_state.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
uclib.uc_imacpro_set_cpu_state.restype = ctypes.c_int
uclib.uc_imacpro_codemap_new.argtypes = [ctypes.c_uint64, ctypes.c_uint64]
uclib.uc_imacpro_codemap_new.restype = ctypes.c_void_p
uclib.uc_imacpro_codemap_join.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
uclib.uc_imacpro_codemap_join.restype = ctypes.c_int
uclib.uc_imacpro_parallel.argtypes = [ctypes.c_void_p, ctypes.c_bool]
uclib.uc_imacpro_parallel.restype = ctypes.c_int
uclib.uc_imacpro_hold_code_writes.argtypes = [ctypes.c_void_p, ctypes.c_int64]
uclib.uc_imacpro_hold_code_writes.restype = ctypes.c_int
uclib.uc_imacpro_blocks.argtypes = [ctypes.c_void_p]
uclib.uc_imacpro_blocks.restype = ctypes.c_uint64
uclib.uc_imacpro_dirtylog_new.argtypes = [ctypes.c_uint64, ctypes.c_uint64]
uclib.uc_imacpro_dirtylog_new.restype = ctypes.c_void_p
uclib.uc_imacpro_dirtylog_join.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
uclib.uc_imacpro_dirtylog_join.restype = ctypes.c_int
uclib.uc_imacpro_dirtylog_collect.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
uclib.uc_imacpro_dirtylog_collect.restype = ctypes.c_size_t
uclib.uc_imacpro_dirtylog_free.argtypes = [ctypes.c_void_p]
uclib.uc_imacpro_dirtylog_free.restype = None

STATUS_HALTED = 1
STATUS_TRIPLE_FAULT = 2
STATUS_PAUSE_EXIT = 4     # the slice ended at a pause-loop exit: the CPU spins, waiting


class _Uc(UcIntel):
    """The binding's x86 engine, which calls `on_hook_exception()` when one of its hooks
    raised: the binding records the exception and stops the engine, and the multi-threaded
    run loop's C (run_loop_core.py), which runs the slice, must hand the CPU to Python to
    raise it."""

    def __new__(cls, *_args):
        return object.__new__(cls)     # Uc.__new__ would make a plain UcIntel

    on_hook_exception: typing.Callable[[], None] | None = None

    @property
    def _hook_exception(self) -> BaseException | None:
        return self.__dict__.get("_hook_error")

    @_hook_exception.setter
    def _hook_exception(self, error: BaseException | None) -> None:
        self.__dict__["_hook_error"] = error
        if error is not None and self.on_hook_exception is not None:
            self.on_hook_exception()


class Engine:
    """One logical CPU: a Unicorn x86-64 instance (`uc`) with the machine extensions on.

    `intack()` returns the vector of the external interrupt the CPU is taking, OR 0x100 if
    another is still pending, or -1 if none is deliverable any more; it may instead be the
    address of a C function, called with `intack_opaque` (the local APIC's core,
    devices/apic_core.py). `msr(is_write, index,
    value)` returns (1, value) when handled, (0, None) to let the engine handle it (EFER,
    STAR/LSTAR/CSTAR/FMASK, FS/GS bases, SYSENTER, PAT, TSC), or (-1, None) for #GP; it too
    may be a C function's address (an MSR_CALLBACK, called with `intack_opaque`: the APIC
    core's, which serves some MSRs in C and hands the rest to Python's, `msr_callback`).
    """

    # uc_imacpro_set_irq(uc, level), for C code that drives the INTR pin itself.
    SET_IRQ_ADDRESS = ctypes.cast(uclib.uc_imacpro_set_irq, ctypes.c_void_p).value
    # uc_imacpro_cut_slice, for C that arms a timer on the CPU's thread (tsc_deadline.c)
    CUT_SLICE_ADDRESS = ctypes.cast(uclib.uc_imacpro_cut_slice, ctypes.c_void_p).value

    def __init__(self, intack, msr, cpu_model: int = x86_const.UC_CPU_X86_SKYLAKE_SERVER,
                 intack_opaque: int | None = None):
        self.uc = _Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        self.uc.ctl_set_cpu_model(cpu_model)  # before the engine initialises
        # Exit addresses off: with them, every stop (a time slice ending) makes Unicorn
        # invalidate code at `until - 1` through a page walk on the guest's tables, which
        # raises a phantom #PF there: CR2 clobbered, and the next fault becomes a #DF.
        self.uc.ctl_exits_enabled(True)
        self._uch = self.handle = self.uc._uch
        if isinstance(intack, int):
            self._intack = INTACK_CALLBACK(intack)
        else:
            self._intack = INTACK_CALLBACK(lambda _opaque: intack())
        self._msr = MSR_CALLBACK(msr) if isinstance(msr, int) else msr_callback(msr)
        err = uclib.uc_imacpro_enable(self._uch, self._intack, self._msr, intack_opaque)
        if err:
            raise unicorn.UcError(err)
        self.power_on()                 # architectural reset values (XCR0 = x87 only)

    def register(self, reg: int) -> int:
        """A register of at most 64 bits (RIP, RFLAGS, a GPR, a control register): the run
        loop reads RIP and RFLAGS at every slice, and the binding's `reg_read` picks the
        register's class on every call, several times the cost of the engine's own read."""
        value = ctypes.c_uint64()
        uclib.uc_reg_read(self._uch, reg, ctypes.byref(value))
        return value.value

    def set_irq(self, level: bool) -> None:
        uclib.uc_imacpro_set_irq(self._uch, 1 if level else 0)

    def nmi(self) -> None:
        uclib.uc_imacpro_nmi(self._uch)

    def machine_check(self) -> None:
        uclib.uc_imacpro_mce(self._uch)

    def sipi(self, vector: int) -> None:
        uclib.uc_imacpro_sipi(self._uch, vector & 0xFF)

    def power_on(self) -> None:
        """After a platform reset: nothing pending, not halted (see the module docstring)."""
        uclib.uc_imacpro_power_on(self._uch)

    def cut_slice(self, timeout_ns: int) -> None:
        """From inside the running slice: end it `timeout_ns` from now if that is sooner."""
        uclib.uc_imacpro_cut_slice(self._uch, max(0, timeout_ns))

    def slice_end(self, end_ns: int) -> None:
        """Before a slice: it ends by CLOCK_MONOTONIC `end_ns`, however late it starts."""
        uclib.uc_imacpro_slice_end(self._uch, end_ns)

    def until_interrupts_on(self, on: bool) -> None:
        """While `on`, a slice ends as soon as the CPU enables interrupts."""
        uclib.uc_imacpro_until_interrupts_on(self._uch, on)

    def xcr0(self) -> int:
        return uclib.uc_imacpro_xcr0(self._uch)

    def status(self) -> int:
        return uclib.uc_imacpro_status(self._uch)

    def run(self, timeout_us: int, end_ns: int = 0) -> int:
        """One slice from where the CPU is, ending after `timeout_us` and by CLOCK_MONOTONIC
        `end_ns` (0: no bound): the status bits after it. Raises UcError if the engine could
        not run, or an exception a hook raised (the binding's hooks record it and stop)."""
        uc = self.uc
        uc._hook_exception = None
        status = uclib.uc_imacpro_run(self._uch, timeout_us, end_ns)
        if status < 0:
            raise unicorn.UcError(-status)
        if uc._hook_exception is not None:
            raise uc._hook_exception
        return status

    def wait_since(self) -> int:
        """CLOCK_MONOTONIC ns at which the spin loop the CPU is in began (after a slice that
        ended at a pause-loop exit)."""
        return uclib.uc_imacpro_wait_since(self._uch)

    def queued_since(self) -> int:
        """When the CPU queued for what it waits for: its first PAUSE after its last locked
        read-modify-write outside interrupt and exception handlers (taking a ticket or an
        MCS tail is one; spinning takes none), kept through the ticks it takes meanwhile."""
        return uclib.uc_imacpro_queued_since(self._uch)

    def join_code_map(self, ram) -> None:
        """Share code tracking and translations with the other engines on `ram` (one map
        per RAM, freed by the engine when its last member closes)."""
        code_map = getattr(ram, "_code_map", None)
        if code_map is None:
            code_map = uclib.uc_imacpro_codemap_new(ram.host_address, ram.size)
            if not code_map:
                raise MemoryError("no memory for the engine's code map")
            ram._code_map = code_map
        err = uclib.uc_imacpro_codemap_join(self._uch, code_map)
        if err:
            raise unicorn.UcError(err)

    def set_parallel(self, on: bool) -> None:
        """Whether the other engines of this one's code map run on other threads at the same
        time (after join_code_map, before the engine first runs)."""
        err = uclib.uc_imacpro_parallel(self._uch, on)
        if err:
            raise unicorn.UcError(err)

    def blocks(self) -> int:
        """How many translated blocks this engine's translations hold: the machine's, which
        every engine of its code map shares."""
        return uclib.uc_imacpro_blocks(self._uch)

    def hold_code_writes(self, ns: int) -> None:
        """Tests only: this engine's writes to code another engine holds wait `ns` (under a
        second; 0: none) before they land, as when the host stops the thread there."""
        err = uclib.uc_imacpro_hold_code_writes(self._uch, ns)
        if err:
            raise unicorn.UcError(err)

    def join_dirty_log(self, log: DirtyLog) -> None:
        """Log this engine's writes to the log's memory."""
        err = uclib.uc_imacpro_dirtylog_join(self._uch, log.handle)
        if err:
            raise unicorn.UcError(err)

    def cpu_state(self) -> bytes:
        """The vCPU's state as bytes of this engine build (see the module docstring)."""
        size = uclib.uc_imacpro_cpu_state(self._uch, None, 0)
        buffer = ctypes.create_string_buffer(size)
        if uclib.uc_imacpro_cpu_state(self._uch, buffer, size) != size:
            raise RuntimeError("the engine did not give its CPU state")
        return buffer.raw

    def set_cpu_state(self, data: bytes) -> bool:
        """Load `cpu_state()`'s bytes; False if they are not of this engine build's layout."""
        return uclib.uc_imacpro_set_cpu_state(self._uch, data, len(data)) == 0

    def set_tsc(self, tsc: int, anchor_ns: int, hz: int, running: bool) -> None:
        uclib.uc_imacpro_set_tsc(self._uch, tsc & 0xFFFF_FFFF_FFFF_FFFF, anchor_ns, hz,
                                 1 if running else 0)


class DirtyLog:
    """Which 4 KiB pages of a stretch of host memory (the boot framebuffer) the engines that
    joined wrote since the last `collect` (see the module docstring). Engines join with
    Engine.join_dirty_log; `close` frees it (engines closed before leave on their own)."""

    def __init__(self, host_address: int, size: int):
        self.pages = size >> 12
        self.handle = uclib.uc_imacpro_dirtylog_new(host_address, size)
        if not self.handle:
            raise MemoryError("no memory for a dirty log")
        self._bits = ctypes.create_string_buffer((self.pages + 7) // 8)

    def collect(self) -> bytes:
        """The pages written since the last call, a bit each (page n: byte n // 8, bit
        n % 8), and the log cleared."""
        uclib.uc_imacpro_dirtylog_collect(self.handle, self._bits, len(self._bits))
        return self._bits.raw

    def close(self) -> None:
        if self.handle:
            uclib.uc_imacpro_dirtylog_free(self.handle)
            self.handle = None
