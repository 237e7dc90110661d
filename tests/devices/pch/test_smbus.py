"""The PCH's SMBus controller driven the way Linux 6.1's i2c-i801 drives it (i801_probe,
i801_access, i801_transaction, the block paths and i801_isr, in interrupt and polling
mode), against a fake 256-byte EEPROM, and by a hostile guest."""

import errno
import random

import pytest

from imacpro.bus.pci import (BAR0, CMD_INTX_DISABLE, CMD_IO, CMD_MEMORY, COMMAND,
                             STATUS, STATUS_INTERRUPT, PciBus, PciIoWindow, PciMemoryWindow)
from imacpro.devices.contract import StateError
from imacpro.devices.pch import smbus as S
from imacpro.irq import IrqLine

SMBA, MMIO = 0x2000, 0xA000_0000
DEVICE, FUNCTION = 0x1F, 4

# i2c_smbus_xfer sizes
QUICK, BYTE, BYTE_DATA, WORD_DATA, PROC_CALL, BLOCK_DATA, I2C_BLOCK, BLOCK_PROC = range(8)
READ, WRITE = 1, 0
STATUS_ERRORS = S.FAILED | S.BUS_ERR | S.DEV_ERR
STATUS_FLAGS = S.BYTE_DONE | S.INTR | STATUS_ERRORS


class Eeprom(S.SmbusTarget):
    """An AT24C02-like EEPROM: the first byte of a write sets the pointer, the next ones are
    stored there; reads come from the pointer; the pointer steps and wraps."""

    def __init__(self, fill=None):
        self.data = bytearray(fill if fill is not None else range(256))
        self.pointer = 0
        self.addressing = False
        self.events = []

    def start(self, read):
        self.events.append("Sr" if read else "Sw")
        self.addressing = not read
        return True

    def write(self, byte):
        if self.addressing:
            self.pointer, self.addressing = byte, False
        else:
            self.data[self.pointer] = byte
            self.pointer = (self.pointer + 1) % 256
        return True

    def read(self):
        byte = self.data[self.pointer]
        self.pointer = (self.pointer + 1) % 256
        return byte

    def stop(self):
        self.events.append("P")


class PecRegisters(S.SmbusTarget):
    """A device with 16-bit registers that speaks PEC on word reads and writes."""

    def __init__(self, address):
        self.address = address
        self.words = {0x05: 0xBEEF}
        self.wire, self.written, self.reads = [], [], 0
        self.bad_pec = False

    def start(self, read):
        self.wire.append(self.address << 1 | read)
        self.reads = 0
        return True

    def write(self, byte):
        self.wire.append(byte)
        self.written.append(byte)
        return True

    def read(self):
        if self.reads == 2:
            byte = _crc(self.wire) ^ (0xFF if self.bad_pec else 0)
        else:
            byte = self.words.get(self.written[0], 0) >> (8 * self.reads) & 0xFF
        self.reads += 1
        self.wire.append(byte)
        return byte

    def stop(self):
        if len(self.written) == 4 and self.written[3] == _crc(self.wire[:-1]):
            self.words[self.written[0]] = self.written[1] | self.written[2] << 8
        self.wire, self.written = [], []


def _crc(data):
    crc = 0
    for byte in data:
        crc = S.crc8(crc, byte)
    return crc


