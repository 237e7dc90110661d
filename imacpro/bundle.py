"""A machine on disk: one directory per machine under the imacpro home.

    $IMACPRO_HOME                    (default: $XDG_DATA_HOME/imacpro, ~/.local/share/imacpro)
      machines/NAME/
        config.toml                  the validated Configuration
        identity.toml                serial number, hardware UUID, T2 ECID, MAC addresses

Every file is written atomically (temporary file, fsync, rename, fsync of the directory), and a new
bundle appears whole or not at all (built in a hidden directory, then renamed into place). A file
that cannot be read or does not validate gives a UserError naming it, never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from imacpro.catalog import Configuration
from imacpro.errors import UserError
from imacpro.identity import Identity, new_identity

CONFIG_FILE = "config.toml"
IDENTITY_FILE = "identity.toml"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def home() -> Path:
    if os.environ.get("IMACPRO_HOME"):
        return Path(os.environ["IMACPRO_HOME"])
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(data_home) / "imacpro"


def machines_dir() -> Path:
    return home() / "machines"


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(f"invalid machine name {name!r}: use up to 64 letters, digits, '.', '_' "
                        "or '-', starting with a letter or digit")
    return name


def atomic_write(path: Path, content: bytes) -> None:
    """Replace `path` with `content` so that a crash leaves the old file or the new, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_toml(path: Path, content: dict) -> None:
    atomic_write(path, tomli_w.dumps(content).encode())


def read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"damaged machine bundle: {path} is missing") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"damaged machine bundle: cannot read {path}: {exc}") from None


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
        write_toml(staging / IDENTITY_FILE, new_identity(config, _taken_identity_keys()).to_dict())
        try:
            os.rename(staging, final)  # atomic; refuses a non-empty existing target
        except OSError:
            raise UserError(f"a machine named {name!r} already exists") from None
        _fsync_dir(root)
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
