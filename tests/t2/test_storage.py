"""The T2's encrypted SSD: AES-XTS sectors, zeros for unwritten, pairing, erase, crash safety."""

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from array import array
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from imacpro.errors import UserError
from imacpro.files import read_toml, write_toml
from imacpro.memory.layout import RAM_BELOW_4G_END
from imacpro.memory.ram import DmaError, GuestPages, Ram
from imacpro.t2.sep import KeyUnwrapError, SecureEnclave
from imacpro.t2.storage import DamagedImage, EncryptedStore, PairingError

ECID = 0x0012_3456_789A_BCDE
OTHER_ECID = 0x00AB_CDEF_0123_4567
SECTOR = EncryptedStore.SECTOR_SIZE
CAPACITY = 64 * 2**20
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def t2(tmp_path):
    return tmp_path / "t2"


@pytest.fixture
def sep(t2):
    return SecureEnclave.create(t2, ECID)


@pytest.fixture
def store(t2, sep):
    with EncryptedStore.create(t2, CAPACITY, sep) as store:
        yield store


def rand(n, seed=1):
    return random.Random(seed).randbytes(n)


def test_round_trip_at_various_lbas_and_after_reopening(t2, sep, store):
    last = store.sectors - 1
    writes = {0: rand(SECTOR, 1), 1: rand(3 * SECTOR, 2), 4095: rand(300 * SECTOR, 3),
              last - 1: rand(2 * SECTOR, 4)}
    for lba, data in writes.items():
        store.write(lba, data)
    for lba, data in writes.items():
        assert store.read(lba, len(data) // SECTOR) == data
    store.write(2, memoryview(bytearray(rand(SECTOR, 5))))        # any bytes-like object
    store.close()
    with EncryptedStore.open(t2, sep) as again:
        assert again.sectors == CAPACITY // SECTOR and again.capacity == CAPACITY
        assert again.read(0, 4) == writes[0] + writes[1][:SECTOR] + rand(SECTOR, 5) \
            + writes[1][2 * SECTOR:]
        assert again.read(last - 1, 2) == writes[last - 1]
        assert again.read(4095 + 150, 1) == writes[4095][150 * SECTOR:151 * SECTOR]


def test_unwritten_sectors_read_as_zeros(store):
    assert store.read(0, 256) == bytes(256 * SECTOR)
    store.write(10, rand(SECTOR))
    assert store.read(9, 3) == bytes(SECTOR) + rand(SECTOR) + bytes(SECTOR)
    store.write(20, bytes(2 * SECTOR))                  # written zeros are ciphertext, read zeros
    assert store.read(20, 2) == bytes(2 * SECTOR)
    assert store.read(0, 0) == b""


def test_disk_holds_aes_xts_ciphertext_with_the_lba_as_tweak(t2, sep, store):
    data = rand(2 * SECTOR)
    store.write(77, data)
    meta = read_toml(t2 / "ssd.meta")
    assert meta["format"] == 1 and meta["owner_ecid"] == f"0x{ECID:016X}"
    assert meta["capacity"] == CAPACITY and meta["sector_size"] == SECTOR
    key = sep.unwrap("ssd-media", bytes.fromhex(meta["media_key"]))
    assert len(key) == 64 and key.hex() not in (t2 / "ssd.meta").read_text()
    raw = (t2 / "ssd.img").read_bytes()[77 * SECTOR:79 * SECTOR]
    for i in range(2):
        ctx = Cipher(algorithms.AES(key), modes.XTS((77 + i).to_bytes(16, "little"))).encryptor()
        assert raw[i * SECTOR:(i + 1) * SECTOR] == \
            ctx.update(data[i * SECTOR:(i + 1) * SECTOR]) + ctx.finalize()


def test_plaintext_never_reaches_the_image(t2, store):
    marker = b"IMACPRO-PLAINTEXT-MARKER:"
    pattern = (marker * (SECTOR // len(marker) + 1))[:SECTOR]
    for lba in (0, 5, 5000):
        store.write(lba, pattern * 4)
    store.flush()
    raw = (t2 / "ssd.img").read_bytes()
    assert len(raw) == CAPACITY
    assert marker not in raw and marker[:8] not in raw
    assert raw[5 * SECTOR:9 * SECTOR] != bytes(4 * SECTOR)
    assert store.read(5000, 4) == pattern * 4


def test_trim_reads_zeros_and_frees_host_blocks(t2, store):
    image = t2 / "ssd.img"
    store.write(1000, rand(512 * SECTOR))
    store.flush()
    before = os.stat(image).st_blocks
    assert before * 512 >= 512 * SECTOR
    store.trim(1100, 256)
    store.flush()
    after = os.stat(image).st_blocks
    assert after * 512 <= before * 512 - 256 * SECTOR
    assert os.stat(image).st_size == CAPACITY
    assert store.read(1100, 256) == bytes(256 * SECTOR)
    assert store.read(1000, 100) == rand(512 * SECTOR)[:100 * SECTOR]
    assert store.read(1356, 156) == rand(512 * SECTOR)[356 * SECTOR:]
    store.trim(0, 0)                                    # nothing to do
    store.write(1100, rand(SECTOR, 9))                  # a trimmed sector can be written again
    assert store.read(1100, 1) == rand(SECTOR, 9)


def test_another_chip_cannot_open_the_ssd(tmp_path, t2, store):
    store.write(0, rand(SECTOR))
    store.close()
    other = SecureEnclave.create(tmp_path / "other", OTHER_ECID)
    with pytest.raises(PairingError) as error:
        EncryptedStore.open(t2, other)
    assert f"{ECID:016X}" in str(error.value) and f"{OTHER_ECID:016X}" in str(error.value)
    # Claiming the other chip's ECID in the metadata does not help: the MAC is this chip's.
    meta = read_toml(t2 / "ssd.meta")
    write_toml(t2 / "ssd.meta", {**meta, "owner_ecid": f"0x{OTHER_ECID:016X}"})
    with pytest.raises(DamagedImage, match="ssd.meta"):
        EncryptedStore.open(t2, other)
    # A chip with the same ECID but another UID (a cloned identity) cannot either.
    write_toml(t2 / "ssd.meta", meta)
    clone = SecureEnclave.create(tmp_path / "clone", ECID)
    with pytest.raises(UserError):
        EncryptedStore.open(t2, clone)
    with pytest.raises(KeyUnwrapError):
        clone.unwrap("ssd-media", bytes.fromhex(meta["media_key"]))


def test_erase_makes_the_old_data_unrecoverable(tmp_path, t2, sep, store):
    secret = rand(4 * SECTOR)
    store.write(100, secret)
    store.close()
    saved = tmp_path / "saved"
    saved.mkdir()
    for name in ("ssd.meta", "ssd.img"):
        shutil.copy(t2 / name, saved / name)
    old_key = bytes.fromhex(read_toml(t2 / "ssd.meta")["media_key"])
    sep.erase()
    with pytest.raises(DamagedImage, match="erased"):
        EncryptedStore.open(t2, sep)
    with pytest.raises(KeyUnwrapError):
        sep.unwrap("ssd-media", old_key)
    with EncryptedStore.create(t2, CAPACITY, sep) as fresh:
        assert fresh.read(100, 4) == bytes(4 * SECTOR)
        assert os.stat(t2 / "ssd.img").st_blocks == 0
    # Putting the old files back does not bring the data back.
    for name in ("ssd.meta", "ssd.img"):
        shutil.copy(saved / name, t2 / name)
    with pytest.raises(UserError):
        EncryptedStore.open(t2, sep)


def test_create_replaces_the_old_image(t2, sep, store):
    store.write(7, rand(SECTOR))
    store.flush()
    old_key = read_toml(t2 / "ssd.meta")["media_key"]
    with EncryptedStore.create(t2, 2 * CAPACITY, sep) as fresh:
        assert fresh.read(7, 1) == bytes(SECTOR) and fresh.capacity == 2 * CAPACITY
    assert read_toml(t2 / "ssd.meta")["media_key"] != old_key
    assert os.stat(t2 / "ssd.img").st_size == 2 * CAPACITY
    assert sorted(p.name for p in t2.iterdir() if p.name.startswith("ssd")) == \
        ["ssd.img", "ssd.meta"]
    assert not [p for p in t2.iterdir() if p.name.startswith(".")]     # no temporary files


KILLED_WRITER = """
import sys, time, random
from pathlib import Path
from imacpro.t2.sep import SecureEnclave
from imacpro.t2.storage import EncryptedStore
t2 = Path(sys.argv[1])
store = EncryptedStore.open(t2, SecureEnclave.open(t2, int(sys.argv[2])))
store.write(300, random.Random(3).randbytes(64 * 4096))
store.write(9000, random.Random(4).randbytes(4096))
store.flush()
print("flushed", flush=True)
while True:
    store.write(20000, random.Random(5).randbytes(256 * 4096))
"""


def test_flushed_data_survives_kill_9(t2, sep, store):
    store.close()
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(t2), str(ECID)],
                             stdout=subprocess.PIPE, cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout.readline() == b"flushed\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with EncryptedStore.open(t2, sep) as again:
        assert again.read(300, 64) == random.Random(3).randbytes(64 * 4096)
        assert again.read(9000, 1) == random.Random(4).randbytes(4096)
        assert again.read(299, 1) == bytes(SECTOR)


def test_truncated_or_missing_image_is_damaged(t2, sep, store):
    store.write(0, rand(SECTOR))
    store.close()
    os.truncate(t2 / "ssd.img", CAPACITY - SECTOR)
    with pytest.raises(DamagedImage, match="ssd.img"):
        EncryptedStore.open(t2, sep)
    os.truncate(t2 / "ssd.img", CAPACITY + 1)
    with pytest.raises(DamagedImage, match="ssd.img"):
        EncryptedStore.open(t2, sep)
    os.unlink(t2 / "ssd.img")
    with pytest.raises(DamagedImage, match="ssd.img"):
        EncryptedStore.open(t2, sep)


@pytest.mark.parametrize("damage", ["capacity", "media_key", "mac", "format", "missing",
                                    "garbage", "deleted"])
def test_damaged_metadata_is_reported_by_name(t2, sep, store, damage):
    store.close()
    path = t2 / "ssd.meta"
    meta = read_toml(path)
    if damage == "capacity":
        write_toml(path, {**meta, "capacity": 2 * CAPACITY})
        os.truncate(t2 / "ssd.img", 2 * CAPACITY)              # consistent, but not authentic
    elif damage == "media_key":
        key = bytearray.fromhex(meta["media_key"])
        key[0] ^= 1
        write_toml(path, {**meta, "media_key": key.hex()})
    elif damage == "mac":
        write_toml(path, {**meta, "mac": "00" * 32})
    elif damage == "format":
        write_toml(path, {**meta, "format": 2})
    elif damage == "missing":
        write_toml(path, {k: v for k, v in meta.items() if k != "capacity"})
    elif damage == "garbage":
        path.write_bytes(b"\x00\xff[[not toml")
    else:
        path.unlink()
    with pytest.raises(DamagedImage, match="ssd.meta"):
        EncryptedStore.open(t2, sep)


def test_out_of_range_requests_raise_value_error(store):
    n = store.sectors
    for lba, count in [(-1, 1), (n, 1), (n - 1, 2), (0, n + 1), (0, -1), (2**64, 1)]:
        with pytest.raises(ValueError):
            store.read(lba, count)
        with pytest.raises(ValueError):
            store.trim(lba, count)
    for lba, data in [(n, rand(SECTOR)), (n - 1, rand(2 * SECTOR)), (-1, rand(SECTOR)),
                      (0, rand(SECTOR + 1)), (0, rand(100))]:
        with pytest.raises(ValueError):
            store.write(lba, data)
    with pytest.raises(TypeError):
        store.read(1.5, 1)
    assert store.read(n - 1, 1) == bytes(SECTOR)
    store.close()
    with pytest.raises(ValueError, match="closed"):
        store.read(0, 1)
    with pytest.raises(ValueError):
        EncryptedStore.create(store.directory, SECTOR + 1, None)


@pytest.mark.parametrize("terabytes", [1, 2, 4])
def test_catalog_capacities_are_sparse(tmp_path, sep, terabytes):
    capacity = terabytes * 10**12
    directory = tmp_path / f"{terabytes}tb"
    with EncryptedStore.create(directory, capacity, sep) as store:
        assert store.capacity == capacity and store.sectors == capacity // SECTOR
        store.write(store.sectors - 1, rand(SECTOR))
        store.flush()
        assert store.read(store.sectors - 1, 1) == rand(SECTOR)
    stat = os.stat(directory / "ssd.img")
    assert stat.st_size == capacity
    assert stat.st_blocks * 512 <= 1 << 20


# --- a device's DMA: read_into / write_from ----------------------------------------------------

HIGH = 1 << 32                     # the RAM above the PCI hole (memory/layout.py)


@pytest.fixture(params=["native", "portable"])
def dma_store(store, request):
    if request.param == "native" and not store._xts.native:
        pytest.skip("the SSD's native helper is not built (make builds it)")
    store._xts.native = request.param == "native"
    return store


@pytest.fixture(scope="module")
def ram():
    """Sparse RAM in two ranges: 2 GiB below the PCI hole and 64 MiB from 4 GiB."""
    return Ram(RAM_BELOW_4G_END + 64 * 2**20)


def test_dma_pages_on_both_sides_of_the_pci_hole_read_and_write_in_place(dma_store, ram):
    """The last page below the hole, then pages above it: their host memory is adjacent
    (merged into one piece by the native path), their guest addresses are not."""
    pages = array("Q", [RAM_BELOW_4G_END - 4096, HIGH + 3 * 4096, HIGH, HIGH + 4096])
    data = rand(4 * SECTOR, seed=9)
    for i, page in enumerate(pages):
        ram.write(page, data[i * SECTOR:(i + 1) * SECTOR])
    dma_store.write_from(300, GuestPages(ram, pages, len(data)))
    assert dma_store.read(300, 4) == data
    for page in pages:
        ram.write(page, bytes(SECTOR))
    dma_store.read_into(300, GuestPages(ram, pages, len(data)))
    assert b"".join(ram.read(page, SECTOR) for page in pages) == data


@pytest.mark.parametrize("pages, kind", [
    ([0x1000, RAM_BELOW_4G_END], "outside"),              # the PCI hole
    ([0x1000, HIGH + 64 * 2**20], "outside"),              # past the end of RAM
    ([0x1000, 0x3008], "misaligned"),
    ([RAM_BELOW_4G_END - 0x800, RAM_BELOW_4G_END], "outside"),   # from RAM into the hole
    ([1 << 63, 0x1000], "outside"),
])
def test_dma_outside_ram_fails_before_any_io(dma_store, ram, pages, kind):
    """A guest's bad pages: the error names why, and neither the image nor RAM changes."""
    dma_store.write(40, rand(2 * SECTOR, seed=3))
    ram.write(0x1000, b"\xAA" * SECTOR)
    length = 2 * SECTOR if pages[0] % 4096 == 0 else SECTOR       # two pieces either way
    for call in (dma_store.read_into, dma_store.write_from):
        with pytest.raises(DmaError) as error:
            call(40, GuestPages(ram, array("Q", pages), length))
        assert error.value.kind == kind
    assert dma_store.read(40, 2) == rand(2 * SECTOR, seed=3)
    assert ram.read(0x1000, SECTOR) == b"\xAA" * SECTOR


def _layouts(count):
    """Guest pages for `count` sectors: one run, every other page, and runs of three pages in
    reverse order (so that a part's boundary falls inside a run)."""
    base = 0x100_0000
    one_run = [base + 4096 * i for i in range(count)]
    every_other = [base + 8192 * i for i in range(count)]
    runs = [base + 4096 * (4 * (i // 3) + i % 3) for i in range(count)]
    threes = [runs[i:i + 3] for i in range(0, count, 3)]
    return {"one run": one_run, "every other page": every_other,
            "runs of three, reversed": [page for run in reversed(threes) for page in run]}


@pytest.mark.parametrize("sectors", [64, 127, 256, 383])
def test_dma_large_requests_split_over_host_cores_hold_every_sector(dma_store, ram, sectors):
    """Requests of 256 KiB and more run in parts on the host's other cores (native/
    ssd_pool.c), split where the byte count says, inside a run of pages or not: each sector
    lands where its page says and is encrypted with its own LBA as the tweak (read back by
    the store's own one-buffer path)."""
    data = rand(sectors * SECTOR, seed=sectors)
    for name, layout in _layouts(sectors).items():
        pages = array("Q", layout)
        for i, page in enumerate(pages):
            ram.write(page, data[i * SECTOR:(i + 1) * SECTOR])
        dma_store.write_from(1000 + sectors, GuestPages(ram, pages, len(data)))
        assert dma_store.read(1000 + sectors, sectors) == data, name
        for page in pages:
            ram.write(page, bytes(SECTOR))
        dma_store.read_into(1000 + sectors, GuestPages(ram, pages, len(data)))
        assert b"".join(ram.read(page, SECTOR) for page in pages) == data, name


def test_the_ssd_splits_requests_over_the_host_cores():
    """A helper per host core beside the caller's (native/ssd_pool.c keeps at most 7), and
    seats for two threads that help while they wait for their own work."""
    from imacpro.t2 import xts
    if xts._native is None:
        pytest.skip("the SSD's native helper is not built (make builds it)")
    assert xts._native.ssd_pool_helpers() == min(os.cpu_count(), 8) - 1
    assert xts._native.ssd_pool_parts() == xts._native.ssd_pool_helpers() + 3


@pytest.mark.skipif(os.cpu_count() < 2, reason="the waiting thread needs a core of its own")
def test_a_thread_waiting_for_work_takes_parts_and_every_sector_holds(store, ram):
    """The run loop's idle workers call ssd_pool_help while they watch for guest work: here
    a thread calls it without pause while another reads and writes 1 MiB requests. It takes
    some of their parts (the pool's own helpers run at the host's idle priority and yield
    it the core), each with a cipher context of its own, and every sector is right."""
    from imacpro.t2 import xts
    if not store._xts.native:
        pytest.skip("the SSD's native helper is not built (make builds it)")
    sectors = 256
    pages = array("Q", [0x200_0000 + 4096 * i for i in range(sectors)])
    helped, done = [], threading.Event()

    def wait_for_work():
        count = 0
        while not done.is_set():
            count += xts._native.ssd_pool_help()
        helped.append(count)

    waiter = threading.Thread(target=wait_for_work)
    waiter.start()
    try:
        for request in range(60):
            data = rand(sectors * SECTOR, seed=request)
            for i, page in enumerate(pages):
                ram.write(page, data[i * SECTOR:(i + 1) * SECTOR])
            store.write_from(request * sectors, GuestPages(ram, pages, len(data)))
            for page in pages:
                ram.write(page, bytes(SECTOR))
            store.read_into(request * sectors, GuestPages(ram, pages, len(data)))
            assert b"".join(ram.read(page, SECTOR) for page in pages) == data, request
            assert store.read(request * sectors, sectors) == data, request
    finally:
        done.set()
        waiter.join()
    assert helped[0] > 0


def test_a_forked_child_does_every_part_itself(dma_store, ram):
    """fork() copies only the calling thread: a child waiting for the parent's helpers would
    wait for good. It sees one part and still reads and writes whole requests."""
    from imacpro.t2 import xts
    if xts._native is None:
        pytest.skip("the SSD's native helper is not built (make builds it)")
    xts._native.ssd_pool_parts()               # the pool started in the parent
    sectors = 256
    data = rand(sectors * SECTOR, seed=7)
    pages = array("Q", [0x100_0000 + 4096 * i for i in range(sectors)])
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            for i, page in enumerate(pages):
                ram.write(page, data[i * SECTOR:(i + 1) * SECTOR])
            dma_store.write_from(500, GuestPages(ram, pages, len(data)))
            for page in pages:
                ram.write(page, bytes(SECTOR))
            dma_store.read_into(500, GuestPages(ram, pages, len(data)))
            ok = xts._native.ssd_pool_helpers() == 0 and \
                b"".join(ram.read(page, SECTOR) for page in pages) == data
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert dma_store.read(500, sectors) == data


def test_a_part_that_fails_fails_the_request(t2, dma_store, ram):
    """The image cut short while open: the request's last part (a helper's) reads past its
    end, and the request fails as the one-part path does, not with half its data."""
    sectors = 256
    lba = dma_store.sectors - sectors
    pages = array("Q", [0x100_0000 + 4096 * i for i in range(sectors)])
    for i, page in enumerate(pages):
        ram.write(page, rand(SECTOR, seed=i))
    dma_store.write_from(lba, GuestPages(ram, pages, sectors * SECTOR))
    os.truncate(t2 / "ssd.img", (dma_store.sectors - 16) * SECTOR)
    with pytest.raises(DamagedImage, match="ended early"):
        dma_store.read_into(lba, GuestPages(ram, pages, sectors * SECTOR))
