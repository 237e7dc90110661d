"""Power on a machine: the T2 decides, the firmware loads, the machine runs with its console.

Each power-on (and each guest reboot) reads the boot image again (from the internal SSD's EFI
System Partition, an external disk image's, or files given on the command line) and goes
through the T2 again, with a fresh boot nonce:
    T2.check_boot(image) ─► refused: BootRefused(verdict), nothing runs
                        └─► allowed: Machine(config, ssd) (first boot) or machine.reset()
                            (a reboot: the board in place) ─► firmware.install ─► run loop
The SSD's store is opened once per power-on and serves every boot of it (the guest's NVMe
driver reaches it through the machine's controller).
The run ends when the guest powers off (ACPI S5), the user types Ctrl-A X, an --exec command
finishes, `imacpro stop --force` comes over the control socket, or the timeout passes.

While it runs, the process serves the machine's control socket (control/server.py) from the
run loop, writes COM1's output to console.log in the bundle, and the bus guard's findings to
guest-errors.log.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Callable

from imacpro import bundle as bundles
from imacpro import settings, suspend
from imacpro.console import ExecSession, Keyboard, LoginExecSession, RawTerminal, SerialInput
from imacpro.control.protocol import socket_path
from imacpro.control.server import ControlServer
from imacpro.devices.contract import StateError
from imacpro.devices.display.framebuffer import MODES, Mode
from imacpro.devices.nvme import ssd_serial
from imacpro.disk import DiskError
from imacpro.disk.block import RawDiskImage
from imacpro.disk.esp import find_boot_image
from imacpro.errors import UserError
from imacpro.guest.debian import Login, load_login
from imacpro.firmware import boot as firmware
from imacpro.host_events import HostEvents
from imacpro.machine import Machine
from imacpro.net import link as net_link
from imacpro.net.link import Network
from imacpro.t2.secure_boot import BootImage, Verdict
from imacpro.t2.signing import Manifest
from imacpro.t2.storage import DamagedImage, PairingError
from imacpro.watchdog import Report, interrupt_stats


POWEROFF_GRACE_S = 10.0   # after --exec, how long the guest gets to power itself off
# After a resume, the guest's wall clock from its RTC (UTC), as after a real sleep.
SET_CLOCK_FROM_RTC = "hwclock -s -u"
CONSOLE_REPLAY = 4096      # what an attaching console sees first: the screen it joins
CONSOLE_LOG = "console.log"            # in the bundle: what COM1 printed since power-on
GUEST_ERRORS_LOG = "guest-errors.log"  # in the bundle: the bus guard's log (bus/guest_errors.py)


class BootRefused(Exception):
    def __init__(self, verdict: Verdict):
        super().__init__(verdict.reason)
        self.verdict = verdict


@dataclass(frozen=True)
class BootSource:
    kernel: bytes
    initrd: bytes
    cmdline: str
    manifest: Manifest | None = None
    external: bool = False

    @classmethod
    def from_files(cls, kernel: Path, initrd: Path | None, cmdline: str,
                   manifest: Path | None, external: bool = False) -> BootSource:
        try:
            return cls(kernel.read_bytes(), initrd.read_bytes() if initrd else b"", cmdline,
                       Manifest.load(manifest) if manifest else None, external)
        except OSError as exc:
            raise UserError(f"cannot read {exc.filename}: {exc.strerror}") from None

    def read(self, store) -> BootSource:
        return self

    @classmethod
    def default_guest(cls) -> BootSource:
        from imacpro.guest.build import ensure_signed, load
        built = load()
        if built is None:
            raise UserError("the default guest is not built: run 'imacpro guest fetch' "
                            "(or give --kernel)")
        manifest = ensure_signed(built, progress=lambda line: None)
        return cls.from_files(Path(built.kernel), Path(built.initrd), built.cmdline, manifest)


@dataclass(frozen=True)
class DiskSource:
    """The boot image in a disk's EFI System Partition (imacpro/disk/esp.py): the internal SSD
    (`path` None) or a raw disk image attached as external media. The firmware reads it again
    at every power-on and reboot, so the T2 judges what is on the disk now."""
    path: Path | None = None

    def read(self, store) -> BootSource:
        if self.path is None:
            if store is None:
                raise UserError("the internal SSD cannot be read: there is nothing to boot")
            try:
                found = find_boot_image(store)
            except DiskError as exc:
                raise DiskError(f"{exc}: nothing to boot ('imacpro install' writes a system "
                                "onto the SSD)") from None
            return BootSource(found.kernel, found.initrd, found.cmdline, found.manifest)
        with RawDiskImage(self.path) as disk:
            found = find_boot_image(disk)
        return BootSource(found.kernel, found.initrd, found.cmdline, found.manifest, True)


def open_ssd(chip, notice: Callable[[str], None]):
    """The machine's SSD, or None with a notice when this T2 cannot read it (moved from
    another machine, or damaged): the machine then runs without it."""
    try:
        return chip.open_storage()
    except (PairingError, DamagedImage) as exc:
        notice(f"{exc}: the machine has no readable internal SSD")
        return None


@dataclass
class Outcome:
    reason: str          # "poweroff", "quit", "exec", "timeout", "halted", "shutdown", "stop"
    exec_status: int | None = None
    exec_output: bytes = b""
    verdicts: list[Verdict] | None = None
    exec_error: str | None = None      # why the command could not run (a refused login)


@dataclass
class _ExecJob:
    session: ExecSession
    done: Callable[[ExecSession], None]


class RunningMachine:
    """A powered-on machine as the host sees it: COM1's output fanned out (the console log,
    the terminal, attached consoles, the running exec), COM1's input gathered (the terminal,
    attached consoles, execs), the execs one after another, and the control socket's
    commands (control/server.py calls `status`, `exec`, `stop` and the console's methods)."""

    def __init__(self, name: str, console_log: BinaryIO | None, serial_log: BinaryIO | None,
                 echo: BinaryIO | None, events: HostEvents, log_path: Path | None = None,
                 login: Login | None = None):
        self.name = name
        # An installed system (guest/debian.py) is ready at its getty's login prompt, and
        # its execs log in there; the default guest prints its ready marker.
        self.login = login
        self.ready_marker = (ExecSession if login is None else LoginExecSession).ready_marker
        self.console_log = console_log
        self.serial_log = serial_log
        self.echo = echo
        self.events = events
        self.log_path = log_path
        self.serial_input = SerialInput()
        self.consoles: set = set()
        self.jobs: deque[_ExecJob] = deque()
        self.machine: Machine | None = None
        self.ready = False                # the guest printed its ready marker in this boot
        self._tail = b""                  # the end of the output, for a marker split in two
        self._recent = bytearray()        # the last CONSOLE_REPLAY bytes, for a new console
        self.powered_on = time.time()
        self.boots = 0
        self.suspend_to: Callable[[], suspend.Written] | None = None
        self.watchdog: list[Report] = []  # the machine's watchdog reports (watchdog.py)
        self.viewers = None               # its VNC server and page (viewer/viewers.py)
        self.network = None               # the 10GbE port's cable to passt (net/link.py)

    # --- COM1 -----------------------------------------------------------------------------

    def output(self, data: bytes) -> None:
        for sink in (self.console_log, self.serial_log, self.echo):
            if sink is not None:
                sink.write(data)
                sink.flush()
        for console in list(self.consoles):
            console.send(data)
        self._recent += data
        del self._recent[:-CONSOLE_REPLAY]
        if not self.ready:
            self.ready = self.ready_marker in self._tail + data
        self._tail = (self._tail + data)[-len(self.ready_marker):]
        if self.jobs:
            self.jobs[0].session.feed_output(data)

    def pump(self) -> None:
        """Between slices: the running exec types when the shell is ready; input to COM1."""
        if self.jobs:
            job = self.jobs[0]
            job.session.poll(self.serial_input)
            if job.session.status is not None:
                self.jobs.popleft()
                job.done(job.session)
                self._start_next()
        if self.machine is not None:
            self.serial_input.pump(self.machine.uart)

    def _start_next(self) -> None:
        if self.jobs and self.ready:
            self.jobs[0].session.mark_ready()

    def session(self, commands: str | list[str]) -> ExecSession:
        """An exec session fit for the guest: one that logs in first on an installed system."""
        if self.login is None:
            return ExecSession(commands)
        return LoginExecSession(commands, self.login.user, self.login.password)

    def add_exec(self, session: ExecSession, done: Callable[[ExecSession], None]) -> None:
        self.jobs.append(_ExecJob(session, done))
        if len(self.jobs) == 1:
            self._start_next()

    def rebooted(self) -> None:
        """The guest reset: its shell is gone until the new boot's ready marker; typing meant
        for the old boot is lost, as on a real serial line."""
        self.ready = False
        self._tail = b""
        self.serial_input.buffer.clear()
        if self.jobs:
            self.jobs[0].session.rebooted()

    def powered_off(self) -> None:
        """Every exec still waiting completes: the running one with what it printed."""
        while self.jobs:
            job = self.jobs.popleft()
            job.session.powered_off()
            job.done(job.session)

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        self.boots += 1

    def save(self) -> dict:
        """What a resumed machine's host side needs to go on as before."""
        return {"boots": self.boots, "powered_on_ns": int(self.powered_on * 1e9),
                "ready": self.ready}

    def load(self, state: dict) -> None:
        boots, powered_on, ready = (state.get(key) for key in ("boots", "powered_on_ns",
                                                                 "ready"))
        if not (isinstance(boots, int) and isinstance(powered_on, int)
                and isinstance(ready, bool)):
            raise StateError("the running machine's state is damaged")
        self.boots, self.powered_on, self.ready = boots, powered_on / 1e9, ready

    def watchdog_report(self, report: Report) -> None:
        """The machine's watchdog found it stuck: say so on stderr (the terminal may be raw,
        hence CR LF) and keep the report for `imacpro status`."""
        self.watchdog.append(report)
        newline = "\r\n" if sys.stderr.isatty() else "\n"
        sys.stderr.write(report.text.replace("\n", newline) + newline)
        sys.stderr.flush()

    # --- the control socket's commands ------------------------------------------------------

    def status(self) -> dict:
        machine = self.machine
        return {"name": self.name, "state": "running", "pid": os.getpid(),
                "uptime_s": round(time.time() - self.powered_on, 3),
                "powered_on_at": datetime.fromtimestamp(self.powered_on, UTC).isoformat(),
                "boots": self.boots, "vcpus": len(machine.vcpus) if machine else 0,
                "host_threads": machine.host_threads if machine else 0,
                "guest_ready": self.ready,
                "guest_errors": machine.guest_errors.count if machine else 0,
                "console_log": str(self.log_path) if self.log_path else None,
                "execs_waiting": len(self.jobs),
                "watchdog": [report.as_dict() for report in self.watchdog],
                "viewers": self.viewers.describe() if self.viewers else None,
                "network": self.network.describe() if self.network else None,
                "interrupts": interrupt_stats(machine) if machine else None}

    def exec(self, command_line: str, reply: Callable[[dict], None]) -> None:
        def done(session: ExecSession) -> None:
            if session.error is not None:
                reply({"status": None, "output": base64.b64encode(session.result()).decode(),
                       "error": session.error})
            elif session.status is None:
                reply({"status": None, "output": base64.b64encode(session.result()).decode(),
                       "error": "the machine powered off before the command ended"})
            else:
                reply({"status": session.status,
                       "output": base64.b64encode(session.result()).decode()})
        self.add_exec(self.session(command_line), done)

    def stop(self, force: bool) -> dict:
        if force or self.machine is None:
            self.events.request_stop("stop")
            return {"pressed": False, "powered_off": True}
        self.machine.acpi_pm.press_power_button()
        return {"pressed": True, "powered_off": False}

    def suspend(self, reply: Callable[[dict], None]) -> None:
        """Write the machine's state into its bundle and stop; on failure it runs on."""
        if self.machine is None or self.suspend_to is None:
            reply({"ok": False, "error": "the machine has not started yet"})
            return
        if self.machine.usb is not None and self.machine.usb.drives:
            # A drive is the host's file, not the machine's: a resumed machine could not
            # promise it back as it was.
            reply({"ok": False, "error": "cannot suspend with USB drives attached: detach "
                   "them first ('imacpro usb detach')"})
            return
        try:
            # Saved as one instant, and nothing the CPUs would do after it (an SSD write)
            # happens: the run ends next.
            with self.machine.cpus_stopped(run_after=False):
                written = self.suspend_to()
        except (OSError, UserError) as exc:
            reply({"ok": False, "error": f"cannot suspend: {exc}"})
            return
        reply({"ok": True, "path": str(written.path), "size": written.size,
               "ram_bytes": written.ram_bytes, "seconds": round(written.seconds, 3)})
        for job in self.jobs:
            job.done(job.session)          # the guest is asleep: no exec ends now
        self.jobs.clear()
        for console in list(self.consoles):
            console.send(b"\r\n[imacpro: the machine is suspended]\r\n")
        self.events.request_stop("suspended")

    def screenshot(self, path: str) -> dict:
        """The boot framebuffer's bytes as they are now, into a new file at `path` (the
        client's to read and encode, so that the machine spends only the copy): `mode`
        says how to read them; None: the machine has no picture yet (black)."""
        gpu = self.machine.devices.get("gpu") if self.machine else None
        if gpu is None:
            return {"mode": None}
        mode = self.machine.display_mode
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(gpu.aperture.view[:mode.size])
        except OSError as exc:
            raise UserError(f"cannot write the screen to {path}: {exc.strerror}") from None
        return {"mode": mode.name, "width": mode.width, "height": mode.height,
                "bytes": mode.size}

    def sensors(self) -> dict:
        """The SMC's temperatures, package power and fans (devices/smc.py)."""
        if self.machine is None:
            raise UserError("the machine is not running yet")
        return self.machine.smc.sensors()

    def inject(self, kind: str, dimm: str, address: int | None) -> dict:
        """A hardware fault, as the machine's hardware reports it: a corrected memory error
        ("ecc") or an uncorrected one ("ecc-uncorrected")."""
        if self.machine is None:
            raise UserError("the machine is not running yet")
        if kind not in ("ecc", "ecc-uncorrected"):
            raise UserError(f"cannot inject {kind!r}: only ecc or ecc-uncorrected")
        return self.machine.inject_memory_error(dimm, address,
                                                uncorrected=kind == "ecc-uncorrected")

    # --- the keyboard, the pointing devices and USB drives (devices/usb/peripherals.py) ---

    def _usb(self):
        if self.machine is None or self.machine.usb is None:
            raise UserError("the machine has no USB devices yet")
        return self.machine.usb

    def type_text(self, text: str) -> dict:
        self._usb().type_text(text)
        return {"typed": len(text)}

    def key(self, combo: str) -> dict:
        self._usb().key(combo)
        return {"combo": combo}

    def pointer(self, device: str, dx: int, dy: int, button: str | None, down: bool | None,
                scroll: int) -> dict:
        self._usb().pointer(device, dx, dy, button, down, scroll)
        return {"device": device}

    def usb(self, action: str, path: str | None, read_only: bool) -> dict:
        usb = self._usb()
        if action == "attach":
            return {"connector": usb.attach_drive(path, read_only)}
        if action == "detach":
            return {"connector": usb.detach_drive(path)}
        return {"devices": usb.describe()}

    def view(self, port: int) -> dict:
        """The machine's page, served from now on if it was not (on `port`, 0: any)."""
        if self.viewers is None:
            raise UserError("the machine has not started yet")
        return {"url": self.viewers.serve_page(port)}

    def attach_console(self, connection) -> None:
        connection.send(bytes(self._recent))
        self.consoles.add(connection)

    def detach_console(self, connection) -> None:
        self.consoles.discard(connection)

    def console_input(self, data: bytes) -> None:
        self.serial_input.type(data)


def power_on(machine_bundle: bundles.Bundle, source: BootSource | DiskSource, *, interactive: bool,
             exec_command: str | list[str] | None = None, timeout_s: float | None = None,
             serial_log: BinaryIO | None = None, echo: BinaryIO | None = None,
             cpus: int | None = None, host_threads: int | None = 1,
             notice: Callable[[str], None] = lambda line: None,
             on_started: Callable[[], None] | None = None,
             control: bool = True, discard_state: bool = False,
             usb_drives: tuple[Path, ...] = (), sd_card: Path | None = None,
             vnc_port: int | None = None, page_port: int | None = None,
             network: Network = Network(),
             on_exec_output: Callable[[bytes], None] | None = None) -> Outcome:
    """Power the machine on and run it until it powers off or suspends. A suspended machine
    resumes instead of booting (unless `discard_state`). The machine's process serves its
    control socket meanwhile (`control`); `on_started()` runs once, when the firmware has
    handed over to the first boot's kernel, or the resumed machine is about to run.
    `usb_drives`: raw disk images plugged in as USB flash drives at power-on; `sd_card`: an
    image in the SDXC card reader; `vnc_port`: serve the screen, keyboard and mouse over VNC
    on 127.0.0.1 (0: any free port), its port and password in the bundle's vnc.json;
    `page_port`: serve the machine's page there (viewer/page.py), its URL given to `notice`;
    `network`: the 10GbE port's backend (net/link.py), started once, before the first boot,
    and kept across reboots; `on_exec_output`: each `exec_command`'s output as it ends (the
    outcome's `exec_output` has them all)."""
    config = machine_bundle.config()
    identity = machine_bundle.identity()
    chip = machine_bundle.t2()
    signer = bundles.signing_server()
    resumed = suspend.find(machine_bundle.path, chip, discard_state)   # checked, or refused
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    verdicts = []
    login = load_login(machine_bundle.path) if isinstance(source, DiskSource) and \
        source.path is None else None
    finished: list[ExecSession] = []

    ssd = open_ssd(chip, notice)
    with contextlib.ExitStack() as stack:
        if resumed is not None:
            stack.callback(resumed.close)
        if ssd is not None:
            stack.callback(ssd.close)
        events = HostEvents()
        stack.callback(events.close)
        log_path = machine_bundle.path / CONSOLE_LOG
        console_log = stack.enter_context(open(log_path, "wb"))
        running = RunningMachine(machine_bundle.name, console_log, serial_log, echo, events,
                                 log_path, login)
        session = running.session(exec_command) if exec_command is not None else None
        if session is not None:
            session.on_result = on_exec_output
        # The SSD's fsyncs in flight on their worker end before its store closes (callbacks
        # run last registered first).
        stack.callback(lambda: running.machine is not None and running.machine.quiesce())

        def suspend_now() -> suspend.Written:
            if ssd is not None:
                ssd.flush()                 # the disk as the saved guest left it
            return suspend.write(machine_bundle.path, chip, machine_state(running, config),
                                 running.machine.memories())

        running.suspend_to = suspend_now
        errors_log = stack.enter_context(open(machine_bundle.path / GUEST_ERRORS_LOG, "w"))
        if control:
            server = ControlServer(socket_path(machine_bundle.path), events, running)
            stack.callback(server.close)
        keyboard = Keyboard(sys.stdin.fileno(), on_input=events.wake) if interactive else None
        link = net_link.start(network, events, notice)
        if link is not None:
            stack.callback(link.close)
            running.network = link
        if interactive:
            stack.enter_context(RawTerminal())
        if session is not None:
            running.add_exec(session, finished.append)
        while True:
            if resumed is not None:
                machine = Machine(config, serial_output=running.output,
                                  cpus=len(resumed.state.get("cpus") or [0]), ssd=ssd,
                                  ssd_serial=ssd_serial(identity.serial_number),
                                  guest_error_log=_log_writer(errors_log),
                                  on_watchdog=running.watchdog_report, sd_card=sd_card,
                                  ethernet_mac=identity.ethernet_address,
                                  host_threads=host_threads)
                stack.callback(machine.close)
                resume(resumed, machine, running, config)
                resumed = None
                _plug_drives(machine, usb_drives)
                if link is not None:
                    link.plug(machine.nic, resumed=True)
                _start_viewers(stack, running, events, machine_bundle, vnc_port, page_port,
                               notice)
            else:
                first = running.machine is None
                machine = _boot(source, ssd, chip, signer, verdicts, running, config,
                                identity, cpus, errors_log,
                                MODES[settings.display_mode(machine_bundle)], sd_card,
                                host_threads)
                if first:
                    stack.callback(machine.close)
                    _plug_drives(machine, usb_drives)
                    if link is not None:
                        link.plug(machine.nic)
                    _start_viewers(stack, running, events, machine_bundle, vnc_port,
                                   page_port, notice)
            if on_started is not None:
                on_started()
                on_started = None

            def between_slices() -> bool:
                if keyboard is not None:
                    keyboard.drain(running.serial_input)
                    if keyboard.quit:
                        return True
                if session is not None and finished:
                    # --exec is done: power off as the guest would, or cut power if it does not.
                    if session.powering_off_since is None:
                        if login is None:
                            running.serial_input.type(b"poweroff\n")
                        else:   # logged out: the power button, as a person would
                            machine.acpi_pm.press_power_button()
                        session.powering_off_since = time.monotonic()
                    elif time.monotonic() - session.powering_off_since > POWEROFF_GRACE_S:
                        return True
                running.pump()
                return False

            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            result = machine.run(timeout_s=remaining, stop=between_slices, events=events)
            if result.reason == "reset" and not finished:
                running.rebooted()
                continue
            running.powered_off()
            if session is not None and session.status is not None:
                return Outcome("exec", session.status, session.result(), verdicts,
                               session.error)
            if keyboard is not None and keyboard.quit:
                return Outcome("quit", verdicts=verdicts)
            if events.stop_reason is not None:
                return Outcome(events.stop_reason, verdicts=verdicts)
            return Outcome(result.reason, verdicts=verdicts)


def _start_viewers(stack, running: RunningMachine, events: HostEvents, machine_bundle,
                   vnc_port: int | None, page_port: int | None,
                   notice: Callable[[str], None]) -> None:
    """The machine's viewers (viewer/viewers.py): `imacpro view` starts the page later; VNC
    and the page start now when the boot asked for them."""
    from imacpro.viewer.viewers import Viewers
    running.viewers = Viewers(running.machine, events, running, machine_bundle)
    stack.callback(running.viewers.close)
    if vnc_port is not None:
        notice(running.viewers.serve_vnc(vnc_port))
    if page_port is not None:
        notice(f"its page: {running.viewers.serve_page(page_port)}")


def _plug_drives(machine: Machine, drives: tuple[Path, ...]) -> None:
    for path in drives:
        machine.usb.attach_drive(path)


def _boot(source, ssd, chip, signer, verdicts, running: RunningMachine, config, identity,
          cpus, errors_log, display_mode: Mode, sd_card: Path | None = None,
          host_threads: int | None = 1) -> Machine:
    """A boot or a reboot: the T2 checks the image, the board is built (or reset in place),
    the firmware loads the kernel and hands over the screen in `display_mode` (the
    machine's setting as it is at this boot)."""
    image = source.read(ssd)
    verdict = chip.check_boot(BootImage(image.kernel, image.initrd, image.cmdline,
                                        image.manifest, image.external), signer)
    verdicts.append(verdict)
    if not verdict.allowed:
        raise BootRefused(verdict)
    machine = running.machine
    if machine is None:
        machine = Machine(config, serial_output=running.output, cpus=cpus, ssd=ssd,
                          ssd_serial=ssd_serial(identity.serial_number),
                          guest_error_log=_log_writer(errors_log),
                          on_watchdog=running.watchdog_report, sd_card=sd_card,
                          ethernet_mac=identity.ethernet_address, host_threads=host_threads)
    else:
        machine.reset()            # a reboot: the same board, back to power-on
    machine.display_mode = display_mode
    firmware.install(machine, identity, image.kernel, image.initrd, image.cmdline)
    running.attach(machine)
    return machine


def _config_state(config) -> dict:
    return {key: str(value) if not isinstance(value, (int, str, bool)) else value
            for key, value in config.to_dict().items()}


def machine_state(running: RunningMachine, config) -> dict:
    """Everything suspend.py seals: clock, CPUs, devices, the host side, the configuration."""
    machine = running.machine
    return {"now_ns": machine.clock.now_ns(), "cpus": [cpu.save() for cpu in machine.vcpus],
            "devices": machine.save_devices(), "config": _config_state(config),
            "display": machine.display_mode.name, "running": running.save()}


def resume(resumed: suspend.Suspended, machine: Machine, running: RunningMachine,
           config) -> None:
    """A suspended machine back: RAM, clock, CPUs, devices, then the RTC moved on by the
    time it slept; the state file is consumed once all of it loaded. Its wall clock is set
    from the RTC through its shell (as libvirt sets a restored guest's with its agent)."""
    state = resumed.state
    try:
        suspend.check_state(state)
        if state["config"] != _config_state(config):
            raise StateError("it was saved by a machine of another configuration")
        if state.get("display") not in MODES:
            raise StateError("its display mode is not one this machine has")
        machine.display_mode = MODES[state["display"]]   # the mode the firmware handed over
        resumed.restore_ram(machine.memories())
        machine.clock.set_now(state["now_ns"])
        for cpu, saved in zip(machine.vcpus, state["cpus"], strict=True):
            cpu.load(saved)
        machine.load_devices(state["devices"])
        running.load(state["running"])
    except (StateError, ValueError, TypeError) as exc:
        raise resumed._refuse(str(exc)) from None
    machine.rtc.slept(time.time_ns() - resumed.saved_at_ns)
    running.machine = machine
    resumed.consume()
    if running.ready and running.login is None:
        running.add_exec(ExecSession(SET_CLOCK_FROM_RTC), lambda session: None)


def _log_writer(stream) -> Callable[[str], None]:
    def write(text: str) -> None:
        stream.write(text)
        stream.flush()
    return write