class Driver:
    """i2c-i801, step by step. `irq`: FEATURE_IRQ (completion by i801_isr on INTx);
    `block_buffer`: FEATURE_BLOCK_BUFFER (E32B)."""

    def __init__(self, irq=True, block_buffer=True):
        self.intx = IrqLine("intx")
        self.smbus = S.SmbusController(intx=self.intx)
        self.bus = PciBus()
        self.bus.attach(DEVICE, FUNCTION, self.smbus.pci)
        self.io = PciIoWindow(self.bus, 0)
        self.mmio = PciMemoryWindow(self.bus, 0)
        self.irq, self.block_buffer = irq, block_buffer
        self.timeouts = 0

    # configuration space and ports
    def cfg(self, offset, size=1):
        return self.bus.read(0, DEVICE, FUNCTION, offset, size)

    def set_cfg(self, offset, size, value):
        self.bus.write(0, DEVICE, FUNCTION, offset, size, value)

    def inb(self, register):
        return self.io.read(SMBA + register, 1)

    def outb(self, register, value):
        self.io.write(SMBA + register, 1, value)

    def firmware(self):
        """What the firmware's PCI setup does: BARs placed, decoding on."""
        self.set_cfg(BAR0, 4, MMIO)
        self.set_cfg(BAR0 + 4, 4, 0)
        self.set_cfg(0x20, 4, SMBA)
        self.set_cfg(COMMAND, 2, CMD_IO | CMD_MEMORY)

    def probe(self):
        self.firmware()
        assert self.cfg(0, 4) == 0xA2A3_8086
        smba = self.cfg(0x20, 4) & ~3
        assert smba == SMBA                                 # not "base address uninitialized"
        self.original_hstcfg = self.cfg(S.HOSTC)
        self.set_cfg(S.HOSTC, 1, (self.original_hstcfg & ~S.I2C_EN) | S.HST_EN)
        assert self.original_hstcfg & S.HST_EN              # no "Enabling SMBus device"
        assert not self.original_hstcfg & S.SMB_SMI_EN      # interrupts, not SMI#
        assert self.original_hstcfg & S.SPD_WD              # "SPD Write Disable is set"
        self.outb(S.AUXCTL, self.inb(S.AUXCTL) & ~(S.AAC | S.E32B))
        self.original_hstcnt = self.inb(S.HST_CNT) & ~S.KILL
        self.original_slvcmd = self.inb(S.SLVCMD)
        assert self.cfg(0x3D) == 1                          # INTA#: an IRQ to request
        assert not self.cfg(STATUS, 2) & STATUS_INTERRUPT   # no "An interrupt is pending!"
        tco_base, tco_ctl = self.cfg(S.TCOBASE, 4), self.cfg(S.TCOCTL, 4)
        assert not tco_ctl & (1 << 8)                       # i801_add_tco: no iTCO_wdt
        self.outb(S.SLVCMD, 0x01 | 0x04 | self.original_slvcmd)   # i801_enable_host_notify
        self.outb(S.SLVSTS, S.HST_NTFY_STS)
        return tco_base

    def register_spd(self, slots=4):
        """i2c_register_spd with 4/4 DDR4 DIMMs: i2c_default_probe (receive byte) at 0x50+n."""
        return [addr for addr in range(0x50, 0x50 + slots)
                if self.access(addr, READ, 0, BYTE)[0] >= 0]

    # i801_access and below
    def access(self, addr, read_write, command, size, data=None, pec=False):
        hwpec = pec and size not in (QUICK, I2C_BLOCK)
        block = False
        if size in (QUICK, BYTE):
            self.outb(S.HST_ADD, addr << 1 | read_write)
            if size == BYTE and read_write == WRITE:
                self.outb(S.HST_CMD, command)
            xact = S.QUICK if size == QUICK else S.BYTE
        elif size in (BYTE_DATA, WORD_DATA):
            self.outb(S.HST_ADD, addr << 1 | read_write)
            self.outb(S.HST_CMD, command)
            if read_write == WRITE:
                self.outb(S.HST_DAT0, data & 0xFF)
                if size == WORD_DATA:
                    self.outb(S.HST_DAT1, data >> 8)
            xact = S.BYTE_DATA if size == BYTE_DATA else S.WORD_DATA
        elif size == PROC_CALL:
            self.outb(S.HST_ADD, addr << 1)
            self.outb(S.HST_CMD, command)
            self.outb(S.HST_DAT0, data & 0xFF)
            self.outb(S.HST_DAT1, data >> 8)
            xact, read_write = S.PROC_CALL, READ
        elif size == I2C_BLOCK:
            spd_wd = self.original_hstcfg & S.SPD_WD
            self.outb(S.HST_ADD, addr << 1 | (read_write if spd_wd else 0))
            self.outb(S.HST_DAT1 if read_write == READ else S.HST_CMD, command)
            block = True
        else:                                              # BLOCK_DATA, BLOCK_PROC
            self.outb(S.HST_ADD, addr << 1 | (read_write if size == BLOCK_DATA else 0))
            self.outb(S.HST_CMD, command)
            block = True
        aux = self.inb(S.AUXCTL)
        self.outb(S.AUXCTL, aux | S.AAC if hwpec else aux & ~S.AAC)
        if block:
            ret, result = self.block_transaction(list(data or []), read_write, size)
        else:
            ret, result = self.transaction(xact), None
        if hwpec or block:
            self.outb(S.AUXCTL, self.inb(S.AUXCTL) & ~(S.AAC | S.E32B))
        if not block and ret == 0 and read_write == READ and xact != S.QUICK:
            result = self.inb(S.HST_DAT0)
            if xact in (S.WORD_DATA, S.PROC_CALL):
                result |= self.inb(S.HST_DAT1) << 8
        self.outb(S.HST_STS, S.INUSE_STS | STATUS_FLAGS)    # unlock for the firmware
        assert not self.intx.level                          # nothing left asserted
        return ret, result

    def check_pre(self):
        status = self.inb(S.HST_STS)
        assert not status & S.HOST_BUSY, "SMBus is busy, can't use it!"
        if status & STATUS_FLAGS:
            self.outb(S.HST_STS, status & STATUS_FLAGS)
        if self.inb(S.AUXSTS) & S.CRCE:
            self.outb(S.AUXSTS, S.CRCE)

    def check_post(self, status):
        if status is None:                                 # timeout: KILL
            self.timeouts += 1
            self.outb(S.HST_CNT, S.KILL)
            self.outb(S.HST_CNT, 0)
            status = self.inb(S.HST_STS)
            assert not status & S.HOST_BUSY and status & S.FAILED
            return -errno.ETIMEDOUT
        result = 0
        if status & S.FAILED:
            result = -errno.EIO
        if status & S.DEV_ERR:
            if self.inb(S.AUXSTS) & S.CRCE:
                self.outb(S.AUXSTS, S.CRCE)
                result = -errno.EBADMSG
            else:
                result = -errno.ENXIO
        if status & S.BUS_ERR:
            result = -errno.EAGAIN
        return result

    def wait_completion(self):
        """wait_for_completion_timeout: i801_isr runs while the level-triggered line is up."""
        self.done = None
        for _ in range(100):
            if self.done is not None or not self.intx.level:
                break
            self.isr()
        return self.done

    def isr(self):
        if not self.cfg(STATUS, 2) & STATUS_INTERRUPT:
            return
        if self.inb(S.SLVSTS) & S.HST_NTFY_STS:
            raise AssertionError("no target notifies")
        status = self.inb(S.HST_STS)
        if status & S.BYTE_DONE:
            self.isr_byte_done()
        status &= S.INTR | STATUS_ERRORS | S.SMBALERT_STS
        if status:
            self.outb(S.HST_STS, status)
        status &= ~S.SMBALERT_STS
        if status:
            self.done = status

    def isr_byte_done(self):
        if self.is_read:
            if self.cmd & 0x1C == S.BLOCK << 2 and self.count == 0:
                self.len = self.inb(S.HST_DAT0)
                if not 1 <= self.len <= 32:
                    self.len = 32
                self.block[0] = self.len
            if self.count < self.len:
                self.count += 1
                self.block[self.count] = self.inb(S.BLKDAT)
            if self.count == self.len - 1:
                self.outb(S.HST_CNT, self.cmd | S.LAST_BYTE)
        elif self.count < self.len - 1:
            self.count += 1
            self.outb(S.BLKDAT, self.block[self.count + 1])
        self.outb(S.HST_STS, S.BYTE_DONE)

    def wait_intr(self):
        for _ in range(20):
            status = self.inb(S.HST_STS)
            if not status & S.HOST_BUSY and status & (STATUS_ERRORS | S.INTR):
                return status & (STATUS_ERRORS | S.INTR)
        return None

    def wait_byte_done(self):
        for _ in range(20):
            status = self.inb(S.HST_STS)
            if status & (STATUS_ERRORS | S.BYTE_DONE):
                return status & STATUS_ERRORS
        return None

    def transaction(self, xact):
        self.check_pre()
        if self.irq:
            self.outb(S.HST_CNT, xact << 2 | S.INTREN | S.START)
            return self.check_post(self.wait_completion())
        self.outb(S.HST_CNT, xact << 2 | S.START)
        assert not self.intx.level                          # polling: INTREN clear
        return self.check_post(self.wait_intr())

    def block_transaction(self, data, read_write, size):
        if read_write == READ and size == BLOCK_DATA:
            data = [32]
        elif not data or not 1 <= data[0] <= 32:
            return -errno.EPROTO, None
        hostc = None
        if size == I2C_BLOCK and read_write == WRITE:
            hostc = self.cfg(S.HOSTC)
            self.set_cfg(S.HOSTC, 1, hostc | S.I2C_EN)
        self.block = data + [0] * (33 - len(data))
        if self.block_buffer and size != I2C_BLOCK:
            ret = self.by_block(read_write, size)
        else:
            ret = self.byte_by_byte(read_write, size)
        if hostc is not None:
            self.set_cfg(S.HOSTC, 1, hostc)
        replied = ret == 0 and (read_write == READ or size == BLOCK_PROC)
        return ret, self.block[:self.block[0] + 1] if replied else None

    def by_block(self, read_write, size):
        xact = S.BLOCK_PROC if size == BLOCK_PROC else S.BLOCK
        self.outb(S.AUXCTL, self.inb(S.AUXCTL) | S.E32B)
        if read_write == WRITE:
            length = self.block[0]
            self.outb(S.HST_DAT0, length)
            self.inb(S.HST_CNT)
            for i in range(length):
                self.outb(S.BLKDAT, self.block[i + 1])
        status = self.transaction(xact)
        if status:
            return status
        if read_write == READ or size == BLOCK_PROC:
            length = self.inb(S.HST_DAT0)
            if not 1 <= length <= 32:
                return -errno.EPROTO
            self.block[0] = length
            self.inb(S.HST_CNT)
            for i in range(length):
                self.block[i + 1] = self.inb(S.BLKDAT)
        return 0

    def byte_by_byte(self, read_write, size):
        self.check_pre()
        length = self.block[0]
        if read_write == WRITE:
            self.outb(S.HST_DAT0, length)
            self.outb(S.BLKDAT, self.block[1])
        smbcmd = (S.I2C_READ if size == I2C_BLOCK and read_write == READ else S.BLOCK) << 2
        if self.irq:
            self.is_read = read_write == READ
            if length == 1 and self.is_read:
                smbcmd |= S.LAST_BYTE
            self.cmd = smbcmd | S.INTREN
            self.len, self.count = length, 0
            self.outb(S.HST_CNT, self.cmd | S.START)
            return self.check_post(self.wait_completion())
        if length == 1 and read_write == READ:
            smbcmd |= S.LAST_BYTE
        self.outb(S.HST_CNT, smbcmd | S.START)
        i = 1
        while i <= length:
            status = self.wait_byte_done()
            if status is None or status:
                return self.check_post(status)
            if i == 1 and read_write == READ and size != I2C_BLOCK:
                length = self.inb(S.HST_DAT0)
                if not 1 <= length <= 32:
                    for _ in range(64):                    # the driver's recovery
                        if not self.inb(S.HST_STS) & S.HOST_BUSY:
                            break
                        self.outb(S.HST_STS, S.BYTE_DONE)
                    self.outb(S.HST_STS, S.INTR)
                    return -errno.EPROTO
                self.block[0] = length
            if read_write == READ:
                self.block[i] = self.inb(S.BLKDAT)
                if i == length - 1:
                    self.outb(S.HST_CNT, smbcmd | S.LAST_BYTE)
            if read_write == WRITE and i + 1 <= length:
                self.outb(S.BLKDAT, self.block[i + 1])
            self.outb(S.HST_STS, S.BYTE_DONE)
            i += 1
        return self.check_post(self.wait_intr())


