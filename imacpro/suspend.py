"""Suspend and resume: a running machine's whole state in one file of its bundle, sealed by
its T2.

`suspended.state` (format FORMAT):

    "IMACPRO-STATE\\n"                            magic
    header line, JSON: {"format", "ecid", "salt", "engine", "saved_at"}
    records: u32 length, u8 kind, then the AES-256-GCM ciphertext and tag of the payload
        STATE  the machine's state as plain data (plaindata.py): clock, CPUs (engine bytes,
               MSRs, run state), every device (devices/contract.py), the running machine's
               console facts, the suspend token
        RAM    u64 offset + zstd frame of up to CHUNK bytes of the machine's memory (chunks
               that are all zero are not written: memory starts zero). The offsets run over
               `Memories`: guest RAM from 0, then the GPU's VRAM aperture (what the screen
               shows) from the next CHUNK boundary
        END    nothing: the file is whole

The key is the T2's: HKDF of the SEP's "suspend" key with the file's random salt, so only
this machine's T2 (not erased since) reads it. Each record's nonce is its index, and its
associated data is the header line, the index and the kind, so records cannot be edited,
dropped, reordered or moved between files without the tag failing; a missing END is a
truncated file. The token ties the file to this suspend: the T2's NVRAM holds it from the
moment the file is complete until the resume consumes it, so a state file kept from an
earlier suspend (the machine has run since) is refused.

Writing: the file is built under a temporary name and fsynced; the token goes into NVRAM;
the file is renamed into place. A process killed at any point leaves the old state (none,
or the previous one) or the new one. Reading checks everything (format, engine build, ECID,
every tag, token, configuration) before the machine is built.

Time: the guest's clock (TSC, timers) goes on from where it stopped, as under QEMU's loadvm
(a jump would overflow Linux's clocksource arithmetic past ~10 minutes and look like a
lockup); the RTC, battery-backed, has counted the time away, so the guest's wall clock is
set from it after the resume (boot.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from imacpro import plaindata
from imacpro.devices.contract import StateError
from imacpro.errors import UserError
from imacpro.files import fsync_dir

FORMAT = 1
MAGIC = b"IMACPRO-STATE\n"
STATE_FILE = "suspended.state"
CHUNK = 4 << 20                  # RAM per record
MAX_HEADER = 4096
MAX_RECORD = CHUNK + (1 << 16)   # a compressed chunk never grows past this
MAX_STATE = 256 << 20            # the state record (36 CPUs and every device: ~1 MB)
KIND_STATE, KIND_RAM, KIND_END = 0, 1, 0xFF
TAG = 16                         # AES-GCM's tag
ZSTD_LEVEL = 1                   # fast: a 16 GiB guest is written at disk speed
WORKERS = max(2, os.cpu_count() or 2)
ZERO = bytes(CHUNK)


class StateRefused(UserError):
    """A state file that must not be resumed: the reason is the message."""


def engine_build() -> str:
    """What the saved CPU state's layout depends on: the engine's version and our patch."""
    patch = Path(__file__).resolve().parent.parent / "third_party" / "unicorn" / "imacpro.patch"
    try:
        digest = hashlib.sha256(patch.read_bytes()).hexdigest()[:16]
    except OSError:                  # an installed package without the patch: the library
        from imacpro.cpu.engine import uclib
        digest = hashlib.sha256(Path(uclib._name).read_bytes()).hexdigest()[:16]
    return f"unicorn-2.1.4+{digest}"


def state_path(bundle_path: Path) -> Path:
    return bundle_path / STATE_FILE


def _key(chip, salt: bytes) -> AESGCM:
    root = chip.sep.derive_key("suspend")
    return AESGCM(HKDF(hashes.SHA256(), 32, salt=salt, info=b"imacpro suspended state")
                  .derive(root))


def _aad(header: bytes, index: int, kind: int) -> bytes:
    return header + struct.pack("<QB", index, kind)


def _nonce(index: int) -> bytes:
    return struct.pack("<IQ", 0, index)


@dataclass
class Written:
    path: Path
    size: int
    ram_bytes: int          # guest RAM bytes saved (before compression)
    seconds: float


class Memories:
    """The machine's memories (memory/ram.HostMemory: RAM, then devices' such as the VRAM
    aperture) as one run of offsets, each from the CHUNK boundary after the one before."""

    def __init__(self, *parts):
        self.parts = []
        base = 0
        for part in parts:
            self.parts.append((base, part))
            base = -(-(base + part.size) // CHUNK) * CHUNK
        self.size = base

    def resident(self):
        for base, part in self.parts:
            for offset, length in part.resident():
                yield base + offset, length

    def window(self, offset: int, length: int) -> memoryview | None:
        """[offset, offset + length) clipped to the memory holding `offset`, or None."""
        for base, part in self.parts:
            if base <= offset < base + part.size:
                return part.view[offset - base:min(offset - base + length, part.size)]
        return None


def write(bundle_path: Path, chip, machine_state: dict, memories: Memories) -> Written:
    """Seal `machine_state` (plain data) and the memory the guest touched into the bundle."""
    started = time.monotonic()
    token = secrets.token_hex(16)
    salt = secrets.token_bytes(16)
    header = json.dumps({"format": FORMAT, "ecid": f"{chip.ecid:#018x}", "salt": salt.hex(),
                         "engine": engine_build(),
                         "saved_at": time.time_ns()}, sort_keys=True).encode()
    aead = _key(chip, salt)
    final = state_path(bundle_path)
    temporary = final.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    index = 0
    ram_bytes = 0

    def record(out, kind: int, payload: bytes) -> None:
        nonlocal index
        sealed = aead.encrypt(_nonce(index), payload, _aad(header, index, kind))
        out.write(struct.pack("<IB", len(sealed), kind))
        out.write(sealed)
        index += 1

    try:
        # Owner-only from its creation: the guest's memory is user data.
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                       "wb") as out:
            out.write(MAGIC + header + b"\n")
            record(out, KIND_STATE, plaindata.encode({**machine_state, "token": token}))
            with ThreadPoolExecutor(WORKERS) as pool:
                for offset, length, sealed in pool.map(_compress, _chunks(memories)):
                    if sealed is not None:
                        ram_bytes += length
                        record(out, KIND_RAM, struct.pack("<Q", offset) + sealed)
            record(out, KIND_END, b"")
            out.flush()
            os.fsync(out.fileno())
        size = temporary.stat().st_size
        settings = chip.settings()
        settings.suspend_token = token
        chip.nvram.save(settings)    # from here, this file is the machine's state …
        os.replace(temporary, final)  # … and here it has its name
        fsync_dir(bundle_path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return Written(final, size, ram_bytes, time.monotonic() - started)


def _chunks(memories: Memories):
    """(offset, view) of every CHUNK-aligned piece of memory holding touched pages."""
    seen = set()
    for offset, length in memories.resident():
        for start in range(offset - offset % CHUNK, offset + length, CHUNK):
            if start not in seen:
                seen.add(start)
                yield start, memories.window(start, CHUNK)


def _decompress_into(payload: bytes, target: memoryview) -> str:
    """One RAM record's zstd frame into its place; what is wrong with it, or ""."""
    try:
        with zstandard.ZstdDecompressor().stream_reader(memoryview(payload)[8:]) as frame:
            filled = 0
            while filled < len(target):
                got = frame.readinto(target[filled:])
                if not got:
                    break
                filled += got
            extra = frame.read(1)
    except zstandard.ZstdError as exc:
        return f"a RAM record does not decompress ({exc})"
    if filled != len(target) or extra:
        return "a RAM record has the wrong length"
    return ""


