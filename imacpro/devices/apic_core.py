"""The local APIC's interrupt core in C (`native/apic_core.c`, built by make into
`_lib/libapic.so`): IRR, ISR, TMR and TPR, the INTA cycle, the EOI, the INTR pin and the
page's common reads, so that an interrupt a CPU takes costs no Python (the C file says which
accesses it serves and how it shares them between threads).

`ApicCore` is one CPU's core: lapic.py keeps its APIC's vectors there and calls it; the vCPU
hands the engine its INTA callback and maps the APIC page through it (cpu/vcpu.py).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from imacpro.clock import ClockView
from imacpro.errors import UserError

LIBRARY = Path(__file__).with_name("_lib") / "libapic.so"

SET_IRQ = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int)
SLOW_INTACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
SLOW_READ = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint,
                             ctypes.c_void_p)
SLOW_WRITE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint,
                              ctypes.c_uint64, ctypes.c_void_p)
SLOW_EOI = ctypes.CFUNCTYPE(None, ctypes.c_int)
SLOW_MSR = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32,
                            ctypes.POINTER(ctypes.c_uint64))     # cpu/engine.py's MSR_CALLBACK
WAKE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int)
NO_DEADLINE = 2**63 - 1      # a TSC deadline's guest ns when none is armed (tsc_deadline.c)

Words = ctypes.c_uint32 * 8


class _Core(ctypes.Structure):
    pass


class _Bus(ctypes.Structure):
    _fields_ = [("by_id", ctypes.POINTER(_Core) * 256), ("all", ctypes.POINTER(_Core) * 256),
                ("count", ctypes.c_int32), ("ids_unique", ctypes.c_int32), ("wake", ctypes.c_void_p),
                ("wake_context", ctypes.c_void_p), ("next_deadline_ns", ctypes.c_int64)]


_Core._fields_ = [
    ("irr", Words), ("isr", Words), ("tmr", Words), ("eoi_notify", Words),
    ("tpr", ctypes.c_uint32), ("id_reg", ctypes.c_uint32), ("icr_high", ctypes.c_uint32),
    ("icr_low", ctypes.c_uint32), ("hw_enabled", ctypes.c_int32),
    ("sw_enabled", ctypes.c_int32), ("extint", ctypes.c_int32),
    ("timer_vector", ctypes.c_int32), ("pin", ctypes.c_int32), ("halted", ctypes.c_int32),
    ("index", ctypes.c_int32), ("interrupts", ctypes.c_uint64),
    ("last_interrupt_ns", ctypes.c_int64), ("last_tick_ns", ctypes.c_int64),
    ("max_busy_tick_gap_ns", ctypes.c_int64), ("max_latency_ns", ctypes.c_int64),
    ("pending_since", ctypes.c_int64 * 256), ("clock", ctypes.POINTER(ClockView)),
    ("bus", ctypes.POINTER(_Bus)), ("uc", ctypes.c_void_p), ("set_irq", ctypes.c_void_p),
    ("slow_intack", SLOW_INTACK), ("slow_read", SLOW_READ), ("slow_write", SLOW_WRITE),
    ("slow_eoi", SLOW_EOI), ("slow_msr", SLOW_MSR), ("c0", ctypes.c_void_p),
    ("deadline_mode", ctypes.c_int32), ("deadline_vector", ctypes.c_int32),
    ("error_vector", ctypes.c_int32), ("deadline_lock", ctypes.c_int32),
    ("esr_pending", ctypes.c_uint32), ("deadline_pad", ctypes.c_int32),
    ("tsc_deadline", ctypes.c_uint64), ("deadline_ns", ctypes.c_int64),
    ("tsc_hz", ctypes.c_int64), ("tsc_offset", ctypes.c_int64), ("cut_slice", ctypes.c_void_p)]


def _load():
    try:
        lib = ctypes.CDLL(str(LIBRARY))
    except OSError as exc:
        raise UserError(f"the local APIC's core is not built ({exc}): run 'make'") from None
    core_p = ctypes.POINTER(_Core)
    for name, restype, argtypes in (
            ("apic_bus_send_fixed", ctypes.c_int, [ctypes.POINTER(_Bus), ctypes.c_int,
                                                   ctypes.c_int]),
            ("apic_core_ppr", ctypes.c_uint32, [core_p]),
            ("apic_core_deliverable", ctypes.c_int, [core_p]),
            ("apic_core_update_pin", ctypes.c_int, [core_p, ctypes.c_int]),
            ("apic_core_accept", None, [core_p, ctypes.c_int, ctypes.c_int]),
            ("apic_core_count", None, [core_p, ctypes.c_int]),
            ("apic_core_acknowledge", ctypes.c_int, [core_p]),
            ("apic_core_eoi", ctypes.c_int, [core_p]),
            ("apic_core_halt", ctypes.c_int, [core_p, ctypes.c_int]),
            ("apic_core_tsc_deadline_msr", ctypes.c_int, [core_p, ctypes.c_int,
                                                          ctypes.POINTER(ctypes.c_uint64)]),
            ("apic_core_set_deadline", None, [core_p, ctypes.c_uint64, ctypes.c_int64]),
            ("apic_core_take_esr", ctypes.c_uint32, [core_p]),
            ("apic_bus_fire_deadlines", ctypes.c_int, [ctypes.POINTER(_Bus), ctypes.c_int64]),
            ("apic_bus_next_deadline", ctypes.c_int64, [ctypes.POINTER(_Bus),
                                                        ctypes.POINTER(ctypes.c_int32)])):
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


_lib = _load()
# The engine's callbacks, as C function pointers (their opaque argument is the core).
INTACK = ctypes.cast(_lib.apic_core_intack, ctypes.c_void_p).value
MMIO_READ = ctypes.cast(_lib.apic_core_mmio_read, ctypes.c_void_p).value
MMIO_WRITE = ctypes.cast(_lib.apic_core_mmio_write, ctypes.c_void_p).value
# apic_bus_send_fixed, for other native code that sends MSIs (devices/nvme_doorbell.py).
SEND_FIXED = ctypes.cast(_lib.apic_bus_send_fixed, ctypes.c_void_p).value
# The engine's RDMSR/WRMSR callback (native/freq_counters.c): APERF and MPERF reads in C,
# the rest to the core's `slow_msr` (attach_msrs).
MSR = ctypes.cast(_lib.apic_core_msr, ctypes.c_void_p).value


def _to_int(words) -> int:
    return int.from_bytes(bytes(words), "little")


def _from_int(words, value: int) -> None:
    ctypes.memmove(words, value.to_bytes(32, "little"), 32)


class ApicCore:
    """One CPU's core. The 256-bit registers read and write as Python ints; `accept`,
    `acknowledge`, `eoi`, `ppr` and `deliverable` are the C functions. Until a CPU attaches
    (`attach`), nothing drives a pin and the slow paths are Python's no-ops."""

    def __init__(self, clock_view: ClockView):
        self._clock_view = clock_view          # kept alive with the core
        self.c = _Core()
        self.c.clock = ctypes.pointer(clock_view)
        self.c.timer_vector = self.c.deadline_vector = self.c.error_vector = -1
        self.c.deadline_ns = NO_DEADLINE
        self.c.last_tick_ns = -1
        self._callbacks: tuple = ()
        self.attach(None, None, lambda: -1, lambda offset, size: 0,
                    lambda offset, size, value: None, lambda vector: None)
        self.address = ctypes.addressof(self.c)

    def attach(self, uc_handle, set_irq_address, intack, read, write, eoi) -> None:
        """Wire the core to a CPU: its engine (the pin) and Python's slow paths."""
        callbacks = (SLOW_INTACK(lambda _core: intack()),
                     SLOW_READ(lambda _uc, offset, size, _core: read(offset, size)),
                     SLOW_WRITE(lambda _uc, offset, size, value, _core:
                                write(offset, size, value)),
                     SLOW_EOI(eoi))
        self._callbacks = callbacks             # ctypes keeps no reference of its own
        self.c.slow_intack, self.c.slow_read, self.c.slow_write, self.c.slow_eoi = callbacks
        self.c.uc = None if uc_handle is None else ctypes.cast(uc_handle, ctypes.c_void_p).value
        self.c.set_irq = set_irq_address

    def attach_msrs(self, slow_msr, c0_address: int | None) -> None:
        """The engine's MSR callback is `MSR` with this core: `slow_msr` (an engine MSR
        callback, cpu/engine.py's msr_callback) gets what C does not serve; `c0_address`
        is the CPU's frequency counters (cpu/hwp.py's C0Time; None: C serves nothing)."""
        self._slow_msr = slow_msr
        self.c.slow_msr = ctypes.cast(slow_msr, SLOW_MSR)
        self.c.c0 = c0_address

    def map_page(self, uc_handle, base: int, size: int) -> None:
        """The engine's APIC page at `base`, served by the core's C accessors (after
        `attach`: they hand the rest to its slow paths)."""
        from unicorn import UcError
        from unicorn.unicorn_py3.unicorn import uclib
        status = uclib.uc_mmio_map(uc_handle, base, size, MMIO_READ, self.address, MMIO_WRITE,
                                   self.address)
        if status:
            raise UcError(status)

    # --- the vectors' registers as ints --------------------------------------------------

    irr = property(lambda self: _to_int(self.c.irr), lambda self, v: _from_int(self.c.irr, v))
    isr = property(lambda self: _to_int(self.c.isr), lambda self, v: _from_int(self.c.isr, v))
    tmr = property(lambda self: _to_int(self.c.tmr), lambda self, v: _from_int(self.c.tmr, v))

    def set_eoi_notify(self, vectors) -> None:
        bits = 0
        for vector in vectors:
            bits |= 1 << (vector & 0xFF)
        _from_int(self.c.eoi_notify, bits)

    # --- the C functions -----------------------------------------------------------------

    def ppr(self) -> int:
        return _lib.apic_core_ppr(self.c)

    def deliverable(self) -> int | None:
        vector = _lib.apic_core_deliverable(self.c)
        return None if vector < 0 else vector

    def update_pin(self, extra: bool) -> bool:
        return bool(_lib.apic_core_update_pin(self.c, 1 if extra else 0))

    def accept(self, vector: int, level_triggered: bool) -> None:
        _lib.apic_core_accept(self.c, vector, 1 if level_triggered else 0)

    def count(self, vector: int) -> None:
        _lib.apic_core_count(self.c, vector)

    def acknowledge(self) -> int | None:
        vector = _lib.apic_core_acknowledge(self.c)
        return None if vector < 0 else vector

    def eoi(self) -> int | None:
        vector = _lib.apic_core_eoi(self.c)
        return None if vector < 0 else vector

    def halt(self, halted: bool) -> bool:
        """The CPU halts or runs; halting, True if a vector is deliverable already."""
        return bool(_lib.apic_core_halt(self.c, 1 if halted else 0))

    # --- the TSC deadline (native/tsc_deadline.c) ----------------------------------------

    def tsc_deadline_msr(self, is_write: bool, value: int = 0) -> int:
        """IA32_TSC_DEADLINE written (armed, or fired at once if past) or read (a deadline
        found past fires first), as the guest's WRMSR and RDMSR are served."""
        cell = ctypes.c_uint64(value)
        _lib.apic_core_tsc_deadline_msr(self.c, int(is_write), ctypes.byref(cell))
        return cell.value

    def set_deadline(self, tsc: int, ns: int | None) -> None:
        """Disarmed (`ns` None), or armed to fall due at guest `ns` (a loaded deadline)."""
        _lib.apic_core_set_deadline(self.c, tsc, NO_DEADLINE if ns is None else ns)

    @property
    def deadline_ns(self) -> int | None:
        ns = self.c.deadline_ns
        return None if ns == NO_DEADLINE else ns

    def take_esr(self) -> int:
        """The ESR bits a firing set since the last look, cleared."""
        return _lib.apic_core_take_esr(self.c)

    def pending_since(self, vector: int) -> int | None:
        since = self.c.pending_since[vector]
        return since or None

    def clear_pending_since(self) -> None:
        ctypes.memset(ctypes.addressof(self.c.pending_since), 0, 8 * 256)