@pytest.fixture(params=[(True, True), (True, False), (False, True), (False, False)],
                ids=["irq", "irq-bytewise", "polling", "polling-bytewise"])
def driver(request):
    d = Driver(*request.param)
    d.probe()
    return d


def test_identity_bars_and_pch_registers():
    d = Driver()
    assert d.cfg(0, 4) == 0xA2A3_8086
    assert d.cfg(0x08, 4) == 0x0C05_0000                   # class 0c0500, revision 00
    assert d.cfg(0x2C, 4) == 0x7270_8086
    assert not d.cfg(STATUS, 2) & 0x10 and d.cfg(0x34) == 0   # no capabilities
    assert d.cfg(0x3D) == 1                                  # INTA#
    d.set_cfg(BAR0, 4, 0xFFFF_FFFF)
    d.set_cfg(BAR0 + 4, 4, 0xFFFF_FFFF)
    d.set_cfg(0x20, 4, 0xFFFF_FFFF)
    assert d.cfg(BAR0, 4) == 0xFFFF_F004                     # 4 KiB, 64-bit memory
    assert d.cfg(0x20, 4) == 0xFFE1                          # 32 I/O ports
    assert d.cfg(S.HOSTC) == S.HST_EN | S.SPD_WD
    assert d.cfg(S.TCOBASE, 4) == 1 and d.cfg(S.TCOCTL, 4) == 1
    d.set_cfg(S.TCOCTL, 4, 0x100)
    d.set_cfg(S.TCOBASE, 4, 0x401)
    assert d.cfg(S.TCOCTL, 4) == 1 and d.cfg(S.TCOBASE, 4) == 1   # locked


