"""Files that must never be half-written: atomic replacement, TOML reading with clear errors."""

from __future__ import annotations

import contextlib
import os
import tempfile
import tomllib
from pathlib import Path

import tomli_w

from imacpro.errors import UserError


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
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
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
