"""Power on a machine: the T2 decides, the firmware loads, the machine runs with its console.

Each power-on (and each guest reboot) reads the boot image again (from the internal SSD's EFI
System Partition, an external disk image's, or files given on the command line) and goes
through the T2 again, with a fresh boot nonce:
    T2.check_boot(image) ─► refused: BootRefused(verdict), nothing runs
                        └─► allowed: Machine(config, ssd) ─► firmware.install ─► run loop
The SSD's store is opened once per power-on and serves every boot of it (the guest's NVMe
driver reaches it through the machine's controller).
The run ends when the guest powers off (ACPI S5), the user types Ctrl-A X, an --exec command
finishes, or the timeout passes.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from imacpro import bundle as bundles
from imacpro.console import ExecSession, Keyboard, RawTerminal, SerialInput
from imacpro.devices.nvme import ssd_serial
from imacpro.disk import DiskError
from imacpro.disk.block import RawDiskImage
from imacpro.disk.esp import find_boot_image
from imacpro.errors import UserError
from imacpro.firmware import boot as firmware
from imacpro.machine import Machine
from imacpro.t2.secure_boot import BootImage, Verdict
from imacpro.t2.signing import Manifest
from imacpro.t2.storage import DamagedImage, PairingError


POWEROFF_GRACE_S = 10.0   # after --exec, how long the guest gets to power itself off


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
    reason: str          # "poweroff", "quit", "exec", "timeout", "halted", "shutdown"
    exec_status: int | None = None
    exec_output: bytes = b""
    verdicts: list[Verdict] | None = None


def power_on(machine_bundle: bundles.Bundle, source: BootSource | DiskSource, *, interactive: bool,
             exec_command: str | list[str] | None = None, timeout_s: float | None = None,
             serial_log: BinaryIO | None = None, echo: BinaryIO | None = None,
             cpus: int | None = None,
             notice: Callable[[str], None] = lambda line: None) -> Outcome:
    config = machine_bundle.config()
    identity = machine_bundle.identity()
    chip = machine_bundle.t2()
    signer = bundles.signing_server()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    session = ExecSession(exec_command) if exec_command is not None else None
    verdicts = []
    serial_input = SerialInput()

    def output(data: bytes) -> None:
        if serial_log is not None:
            serial_log.write(data)
            serial_log.flush()
        if echo is not None:
            echo.write(data)
            echo.flush()
        if session is not None:
            session.feed_output(data)

    ssd = open_ssd(chip, notice)
    keyboard = Keyboard(sys.stdin.fileno()) if interactive else None
    with contextlib.ExitStack() as stack:
        if ssd is not None:
            stack.callback(ssd.close)
        if interactive:
            stack.enter_context(RawTerminal())
        while True:
            image = source.read(ssd)
            verdict = chip.check_boot(BootImage(image.kernel, image.initrd, image.cmdline,
                                                image.manifest, image.external), signer)
            verdicts.append(verdict)
            if not verdict.allowed:
                raise BootRefused(verdict)
            machine = Machine(config, serial_output=output, cpus=cpus, ssd=ssd,
                              ssd_serial=ssd_serial(identity.serial_number))
            firmware.install(machine, identity, image.kernel, image.initrd, image.cmdline)

            def between_slices() -> bool:
                if keyboard is not None:
                    keyboard.drain(serial_input)
                    if keyboard.quit:
                        return True
                if session is not None:
                    session.poll(serial_input)
                    if session.status is not None:
                        # Done: power off as the guest would, or cut power if it does not.
                        if session.powering_off_since is None:
                            serial_input.type(b"poweroff\n")
                            session.powering_off_since = time.monotonic()
                        elif time.monotonic() - session.powering_off_since > POWEROFF_GRACE_S:
                            return True
                serial_input.pump(machine.uart)
                return False

            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            result = machine.run(timeout_s=remaining, stop=between_slices)
            if result.reason == "reset" and (session is None or session.status is None):
                # Reboot: the T2 checks the image again; typing meant for the old boot is lost,
                # as it would be on a real serial line.
                serial_input.buffer.clear()
                if session is not None:
                    session.rebooted()
                continue
            if session is not None and result.reason == "poweroff":
                session.powered_off()
            if session is not None and session.status is not None:
                return Outcome("exec", session.status, session.result(), verdicts)
            if keyboard is not None and keyboard.quit:
                return Outcome("quit", verdicts=verdicts)
            return Outcome(result.reason, verdicts=verdicts)