def test_probe_and_the_spd_scan_find_no_dimm_on_the_pch_bus(driver):
    assert driver.inb(S.SLVCMD) == 0x05                      # host notify on, SMBALERT off
    assert driver.cfg(S.HOSTC) == S.HST_EN | S.SPD_WD
    assert driver.register_spd() == []                       # DIMMs are on the CPU's SMBus
    assert driver.access(0x50, READ, 0, BYTE) == (-errno.ENXIO, None)
    assert driver.timeouts == 0


def test_each_transaction_against_the_eeprom(driver):
    rom = Eeprom()
    driver.smbus.attach(0x48, rom)
    a = driver.access
    assert a(0x48, WRITE, 0, QUICK) == (0, None)
    assert a(0x49, WRITE, 0, QUICK) == (-errno.ENXIO, None)   # nobody there: no ACK
    assert a(0x48, WRITE, 0x10, BYTE) == (0, None)             # send byte: the pointer
    assert a(0x48, READ, 0, BYTE) == (0, 0x10)                 # receive byte
    assert a(0x48, WRITE, 0x20, BYTE_DATA, 0xAB) == (0, None)
    assert rom.data[0x20] == 0xAB
    assert a(0x48, READ, 0x20, BYTE_DATA) == (0, 0xAB)
    assert rom.events[-3:] == ["Sw", "Sr", "P"]                 # a repeated START
    assert a(0x48, WRITE, 0x30, WORD_DATA, 0x1234) == (0, None)
    assert rom.data[0x30:0x32] == b"\x34\x12"
    assert a(0x48, READ, 0x30, WORD_DATA) == (0, 0x1234)
    assert a(0x48, WRITE, 0x40, PROC_CALL, 0xCDEF) == (0, 0x4342)   # the bytes after
    assert rom.data[0x40:0x42] == b"\xef\xcd"
    payload = [5, 1, 2, 3, 4, 5]
    assert a(0x48, WRITE, 0x60, BLOCK_DATA, payload) == (0, None)
    assert rom.data[0x60:0x66] == bytes(payload)               # count, then data
    assert a(0x48, READ, 0x60, BLOCK_DATA) == (0, payload)
    assert a(0x48, READ, 0x80, I2C_BLOCK, [4]) == (0, [4, 0x80, 0x81, 0x82, 0x83])
    assert a(0x48, READ, 0x90, I2C_BLOCK, [1]) == (0, [1, 0x90])
    assert a(0x48, WRITE, 0xA0, I2C_BLOCK, [3, 7, 8, 9]) == (0, None)
    assert rom.data[0xA0:0xA3] == b"\x07\x08\x09"              # no count byte with I2C_EN
    assert not driver.cfg(S.HOSTC) & S.I2C_EN                  # restored
    if driver.block_buffer:
        rom.data[0xB3] = 2                                     # the reply's count
        assert a(0x48, WRITE, 0xB0, BLOCK_PROC, [2, 0xEE, 0xFF]) == (0, [2, 0xB4, 0xB5])
        assert rom.data[0xB0:0xB3] == b"\x02\xee\xff"
    assert rom.events[-1] == "P"


