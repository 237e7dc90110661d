"""The `imacpro` command line.

Bad input (unknown option, bad value, duplicate name, damaged bundle) prints one line on stderr,
"imacpro: error: ...", and exits with status 2. Every reporting command takes --json.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click

from imacpro import __version__, bundle, settings
from imacpro.catalog import configure, data
from imacpro.errors import UserError
from imacpro.overview import (catalog_report, hardware_overview, list_row, render_catalog,
                              render_overview)

EXIT_USAGE = 2

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _emit(as_json: bool, report, text: str) -> None:
    click.echo(json.dumps(report, indent=2, ensure_ascii=False) if as_json else text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imacpro")
def cli() -> None:
    """imacpro: a virtual Apple iMac Pro (iMacPro1,1)."""


@cli.command()
@json_option
def catalog(as_json: bool) -> None:
    """Every option Apple sold, with its dates and sources."""
    _emit(as_json, catalog_report(), render_catalog())


@cli.command()
@click.argument("name")
@click.option("--cpu", type=click.Choice([str(k) for k in data.PROCESSORS]),
              help="Cores: 8 (W-2140B), 10 (W-2150B), 14 (W-2170B) or 18 (W-2191B).")
@click.option("--memory", type=click.Choice([str(k) for k in data.MEMORY]),
              help="Memory in GB (512 needs --third-party-memory).")
@click.option("--graphics", type=click.Choice(list(data.GRAPHICS), case_sensitive=False))
@click.option("--storage", type=click.Choice(list(data.STORAGE), case_sensitive=False))
@click.option("--as-of", type=click.DateTime(formats=["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="Only options on sale that day; defaults are that day's stock configuration.")
@click.option("--third-party-memory", is_flag=True,
              help="Allow non-Apple memory modules (up to 512 GB, any date).")
@click.option("--pointer", type=click.Choice(list(data.POINTERS), case_sensitive=False),
              help="Magic Mouse 2 (the default), Magic Trackpad 2, or both.")
@json_option
def create(name: str, cpu: str | None, memory: str | None, graphics: str | None,
           storage: str | None, as_of, third_party_memory: bool, pointer: str | None,
           as_json: bool) -> None:
    """Create a virtual iMac Pro named NAME."""
    config = configure(
        cpu=int(cpu) if cpu else None,
        memory=int(memory) if memory else None,
        graphics=graphics.lower() if graphics else None,
        storage=storage.upper() if storage else None,
        as_of=as_of.date() if as_of else None,
        third_party_memory=third_party_memory,
        pointer=pointer.lower() if pointer else None,
    )
    new = bundle.create(name, config)
    overview = hardware_overview(new.name, config, new.identity())
    _emit(as_json, overview, f"Created {new.path}\n\n{render_overview(overview)}")


@cli.command(name="list")
@json_option
def list_machines(as_json: bool) -> None:
    """List the machines."""
    rows = []
    for b in bundle.list_bundles():
        try:
            rows.append(list_row(b.name, b.config()))
        except UserError as exc:
            rows.append({"name": b.name, "error": str(exc)})
    if as_json:
        _emit(True, rows, "")
        return
    if not rows:
        click.echo(f"No machines in {bundle.machines_dir()} (create one: imacpro create NAME)")
        return
    for r in rows:
        if "error" in r:
            click.echo(f"{r['name']:<20} {r['error']}")
        else:
            click.echo(f"{r['name']:<20} {r['cpu']}-core {r['processor']}, {r['memory_gb']} GB, "
                       f"{r['graphics']}, {r['storage']}")


@cli.command()
@click.argument("name")
@json_option
def info(name: str, as_json: bool) -> None:
    """Show a machine's hardware overview."""
    b = bundle.open_bundle(name)
    overview = hardware_overview(b.name, b.config(), b.identity(), settings.display_mode(b))
    _emit(as_json, overview, render_overview(overview))


@cli.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(name: str, yes: bool) -> None:
    """Delete a machine and everything in it (its SSD too)."""
    machine_bundle = bundle.open_bundle(name)
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(f"not deleting {name!r} without confirmation: pass --yes")
        click.confirm(f"Delete machine {name!r} and everything on it?", abort=True)
    with machine_bundle.in_use("deleting it"):
        bundle.delete(name)
    click.echo(f"Deleted {name}")


def _password(path: str | None, prompt: str, confirm: bool = False) -> str:
    """A password from --password-file (its first line) or the terminal, never argv."""
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except OSError as exc:
            raise UserError(f"cannot read password file {path}: {exc.strerror}") from None
    if not sys.stdin.isatty():
        raise UserError(f"{prompt.lower()} is needed: give it in a file with --password-file")
    return click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)


def _security_report(name: str, settings) -> tuple[dict, str]:
    from imacpro.t2.secure_boot import POLICY_NAMES
    report = {"name": name, "policy": settings.policy, "external_boot": settings.external_boot,
              "highest_booted_version": settings.highest_version}
    text = (f"{name}: Startup Security Utility\n"
            f"  Secure Boot:         {POLICY_NAMES[settings.policy]}\n"
            f"  Allowed Boot Media:  "
            f"{'Allow' if settings.external_boot == 'allow' else 'Disallow'} booting from "
            f"external or removable media\n"
            f"  Anti-rollback floor: version {settings.highest_version}")
    return report, text


@cli.command()
@click.argument("name")
@click.option("--policy", type=click.Choice(["full", "medium", "none"]))
@click.option("--external-boot", type=click.Choice(["allow", "disallow"]))
@click.option("--reset-nvram", is_flag=True, help="Back to the default settings.")
@click.option("--password-file", type=click.Path(dir_okay=False),
              help="The administrator password, if one is set (first line of the file).")
