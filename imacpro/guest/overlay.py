"""Real programs in the default guest: an initramfs overlay with them and their libraries.

For tests and benchmarks that run what a distribution ships (Debian's `stress-ng`, `openssl`,
`xz`, `zstd`) or a program built on the host for the purpose, inside the default busybox guest.
The host is Debian bookworm, as the guest's packages are, so a program installed on the host
runs in the guest with the same shared libraries: `with_programs` writes a second newc archive
holding each program and every library `ldd` names (at the paths the dynamic loader will look
for them), appends it to the guest's initramfs (the kernel unpacks concatenated archives in
order), and signs the result with this installation's platform key as a boot image of its own:

    image = overlay.with_programs(guest, ["/usr/bin/stress-ng"], directory)
    imacpro boot NAME --kernel image.kernel --initrd image.initrd --append image.cmdline
                      --manifest image.manifest --exec "stress-ng ..."

Programs are stored under their host paths (usr/bin/stress-ng); `files` adds other entries
(a test program built with gcc, as bin/NAME).
"""

from __future__ import annotations

import gzip
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from imacpro.errors import UserError
from imacpro.guest.cpio import CpioWriter

_LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)\s*$")


@dataclass(frozen=True)
class BootImage:
    kernel: Path
    initrd: Path
    cmdline: str
    manifest: Path


def libraries(program: Path) -> list[Path]:
    """The shared libraries `program` loads, the dynamic loader included (none if static)."""
    result = subprocess.run(["ldd", str(program)], capture_output=True, text=True)
    if result.returncode and "not a dynamic executable" in result.stdout + result.stderr:
        return []
    if result.returncode:
        raise UserError(f"ldd {program}: {result.stderr.strip() or result.stdout.strip()}")
    found = []
    for line in result.stdout.splitlines():
        if "not found" in line:
            raise UserError(f"{program}: a library is missing on the host: {line.strip()}")
        match = _LDD_LINE.match(line)
        if match:
            found.append(Path(match.group(1)))
    return found


def archive(programs: list[Path], files: dict[str, bytes] | None = None) -> bytes:
    """The gzip-compressed newc overlay: programs and their libraries at their host paths
    (a library reached through a symbolic link is stored under the link's name, with the
    target's content), plus `files` (path in the guest → bytes, executable)."""
    cpio = CpioWriter()
    entries: dict[str, bytes] = {}
    for program in programs:
        for path in [program, *libraries(program)]:
            entries.setdefault(str(path).lstrip("/"), path.read_bytes())
    for name, data in (files or {}).items():
        entries[name.lstrip("/")] = data
    directories = sorted({str(parent) for name in entries for parent in Path(name).parents
                          if str(parent) != "."})
    for directory in directories:
        cpio.directory(directory, 0o755)
    for name, data in sorted(entries.items()):
        cpio.file(name, data, 0o755)
    return gzip.compress(cpio.finish(), compresslevel=6, mtime=0)


def with_programs(guest, programs: list[Path], directory: Path,
                  files: dict[str, bytes] | None = None) -> BootImage:
    """The default guest with the overlay appended, signed, in `directory`."""
    from imacpro.bundle import signing_server

    directory.mkdir(parents=True, exist_ok=True)
    initrd = directory / "initrd.img"
    initrd.write_bytes(guest.initrd.read_bytes() + archive(programs, files))
    manifest = directory / "boot.manifest"
    signing_server().sign(guest.kernel.read_bytes(), initrd.read_bytes(), guest.cmdline,
                          guest.version).save(manifest)
    return BootImage(guest.kernel, initrd, guest.cmdline, manifest)
