"""One logical CPU: an engine, its local APIC, CPUID and MSRs, and its run state.

The engine executes guest code and delivers exceptions and interrupts itself (see engine.py).
The vCPU connects it to the machine:
  - IN/OUT go to the port bus, MMIO to the devices (the local APIC page to this CPU's own APIC);
  - the INTR pin follows "this CPU's APIC (or the PIC, in virtual-wire mode) has a deliverable
    interrupt", re-evaluated whenever the APIC's state may have changed; the INTA cycle
    takes the vector from the APIC or the PIC at the moment the CPU takes it. The APIC's
    core (devices/apic_core.py, in C) answers the INTA, the EOI and the page's common
    accesses itself and drives the pin; an ExtINT's INTA and the other accesses come here;
  - INIT puts the CPU in wait-for-SIPI; a SIPI starts it in real mode at vector × 4 KiB.

The engine runs guest code outside the machine's big lock (big_lock.py); its callbacks take
it. Another thread may raise this CPU's pins while it runs (the engine's requests are atomic);
INIT and SIPI, which rewrite its registers, wait until its slice ends.
"""

from __future__ import annotations

import ctypes
import enum
import logging
import threading
import time

import unicorn
from unicorn import x86_const as x

from imacpro.bus.mmio import guarded
from imacpro.cpu import cpuid
from imacpro.cpu.engine import (STATUS_HALTED, STATUS_PAUSE_EXIT, STATUS_TRIPLE_FAULT, Engine,
                                msr_callback)
from imacpro.cpu.hwp import PackageHwp
from imacpro.cpu.mca import MCG_STATUS_MCIP, MCG_STATUS_RIPV, MachineCheckBanks
from imacpro.cpu.msr import MsrFile, UncoreMsrs
from imacpro.devices import apic_core
from imacpro.devices.contract import StateError
from imacpro.memory.layout import LAPIC_BASE, LAPIC_SIZE
from imacpro.run_loop_core import RunLoopCore, RunState

log = logging.getLogger(__name__)

RFLAGS_IF = 1 << 9
CR4_MCE = 1 << 6
MORE_PENDING = 0x100            # intack: the INTR pin stays asserted


class State(enum.Enum):
    RUNNING = "running"
    HALTED = "halted"                # HLT: waits for an interrupt
    WAIT_FOR_SIPI = "wait-for-sipi"  # after INIT (application processors start here)
    SHUTDOWN = "shutdown"            # triple fault or engine failure


_STATES = tuple(State)               # RunState.state is an index of this (native/run_loop.c)
_STATE_INDEX = {state: n for n, state in enumerate(_STATES)}