def test_spd_write_disable_guards_50_to_57(driver):
    rom = Eeprom()
    driver.smbus.attach(0x50, rom)
    assert driver.access(0x50, WRITE, 0x00, BYTE_DATA, 0x55) == (-errno.ENXIO, None)
    assert rom.data[0] == 0 and rom.events == []               # no bus cycle at all
    assert driver.access(0x50, READ, 0, BYTE)[0] == 0          # reads pass: the SPD probe
    assert driver.access(0x50, READ, 0x10, I2C_BLOCK, [2]) == (0, [2, 0x10, 0x11])
    driver.set_cfg(S.HOSTC, 1, S.HST_EN)                       # SPD_WD is set-only
    assert driver.cfg(S.HOSTC) & S.SPD_WD
    driver.smbus.reset()
    assert driver.cfg(S.HOSTC) == S.HST_EN | S.SPD_WD


def test_i2c_read_without_the_rw_bit_is_a_write_to_spd_wd():
    d = Driver()
    d.probe()
    d.smbus.attach(0x52, Eeprom())
    d.original_hstcfg &= ~S.SPD_WD                             # a driver unaware of SPD_WD
    assert d.access(0x52, READ, 0, I2C_BLOCK, [2])[0] == -errno.ENXIO


def test_pec(driver):
    device = PecRegisters(0x2A)
    driver.smbus.attach(0x2A, device)
    assert driver.access(0x2A, READ, 0x05, WORD_DATA, pec=True) == (0, 0xBEEF)
    assert driver.access(0x2A, WRITE, 0x06, WORD_DATA, 0x1122, pec=True) == (0, None)
    assert device.words[0x06] == 0x1122                        # its PEC checked out
    device.bad_pec = True
    assert driver.access(0x2A, READ, 0x05, WORD_DATA, pec=True) == (-errno.EBADMSG, None)
    assert not driver.inb(S.AUXSTS) & S.CRCE                   # the driver cleared it
    driver.smbus.attach(0x48, Eeprom())                        # no PEC: a mismatch too
    assert driver.access(0x48, READ, 0x05, WORD_DATA, pec=True)[0] == -errno.EBADMSG
    assert driver.inb(S.AUXCTL) == 0                           # AAC and E32B cleared after