@json_option
def security(name: str, policy, external_boot, reset_nvram: bool, password_file, as_json) -> None:
    """Show or change a machine's secure boot settings."""
    chip = bundle.open_bundle(name).t2()
    if policy or external_boot or reset_nvram:
        password = None
        if chip.sep.has_password():
            password = _password(password_file, "Administrator password")
        if reset_nvram:
            chip.reset_nvram(password)
        settings = chip.change_settings(policy, external_boot, password) \
            if policy or external_boot else chip.settings()
    else:
        settings = chip.settings()
    _emit(as_json, *_security_report(name, settings))


@cli.command()
@click.argument("name")
@click.option("--password-file", type=click.Path(dir_okay=False),
              help="The current administrator password, if one is set.")
@click.option("--new-password-file", type=click.Path(dir_okay=False),
              help="The new password (first line of the file).")
@click.option("--remove", is_flag=True, help="Remove the administrator password.")
def password(name: str, password_file, new_password_file, remove: bool) -> None:
    """Set, change or remove a machine's administrator (firmware) password."""
    sep = bundle.open_bundle(name).t2().sep
    current = _password(password_file, "Current password") if sep.has_password() else None
    new = None if remove else _password(new_password_file, "New password", confirm=True)
    if new == "":
        raise UserError("the new password is empty (use --remove to remove the password)")
    sep.set_password(new, current)
    click.echo(f"{name}: administrator password {'removed' if remove else 'set'}")


@cli.command()
@click.option("--kernel", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--initrd", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--append", "cmdline", default="", help="The kernel command line.")
@click.option("--version", "image_version", type=click.IntRange(min=0), required=True,
              help="Version number for anti-rollback.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True,
              help="Where to write the signed manifest.")
@json_option
def sign(kernel, initrd, cmdline, image_version, output, as_json) -> None:
    """Sign a boot image with the installation's platform key (the signing server)."""
    from pathlib import Path
    server = bundle.signing_server()
    with open(kernel, "rb") as k, open(initrd, "rb") as i:
        manifest = server.sign(k.read(), i.read(), cmdline, image_version)
    manifest.save(Path(output))
    _emit(as_json, {"manifest": output, "version": image_version, "signer": server.fingerprint},
          f"Signed version {image_version} with platform key {server.fingerprint[:16]}…: "
          f"{output}")


@cli.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase(name: str, yes: bool) -> None:
    """Erase All Content and Settings: the SSD becomes unreadable at once."""
    b = bundle.open_bundle(name)
    chip = b.t2()
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(f"not erasing {name!r} without confirmation: pass --yes")
        click.confirm(f"Erase all content and settings of {name!r}? Its data cannot be "
                      "recovered.", abort=True)
    with b.in_use("erasing it"):
        from imacpro import suspend
        suspend.discard(b.path, chip)          # its RAM is content too
        chip.erase(b.config().storage_option.capacity_bytes)
    click.echo(f"{name}: erased (new keys; every byte on the SSD is unrecoverable)")


EXIT_REFUSED = 1
EXIT_TIMEOUT = 124


def _image_options(verb: str):
    """--kernel/--initrd/--append/--manifest: a boot image given as files."""
    def add(command):
        for option in reversed((
            click.option("--kernel", type=click.Path(exists=True, dir_okay=False),
                         help=f"{verb} this bzImage instead of the default guest."),
            click.option("--initrd", type=click.Path(exists=True, dir_okay=False)),
            click.option("--append", "cmdline", default=None,
                         help="The kernel command line."),
            click.option("--manifest", type=click.Path(exists=True, dir_okay=False),
                         help="The signed manifest of --kernel/--initrd/--append "
                              "(imacpro sign)."),
        )):
            command = option(command)
        return command
    return add


@cli.command()
@click.argument("name")
@_image_options("Install")
@click.option("--disk", type=click.Path(dir_okay=False),
              help="Write a raw disk image (external media) instead of the internal SSD.")
@click.option("--size", type=click.IntRange(min=1), default=8, show_default=True,
              help="With --disk: the new image's size in GB.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--os", "os_name", type=click.Choice(["default", "debian"]), default="default",
              show_default=True,
              help="default: the default guest (busybox from its initramfs, an empty root "
                   "partition); debian: Debian installed on the root partition.")
@click.option("--release", default=None, help="With --os debian: the release (bookworm).")
@click.option("--packages", default=None,
              help="With --os debian: more packages to install, comma-separated.")
@click.option("--user", default=None,
              help="With --os debian: the user's name (default: imacpro).")
@click.option("--ssh-key", type=click.Path(exists=True, dir_okay=False),
              help="With --os debian: the user's SSH public key.")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False),
              help="With --os debian: a file whose first line is the user's password.")
