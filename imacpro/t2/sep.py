"""The T2's Secure Enclave: the chip's keys and the administrator (firmware) password.

Modelled on Apple Platform Security ("Secure Enclave", "Passcodes and passwords",
"Escalating time delays for passcode attempts", "Effaceable Storage"):
- each chip has a UID key made when the chip is made; it never leaves the SEP: every key the
  machine uses is derived from it (HKDF-SHA256 over UID || effaceable key, info =
  b"imacpro-t2:" + purpose + ECID as 8 bytes big-endian) or wrapped by such a key (AES-KW);
- the effaceable key is mixed into every derivation, so replacing it ("Erase All Content and
  Settings") makes every key derived or wrapped before unrecoverable at once;
- the password verifier is scrypt (memory-hard) entangled with the UID, so a copy of
  passcode.toml does not allow an offline guess on another computer;
- failed attempts are counted durably *before* the password is compared, and escalating delays
  (`delay_after`) are enforced between attempts.

Files (in the bundle's t2/ directory, each written with files.atomic_write, so 0600, fsynced):
    uid             32 random bytes, raw
    effaceable      32 random bytes, raw; replaced by erase()
    passcode.toml   failures = int, last_failure = float (the `now()` of the last failure);
                    when a password is set also salt = hex, n, r, p (scrypt parameters) and
                    verifier = hex(HMAC-SHA256(derive_key("passcode"), scrypt(password, salt)))
Limits of the model: the host user can read `uid` and can restore an old passcode.toml (the real
SEP keeps its counter in the Secure Storage Component, which refuses replays). What is modelled
is the order of operations, so a crash or a kill mid-check never resets the counter.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import constant_time, hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from imacpro.errors import UserError
from imacpro.files import atomic_write, read_toml, write_toml  # as bundle.py (no import cycle)

UID_FILE = "uid"
EFFACEABLE_FILE = "effaceable"
PASSCODE_FILE = "passcode.toml"
KEY_BYTES = 32
INFO_PREFIX = b"imacpro-t2:"
# scrypt for new passwords: 16 MiB, ~60 ms (RFC 7914's interactive-login parameters).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
# Seconds to wait after the Nth consecutive failure (Apple Platform Security, "Escalating time
# delays for passcode attempts": 1-4 none, 5: 1 min, 6: 5 min, 7-8: 15 min, 9 and more: 1 h).
DELAYS = {5: 60.0, 6: 300.0, 7: 900.0, 8: 900.0}
LONGEST_DELAY = 3600.0


class KeyUnwrapError(UserError):
    """The key was wrapped by another chip, or by this one before an erase."""


class RateLimited(UserError):
    """Too many wrong passwords: the SEP refuses attempts for `wait_s` more seconds."""

    def __init__(self, wait_s: float):
        seconds = math.ceil(wait_s)
        when = f"{math.ceil(seconds / 60)} min" if seconds > 90 else f"{seconds} s"
        super().__init__(f"too many wrong passwords: the next attempt is allowed in {when}")
        self.wait_s = wait_s


class WrongPassword(UserError):
    """The password did not match (the attempt has been counted)."""


class SecureEnclave:
    def __init__(self, directory: Path, ecid: int, uid: bytes, effaceable: bytes,
                 now: Callable[[], float]):
        self.directory = directory
        self.ecid = ecid
        self.__uid = uid                 # never returned: only mixed into HKDF below
        self.__effaceable = effaceable
        self._now = now

    def __repr__(self) -> str:
        return f"SecureEnclave(ecid=0x{self.ecid:016X})"

    @classmethod
    def create(cls, directory: Path, ecid: int, now: Callable[[], float] = time.time
               ) -> SecureEnclave:
        _check_ecid(ecid)
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / UID_FILE).exists():
            raise UserError(f"{directory / UID_FILE} exists: a chip's UID is made only once")
        uid, effaceable = os.urandom(KEY_BYTES), os.urandom(KEY_BYTES)
        atomic_write(directory / UID_FILE, uid)
        atomic_write(directory / EFFACEABLE_FILE, effaceable)
        write_toml(directory / PASSCODE_FILE, _no_password())
        return cls(directory, ecid, uid, effaceable, now)

    @classmethod
    def open(cls, directory: Path, ecid: int, now: Callable[[], float] = time.time
             ) -> SecureEnclave:
        _check_ecid(ecid)
        return cls(directory, ecid, _read_key(directory / UID_FILE),
                   _read_key(directory / EFFACEABLE_FILE), now)

    # --- keys -----------------------------------------------------------------------------

    def derive_key(self, purpose: str, length: int = 32) -> bytes:
        info = INFO_PREFIX + purpose.encode() + self.ecid.to_bytes(8, "big")
        return HKDF(hashes.SHA256(), length, salt=None, info=info).derive(
            self.__uid + self.__effaceable)

    def wrap(self, purpose: str, key: bytes) -> bytes:
        """AES key wrap (RFC 3394); `key` is 16 bytes or more, a multiple of 8."""
        return aes_key_wrap(self.derive_key("wrap:" + purpose), key)

    def unwrap(self, purpose: str, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self.derive_key("wrap:" + purpose), wrapped)
        except (InvalidUnwrap, ValueError):
            raise KeyUnwrapError(f"cannot unwrap the {purpose} key: it was wrapped by another "
                                 "T2, or by this one before it was erased") from None

    def mac(self, purpose: str, data: bytes) -> bytes:
        h = hmac.HMAC(self.derive_key("mac:" + purpose), hashes.SHA256())
        h.update(data)
        return h.finalize()

    def verify_mac(self, purpose: str, data: bytes, tag: bytes) -> bool:
        h = hmac.HMAC(self.derive_key("mac:" + purpose), hashes.SHA256())
        h.update(data)
        try:
            h.verify(tag)  # constant time
            return True
        except InvalidSignature:
            return False

    def erase(self) -> None:
        """Erase All Content and Settings: a new effaceable key, then no password."""
        effaceable = os.urandom(KEY_BYTES)
        atomic_write(self.directory / EFFACEABLE_FILE, effaceable)
        self.__effaceable = effaceable
        with self._locked():
            write_toml(self._passcode_path, _no_password())

    # --- administrator password -----------------------------------------------------------

    def has_password(self) -> bool:
        return "verifier" in self._load()

    def failed_attempts(self) -> int:
        return self._load()["failures"]

    def set_password(self, new: str | None, current: str | None = None) -> None:
        if new == "":
            raise UserError("the new password is empty")
        if self.has_password():
            if current is None:
                raise UserError("an administrator password is set: the current one is needed "
                                "to change or remove it")
            self.check_password(current)
        if new is None:
            state = _no_password()
        else:
            salt = os.urandom(SALT_BYTES)
            state = {**_no_password(), "salt": salt.hex(), "n": SCRYPT_N, "r": SCRYPT_R,
                     "p": SCRYPT_P}
            state["verifier"] = self._verifier(new, state).hex()
        with self._locked():
            write_toml(self._passcode_path, state)

    def check_password(self, password: str) -> None:
        with self._locked():
            state = self._load()
            if "verifier" not in state:
                raise UserError("no administrator password is set")
            wait = self._wait(state)
            if wait > 0:
                raise RateLimited(wait)
            # Count the attempt durably before comparing: a kill from here on keeps it.
            state.update(failures=state["failures"] + 1, last_failure=float(self._now()))
            write_toml(self._passcode_path, state)
        if not constant_time.bytes_eq(self._verifier(password, state),
                                      bytes.fromhex(state["verifier"])):
            raise WrongPassword("wrong administrator password")
        with self._locked():
            write_toml(self._passcode_path, {**self._load(), "failures": 0, "last_failure": 0.0})

    @staticmethod
    def delay_after(failures: int) -> float:
        if failures < 5:
            return 0.0
        return DELAYS.get(failures, LONGEST_DELAY)

    # --- inside ---------------------------------------------------------------------------

    @property
    def _passcode_path(self) -> Path:
        return self.directory / PASSCODE_FILE

    @contextlib.contextmanager
    def _locked(self):
        """Serialize read-count-write of the counter between processes (flock on t2/)."""
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _wait(self, state: dict) -> float:
        delay = self.delay_after(state["failures"])
        elapsed = max(0.0, self._now() - state["last_failure"])  # a clock set back: full delay
        return max(0.0, delay - elapsed)

    def _verifier(self, password: str, state: dict) -> bytes:
        try:
            kdf = Scrypt(salt=bytes.fromhex(state["salt"]), length=32, n=state["n"],
                         r=state["r"], p=state["p"])
            stretched = kdf.derive(unicodedata.normalize("NFC", password).encode())
        except (ValueError, MemoryError) as exc:
            raise UserError(f"damaged machine bundle: {self._passcode_path}: scrypt: {exc}") \
                from None
        h = hmac.HMAC(self.derive_key("passcode"), hashes.SHA256())
        h.update(stretched)
        return h.finalize()

    def _load(self) -> dict:
        path = self._passcode_path
        raw = read_toml(path)
        try:
            state = {"failures": int(raw["failures"]), "last_failure": float(raw["last_failure"])}
            if "verifier" in raw:
                state.update(salt=raw["salt"], n=int(raw["n"]), r=int(raw["r"]), p=int(raw["p"]),
                             verifier=raw["verifier"])
                if (len(bytes.fromhex(state["salt"])) < SALT_BYTES
                        or len(bytes.fromhex(state["verifier"])) != 32
                        or state["n"] < 2 or state["n"] & (state["n"] - 1)
                        or state["r"] < 1 or state["p"] < 1):
                    raise ValueError("bad verifier")
            if state["failures"] < 0:
                raise ValueError("negative failure count")
        except (KeyError, ValueError, TypeError) as exc:
            raise UserError(f"damaged machine bundle: {path}: a field is missing or invalid "
                            f"({exc})") from None
        return state


def _no_password() -> dict:
    return {"failures": 0, "last_failure": 0.0}


def _check_ecid(ecid: int) -> None:
    if not 0 <= ecid < 2**64:
        raise UserError(f"invalid T2 ECID {ecid!r}: a 64-bit number")


def _read_key(path: Path) -> bytes:
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"damaged machine bundle: {path} is missing") from None
    except OSError as exc:
        raise UserError(f"damaged machine bundle: cannot read {path}: {exc.strerror}") from None
    if len(key) != KEY_BYTES:
        raise UserError(f"damaged machine bundle: {path} holds {len(key)} bytes, not {KEY_BYTES}")
    return key
