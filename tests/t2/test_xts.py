"""The native AES-XTS sector loop and the `cryptography` one give the same bytes."""

import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from imacpro.t2 import xts

SECTOR = 4096


def reference(key: bytes, plain: bytes, lba: int) -> bytes:
    """Each sector on its own, straight from the cryptography library."""
    return b"".join(Cipher(algorithms.AES(key), modes.XTS((lba + i).to_bytes(16, "little")))
                    .encryptor().update(plain[i * SECTOR:(i + 1) * SECTOR])
                    for i in range(len(plain) // SECTOR))


@pytest.mark.parametrize("native", [True, False])
def test_matches_the_cryptography_library_and_round_trips(native):
    if native and xts._native is None:
        pytest.fail(f"{xts.LIBRARY} is not built: make builds it")
    key, plain, lba = os.urandom(64), os.urandom(SECTOR * 9), 2**40 + 17
    cipher = xts.SectorCipher(key, SECTOR, native=native)
    buf = bytearray(plain)
    cipher.encrypt(buf, lba)
    assert bytes(buf) == reference(key, plain, lba)
    cipher.decrypt(buf, lba)
    assert bytes(buf) == plain


@pytest.mark.parametrize("native", [True, False])
def test_decrypt_leaves_zero_sectors_as_zeros(native):
    if native and xts._native is None:
        pytest.fail(f"{xts.LIBRARY} is not built: make builds it")
    key = os.urandom(64)
    cipher = xts.SectorCipher(key, SECTOR, native=native)
    data = bytearray(os.urandom(SECTOR))
    cipher.encrypt(data, 5)
    buf = bytearray(SECTOR) + data + bytearray(SECTOR)   # unwritten, written, unwritten
    cipher.decrypt(buf, 4)
    assert buf[:SECTOR] == bytes(SECTOR) and buf[2 * SECTOR:] == bytes(SECTOR)
    assert buf[SECTOR:2 * SECTOR] != bytes(SECTOR)