class ApicCoreBus:
    """The machine's cores as the C code sends IPIs between them (the C file says which it
    sends). `wake(index)` is called, from the sending CPU's thread, when a halted CPU got one;
    the multi-threaded run loop has C take it instead (`wake_in_c`)."""

    def __init__(self):
        self.c = _Bus()
        self.c.ids_unique = 1
        self.c.next_deadline_ns = NO_DEADLINE
        self._wake = WAKE(lambda _context, index: self.wake(index))
        self.wake_in_python()
        self.wake = lambda index: None
        self._cores: list[ApicCore] = []

    @property
    def address(self) -> int:
        """The C struct's address, for native senders (with SEND_FIXED)."""
        return ctypes.addressof(self.c)

    def wake_in_c(self, function: int, context: int) -> None:
        """Halted CPUs are woken by C `function(context, index)`, without Python."""
        self.c.wake, self.c.wake_context = function, context

    def wake_in_python(self) -> None:
        self.c.wake = ctypes.cast(self._wake, ctypes.c_void_p).value
        self.c.wake_context = None

    def attach(self, core: ApicCore) -> None:
        core.c.index = len(self._cores)
        core.c.bus = ctypes.pointer(self.c)
        self.c.all[len(self._cores)] = ctypes.pointer(core.c)
        self._cores.append(core)
        self.c.count = len(self._cores)
        self.ids_changed()

    def send_fixed(self, dest: int, vector: int) -> bool:
        """A fixed, edge-triggered message to physical APIC ID `dest` (an MSI), sent and its
        halted CPU woken in C; False if Python must deliver it (see the C file)."""
        return bool(_lib.apic_bus_send_fixed(self.c, dest, vector))

    # --- the cores' TSC deadlines, as the clock sees them (clock.py's deadline sources) ----

    def next_deadline(self) -> tuple[int | None, int]:
        """The earliest TSC deadline armed (guest ns; None: none) and how many are."""
        armed = ctypes.c_int32()
        ns = _lib.apic_bus_next_deadline(self.c, ctypes.byref(armed))
        return (None if ns == NO_DEADLINE else ns), armed.value

    def fire(self, now_ns: int) -> int:
        """Every TSC deadline due by guest `now_ns` fires: how many did."""
        if now_ns < self.c.next_deadline_ns:
            return 0                            # (the clock asks on every slice)
        return _lib.apic_bus_fire_deadlines(self.c, now_ns)

    def ids_changed(self) -> None:
        """An APIC ID changed: the physical destinations again."""
        ids = [core.c.id_reg >> 24 for core in self._cores]
        for n in range(256):
            self.c.by_id[n] = None
        for core, apic_id in zip(self._cores, ids):
            self.c.by_id[apic_id] = ctypes.pointer(core.c)
        self.c.ids_unique = int(len(set(ids)) == len(ids))