def _compress(item):
    offset, view = item
    if view == ZERO[:len(view)]:
        return offset, len(view), None
    return offset, len(view), zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(view)


class Suspended:
    """A state file checked up to its first record; `restore()` reads the RAM into a
    machine, checking the rest."""

    def __init__(self, bundle_path: Path, chip):
        self.path = state_path(bundle_path)
        self.chip = chip
        try:
            self._file = open(self.path, "rb")
        except OSError as exc:
            raise UserError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            self._open()
        except BaseException:
            self._file.close()
            raise

    def _refuse(self, reason: str) -> StateRefused:
        return StateRefused(f"the suspended state {self.path} is refused: {reason} "
                            "('imacpro boot --discard-state' starts the machine afresh)")

    def _open(self) -> None:
        f = self._file
        if f.read(len(MAGIC)) != MAGIC:
            raise self._refuse("it is not a suspended state")
        line = f.readline(MAX_HEADER)
        try:
            header = json.loads(line)
            version, ecid = header["format"], header["ecid"]
            salt, engine = bytes.fromhex(header["salt"]), header["engine"]
        except (ValueError, KeyError, TypeError):
            raise self._refuse("its header is damaged") from None
        if version != FORMAT:
            raise self._refuse(f"it is of format {version!r}, and this imacpro reads "
                               f"format {FORMAT}")
        if ecid != f"{self.chip.ecid:#018x}":
            raise self._refuse(f"it was written by the T2 of another machine (ECID {ecid})")
        if engine != engine_build():
            raise self._refuse(f"it was written by another build of the CPU engine ({engine})")
        self.header = line.rstrip(b"\n")
        self.saved_at_ns = int(header.get("saved_at", 0))
        self._aead = _key(self.chip, salt)
        self._index = 0
        kind, payload = self._record(MAX_STATE)
        if kind != KIND_STATE:
            raise self._refuse("it does not begin with the machine's state")
        try:
            self.state = plaindata.decode(payload)
        except ValueError as exc:
            raise self._refuse(f"its machine state is damaged ({exc})") from None
        if not isinstance(self.state, dict) or \
                self.state.get("token") != self.chip.settings().suspend_token:
            raise self._refuse("the machine has run since it was written (an older state)")

    def _record(self, limit: int) -> tuple[int, bytes]:
        raw = self._file.read(5)
        if len(raw) < 5:
            raise self._refuse("it is truncated")
        length, kind = struct.unpack("<IB", raw)
        if not TAG <= length <= limit + TAG:
            raise self._refuse("it is damaged (a record of impossible length)")
        sealed = self._file.read(length)
        if len(sealed) < length:
            raise self._refuse("it is truncated")
        try:
            plain = self._aead.decrypt(_nonce(self._index), sealed,
                                       _aad(self.header, self._index, kind))
        except InvalidTag:
            raise self._refuse("it was modified, or sealed by another T2 (or this one before "
                               "an erase)") from None
        self._index += 1
        return kind, plain

    def restore_ram(self, memories: Memories) -> None:
        """Every RAM record into `memories`, through END. Records are read and authenticated here
        and decompressed by WORKERS threads straight into guest RAM: first touches of guest
        pages (the host's page faults) are most of a resume's time, and zstd releases the
        GIL while it faults them in."""
        in_flight: list = []
        with ThreadPoolExecutor(WORKERS) as pool:
            while True:
                kind, payload = self._record(MAX_RECORD)
                if kind == KIND_END:
                    if self._file.read(1):
                        raise self._refuse("it has data after its end")
                    break
                if kind != KIND_RAM or len(payload) < 8:
                    raise self._refuse("it holds a record out of place")
                offset, = struct.unpack_from("<Q", payload)
                target = memories.window(offset, CHUNK) if offset % CHUNK == 0 else None
                if target is None:
                    raise self._refuse("a RAM record lies outside the machine's memory")
                in_flight.append(pool.submit(_decompress_into, payload, target))
                if len(in_flight) > 2 * WORKERS:          # bounded: records are 4 MiB
                    self._check(in_flight.pop(0))
            for done in in_flight:
                self._check(done)

    def _check(self, future) -> None:
        problem = future.result()
        if problem:
            raise self._refuse(problem)

    def consume(self) -> None:
        """The resume succeeded: the T2 forgets the token, the file goes."""
        self.close()
        settings = self.chip.settings()
        settings.suspend_token = ""
        self.chip.nvram.save(settings)
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        self._file.close()


