"""What every 8-bit legacy device on the LPC bus shares: wide accesses split into bytes.

A 2-, 4- or 8-byte port access to an 8-bit device reaches it as consecutive byte accesses,
little-endian, as the LPC bus does. Any other size is not an x86 access: it reads 0 and writes
nothing. Subclasses implement `_read_byte(offset)` and `_write_byte(offset, value)`.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

SIZES = (1, 2, 4, 8)


class ByteRegisters:
    def _read_byte(self, offset: int) -> int:
        raise NotImplementedError

    def _write_byte(self, offset: int, value: int) -> None:
        raise NotImplementedError

    def read(self, offset: int, size: int) -> int:
        if size not in SIZES:
            log.debug("%s: read of bad size %r at %#x", type(self).__name__, size, offset)
            return 0
        return sum(self._read_byte(offset + i) << (8 * i) for i in range(size))

    def write(self, offset: int, size: int, value: int) -> None:
        if size not in SIZES:
            log.debug("%s: write of bad size %r at %#x", type(self).__name__, size, offset)
            return
        for i in range(size):
            self._write_byte(offset + i, (value >> (8 * i)) & 0xFF)