def test_interrupt_raised_at_completion_and_lowered_by_the_isr():
    d = Driver()
    d.probe()
    d.smbus.attach(0x48, Eeprom())
    d.outb(S.HST_ADD, 0x48 << 1 | 1)
    d.outb(S.HST_CNT, S.BYTE << 2 | S.INTREN | S.START)
    assert d.intx.level and d.cfg(STATUS, 2) & STATUS_INTERRUPT
    assert d.inb(S.HST_STS) & (S.INTR | S.HOST_BUSY) == S.INTR
    d.set_cfg(COMMAND, 2, CMD_IO | CMD_INTX_DISABLE)           # the command register masks it
    assert not d.intx.level
    d.set_cfg(COMMAND, 2, CMD_IO)
    assert d.intx.level
    d.set_cfg(S.HOSTC, 1, S.HST_EN | S.SMB_SMI_EN)             # routed to SMI#: no INTx
    assert not d.intx.level
    d.set_cfg(S.HOSTC, 1, S.HST_EN)
    d.outb(S.HST_STS, S.INTR)
    assert not d.intx.level and not d.cfg(STATUS, 2) & STATUS_INTERRUPT
    # A missing target: DEV_ERR interrupts too.
    d.outb(S.HST_ADD, 0x33 << 1)
    d.outb(S.HST_CNT, S.QUICK << 2 | S.INTREN | S.START)
    assert d.intx.level and d.inb(S.HST_STS) & S.DEV_ERR
    d.outb(S.HST_STS, S.DEV_ERR)
    assert not d.intx.level


def test_byte_done_interrupts_each_byte_of_a_bytewise_read():
    d = Driver(irq=True, block_buffer=False)
    d.probe()
    d.smbus.attach(0x48, Eeprom())
    d.outb(S.HST_ADD, 0x48 << 1 | 1)
    d.outb(S.HST_DAT1, 0x20)
    d.outb(S.HST_CNT, S.I2C_READ << 2 | S.INTREN | S.START)
    seen = []
    for n in range(3):
        assert d.intx.level and d.inb(S.HST_STS) & (S.BYTE_DONE | S.HOST_BUSY) == 0x81
        seen.append(d.inb(S.BLKDAT))
        if n == 1:
            d.outb(S.HST_CNT, S.I2C_READ << 2 | S.INTREN | S.LAST_BYTE)
        d.outb(S.HST_STS, S.BYTE_DONE)
    assert seen == [0x20, 0x21, 0x22]
    status = d.inb(S.HST_STS)
    assert status & S.INTR and not status & (S.HOST_BUSY | S.BYTE_DONE) and d.intx.level
    d.outb(S.HST_STS, S.INTR)
    assert not d.intx.level


def test_bad_block_counts_reach_the_driver(driver):
    rom = Eeprom()
    driver.smbus.attach(0x48, rom)
    for count in (0, 33, 0xFF):
        rom.data[0x70] = count
        ret, _ = driver.access(0x48, READ, 0x70, BLOCK_DATA)
        if driver.irq and not driver.block_buffer:
            assert ret == 0                                    # the driver's FIXME path
        else:
            assert ret == -errno.EPROTO
        assert not driver.inb(S.HST_STS) & S.HOST_BUSY


def test_inuse_semaphore():
    d = Driver()
    d.probe()
    d.outb(S.HST_STS, S.INUSE_STS)
    assert not d.inb(S.HST_STS) & S.INUSE_STS                  # the first reader gets it
    assert d.inb(S.HST_STS) & S.INUSE_STS                      # everyone after sees it taken
    d.outb(S.HST_STS, S.INUSE_STS)
    assert not d.inb(S.HST_STS) & S.INUSE_STS