class _ApicPage:
    """This CPU's view of the local APIC page, for the accesses its core leaves to Python:
    every access may change what is pending."""

    def __init__(self, vcpu: Vcpu):
        self.vcpu = vcpu

    def read(self, offset: int, size: int) -> int:
        return self.vcpu.lapic.read(offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.vcpu.lapic.write(offset, size, value)
        self.vcpu.update_pins()


class Vcpu:
    def __init__(self, index: int, apic_id: int, processor, ram, pio, mmio, lapic, pic,
                 clock, tsc_hz: int, bsp: bool, uncore: UncoreMsrs | None = None,
                 mca: MachineCheckBanks | None = None, package_hwp: PackageHwp | None = None):
        self.index = index
        self.apic_id = apic_id
        self.lapic = lapic
        self.pic = pic
        self.clock = clock
        self.tsc_hz = tsc_hz
        self.pio = pio
        self.msrs = MsrFile(processor, lapic, tsc_hz, on_tsc_adjust=self._anchor_tsc,
                            uncore=uncore, mca=mca, now_ns=clock.now_ns,
                            package_hwp=package_hwp,
                            interrupts_taken=lambda: lapic.core.c.interrupts)
        self.cpuid = cpuid.cpuid_table(processor, apic_id)
        self.lock = mmio.lock
        self.core = core = lapic.core
        # RDMSR and WRMSR reach the APIC core's C first (APERF, MPERF), then _on_msr.
        core.attach_msrs(msr_callback(self._on_msr), ctypes.addressof(self.msrs.perf.c0))
        self.engine = Engine(apic_core.INTACK, apic_core.MSR, intack_opaque=core.address)
        self.uc = uc = self.engine.uc
        ram.map_into(uc, unicorn.UC_PROT_ALL)
        self.engine.join_code_map(ram)
        self.windows = mmio.map_into(uc)   # the PCI windows, remapped as BARs move
        read, write = guarded(_ApicPage(self), LAPIC_BASE, mmio.errors, mmio.lock)
        core.attach(self.engine.handle, Engine.SET_IRQ_ADDRESS, self._intack, read, write,
                    self._eoi_done)
        core.map_page(self.engine.handle, LAPIC_BASE, LAPIC_SIZE)
        core.c.cut_slice = Engine.CUT_SLICE_ADDRESS   # a TSC deadline ends its slice by then
        uc.hook_add(unicorn.UC_HOOK_INSN, self._on_in, None, 1, 0, x.UC_X86_INS_IN)
        uc.hook_add(unicorn.UC_HOOK_INSN, self._on_out, None, 1, 0, x.UC_X86_INS_OUT)
        uc.hook_add(unicorn.UC_HOOK_INSN, self._on_cpuid, None, 1, 0, x.UC_X86_INS_CPUID)
        lapic.on_event = self.update_pins
        self.on_wake = None             # called when an interrupt may wake this halted CPU
        # Its run state, which the multi-threaded run loop's C reads and writes between
        # slices (run_loop_core.py); `run_loop` is that loop while it runs the machine.
        self.rs = RunState(uc=self.engine.handle, core=core.address,
                           c0=ctypes.addressof(self.msrs.perf.c0), tsc_generation=-1,
                           windows_generation=-1)
        self.run_loop: RunLoopCore | None = None
        uc.on_hook_exception = self._hook_raised
        self.bsp = bsp
        self.state = State.RUNNING if bsp else State.WAIT_FOR_SIPI
        if not bsp:
            self.msrs.perf.halted(True)
        self.shutdown_reason = ""
        # Statistics for the watchdog and the soak (not state), kept by the APIC's core:
        # interrupts taken, when the last was (guest ns), and the longest gap between two
        # timer interrupts with no HLT between them (how long a busy CPU went without its tick).
        self.last_interrupt_ns = clock.now_ns()
        # The engine's state as it came up: what a platform reset goes back to.
        self._power_on = uc.context_save()

    # --- the run state (in `rs`, shared with the run loop's C) ------------------------------

    state = property(lambda self: _STATES[self.rs.state],
                     lambda self, state: setattr(self.rs, "state", _STATE_INDEX[state]))
    # An NMI or a machine check is on its way: it wakes a halted CPU whatever RFLAGS.IF says.
    _unmaskable_pending = property(lambda self: bool(self.rs.unmaskable),
                                   lambda self, on: setattr(self.rs, "unmaskable", int(on)))
    # Its last slice ended spinning on PAUSE: it waits for something another CPU does (a
    # lock, an IPI's answer), and the run loop lets it look again soon (machine.py).
    spinning = property(lambda self: bool(self.rs.spinning),
                        lambda self, on: setattr(self.rs, "spinning", int(on)))
    # When the spin loop it is in began (host monotonic ns, the engine's count): whether its
    # last slice did anything but go on waiting (machine.py, spinners).
    spinning_since = property(lambda self: self.rs.spinning_since,
                              lambda self, ns: setattr(self.rs, "spinning_since", ns))
    # When it queued (its first PAUSE after its last locked read-modify-write outside
    # interrupt handlers, the engine's count): its place in the queue of a lock it waits
    # for, the order spinners look again in.
    queued_since = property(lambda self: self.rs.queued_since,
                            lambda self, ns: setattr(self.rs, "queued_since", ns))
    progressed = property(lambda self: bool(self.rs.progressed),
                          lambda self, on: setattr(self.rs, "progressed", int(on)))
    # The host thread whose CPU it is now (None between slices): its slice runs there, or
    # Python handles it there between two.
    running_on = property(lambda self: self.rs.running_on or None,
                          lambda self, thread: setattr(self.rs, "running_on", thread or 0))
    # An INIT or SIPI came from another thread while it ran (applied when the slice ends),
    # or one of its hooks raised.
    _start_deferred = property(lambda self: bool(self.rs.attention),
                               lambda self, on: setattr(self.rs, "attention", int(on)))
    _tsc_generation = property(lambda self: self.rs.tsc_generation,
                               lambda self, g: setattr(self.rs, "tsc_generation", g))

    def _hook_raised(self) -> None:
        self.rs.attention = 1

    def reset(self) -> None:
        """Platform reset (a guest reboot): the engine's power-on state, no translations or
        TLB entries from before, pins low; the BSP runs (the firmware sets it up), the
        others wait for a SIPI."""
        self.uc.context_restore(self._power_on)
        self.uc.ctl(unicorn.UC_CTL_TB_FLUSH, unicorn.UC_CTL_IO_WRITE)
        self.uc.ctl(unicorn.UC_CTL_TLB_FLUSH, unicorn.UC_CTL_IO_WRITE)
        self.engine.power_on()          # no INTR/NMI pending, not halted, no triple fault
        self._tsc_generation = -1
        self.core.halt(False)
        self.msrs.reset()
        self.lapic.reset()
        self.state = State.RUNNING if self.bsp else State.WAIT_FOR_SIPI
        if not self.bsp:
            self.msrs.perf.halted(True)          # out of C0 until its SIPI
        self.shutdown_reason = ""
        self._unmaskable_pending = False
        self.spinning = False
        self._start_deferred = False
        self.last_interrupt_ns = self.clock.now_ns()
        self.core.c.last_tick_ns = -1

    @property
    def interrupts(self) -> int:
        return self.core.c.interrupts

    @property
    def last_interrupt_ns(self) -> int:
        return self.core.c.last_interrupt_ns

    @last_interrupt_ns.setter
    def last_interrupt_ns(self, ns: int) -> None:
        self.core.c.last_interrupt_ns = ns

    @property
    def max_busy_tick_gap_ns(self) -> int:
        return self.core.c.max_busy_tick_gap_ns

    # --- saved state (suspend and resume) --------------------------------------------------

    def save(self) -> dict:
        """Everything of this CPU but its local APIC (the machine saves that with the
        devices): the engine's state bytes, the platform MSRs, the run state."""
        return {"engine": self.engine.cpu_state(), "msrs": self.msrs.save(),
                "state": self.state.value, "shutdown_reason": self.shutdown_reason,
                "nmi_pending": self._unmaskable_pending}

    def load(self, state: dict) -> None:
        try:
            engine, run_state = state["engine"], State(state["state"])
            reason, nmi = state["shutdown_reason"], state["nmi_pending"]
        except (KeyError, TypeError, ValueError):
            raise StateError(f"cpu {self.index}: saved state is not a vCPU's") from None
        if not isinstance(engine, bytes) or not isinstance(reason, str) \
                or not isinstance(nmi, bool):
            raise StateError(f"cpu {self.index}: saved state is not a vCPU's")
        self.msrs.load(state["msrs"])
        if not self.engine.set_cpu_state(engine):
            raise StateError(f"cpu {self.index}: the saved CPU state is from another build "
                             "of the CPU engine")
        self.state, self.shutdown_reason, self._unmaskable_pending = run_state, reason, nmi
        self._tsc_generation = -1
        self.core.halt(run_state is State.HALTED)

    # --- the engine's callbacks (called from inside emu_start) ---------------------------

    def _on_in(self, uc, port, size, _data):
        with self.lock:
            return self.pio.read(port, size)

    def _on_out(self, uc, port, size, value, _data):
        with self.lock:
            self.pio.write(port, size, value)

    def _on_msr(self, is_write: bool, index: int, value: int):
        with self.lock:
            return self.msrs.access(is_write, index, value)

    def _on_cpuid(self, uc, _data):
        leaf = uc.reg_read(x.UC_X86_REG_RAX) & 0xFFFFFFFF
        sub = uc.reg_read(x.UC_X86_REG_RCX) & 0xFFFFFFFF
        a, b, c, d = cpuid.lookup(self.cpuid, leaf, sub)
        if leaf == 1:  # OSXSAVE mirrors CR4.OSXSAVE
            c = (c & ~(1 << 27)) | ((uc.reg_read(x.UC_X86_REG_CR4) >> 18 & 1) << 27)
        elif leaf == 0xD and sub in (0, 1) and a:  # the XSAVE area XCR0's components need
            components = self.engine.xcr0() & self.cpuid[0xD, 0][0]
            b = (cpuid.xsave_size if sub == 0 else cpuid.xsave_compacted_size)(components)
        uc.reg_write(x.UC_X86_REG_RAX, a)
        uc.reg_write(x.UC_X86_REG_RBX, b)
        uc.reg_write(x.UC_X86_REG_RCX, c)
        uc.reg_write(x.UC_X86_REG_RDX, d)
        return True  # skip the engine's own CPUID

    def _intack(self) -> int:
        """The INTA cycle while an ExtINT is pending (the core asks; it answers the rest)."""
        with self.lock:
            return self._acknowledge()

    def _acknowledge(self) -> int:
        try:
            if self.lapic.extint_pending and self.pic.interrupt_pending():
                vector = self.pic.acknowledge()
            elif self.lapic.highest_pending() is not None:
                vector = self.lapic.acknowledge()
            else:
                self.update_pins()
                return -1
            self.core.count(vector)
            return vector | (MORE_PENDING if self._drive_intr() else 0)
        except Exception:
            log.exception("cpu %d: interrupt acknowledge failed", self.index)
            return -1

    def _eoi_done(self, vector: int) -> None:
        """The core's EOI of a vector the I/O APICs or a LINT pin must hear of."""
        with self.lock:
            try:
                self.lapic.eoi_done(vector)
            except Exception:
                log.exception("cpu %d: EOI of vector %#x failed", self.index, vector)

    @property
    def online(self) -> bool:
        """Started and not shut down: a CPU the guest expects to take interrupts."""
        return self.state in (State.RUNNING, State.HALTED)

    def rip(self) -> int:
        return self.engine.register(x.UC_X86_REG_RIP)

    def interrupts_enabled(self) -> bool:
        return bool(self.engine.register(x.UC_X86_REG_RFLAGS) & RFLAGS_IF)

    # --- pins -----------------------------------------------------------------------------

    def interrupt_pending(self) -> bool:
        return (self.core.deliverable() is not None
                or (self.lapic.extint_pending and self.pic.interrupt_pending()))

    def _drive_intr(self) -> bool:
        """The INTR pin from the APIC's core and the PIC's ExtINT; its level."""
        extint = bool(self.lapic.extint_pending and self.pic.interrupt_pending())
        self.core.c.extint = int(extint)
        return self.core.update_pin(extint)

    def update_pins(self) -> None:
        """Re-evaluate INTR, NMI, INIT and SIPI after the interrupt controllers changed."""
        if self.lapic.init_pending or self.lapic.sipi_vector is not None:
            loop = self.run_loop
            if self.running_on == threading.get_ident():
                self._start()                   # from its own slice, or its thread's turn
            elif loop is not None:
                if loop.defer(self.index):      # its worker hands it to Python first
                    self.uc.emu_stop()
                else:
                    try:
                        self._start()
                    finally:
                        loop.unhold(self.index)
            elif self.running_on is not None:
                self._start_deferred = True     # its thread applies them after the slice
                self.uc.emu_stop()
            else:
                self._start()
        if self.lapic.take_nmi():
            self.engine.nmi()
            self._unmaskable_pending = True
        if self._drive_intr() or self._unmaskable_pending:
            self._wake()

    def _start(self) -> None:
        """A pending INIT, then a pending SIPI (which starts a CPU waiting for one)."""
        if self.lapic.take_init():
            self._init()
        vector = self.lapic.take_sipi()
        if vector is not None and self.state is State.WAIT_FOR_SIPI:
            self._sipi(vector)

    def _wake(self) -> None:
        """An interrupt may wake this CPU: if it is halted, the run loop runs it soon."""
        if self.state is State.HALTED and self.on_wake is not None:
            self.on_wake(self)

    def machine_check(self) -> None:
        """A machine-check exception signalled to this CPU (the banks hold the error):
        #MC at its next instruction, MCG_STATUS with RIPV (the error did not stop the
        instruction stream) and MCIP; it wakes a halted CPU. A CPU with CR4.MCE clear, or
        already in a machine check (MCIP set), shuts down instead (SDM vol. 3B 15.10.1).
        A CPU not started (waiting for its SIPI) does not take it."""
        if not self.online:
            return
        if not self.uc.reg_read(x.UC_X86_REG_CR4) & CR4_MCE:
            self._shut_down("machine check with CR4.MCE clear")
            return
        if self.msrs.mcg_status & MCG_STATUS_MCIP:
            self._shut_down("machine check while one is in progress (MCG_STATUS.MCIP)")
            return
        self.msrs.mcg_status = MCG_STATUS_RIPV | MCG_STATUS_MCIP
        self.engine.machine_check()
        self._unmaskable_pending = True
        self._wake()

    def _init(self) -> None:
        """INIT: real mode at the reset vector's state, then wait for a start-up IPI."""
        uc = self.uc
        uc.reg_write(x.UC_X86_REG_CR0, 0x60000010)
        uc.reg_write(x.UC_X86_REG_CR4, 0)
        uc.msr_write(0xC0000080, 0)  # EFER
        uc.reg_write(x.UC_X86_REG_CR3, 0)
        for reg in (x.UC_X86_REG_DS, x.UC_X86_REG_ES, x.UC_X86_REG_SS, x.UC_X86_REG_FS,
                    x.UC_X86_REG_GS):
            uc.reg_write(reg, 0)
        uc.reg_write(x.UC_X86_REG_RFLAGS, 0x2)
        uc.reg_write(x.UC_X86_REG_RSP, 0)
        uc.reg_write(x.UC_X86_REG_IDTR, (0, 0, 0xFFFF, 0))
        self.lapic.init_reset()
        self.state = State.WAIT_FOR_SIPI
        self.msrs.perf.halted(True)            # out of C0 until its SIPI

    def _sipi(self, vector: int) -> None:
        self.engine.sipi(vector)
        self.state = State.RUNNING
        self.msrs.perf.halted(False)
        self.last_interrupt_ns = self.clock.now_ns()   # online from now

    # --- running --------------------------------------------------------------------------

    def runnable(self) -> bool:
        if self.state is State.RUNNING:
            return True
        if self.state is State.HALTED:
            if self._unmaskable_pending:
                return True
            if self.interrupt_pending() and self.engine.register(x.UC_X86_REG_RFLAGS) & RFLAGS_IF:
                return True
        return False

    def run(self, timeout_us: int, end_ns: int | None = None) -> None:
        """Run until HLT, shutdown or `timeout_us` of host time has passed, and no later
        than host CLOCK_MONOTONIC `end_ns` however late the slice starts."""
        self.prepare()
        self._unmaskable_pending = False
        if self.state is State.HALTED:
            self.msrs.perf.halted(False)      # woken: its frequency counters run again
        self.state = State.RUNNING
        self.core.c.halted = 0
        self.running_on = threading.get_ident()
        saved = self.lock.release_all()
        started_ns = time.monotonic_ns()
        try:
            status = self.engine.run(timeout_us, end_ns or 0)
        except unicorn.UcError as exc:
            status = exc
        finally:
            self.lock.restore(saved)
            self.running_on = None
        if isinstance(status, unicorn.UcError):
            self.spinning = False
            self._engine_failed(status)
            return
        self.spinning = bool(status & STATUS_PAUSE_EXIT)
        if self.spinning:
            self.spinning_since = self.engine.wait_since()
            self.queued_since = self.engine.queued_since()
        # A slice that ends spinning in a wait begun within it did something first (took the
        # lock it waited for, say, and came back to it): what others wait for may have
        # happened in it, as after a slice that ended otherwise.
        self.progressed = not self.spinning or self.spinning_since >= started_ns
        if status & STATUS_TRIPLE_FAULT:
            self._shut_down("triple fault")
        elif status & STATUS_HALTED:
            self.state = State.HALTED
            self.msrs.perf.halted(True)
            self.core.c.last_tick_ns = -1   # idle: the next tick's gap is not a busy one
            if self.core.halt(True):        # an IPI came as it halted, its sender saw it run
                self._wake()
        if self._start_deferred:           # an INIT or SIPI came while it ran
            self._start_deferred = False
            self.update_pins()

    def prepare(self) -> None:
        """Before a slice: the TSC anchored again if guest time moved against the host's
        since the last, the PCI windows remapped if a BAR moved."""
        if self._tsc_generation != self.clock.generation:
            self._anchor_tsc()
        self.remap_windows()

    def remap_windows(self) -> None:
        """The engine maps the PCI windows as they are now (if a BAR moved since it last
        did), and the run loop's C knows which generation of them it maps."""
        self.windows.update()
        self.rs.windows_generation = self.windows.generation

    def after_slice(self) -> None:
        """What the multi-threaded run loop's C hands to Python after a slice (its thread,
        holding the machine's lock): an engine error or a triple fault shuts the CPU down;
        a hook's exception is raised; an INIT or SIPI that came meanwhile is applied."""
        status = self.rs.status
        error = self.uc._hook_exception
        self.uc._hook_exception = None
        self._start_deferred = False
        if error is not None:
            raise error
        if status < 0:
            self._engine_failed(unicorn.UcError(-status))
        elif status & STATUS_TRIPLE_FAULT:
            self._shut_down("triple fault")
        self.update_pins()

    def _anchor_tsc(self) -> None:
        """One sample anchors the engine's TSC to the machine clock, so it never steps back;
        IA32_TSC_ADJUST offsets it (a signed 64-bit value)."""
        host_ns = time.monotonic_ns()
        guest_ns = self.clock.at_host(host_ns)
        tsc = guest_ns * self.tsc_hz // 1_000_000_000 + self.msrs.tsc_offset
        self.engine.set_tsc(tsc, host_ns, self.tsc_hz, running=self.clock.realtime)
        self._tsc_generation = self.clock.generation

    def _engine_failed(self, error: unicorn.UcError) -> None:
        self._shut_down(f"engine stopped: {error} at "
                        f"RIP={self.uc.reg_read(x.UC_X86_REG_RIP):#x}")

    def _shut_down(self, reason: str) -> None:
        log.warning("cpu %d: %s", self.index, reason)
        self.state = State.SHUTDOWN
        self.shutdown_reason = reason
