"""What the integration tests share: the tests' guest cache, and the CLI as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imacpro import guest


def _cache_dir() -> Path:
    if os.environ.get("IMACPRO_TEST_CACHE"):
        return Path(os.environ["IMACPRO_TEST_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imacpro-tests"


@pytest.fixture
def tests_cache(monkeypatch):
    """The tests' own cache (Debian's packages and systems built from them), as IMACPRO_CACHE."""
    monkeypatch.setenv("IMACPRO_CACHE", str(_cache_dir()))
    return _cache_dir()


@pytest.fixture
def signed_guest(monkeypatch):
    monkeypatch.setenv("IMACPRO_CACHE", str(_cache_dir()))
    return guest.build(progress=lambda line: None)


def create(name, *options):
    """A new machine with the default guest installed on its SSD."""
    assert imacpro("create", name, *options).returncode == 0
    installed = imacpro("install", name, "--yes")
    assert installed.returncode == 0, installed.stderr


def imacpro(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "imacpro", *args], capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy())