def install(name, kernel, initrd, cmdline, manifest, disk, size, yes, os_name, release,
            packages, user, ssh_key, password_file) -> None:
    """Write a system onto the SSD: a GPT, an EFI System Partition holding the boot image
    (the default guest unless --kernel or --os), and a Linux root partition. Everything on
    the disk is replaced."""
    from pathlib import Path

    from imacpro.disk.block import RawDiskImage
    from imacpro.disk.install import install as write_system
    from imacpro.guest import debian
    from imacpro.guest.build import ensure_signed, print_to_stderr
    machine_bundle = bundle.open_bundle(name)
    debian_options = {"--release": release, "--packages": packages, "--user": user,
                      "--ssh-key": ssh_key, "--password-file": password_file}
    root_maker = login = esp_volume_id = None
    if os_name == "debian":
        if kernel:
            raise UserError("--os debian installs its own kernel: it goes without --kernel")
        if not (ssh_key or password_file):
            raise UserError("--os debian needs the user's way in: --password-file, "
                            "--ssh-key, or both")
        user = debian.check_user(user or "imacpro")
        password = debian.read_password(Path(password_file)) if password_file else None
        key = debian.read_ssh_key(Path(ssh_key)) if ssh_key else None
        wanted = debian.packages_of(packages)
        release = release or debian.DEFAULT_RELEASE
    elif given := [option for option, value in debian_options.items() if value]:
        raise UserError(f"{', '.join(given)} go with --os debian")
    if os_name == "debian":
        import functools
        import secrets
        import tempfile
        import uuid
        tar = debian.root_tar(release, wanted, print_to_stderr)
        system = debian.DebianSystem.read(tar)
        root_uuid, esp_volume_id = str(uuid.uuid4()), secrets.randbits(32)
        console_password = password or secrets.token_urlsafe(18)
        setup = debian.Setup(hostname=name, user=user,
                             password_hash=debian.password_hash(console_password),
                             ssh_key=key, root_uuid=root_uuid,
                             esp_volume_id=esp_volume_id)
        login = debian.Login("debian", user, console_password)
        command_line = debian.command_line(root_uuid)
        scratch = tempfile.TemporaryDirectory(prefix="imacpro-install-")
        signed = Path(scratch.name) / "boot.manifest"
        bundle.signing_server().sign(system.kernel, system.initrd, command_line,
                                     system.image_version).save(signed)
        files = (None, None, command_line, signed)
        kernel_bytes, initrd_bytes = system.kernel, system.initrd
        described = f"Debian {release} (kernel {system.kernel_release})"
        root_maker = functools.partial(debian.make_root, tar_path=tar, setup=setup,
                                       progress=print_to_stderr)
    elif kernel:
        files = (Path(kernel), Path(initrd) if initrd else None, cmdline or "",
                 Path(manifest) if manifest else None)
    else:
        if initrd or cmdline or manifest:
            raise UserError("--initrd, --append and --manifest go with --kernel")
        from imacpro.guest.build import load
        built = load()
        if built is None:
            raise UserError("the default guest is not built: run 'imacpro guest fetch' "
                            "(or give --kernel)")
        files = (built.kernel, built.initrd, built.cmdline, ensure_signed(built))
    kernel_path, initrd_path, command_line, manifest_path = files
    what = f"the disk image {disk}" if disk else f"the SSD of {name!r}"
    if not yes and not (disk and not Path(disk).exists()):
        if not sys.stdin.isatty():
            raise UserError(f"not replacing everything on {what} without confirmation: "
                            "pass --yes")
        click.confirm(f"Replace everything on {what}?", abort=True)
    if kernel_path is not None:
        try:
            kernel_bytes = kernel_path.read_bytes()
            initrd_bytes = initrd_path.read_bytes() if initrd_path else b""
        except OSError as exc:
            raise UserError(f"cannot read {exc.filename}: {exc.strerror}") from None
        described = kernel_path.name
    if disk:
        path = Path(disk)
        target = RawDiskImage(path, writable=True) if path.exists() else \
            RawDiskImage.create(path, size * 1000**3 // 4096 * 4096)
    with contextlib.ExitStack() as stack:
        if not disk:
            stack.enter_context(machine_bundle.in_use("installing onto its SSD"))
            from imacpro.suspend import state_path
            if state_path(machine_bundle.path).exists():
                raise UserError(f"machine {name!r} is suspended, with its system in use on the "
                                f"SSD: resume it and shut it down, or 'imacpro boot {name} "
                                "--discard-state', before installing")
            target = machine_bundle.t2().open_storage()
        with target:
            write_system(target, kernel_bytes, initrd_bytes, command_line, manifest_path,
                         progress=print_to_stderr, root=root_maker,
                         esp_volume_id=esp_volume_id)
        if not disk:
            if login is not None:
                debian.save_login(machine_bundle.path, login)
            else:
                debian.forget_login(machine_bundle.path)
    click.echo(f"{name}: installed {described} on {what}")


@cli.command()
@click.argument("name")
@click.option("--password-file", type=click.Path(dir_okay=False),
              help="The administrator password, if one is set (first line of the file).")
@json_option
def bless(name: str, password_file, as_json: bool) -> None:
    """Approve the kernel and initrd the installed system has now (after a kernel upgrade
    in the guest): sign them as a new boot image version and put them on the ESP."""
    from imacpro.disk.bless import bless as bless_disk
    from imacpro.suspend import state_path
    machine_bundle = bundle.open_bundle(name)
    chip = machine_bundle.t2()
    password = None
    if chip.sep.has_password():
        password = _password(password_file, "Administrator password")
    chip.authorize(password, "approve a boot image")
    with machine_bundle.in_use("blessing its boot image"):
        if state_path(machine_bundle.path).exists():
            raise UserError(f"machine {name!r} is suspended, with the EFI System Partition "
                            "mounted: resume it and shut it down before blessing")
        with chip.open_storage() as store:
            done = bless_disk(store, bundle.signing_server(), chip.settings().highest_version)
    report = {"name": name, "kernel": done.kernel_path, "initrd": done.initrd_path,
              "kernel_bytes": done.kernel_size, "initrd_bytes": done.initrd_size,
              "cmdline": done.cmdline, "version": done.version, "changed": done.changed}
    what = (f"{done.kernel_path} ({done.kernel_size / 1e6:.1f} MB), {done.initrd_path} "
            f"({done.initrd_size / 1e6:.1f} MB), command line {done.cmdline!r}")
    _emit(as_json, report,
          f"{name}: blessed {what} as boot image version {done.version}" if done.changed else
          f"{name}: already blessed: {what}, boot image version {done.version}")


class HostThreadsType(click.ParamType):
    """A count of host threads, or "auto" (None: the machine chooses, host_threads.py)."""
    name = "host threads"

    def convert(self, value, param, ctx):
        if value == "auto":
            return None
        if isinstance(value, int):
            return value
        try:
            count = int(value)
        except ValueError:
            count = 0
        if count < 1:
            self.fail(f"{value!r} is not a count of threads (1 or more) or 'auto'", param, ctx)
        return count


HOST_THREADS = HostThreadsType()


@cli.command()
@click.argument("name")
@_image_options("Boot")
@click.option("--external", is_flag=True, help="The --kernel image is on external media.")
@click.option("--disk", type=click.Path(exists=True, dir_okay=False),
              help="Boot from this raw disk image (external media: its EFI System "
                   "Partition holds the boot image, as 'imacpro install --disk' writes it).")
@click.option("--usb", "usb_drives", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Plug this raw disk image in as a USB 3 flash drive (repeatable).")
@click.option("--sd", "sd_card", type=click.Path(exists=True, dir_okay=False),
              help="Put this raw disk image in the SDXC card reader.")
@click.option("--boot-usb", is_flag=True,
              help="Start up from the first --usb drive (external media, as the T2's "
                   "policy allows), as the Startup Manager would.")
@click.option("--vnc", "vnc_port", type=click.IntRange(0, 65535), metavar="PORT",
              help="Serve the screen, keyboard and mouse over VNC on 127.0.0.1:PORT (0: any "
                   "free port); the port and a new password go in the bundle's vnc.json.")
@click.option("--display", type=click.Choice(["terminal", "web"]), default="terminal",
              show_default=True,
              help="web: also serve the machine's page (its screen, keyboard, mouse, serial "
                   "console and power button) on 127.0.0.1 and print its URL.")
@click.option("--web-port", type=click.IntRange(0, 65535), default=0, metavar="PORT",
              help="The page's port with --display web (default: any free port).")
@click.option("--network", type=click.Choice(["user", "none"]), default=None,
              help="user (the default): the 10GbE port on user-mode networking (passt: NAT "
                   "to the host's network, DHCP, DNS; the host's 127.0.0.1 is 10.0.2.2); "
                   "none: no cable, the link stays down.")
@click.option("--forward", "forwards", multiple=True, metavar="tcp:HOSTPORT:GUESTPORT",
              help="Forward 127.0.0.1:HOSTPORT on the host to the guest's GUESTPORT "
                   "(repeatable).")
@click.option("--headless", is_flag=True, help="No console on this terminal.")
@click.option("--serial-log", type=click.Path(dir_okay=False, writable=True),
              help="Write everything COM1 prints to this file.")
@click.option("--exec", "exec_command", metavar="CMD", multiple=True,
              help="Run CMD in the guest's shell, print its output, power off, and exit "
                   "with its status. Repeat it to run several commands in turn (each "
                   "one's output is printed as it ends); a command that reboots the guest "
                   "ends when the guest is ready again.")
@click.option("--timeout", type=click.FloatRange(min=0), help="Power off after S seconds.")
@click.option("--detach", is_flag=True,
              help="Run in the background: return once the firmware has handed over to the "
                   "kernel ('imacpro status|exec|console|stop NAME' reach it).")
@click.option("--discard-state", is_flag=True,
              help="A suspended machine starts afresh instead of resuming.")
@click.option("--host-threads", type=HOST_THREADS, default="auto", show_default=True,
              metavar="N|auto", envvar="IMACPRO_HOST_THREADS", show_envvar=True,
              help="Host threads that run the vCPUs at the same time (auto: one per host "
                   "core, no more than the vCPUs; 1: one thread runs them in turn, the "
                   "deterministic reference).")
@click.option("--cpus", type=click.IntRange(min=1), hidden=True)
@click.option("--ready-fd", type=int, hidden=True)
def boot(name, kernel, initrd, cmdline, manifest, external, disk, usb_drives, sd_card,
         boot_usb, vnc_port, display, web_port, network, forwards, headless, serial_log,
         exec_command, timeout, detach, discard_state, host_threads, cpus, ready_fd) -> None:
    """Power on a machine; its serial console is this terminal (Ctrl-A X powers off).

    It boots what the internal SSD holds ('imacpro install'), or --disk, or --kernel; a
    suspended machine resumes."""
    from pathlib import Path

    from imacpro.boot import BootRefused, BootSource, DiskSource, power_on
    machine_bundle = bundle.open_bundle(name)
    if boot_usb:
        if not usb_drives:
            raise UserError("--boot-usb starts up from a --usb drive: give one")
        if kernel or disk:
            raise UserError("give one of --boot-usb, --disk and --kernel")
        disk = usb_drives[0]
    if kernel:
        if disk:
            raise UserError("give --kernel or --disk, not both")
        source = BootSource.from_files(Path(kernel), Path(initrd) if initrd else None,
                                       cmdline or "", Path(manifest) if manifest else None,
                                       external)
    else:
        if initrd or cmdline or manifest:
            raise UserError("--initrd, --append and --manifest go with --kernel")
        if external and not disk:
            raise UserError("--external goes with --kernel or --disk")
        source = DiskSource(Path(disk) if disk else None)
    exec_command = list(exec_command) or None
    net_settings = _network(network, forwards)
    if detach:
        if exec_command:
            raise UserError("--exec waits for its commands; with --detach use 'imacpro exec'")
        from imacpro.control.detach import detach as start_detached
        pid = start_detached(machine_bundle, kernel=kernel, initrd=initrd, cmdline=cmdline,
                             manifest=manifest, external=external, disk=disk,
                             serial_log=serial_log, timeout=timeout, cpus=cpus,
                             host_threads=host_threads,
                             discard_state=discard_state,
                             usb_drives=usb_drives, sd_card=sd_card, boot_usb=boot_usb,
                             vnc_port=vnc_port, network=network, forwards=forwards,
                             page_port=web_port if display == "web" else None)
        click.echo(f"{name}: running in the background (pid {pid}); "
                   f"'imacpro console {name}' attaches, 'imacpro stop {name}' powers it off")
        if display == "web":
            with _client(name) as client:
                click.echo(f"{name}: its page: {client.request('view')['url']}")
        return
    interactive = not headless and exec_command is None and sys.stdin.isatty()
    log = open(serial_log, "wb") if serial_log else None
    echo = None if headless or exec_command is not None else sys.stdout.buffer
    ready = os.fdopen(ready_fd, "w") if ready_fd is not None else None
    shown = 0                   # bytes of the commands' output written as each one ended

    def show(output: bytes) -> None:
        nonlocal shown
        sys.stdout.buffer.write(output)
        sys.stdout.flush()
        shown += len(output)

    def started() -> None:
        if ready is not None:
            ready.write("ready\n")
            ready.close()

    try:
        with machine_bundle.in_use("powering it on"):
            outcome = power_on(machine_bundle, source, interactive=interactive,
                               exec_command=exec_command, timeout_s=timeout, serial_log=log,
                               echo=echo, cpus=cpus, host_threads=host_threads,
                               on_started=started,
                               discard_state=discard_state,
                               usb_drives=tuple(Path(p).resolve() for p in usb_drives),
                               sd_card=Path(sd_card).resolve() if sd_card else None,
                               vnc_port=vnc_port, network=net_settings,
                               page_port=web_port if display == "web" else None,
                               on_exec_output=show,
                               notice=lambda line: click.echo(f"imacpro: {name}: {line}",
                                                              err=True))
    except BootRefused as refused:
        _tell_parent(ready, f"the T2 refused to boot: {refused.verdict.reason}")
        click.echo(refused.verdict.render(), err=True)
        if isinstance(source, DiskSource) and source.path is None and \
                refused.verdict.reason.split(":")[0].endswith("digest"):
            click.echo(f"  the system on the SSD changed its boot image (a kernel upgrade or "
                       f"update-initramfs in the guest): if that was you, approve it with "
                       f"'imacpro bless {name}'", err=True)
        sys.exit(EXIT_REFUSED)
    except (UserError, OSError) as exc:
        _tell_parent(ready, str(exc) if isinstance(exc, UserError) else
                     f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else ""))
        raise
    finally:
        if log:
            log.close()
    if outcome.reason == "exec":
        show(outcome.exec_output[shown:])         # a command cut short: what it printed
        if outcome.exec_error:
            click.echo(f"imacpro: {name}: {outcome.exec_error}", err=True)
        sys.exit(outcome.exec_status)
    if outcome.reason == "timeout":
        click.echo(f"imacpro: {name}: powered off after {timeout:g} s (--timeout)", err=True)
        sys.exit(EXIT_TIMEOUT)
    if outcome.reason == "poweroff" and exec_command:
        click.echo(f"imacpro: {name}: the guest powered off before every --exec command ran",
                   err=True)
        sys.exit(EXIT_REFUSED)
    if outcome.reason not in ("poweroff", "quit", "stop", "suspended"):
        click.echo(f"imacpro: {name}: stopped ({outcome.reason})", err=True)
        sys.exit(EXIT_REFUSED)


def _network(mode: str | None, forwards: tuple[str, ...]):
    """The boot's network: user-mode unless `none`; passt missing is an error only when the
    user named the network or gave forwards (else the machine boots with its link down)."""
    from imacpro.net.link import Network
    from imacpro.net.passt import Forward
    parsed = tuple(Forward.parse(text) for text in forwards)
    if mode == "none" and parsed:
        raise UserError("--forward needs the network: not with --network none")
    ports = [f.host_port for f in parsed]
    if len(set(ports)) != len(ports):
        raise UserError("--forward: each host port once")
    return Network(mode or "user", parsed, required=mode is not None or bool(parsed))


def _tell_parent(ready, message: str) -> None:
    """A detached machine's process that fails before its kernel starts tells `boot
    --detach`, which prints it (control/detach.py)."""
    if ready is not None and not ready.closed:
        with contextlib.suppress(OSError):
            ready.write(f"error: {message}\n")
            ready.close()


def _client(name: str):
    from imacpro.control.client import ControlClient
    return ControlClient(bundle.open_bundle(name).path, name)


@cli.command()
@click.argument("name")
@json_option
def status(name: str, as_json: bool) -> None:
    """Whether a machine runs, and what it is doing."""
    from imacpro.control.client import NotRunning
    try:
        with _client(name) as client:
            report = client.request("status")
        report.pop("version", None)
        report.pop("ok", None)
    except NotRunning:
        from imacpro.suspend import state_path
        saved = state_path(bundle.open_bundle(name).path)
        report = {"name": name, "state": "suspended" if saved.exists() else "powered off"}
        if saved.exists():
            report["state_file"] = str(saved)
            report["state_size"] = saved.stat().st_size
    if report["state"] == "suspended":
        text = (f"{name}: suspended ({report['state_size'] / 1e6:.1f} MB in "
                f"{report['state_file']}; 'imacpro boot {name}' resumes it)")
    elif report["state"] != "running":
        text = f"{name}: {report['state']}"
    else:
        text = (f"{name}: running (pid {report['pid']}), up {_duration(report['uptime_s'])}, "
                f"{report['vcpus']} vCPUs, boot {report['boots']}"
                f"{'' if report['guest_ready'] else ' (starting)'}\n"
                f"  console log:  {report['console_log']}\n"
                f"  guest errors: {report['guest_errors']}")
        viewers = report.get("viewers") or {}
        if viewers.get("vnc"):
            text += f"\n  VNC:          127.0.0.1:{viewers['vnc']['port']}"
        if viewers.get("page"):
            text += f"\n  page:         {viewers['page']}"
        network = report.get("network")
        if network:
            forwards = "".join(f", 127.0.0.1:{f['host_port']} → guest port {f['guest_port']}"
                               for f in network["forwards"])
            text += (f"\n  network:      user-mode (passt), link "
                     f"{'up' if network['link_up'] else 'down'}{forwards}")
        else:
            text += "\n  network:      none"
        for found in report.get("watchdog", []):
            for finding in found["findings"]:
                text += f"\n  watchdog:     {finding['text']} (at {found['at_s']:.1f} s)"
    _emit(as_json, report, text)


SENSOR_NAMES = {"TC0P": "CPU proximity", "TG0P": "GPU", "TM0P": "memory"}


@cli.command()
@click.argument("name")
@json_option
def sensors(name: str, as_json: bool) -> None:
    """The running machine's temperatures, CPU package power and fans, as its SMC reports
    them to the guest (the SMC's key names in brackets)."""
    with _client(name) as client:
        report = client.request("sensors")
    report.pop("ok", None)
    report.pop("version", None)
    lines = [f"{name}: Apple SMC"]
    for key, celsius in report["temperatures"].items():
        lines.append(f"  {SENSOR_NAMES.get(key, key) + f' ({key})':<22} {celsius:6.1f} °C")
    lines.append(f"  {'CPU package power':<22} {report['package_w']:6.1f} W")
    for n, fan in enumerate(report["fans"]):
        mode = ", manual" if fan["manual"] else ""
        lines.append(f"  {f'fan {n} (F{n}Ac)':<22} {fan['rpm']:6d} rpm (target {fan['target']},"
                     f" min {fan['min']}, max {fan['max']}{mode})")
    _emit(as_json, report, "\n".join(lines))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@cli.command()
@click.argument("name")
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="Serve the page on this port if it is not served yet (default: any).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a browser.")
def view(name: str, port: int, open_browser: bool) -> None:
    """Print the URL of a running machine's page (its screen, keyboard, mouse, serial
    console and power button), serving it from now on if it was not. The URL carries the
    page's key: keep it to yourself."""
    with _client(name) as client:
        url = client.request("view", port=port)["url"]
    click.echo(url)
    if open_browser:
        import webbrowser
        if not webbrowser.open(url):
            raise UserError("no browser to open here: open the URL above yourself")


