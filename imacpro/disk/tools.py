"""The host's file-system tools, found and run with errors a user can act on.

The installer makes its file systems with Debian's own tools on temporary image files rather
than writing them in Python: mkfs.fat and fsck.fat (dosfstools), mmd and mcopy (mtools), mke2fs
and e2fsck (e2fsprogs). tools/bootstrap-venv installs the packages.

They live in /usr/sbin and /sbin, which a normal user's PATH on Debian leaves out, so those are
searched too. mtools reads no user configuration here (MTOOLSRC=/dev/null): a user's
~/.mtoolsrc must not change what the installer writes.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from imacpro.disk import DiskError
from imacpro.errors import UserError

PACKAGES = {"mkfs.fat": "dosfstools", "fsck.fat": "dosfstools", "mmd": "mtools",
            "mcopy": "mtools", "mdir": "mtools", "mtype": "mtools", "mke2fs": "e2fsprogs",
            "e2fsck": "e2fsprogs", "e2label": "e2fsprogs", "dumpe2fs": "e2fsprogs",
            "fdisk": "fdisk"}
SBIN = ("/usr/sbin", "/sbin")


class ToolMissing(UserError):
    """A host tool the installer needs is not installed."""


def find(tool: str) -> str:
    """The path of `tool`, or ToolMissing naming its Debian package."""
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN])
    path = shutil.which(tool, path=search)
    if path is None:
        package = PACKAGES.get(tool, tool)
        raise ToolMissing(f"{tool} is not installed: imacpro needs it to make disks "
                          f"(Debian package {package}: apt-get install {package})")
    return path


def run(tool: str, *args: str) -> str:
    """Run `tool` with `args`; its output, or DiskError with its last line of complaint."""
    env = {**os.environ, "LC_ALL": "C", "MTOOLSRC": os.devnull, "MTOOLS_SKIP_CHECK": "1"}
    result = subprocess.run([find(tool), *args], capture_output=True, text=True, env=env,
                            check=False)
    if result.returncode:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {result.returncode}"
        raise DiskError(f"{tool} failed: {last}")
    return result.stdout