def find(bundle_path: Path, chip, discard_state: bool = False) -> Suspended | None:
    """The machine's suspended state, checked (StateRefused if it must not resume), or None
    if it is not suspended. Tidies what a killed suspend left: its temporary file, and a
    token the T2 took for a file that never got its name."""
    clean_leftovers(bundle_path)
    if discard_state:
        discard(bundle_path, chip)
        return None
    if state_path(bundle_path).exists():
        return Suspended(bundle_path, chip)
    if chip.settings().suspend_token:
        discard(bundle_path, chip)
    return None


def discard(bundle_path: Path, chip) -> bool:
    """Forget a suspended state (boot --discard-state); True if there was one."""
    path = state_path(bundle_path)
    settings = chip.settings()
    had = path.exists() or bool(settings.suspend_token)
    if settings.suspend_token:
        settings.suspend_token = ""
        chip.nvram.save(settings)
    path.unlink(missing_ok=True)
    return had


def clean_leftovers(bundle_path: Path) -> None:
    """Temporary files of a suspend that was killed before it finished."""
    for leftover in bundle_path.glob(f".{STATE_FILE}.*.tmp"):
        leftover.unlink(missing_ok=True)


def check_state(state) -> None:
    """The shape the machine-level keys must have before anything is built from them."""
    if not isinstance(state, dict):
        raise StateError("the machine state is not a mapping")
    for key, kind in (("now_ns", int), ("cpus", list), ("devices", dict), ("config", dict),
                      ("running", dict)):
        if not isinstance(state.get(key), kind):
            raise StateError(f"the machine state has no {key!r}")