def test_kill_ends_a_bytewise_command_with_failed():
    d = Driver(irq=False, block_buffer=False)
    d.probe()
    rom = Eeprom()
    d.smbus.attach(0x48, rom)
    d.outb(S.HST_ADD, 0x48 << 1 | 1)
    d.outb(S.HST_CMD, 0x00)
    rom.data[0] = 8
    d.outb(S.HST_CNT, S.BLOCK << 2 | S.START)
    assert d.inb(S.HST_STS) & S.HOST_BUSY and d.inb(S.HST_DAT0) == 8
    d.outb(S.HST_CNT, S.KILL)
    d.outb(S.HST_CNT, S.BLOCK << 2 | S.START | S.KILL)        # held while KILL is set
    assert d.inb(S.HST_STS) & (S.HOST_BUSY | S.FAILED) == S.FAILED and rom.events[-1] == "P"
    d.outb(S.HST_CNT, 0)
    d.outb(S.HST_STS, 0xFF)
    assert d.access(0x48, READ, 0, BYTE)[0] == 0               # and it works after


def test_soft_reset_and_disabled_host():
    d = Driver(irq=False, block_buffer=False)
    d.probe()
    rom = Eeprom()
    d.smbus.attach(0x48, rom)
    rom.data[0] = 4
    d.outb(S.HST_ADD, 0x48 << 1 | 1)
    d.outb(S.HST_CNT, S.BLOCK << 2 | S.START)
    assert d.inb(S.HST_STS) & S.HOST_BUSY
    d.set_cfg(S.HOSTC, 1, d.cfg(S.HOSTC) | S.SSRESET)
    assert d.cfg(S.HOSTC) == S.HST_EN | S.SPD_WD              # SSRESET self-clears
    assert d.inb(S.HST_STS) & ~S.INUSE_STS == 0 and rom.events[-1] == "P"
    d.set_cfg(S.HOSTC, 1, S.SPD_WD)                            # HST_EN off: START does nothing
    d.outb(S.HST_CNT, S.BYTE << 2 | S.START)
    assert d.inb(S.HST_STS) & ~S.INUSE_STS == 0


def test_bar0_mirrors_the_io_registers():
    d = Driver()
    d.probe()
    d.mmio.write(MMIO + S.HST_DAT0, 1, 0x5A)
    assert d.inb(S.HST_DAT0) == 0x5A and d.mmio.read(MMIO + S.HST_DAT0, 1) == 0x5A
    assert d.mmio.read(MMIO + 0x800, 4) == 0
    d.mmio.write(MMIO + 0x800, 4, 0xFFFF_FFFF)
    assert d.io.read(SMBA + S.HST_CMD, 4) == 0x5A << 16        # a dword: four byte reads


def test_reset_returns_to_the_firmware_state():
    d = Driver(irq=False, block_buffer=False)
    d.probe()
    d.smbus.attach(0x48, Eeprom(bytes([9] * 256)))
    d.outb(S.HST_ADD, 0x48 << 1 | 1)
    d.outb(S.AUXCTL, S.AAC)
    d.outb(S.HST_CNT, S.BLOCK << 2 | S.START | S.INTREN)
    assert d.intx.level
    d.smbus.reset()
    assert not d.intx.level
    assert d.cfg(BAR0, 4) == 4 and d.cfg(0x20, 4) == 1 and d.cfg(COMMAND, 2) == 0
    assert d.cfg(S.HOSTC) == S.HST_EN | S.SPD_WD
    assert d.smbus.save() == Driver().smbus.save()
    assert [d.smbus.read(r, 1) for r in range(32)] == [0] * 14 + [7, 7] + [0] * 16


def test_save_and_load_in_the_middle_of_a_bytewise_read():
    d = Driver(irq=False, block_buffer=False)
    d.probe()
    rom = Eeprom()
    d.smbus.attach(0x48, rom)
    d.outb(S.HST_ADD, 0x48 << 1 | 1)
    d.outb(S.HST_DAT1, 0x10)
    d.outb(S.HST_CNT, S.I2C_READ << 2 | S.START)
    assert d.inb(S.BLKDAT) == 0x10
    saved = d.smbus.save()
    other = Driver(irq=False, block_buffer=False)
    twin = Eeprom()
    twin.pointer = rom.pointer                     # the target restores its own state
    other.smbus.attach(0x48, twin)
    other.smbus.load(saved)
    assert other.smbus.save() == saved
    other.outb(S.HST_CNT, S.I2C_READ << 2 | S.LAST_BYTE)
    other.outb(S.HST_STS, S.BYTE_DONE)
    assert other.inb(S.BLKDAT) == 0x11
    other.outb(S.HST_STS, S.BYTE_DONE)
    assert other.inb(S.HST_STS) & (S.INTR | S.HOST_BUSY) == S.INTR
    assert twin.events[-1] == "P"