@cli.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(name: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in a running machine's shell; print its output and exit with its status.

    The words of COMMAND are joined by spaces and run by the guest's shell, as ssh does.
    Several execs at once run one after another."""
    import base64
    with _client(name) as client:
        reply = client.request("exec", command_line=" ".join(command))
    sys.stdout.buffer.write(base64.b64decode(reply.get("output", "")))
    sys.stdout.flush()
    if reply.get("status") is None:
        raise UserError(f"machine {name!r}: {reply.get('error', 'the command did not end')}")
    sys.exit(int(reply["status"]))


_ESCAPES = {"n": "\n", "t": "\t", "b": "\b", "\\": "\\"}


def unescape(text: str) -> str:
    """`imacpro type`'s escapes: \\n Enter, \\t Tab, \\b Backspace, \\\\ a backslash."""
    out, chars = [], iter(text)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        following = next(chars, None)
        if following not in _ESCAPES:
            raise UserError(f"unknown escape \\{following or ''} in the text "
                            "(\\n, \\t, \\b and \\\\ are known)")
        out.append(_ESCAPES[following])
    return "".join(out)


@cli.command(name="type")
@click.argument("name")
@click.argument("text")
@click.option("--raw", is_flag=True, help="Type backslashes as they are (no \\n escapes).")
def type_text(name: str, text: str, raw: bool) -> None:
    """Type TEXT on the machine's keyboard (US layout). \\n is Enter, \\t Tab, \\b
    Backspace, \\\\ a backslash."""
    with _client(name) as client:
        client.request("type", text=text if raw else unescape(text))


@cli.command()
@click.argument("name")
@click.argument("fault", type=click.Choice(["ecc"]))
@click.option("--dimm", required=True, type=click.Choice(["A0", "B0", "C0", "D0"]),
              help="The memory slot (CPU1_DIMM_A0 ... D0).")
@click.option("--correctable", "kind", flag_value="ecc",
              help="A corrected error: the bank's CMCI, EDAC's ce_count.")
@click.option("--uncorrectable", "kind", flag_value="ecc-uncorrected",
              help="An uncorrected error the patrol scrubber found: a machine check on "
                   "every CPU, the page taken out of use, EDAC's ue_count.")
@click.option("--address", default=None,
              help="The physical address (hex or decimal) on that DIMM; default: one of its "
                   "lines at the top of RAM.")
def inject(name: str, fault: str, dimm: str, kind: str | None, address: str | None) -> None:
    """Make the running machine's hardware report a fault: a memory error on a DIMM, logged
    in its memory controller's machine-check bank. `ecc --correctable` signals it to Linux
    by CMCI, and its EDAC counts it against the DIMM; `ecc --uncorrectable` by a
    machine-check exception, and Linux takes the page out of use (docs/LINUX.md)."""
    del fault
    if kind is None:
        raise UserError("say --correctable or --uncorrectable")
    at = None
    if address is not None:
        try:
            at = int(address, 0)
        except ValueError:
            raise UserError(f"--address {address!r} is not a number") from None
    with _client(name) as client:
        reply = client.request("inject", kind=kind, dimm=dimm, address=at)
    what = "uncorrected" if reply["uncorrected"] else "corrected"
    click.echo(f"{name}: {what} memory error on CPU1_DIMM_{reply['dimm']} at "
               f"{reply['address']:#x} (rank {reply['rank']}, machine-check bank "
               f"{reply['bank']})")


@cli.command()
@click.argument("name")
@click.argument("combos", nargs=-1, required=True)
def key(name: str, combos: tuple[str, ...]) -> None:
    """Press key combinations on the machine's keyboard, in turn: ctrl+alt+f2, enter,
    shift+tab, kp5, fn+f12... (Apple's keyboard sends F1-F12 as media keys unless Fn is
    held; docs/USB.md has every name)."""
    with _client(name) as client:
        for combo in combos:
            client.request("key", combo=combo)


@cli.command()
@click.argument("name")
@click.option("--trackpad", is_flag=True, help="The Magic Trackpad 2, not the mouse.")
@click.option("--move", nargs=2, type=click.IntRange(-32767, 32767), metavar="DX DY",
              help="Move by DX, DY (counts; on the trackpad, a finger's travel).")
@click.option("--click", type=click.Choice(["left", "right"]), help="Press and release.")
@click.option("--press", type=click.Choice(["left", "right"]), help="Press and hold.")
@click.option("--release", type=click.Choice(["left", "right"]), help="Let go.")
@click.option("--scroll", type=click.IntRange(-32767, 32767), default=0, metavar="N",
              help="Scroll N detents (positive: up).")
def pointer(name: str, trackpad: bool, move, click: str | None, press: str | None,
            release: str | None, scroll: int) -> None:
    """Move the mouse (or trackpad), click, and scroll."""
    buttons = [(b, d) for b, d in ((click, None), (press, True), (release, False)) if b]
    if len(buttons) > 1:
        raise UserError("give one of --click, --press and --release")
    if not move and not buttons and not scroll:
        raise UserError("nothing to do: give --move, --click, --press, --release or --scroll")
    button, down = buttons[0] if buttons else (None, None)
    dx, dy = move or (0, 0)
    with _client(name) as client:
        client.request("pointer", device="trackpad" if trackpad else "mouse", dx=dx, dy=dy,
                       button=button, down=down, scroll=scroll)


@cli.group()
def usb() -> None:
    """USB drives on a running machine."""


@usb.command(name="attach")
@click.argument("name")
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.option("--read-only", is_flag=True, help="The guest cannot write to it.")
def usb_attach(name: str, image: str, read_only: bool) -> None:
    """Plug a raw disk IMAGE in as a USB 3 flash drive."""
    with _client(name) as client:
        reply = client.request("usb", action="attach", path=os.path.abspath(image),
                               read_only=read_only)
    click.echo(f"{name}: {image} attached at {reply['connector']}")


@usb.command(name="detach")
@click.argument("name")
@click.argument("drive")
def usb_detach(name: str, drive: str) -> None:
    """Unplug the drive holding image DRIVE (or in connector DRIVE, e.g. "USB-A 3")."""
    with _client(name) as client:
        reply = client.request("usb", action="detach",
                               path=drive if drive.startswith("USB-A") else
                               os.path.abspath(drive))
    click.echo(f"{name}: the drive at {reply['connector']} is unplugged")


@usb.command(name="list")
@click.argument("name")
@json_option
def usb_list(name: str, as_json: bool) -> None:
    """What is plugged into the machine's USB connectors."""
    with _client(name) as client:
        devices = client.request("usb", action="list")["devices"]
    lines = [f"{d['connector']:<18} {d['vendor']}:{d['product']} {d['name']}"
             + (f" ({d['image']})" if "image" in d else "") for d in devices]
    _emit(as_json, devices, "\n".join(lines))


@cli.command()
@click.argument("name")
def console(name: str) -> None:
    """Attach this terminal to a running machine's COM1 (Ctrl-A D detaches, Ctrl-A X powers
    off)."""
    from imacpro.console import attach_terminal
    with _client(name) as client:
        client.request("console")
        outcome = attach_terminal(client, stop=lambda: _stop(name, force=True))
    click.echo(f"\r\nimacpro: {name}: {outcome}", err=True)


@cli.command()
@click.argument("name")
@click.option("--force", is_flag=True, help="Hold the power button: power off at once.")
@click.option("--timeout", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="How long the guest gets to shut down.")
def stop(name: str, force: bool, timeout: float) -> None:
    """Press a running machine's power button: the guest shuts down cleanly."""
    if not _stop(name, force, timeout):
        click.echo(f"imacpro: {name}: still running after {timeout:g} s "
                   f"('imacpro stop --force {name}' cuts the power)", err=True)
        sys.exit(EXIT_REFUSED)


@cli.command()
@click.argument("name")
def suspend(name: str) -> None:
    """Save a running machine's whole state into its bundle (sealed by its T2) and stop it;
    'imacpro boot NAME' resumes it where it was."""
    import time
    machine_bundle = bundle.open_bundle(name)
    with _client(name) as client:
        reply = client.request("suspend")
    while machine_bundle.held():
        time.sleep(0.05)
    click.echo(f"{name}: suspended: {reply['ram_bytes'] / 2**30:.2f} GiB of RAM in "
               f"{reply['size'] / 1e6:.1f} MB, {reply['seconds']:.1f} s ({reply['path']})")


@cli.command()
@click.argument("name")
@click.option("--mode", type=click.Choice(["compat", "native"]),
              help="compat: 3840 × 2160 at 8 bits per channel, what Apple's firmware gives "
                   "any OS but macOS (the default); native: the panel's 5120 × 2880 at 10 bits.")
def display(name: str, mode: str | None) -> None:
    """Show or set the mode the firmware hands the OS for the screen (from the next boot)."""
    from imacpro.devices.display.framebuffer import MODES
    machine_bundle = bundle.open_bundle(name)
    if mode is not None:
        settings.set_display_mode(machine_bundle, mode)
    current = MODES[settings.display_mode(machine_bundle)]
    click.echo(f"{name}: display mode {current.name}: {current.width} × {current.height}, "
               f"{current.drm_format}" + (" (from the next boot)" if mode else ""))


@cli.command()
@click.argument("name")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="The PNG file to write.")
@click.option("--native-size", is_flag=True,
              help="The framebuffer's own pixels, not the panel's 5120 × 2880.")
