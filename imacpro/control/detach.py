"""`imacpro boot NAME --detach`: the machine in a process of its own, in the background.

The command starts `imacpro boot NAME --headless --ready-fd N` in a new session (no terminal,
its output appended to machine.log in the bundle) and reads the pipe N: "ready" once the
firmware has handed over to the kernel, or "error: …" if the machine could not start (the
machine is in use, the T2 refused the image, no bootable SSD). Either way `boot --detach`
returns with the usual outcome: status 0, or the one-line error and status 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from imacpro.errors import UserError

PROCESS_LOG = "machine.log"     # in the bundle: the detached process's own stdout/stderr
START_TIMEOUT_S = 600           # the T2's check and the firmware take seconds; this is a guard


def detach(machine_bundle, *, kernel=None, initrd=None, cmdline=None, manifest=None,
           external=False, disk=None, serial_log=None, timeout=None, cpus=None,
           host_threads=None,
           discard_state=False, usb_drives=(), sd_card=None, boot_usb=False,
           vnc_port=None, page_port=None, network=None, forwards=()) -> int:
    """Start the machine's process; returns its pid once the kernel has started."""
    if machine_bundle.held():
        raise UserError(f"machine {machine_bundle.name!r} is in use by another imacpro "
                        "process (powered on, or being installed or erased)")
    args = [sys.executable, "-m", "imacpro", "boot", machine_bundle.name, "--headless"]
    if boot_usb:
        args.append("--boot-usb")
        disk = None                       # the first --usb drive is the disk
    for option, value in (("--kernel", kernel), ("--initrd", initrd), ("--manifest", manifest),
                          ("--disk", disk), ("--serial-log", serial_log), ("--sd", sd_card),
                          *(("--usb", drive) for drive in usb_drives)):
        if value:
            args += [option, str(Path(value).resolve())]
    if cmdline is not None:
        args += ["--append", cmdline]
    if external:
        args.append("--external")
    if discard_state:
        args.append("--discard-state")
    if timeout is not None:
        args += ["--timeout", repr(timeout)]
    if cpus is not None:
        args += ["--cpus", str(cpus)]
    args += ["--host-threads", "auto" if host_threads is None else str(host_threads)]
    if vnc_port is not None:
        args += ["--vnc", str(vnc_port)]
    if page_port is not None:
        args += ["--display", "web", "--web-port", str(page_port)]
    if network is not None:
        args += ["--network", network]
    for forward in forwards:
        args += ["--forward", forward]
    read_end, write_end = os.pipe()
    args += ["--ready-fd", str(write_end)]
    with open(machine_bundle.path / PROCESS_LOG, "ab") as log:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   pass_fds=(write_end,), start_new_session=True)
    os.close(write_end)
    with os.fdopen(read_end, "r") as ready:
        line = ready.readline().strip()
    if line == "ready":
        return process.pid
    if line.startswith("error: "):
        process.wait(START_TIMEOUT_S)
        raise UserError(line[len("error: "):])
    status = process.wait(START_TIMEOUT_S)
    raise UserError(f"the machine's process ended (status {status}) before its kernel "
                    f"started: see {machine_bundle.path / PROCESS_LOG}")
