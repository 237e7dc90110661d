"""A machine on disk: one directory per machine under the imacpro home.

    $IMACPRO_HOME                    (default: $XDG_DATA_HOME/imacpro, ~/.local/share/imacpro)
      keys/                          the installation's platform signing key (t2/signing.py)
      machines/NAME/
        config.toml                  the validated Configuration
        identity.toml                serial number, hardware UUID, T2 ECID, MAC addresses
        t2/                          the T2's state and the encrypted SSD (t2/__init__.py)
        .in-use                      locked (flock) while a process boots, installs, erases
                                     or deletes the machine

Every file is written atomically (temporary file, fsync, rename, fsync of the directory), and a new
bundle appears whole or not at all (built in a hidden directory, then renamed into place). A file
that cannot be read or does not validate gives a UserError naming it, never a traceback.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from imacpro.catalog import Configuration
from imacpro.errors import UserError
from imacpro.files import atomic_write, fsync_dir, read_toml, write_toml  # noqa: F401
from imacpro.identity import Identity, new_identity
from imacpro.t2.chip import T2
from imacpro.t2.signing import SigningServer

CONFIG_FILE = "config.toml"
T2_DIR = "t2"
KEYS_DIR = "keys"
IDENTITY_FILE = "identity.toml"
POWER_LOCK = ".in-use"             # flock: one process drives a machine at a time
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def home() -> Path:
    if os.environ.get("IMACPRO_HOME"):
        return Path(os.environ["IMACPRO_HOME"])
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(data_home) / "imacpro"


def signing_server() -> SigningServer:
    """The installation's signing server (its key is made on first use)."""
    return SigningServer.load_or_create(home() / KEYS_DIR)


def machines_dir() -> Path:
    return home() / "machines"


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(f"invalid machine name {name!r}: use up to 64 letters, digits, '.', '_' "
                        "or '-', starting with a letter or digit")
    return name


@dataclass
class Bundle:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def config(self) -> Configuration:
        path = self.path / CONFIG_FILE
        try:
            return Configuration.from_dict(read_toml(path))
        except UserError as exc:
            raise UserError(_damaged(path, exc)) from None

    def t2(self) -> T2:
        return T2.open(self.path / T2_DIR, self.identity().t2_ecid)

    @contextlib.contextmanager
    def in_use(self, doing: str):
        """Hold the machine for `doing` (powered on, installing, erasing, deleting): one
        process at a time, as a real machine cannot boot while its disk is being erased. The
        lock (flock on the bundle's POWER_LOCK file) goes with the process, so a killed
        emulator leaves none behind."""
        try:
            fd = os.open(self.path / POWER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot open {self.path / POWER_LOCK}: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"machine {self.name!r} is in use by another imacpro process "
                                f"(powered on, or being installed or erased): not {doing}") \
                    from None
            yield self
        finally:
            os.close(fd)

    def held(self) -> bool:
        """Whether a process holds the machine now (see in_use)."""
        try:
            fd = os.open(self.path / POWER_LOCK, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def identity(self) -> Identity:
        path = self.path / IDENTITY_FILE
        try:
            return Identity.from_dict(read_toml(path))
        except UserError as exc:
            raise UserError(_damaged(path, exc)) from None


def _damaged(path: Path, exc: UserError) -> str:
    message = str(exc)
    return message if message.startswith("damaged") else f"damaged machine bundle: {path}: {message}"


def open_bundle(name: str) -> Bundle:
    path = machines_dir() / check_name(name)
    if not path.is_dir():
        raise UserError(f"no machine named {name!r} (see 'imacpro list')")
    return Bundle(path)


def list_bundles() -> list[Bundle]:
    root = machines_dir()
    if not root.is_dir():
        return []
    return [Bundle(p) for p in sorted(root.iterdir())
            if p.is_dir() and NAME_PATTERN.fullmatch(p.name)]


def _taken_identity_keys() -> set[str]:
    taken: set[str] = set()
    for bundle in list_bundles():
        try:
            taken |= bundle.identity().unique_keys()
        except UserError:
            continue  # a damaged bundle holds no identity we could collide with
    return taken


def create(name: str, config: Configuration) -> Bundle:
    """Create a new machine bundle with a fresh identity; fails if the name is taken."""
    check_name(name)
    root = machines_dir()
    final = root / name
    if final.exists():
        raise UserError(f"a machine named {name!r} already exists")
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".new", dir=root))
    except OSError as exc:
        raise UserError(f"cannot create {root}: {exc.strerror}") from None
    try:
        write_toml(staging / CONFIG_FILE, config.to_dict())
        identity = new_identity(config, _taken_identity_keys())
        write_toml(staging / IDENTITY_FILE, identity.to_dict())
        T2.create(staging / T2_DIR, identity.t2_ecid, config.storage_option.capacity_bytes,
                  signing_server())
        try:
            os.rename(staging, final)  # atomic; refuses a non-empty existing target
        except OSError:
            raise UserError(f"a machine named {name!r} already exists") from None
        fsync_dir(root)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return Bundle(final)


def delete(name: str) -> None:
    bundle = open_bundle(name)
    # Rename first, so a deletion cut short never leaves something that looks like a machine.
    doomed = bundle.path.with_name(f".{name}.{secrets.token_hex(4)}.deleted")
    os.rename(bundle.path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