def screenshot(name: str, output: str, native_size: bool) -> None:
    """Save what the machine's screen shows as a PNG (16 bits per channel, Display P3).
    A machine that is off or suspended shows black."""
    import tempfile

    from imacpro.control.client import NotRunning
    from imacpro.devices.display import panel
    from imacpro.devices.display.framebuffer import MODES
    from imacpro.screenshot import write_png
    machine_bundle = bundle.open_bundle(name)
    pixels = None
    try:
        with tempfile.TemporaryDirectory(prefix="imacpro-screen-") as tmp:
            raw_path = Path(tmp) / "framebuffer"
            with _client(name) as client:
                reply = client.request("screenshot", path=str(raw_path))
            mode = MODES.get(reply.get("mode"))
            if mode is not None:
                # Scaling and encoding take a second or more of CPU: they yield to the
                # machine's vCPUs, which on a host with few cores share a core with them.
                os.nice(10)
                raw = raw_path.read_bytes()
                if len(raw) != mode.size:
                    raise UserError(f"machine {name!r} sent a partial screen")
                pixels = panel.framebuffer_pixels(raw, mode) if native_size \
                    else panel.panel_pixels(raw, mode)
    except NotRunning:
        pass
    if pixels is None:                        # off, suspended, or no picture yet: black
        mode = MODES[settings.display_mode(machine_bundle)]
        pixels = panel.black(mode.width, mode.height) if native_size else panel.black()
    write_png(Path(output), pixels)
    height, width, _ = pixels.shape
    click.echo(f"{name}: {width} × {height} screenshot in {output}")