@pytest.mark.parametrize("change", [
    {"status": 0x100}, {"phase": 3}, {"control": S.START}, {"block": b"\0" * 31},
    {"held": 0x80}, {"last": 1}, {"status": S.HOST_BUSY}, {"aux_control": 0x80},
    {"pci": {"config": b"\0" * 4096, "intx_asserted": False}}, {"done": "x"}])
def test_a_bad_state_is_refused_and_changes_nothing(change):
    d = Driver()
    d.probe()
    d.smbus.attach(0x48, Eeprom())
    d.access(0x48, READ, 0, BYTE)
    before = d.smbus.save()
    with pytest.raises(StateError):
        d.smbus.load({**before, **change})
    assert d.smbus.save() == before
    broken = dict(before)
    del broken["crc"]
    with pytest.raises(StateError):
        d.smbus.load(broken)
    assert d.smbus.save() == before


def test_a_hostile_guest_cannot_break_it():
    """Random configuration writes, register writes and reads on both BARs: no exception,
    nothing grows, and the driver's probe and transactions work after a reset."""
    rng = random.Random(0x1F4)
    d = Driver(irq=False)
    d.probe()
    rom = Eeprom()
    d.smbus.attach(0x48, rom)
    d.smbus.attach(0x50, Eeprom())
    for _ in range(6000):
        roll = rng.random()
        size = rng.choice((1, 2, 4))
        if roll < 0.1:
            offset = rng.choice((S.HOSTC, S.TCOBASE, S.TCOCTL, COMMAND, 0x3C, 0x40, 0x41,
                                 rng.randrange(0, 256)))
            d.set_cfg(offset & ~(size - 1), size, rng.getrandbits(32))
            d.set_cfg(COMMAND, 2, CMD_IO | CMD_MEMORY)
            d.set_cfg(0x20, 4, SMBA)
        elif roll < 0.15:
            d.set_cfg(S.HOSTC, 1, S.HST_EN | rng.getrandbits(3))
        elif roll < 0.55:
            register = rng.choice((S.HST_CNT, S.HST_CNT, S.HST_STS, S.HST_STS, S.HST_ADD,
                                   S.AUXCTL, rng.randrange(0, 32)))
            value = rng.getrandbits(8)
            if register == S.HST_ADD and rng.random() < 0.8:
                value = rng.choice((0x48, 0x50)) << 1 | (value & 1)
            elif register == S.HST_CNT and rng.random() < 0.8:
                value = (value | S.START) & ~S.KILL           # commands, mostly
            elif register == S.HST_STS and rng.random() < 0.8:
                value |= S.BYTE_DONE                           # byte-by-byte steps
            d.outb(register, value)
        elif roll < 0.65:
            d.mmio.write(MMIO + rng.randrange(0, 4096, size), size, rng.getrandbits(32))
        else:
            d.io.read(SMBA + rng.randrange(0, 32, size), size)
            d.mmio.read(MMIO + rng.randrange(0, 4096, size), size)
        assert len(d.smbus.block) == 32 and 0 <= d.smbus.done <= 0xFF
    d.io.write(SMBA, 3, 0xFF)                                   # odd widths are ignored
    d.smbus.load(d.smbus.save())                                # still a valid state
    d.smbus.reset()
    d.probe()
    assert d.access(0x48, WRITE, 0x10, BYTE_DATA, 0x77) == (0, None)
    assert d.access(0x48, READ, 0x10, BYTE_DATA) == (0, 0x77)


def test_the_block_buffer_index_steps_wraps_and_resets_on_a_control_read():
    d = Driver()
    d.probe()
    d.outb(S.AUXCTL, S.E32B)
    for byte in range(34):                                     # 32 slots: the last two wrap
        d.outb(S.BLKDAT, byte)
    d.inb(S.HST_CNT)
    assert [d.inb(S.BLKDAT) for _ in range(3)] == [32, 33, 2]
    d.inb(S.HST_CNT)
    assert d.inb(S.BLKDAT) == 32
    d.outb(S.AUXCTL, 0)                                        # without E32B: one register
    d.outb(S.BLKDAT, 0x99)
    assert d.inb(S.BLKDAT) == 0x99 and d.inb(S.BLKDAT) == 0x99