def _stop(name: str, force: bool, timeout: float = 30.0) -> bool:
    """Stop the machine and wait until its process has ended; False if it had not by then."""
    import time
    machine_bundle = bundle.open_bundle(name)
    with _client(name) as client:
        client.request("stop", force=force)
    deadline = time.monotonic() + timeout
    while machine_bundle.held():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@cli.group(name="guest")
def guest_group() -> None:
    """The default guest: Debian's kernel and busybox, in the cache."""


def _render_guest(report: dict) -> str:
    if not report["built"]:
        return (f"The default guest is not built (in {report['directory']}): "
                "run 'imacpro guest fetch'")
    mb = {name: f"{size / 1e6:.1f} MB" for name, size in report["sizes"].items()}
    packages = ", ".join(f"{name} {version}" for name, version in report["packages"].items())
    if report["signer"] is None:
        signer = "nobody yet (this installation signs it at its first boot)"
    else:
        signer = report["signer"][:16] + "…" + ("" if report["signed_by_this_installation"]
                                                 else " (stale: signed again at the next boot)")
    return (f"Default guest in {report['directory']}\n"
            f"  Kernel:        {report['kernel']} ({report['kernel_release']}, {mb['vmlinuz']})\n"
            f"  Initramfs:     {report['initrd']} ({mb['initrd.img']}; modules "
            f"{', '.join(report['modules'])})\n"
            f"  Command line:  {report['cmdline']}\n"
            f"  Manifest:      {report['manifest']} (version {report['version']}, "
            f"signed by {signer})\n"
            f"  Packages:      {packages}")


@guest_group.command(name="fetch")
@click.option("--force", is_flag=True, help="Build again even if the cached guest is intact.")
def guest_fetch(force: bool) -> None:
    """Download Debian's kernel and busybox and build the default guest."""
    from imacpro import guest as guests
    guests.build(force=force, progress=lambda line: click.echo(line, err=True))
    click.echo(_render_guest(guests.report()))


@guest_group.command(name="info")
@json_option
def guest_info(as_json: bool) -> None:
    """Show the cached default guest."""
    from imacpro import guest as guests
    report = guests.report()
    _emit(as_json, report, _render_guest(report))


def main(argv: list[str] | None = None) -> None:
    try:
        status = cli.main(args=argv, prog_name="imacpro", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help())
        status = 0
    except (click.ClickException, UserError) as exc:
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        click.echo(f"imacpro: error: {' '.join(message.split())}", err=True)
        status = EXIT_USAGE
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        click.echo(f"imacpro: error: {exc.strerror or exc}{where}", err=True)
        status = EXIT_USAGE
    except click.Abort:
        click.echo("imacpro: aborted", err=True)
        status = 1
    except KeyboardInterrupt:
        status = 130
    sys.exit(status if isinstance(status, int) else 0)
