"""00:16.0, the Management Engine Interface, driven the way Linux 6.1's mei_me driver drives
it (drivers/misc/mei: pci-me.c probe, init.c mei_start/mei_reset, hw-me.c's register
sequences and interrupt handlers, hbm.c's dispatch, bus-fixup.c's MKHI fixup), and by a
hostile guest."""

import random
import struct
import uuid

import pytest

from imacpro.bus.pci import (BAR0, CMD_BUS_MASTER, CMD_INTX_DISABLE, CMD_MEMORY, COMMAND,
                             PciBus, PciMemoryWindow)
from imacpro.devices.contract import Device, StateError, is_plain
from imacpro.devices.pch import mei as M
from imacpro.irq import IrqLine

BAR = 0xFE10_0000
MSI_ADDRESS, MSI_DATA = 0xFEE0_1000, 0x4051
SLOT = 0x16

IE_MASK, IS_MASK = M.H_IE | M.H_D0I3C_IE, M.H_IS | M.H_D0I3C_IS
ME_RST_HRA, D0I3C_CIP = 1 << 4, 1 << 0

# mei_dev_state and mei_hbm_state, in the driver's order.
(INITIALIZING, INIT_CLIENTS, ENABLED, RESETTING, DISABLED, POWERING_DOWN, POWER_DOWN,
 POWER_UP) = range(8)
(HBM_IDLE, HBM_STARTING, HBM_CAP_SETUP, HBM_DR_SETUP, HBM_ENUM_CLIENTS,
 HBM_CLIENT_PROPERTIES, HBM_STARTED, HBM_STOPPED) = range(8)
PG_IDLE, PG_WAIT, PG_RECEIVED, PG_INTR_WAIT, PG_INTR_RECEIVED = range(5)
ENODEV, EIO, EPROTO, ENODATA, EBADMSG, ERANGE, ETIME, EMSGSIZE, EOVERFLOW = \
    19, 5, 71, 61, 74, 34, 62, 90, 75
DRIVER_HBM = (2, 2)
MKHI_UUID = uuid.UUID("55213584-9a29-4916-badf-0fb7ed682aeb")


class Driver:
    """mei_me's steps as register accesses. `log` gets what the driver prints at warning
    level or above, as (level, text); `info` its info lines."""

    def __init__(self, msi=True, mkhi=False, mei=None):
        self.intx = IrqLine("inta")
        self.mei = mei or M.Mei(intx=self.intx, mkhi=mkhi)
        self.messages = []
        self.bus = PciBus(send_msi=lambda address, data: self.messages.append((address, data)))
        self.bus.attach(SLOT, 0, self.mei.pci)
        self.window = PciMemoryWindow(self.bus, BAR)
        self.use_msi = msi
        self.taken = 0
        self.thread_pending = False
        self.log, self.info = [], []
        self.dev_state, self.hbm_state = INITIALIZING, HBM_IDLE
        self.recvd_hw_ready = False
        self.version = None
        self.clients_map, self.me_clients = 0, {}
        self.rd_hdr = 0
        self.hbuf_is_ready = False
        self.pg_on, self.pg_event = False, PG_IDLE
        self.reset_count = 0
        self.reset_work = self.rescan_work = False
        self.responses = []          # client-related HBM answers: connect, disconnect, notify
        self.fixed_rx = []           # messages for the connected fixed-address client
        self.fixed_connected = None
        self.writes_waiting = 0
        self.fw_ver = None
        self.features = {}

    # --- the PCI side of mei_me_probe -------------------------------------------------------

    def enable(self):
        fn = self.mei.pci
        fn.write_config(BAR0, 4, BAR)
        fn.write_config(BAR0 + 4, 4, 0)
        fn.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)   # pcim_enable, set_master
        if self.use_msi:                                           # pci_enable_msi
            cap = self.mei.msi.offset
            fn.write_config(cap + 4, 4, MSI_ADDRESS)
            fn.write_config(cap + 8, 4, 0)
            fn.write_config(cap + 12, 2, MSI_DATA)
            fn.write_config(cap + 2, 2, 1)
            fn.write_config(COMMAND, 2, fn.read_config(COMMAND, 2) | CMD_INTX_DISABLE)

    def probe(self):
        self.enable()
        ret = self.mei_start()
        if ret == 0:
            self.rescan()
        return ret

    # --- register access; the CPU takes an interrupt after each -----------------------------

    def reg(self, offset):
        value = self.window.read(offset, 4)
        self.hard_irq()
        return value

    def set(self, offset, value):
        self.window.write(offset, 4, value)
        self.hard_irq()

    def hard_irq(self):
        """mei_me_irq_quick_handler, for each MSI sent or while INTA# is asserted."""
        for _ in range(100):
            if self.use_msi:
                if self.taken == len(self.messages):
                    return
                assert self.messages[self.taken] == (MSI_ADDRESS, MSI_DATA)
                self.taken += 1
            elif not self.intx.level:
                return
            hcsr = self.window.read(M.H_CSR, 4)
            if not hcsr & IS_MASK:
                assert self.use_msi, "INTA# asserted with no source"
                continue
            self.window.write(M.H_CSR, 4, hcsr & ~IE_MASK & ~IS_MASK)
            self.thread_pending = True
        raise AssertionError("interrupt storm")

    def warn(self, text):
        self.log.append(("warn", text))

    def err(self, text):
        self.log.append(("err", text))

    # --- hw-me.c ---------------------------------------------------------------------------

    def hcsr_set(self, hcsr):
        self.set(M.H_CSR, hcsr & ~IS_MASK)

    def set_hig(self):
        self.hcsr_set(self.reg(M.H_CSR) | M.H_IG)

    def intr_clear(self):
        hcsr = self.reg(M.H_CSR)
        if hcsr & IS_MASK:
            self.set(M.H_CSR, hcsr)

    def intr_enable(self):
        self.hcsr_set(self.reg(M.H_CSR) | IE_MASK)

    def hw_is_ready(self):
        return bool(self.reg(M.ME_CSR_HA) & M.ME_RDY_HRA)

    def host_is_ready(self):
        return bool(self.reg(M.H_CSR) & M.H_RDY)

    def hw_config(self):
        self.hbuf_depth = self.reg(M.H_CSR) >> 24
        hfs1 = self.bus.read(0, SLOT, 0, M.HFS_1, 4)
        self.d0i3_supported = bool(hfs1 & 1 << 31)
        self.pg_on = self.d0i3_supported and bool(self.reg(M.H_D0I3C) & M.D0I3C_I3)

    def hw_reset(self, intr_enable):
        if intr_enable:
            self.intr_enable()
            if self.d0i3_supported:
                self.d0i3_exit_sync()
            else:
                self.pg_on = False
        hcsr = self.reg(M.H_CSR)
        if hcsr & M.H_RST:
            self.warn(f"H_RST is set = {hcsr:#010x}")
            self.hcsr_set(hcsr & ~M.H_RST)
            hcsr = self.reg(M.H_CSR)
        hcsr |= M.H_RST | M.H_IG | IS_MASK
        if not intr_enable:
            hcsr &= ~IE_MASK
        self.recvd_hw_ready = False
        self.set(M.H_CSR, hcsr)
        hcsr = self.reg(M.H_CSR)
        if not hcsr & M.H_RST:
            self.warn(f"H_RST is not set = {hcsr:#010x}")
        if hcsr & M.H_RDY:
            self.warn(f"H_RDY is not cleared {hcsr:#010x}")
        if not intr_enable:
            self.reset_release()
            if self.d0i3_supported:
                self.d0i3_enter()
        return 0

    def reset_release(self):
        self.hcsr_set((self.reg(M.H_CSR) | M.H_IG) & ~M.H_RST)

    def hw_start(self):
        self.run_threads()                     # wait_event_timeout drops the device lock
        if not self.recvd_hw_ready:
            self.err("wait hw ready failed")
            return -ETIME
        self.reset_release()
        self.recvd_hw_ready = False
        self.hcsr_set(self.reg(M.H_CSR) | IE_MASK | M.H_IG | M.H_RDY)     # host_set_ready
        return 0

    def host_slots(self):
        hcsr = self.reg(M.H_CSR)
        filled = ((hcsr >> 16 & 0xFF) - (hcsr >> 8 & 0xFF)) & 0xFF
        return -EOVERFLOW if filled > self.hbuf_depth else self.hbuf_depth - filled

    def full_read_slots(self):
        me_csr = self.reg(M.ME_CSR_HA)
        filled = ((me_csr >> 16 & 0xFF) - (me_csr >> 8 & 0xFF)) & 0xFF
        return -EOVERFLOW if filled > me_csr >> 24 else filled

    def hbuf_write(self, payload, me_addr=0, host_addr=0, internal=False):
        """mei_me_hbuf_write: header and slots into H_CB_WW, then H_IG."""
        empty = self.host_slots()
        if empty < 0:
            return -EOVERFLOW
        slots = -(-len(payload) // 4)
        if 1 + slots > empty:
            return -EMSGSIZE
        self.set(M.H_CB_WW, me_addr | host_addr << 8 | len(payload) << 16 | internal << 30
                 | 1 << 31)
        for (word,) in struct.iter_unpack("<I", payload.ljust(4 * slots, b"\0")):
            self.set(M.H_CB_WW, word)
        self.set_hig()
        return 0 if self.hw_is_ready() else -EIO

    def read_slots(self, length):
        data = b"".join(struct.pack("<I", self.reg(M.ME_CB_RW)) for _ in range(-(-length // 4)))
        self.set_hig()
        return data[:length]

    def run_threads(self):
        """The threaded handler runs whenever the driver lets go of the device lock."""
        for _ in range(100):
            if not self.thread_pending:
                return
            self.thread_pending = False
            self.irq_thread()
        raise AssertionError("the interrupt thread never settles")

    def irq_thread(self):
        """mei_me_irq_thread_handler."""
        hcsr = self.reg(M.H_CSR)
        if hcsr & IS_MASK:
            self.set(M.H_CSR, hcsr)                         # me_intr_clear
        if not self.hw_is_ready() and self.dev_state != RESETTING:
            self.warn(f"FW not ready: resetting: dev_state = {self.dev_state} pxp = 0")
            self.reset_work = True
            return self.intr_enable()
        if self.reg(M.ME_CSR_HA) & ME_RST_HRA:
            self.set_hig()
        if self.pg_on and hcsr & M.H_IS:                    # d0i3: "want resume"
            self.d0i3_exit_sync()
        if not self.host_is_ready():
            if self.hw_is_ready():
                self.recvd_hw_ready = True
            return self.intr_enable()
        slots = self.full_read_slots()
        while slots > 0:
            ret, slots = self.irq_read_handler(slots)
            if ret == -ENODATA:
                break
            if ret:
                self.err(f"mei_irq_read_handler ret = {ret}, state = {self.dev_state}.")
                if self.dev_state not in (RESETTING, DISABLED, POWERING_DOWN, POWER_DOWN):
                    self.reset_work = True
                return self.intr_enable()
        self.hbuf_is_ready = self.host_slots() == self.hbuf_depth
        if self.pg_event not in (PG_WAIT, PG_RECEIVED):
            self.irq_write_handler()
            self.hbuf_is_ready = self.host_slots() == self.hbuf_depth
        self.intr_enable()

    def irq_read_handler(self, slots):
        if not self.rd_hdr:
            self.rd_hdr = self.reg(M.ME_CB_RW)
            slots -= 1
            if not self.rd_hdr or self.rd_hdr >> 25 & 7:
                self.err(f"corrupted message header {self.rd_hdr:#010x}")
                return -EBADMSG, slots
        header = self.rd_hdr
        me_addr, host_addr, length = header & 0xFF, header >> 8 & 0xFF, header >> 16 & 0x1FF
        if slots * 4 < length:
            self.err(f"less data available than length={slots:08x}.")
            return -ENODATA, slots
        if me_addr == 0 and host_addr == 0:
            ret = self.hbm_dispatch(self.read_slots(length))
            if ret:
                return ret, slots
        elif host_addr == 0 and me_addr == self.fixed_connected:
            self.fixed_rx.append(self.read_slots(length))
        elif host_addr == 0 or self.dev_state == POWER_DOWN:
            self.read_slots(length)                         # silently discarded
        else:
            self.err(f"no destination client found {header:#010x}")
            return -EBADMSG, slots
        self.rd_hdr = 0
        slots = self.full_read_slots()
        if slots == -EOVERFLOW:
            self.err("resetting due to slots overflow.")
            return -ERANGE, slots
        return 0, slots

    def irq_write_handler(self):
        if self.pg_on or self.pg_event in (PG_WAIT, PG_RECEIVED, PG_INTR_WAIT):
            return
        if not self.hbuf_is_ready:
            return
        self.hbuf_is_ready = False
        self.writes_waiting = 0                             # MEI WRITE COMPLETE

    # --- hbm.c -----------------------------------------------------------------------------

    def hbm_write(self, payload):
        return self.hbuf_write(bytes(payload))

    def hbm_dispatch(self, data):
        if self.hbm_state == HBM_IDLE:
            return 0                                        # spurious: ignored
        command = data[0]
        if command == 0x81:                                 # HOST_START_RES
            supported, minor, major = data[1], data[2], data[3]
            self.version = DRIVER_HBM if supported else (major, minor)
            if self.version > DRIVER_HBM:
                self.warn("hbm: start: version mismatch - stopping the driver.")
                self.hbm_state = HBM_STOPPED
                return self.hbm_write((0x02, 0, 0, 0))
            major, minor = self.version
            self.features = {"pg": self.version >= (1, 1), "dc": major >= 2, "ie": major >= 2,
                             "os": major >= 2, "fa": major >= 2, "dr": self.version >= (2, 1),
                             "cap": self.version >= (2, 2)}
            if self.dev_state != INIT_CLIENTS or self.hbm_state != HBM_STARTING:
                if self.dev_state in (POWER_DOWN, POWERING_DOWN):
                    return 0
                self.err("hbm: start: state mismatch")
                return -EPROTO
            assert not self.features["cap"] and not self.features["dr"], \
                "the ME offers what it does not model"
            flags = (1 if self.features["dc"] else 0) | (2 if self.features["ie"] else 0)
            if self.hbm_write((0x04, flags, 0, 0)):
                return -EIO
            self.hbm_state = HBM_ENUM_CLIENTS
        elif command == 0x84:                               # HOST_ENUM_RES
            self.clients_map = int.from_bytes(data[4:36], "little")
            if self.dev_state != INIT_CLIENTS or self.hbm_state != HBM_ENUM_CLIENTS:
                self.err("hbm: enumeration response: state mismatch")
                return -EPROTO
            self.hbm_state = HBM_CLIENT_PROPERTIES
            return self.prop_req(0)
        elif command == 0x85:                               # HOST_CLIENT_PROPERTIES_RES
            if self.dev_state != INIT_CLIENTS or self.hbm_state != HBM_CLIENT_PROPERTIES:
                self.err("hbm: properties response: state mismatch")
                return -EPROTO
            address, status = data[1], data[2]
            if status not in (0, 1):
                self.err(f"hbm: properties response: wrong status = {status}")
                return -EPROTO
            if status == 0:
                self.me_clients[address] = data[4:28]
            return self.prop_req(address + 1)
        elif command == 0x82:                               # HOST_STOP_RES
            if self.hbm_state != HBM_STOPPED:
                self.err("hbm: stop response: state mismatch")
                return -EPROTO
            self.dev_state = POWER_DOWN
            self.info.append("hbm: stop response: resetting.")
            return -EPROTO
        elif command == 0x03:                               # ME_STOP_REQ
            self.hbm_state = HBM_STOPPED
            if self.hbm_write((0x02, 0, 0, 0)):
                self.err("hbm: stop request: failed to send stop request")
                return -EIO
        elif command == 0x8A:                               # PG_ISOLATION_ENTRY_RES
            if self.pg_on or self.pg_event != PG_WAIT:
                self.err("hbm: pg entry response: state mismatch")
                return -EPROTO
            self.pg_event = PG_RECEIVED
        elif command in (0x86, 0x87, 0x90, 0x08):           # client answers, flow control
            self.responses.append(data)
        else:
            self.warn(f"WARNING: hbm: wrong command {command}")
            return -EPROTO
        return 0

    def prop_req(self, start):
        address = next((a for a in range(start, 256) if self.clients_map >> a & 1), None)
        if address is None:
            self.hbm_state = HBM_STARTED
            self.dev_state, self.reset_count = ENABLED, 0   # mei_host_client_init
            self.rescan_work = True
            return 0
        return -EIO if self.hbm_write((0x05, address, 0, 0)) else 0

    # --- init.c ----------------------------------------------------------------------------

    def mei_reset(self):
        state = self.dev_state
        if state not in (INITIALIZING, DISABLED, POWER_DOWN, POWER_UP):
            self.warn(f"unexpected reset: dev_state = {state}")
        self.intr_clear()
        self.hbm_state = HBM_IDLE
        self.dev_state = RESETTING
        self.reset_count += 1
        if self.reset_count > 3:
            self.err("reset: reached maximal consecutive resets: disabling the device")
            self.dev_state = DISABLED
            return -ENODEV
        self.hw_reset(state != POWER_DOWN)
        self.clients_map, self.me_clients, self.rd_hdr = 0, {}, 0
        if state == POWER_DOWN:
            self.dev_state = DISABLED
            return 0
        ret = self.hw_start()
        if ret:
            self.err(f"hw_start failed ret = {ret}")
            return ret
        if self.dev_state != RESETTING:
            return 0
        self.dev_state = INIT_CLIENTS
        if self.hbm_write((0x01, 0, DRIVER_HBM[1], DRIVER_HBM[0])):   # HOST_START_REQ
            self.err("hbm_start failed")
            self.dev_state = RESETTING
            return -EIO
        self.hbm_state = HBM_STARTING
        return 0

    def mei_start(self):
        self.intr_clear()
        self.hw_config()
        self.reset_count = 0
        while True:
            self.dev_state = INITIALIZING
            ret = self.mei_reset()
            if ret == -ENODEV or self.dev_state == DISABLED:
                self.err(f"reset failed ret = {ret}")
                return -ENODEV
            if not ret:
                break
        self.run_threads()                                  # mei_hbm_start_wait
        if self.hbm_state <= HBM_STARTING:
            self.err("waiting for mei start failed")
            return -ENODEV
        if self.version > DRIVER_HBM:
            return -ENODEV
        return 0

    def mei_stop(self):
        self.dev_state = POWER_DOWN
        self.intr_clear()
        self.run_threads()
        self.mei_reset()
        self.dev_state = DISABLED

    def mei_restart(self):
        self.dev_state, self.reset_count = POWER_UP, 0
        ret = self.mei_reset()
        self.run_threads()
        return ret

    # --- runtime PM: D0i3 ------------------------------------------------------------------

    def d0i3_exit_sync(self):
        self.pg_event = PG_INTR_WAIT
        reg = self.reg(M.H_D0I3C)
        if reg & M.D0I3C_I3:
            self.set(M.H_D0I3C, (reg & ~M.D0I3C_I3) | M.D0I3C_IR)
            assert not self.reg(M.H_D0I3C) & D0I3C_CIP      # no wait for an interrupt
        self.pg_on, self.pg_event = False, PG_IDLE
        return 0

    def d0i3_enter(self):
        reg = self.reg(M.H_D0I3C)
        if not reg & M.D0I3C_I3:
            self.set(M.H_D0I3C, (reg | M.D0I3C_I3) & ~M.D0I3C_IR)
            self.reg(M.H_D0I3C)
        self.pg_on, self.pg_event = True, PG_IDLE

    def runtime_suspend(self):
        """mei_me_pm_runtime_suspend → mei_me_d0i3_enter_sync."""
        assert self.dev_state == ENABLED
        if self.reg(M.H_D0I3C) & M.D0I3C_I3:
            self.pg_on = True
            return 0
        self.pg_event = PG_WAIT
        assert self.features["pg"]
        self.hbm_write((0x0A, 0, 0, 0))
        self.run_threads()
        if self.pg_event != PG_RECEIVED:
            self.pg_event = PG_IDLE
            return -ETIME
        self.pg_event = PG_INTR_WAIT
        self.set(M.H_D0I3C, self.reg(M.H_D0I3C) | M.D0I3C_I3 | M.D0I3C_IR)
        assert not self.reg(M.H_D0I3C) & D0I3C_CIP          # "d0i3 enter wait not needed"
        self.pg_on, self.pg_event = True, PG_IDLE
        return 0

    def runtime_resume(self):
        return self.d0i3_exit_sync()

    # --- clients ---------------------------------------------------------------------------

    def cl_write(self, payload, me_addr, host_addr=0, internal=False):
        """mei_cl_write with the host buffer free, then the wait for MEI_WRITE_COMPLETE
        (`internal`: MEI_CL_IO_TX_INTERNAL, header bit 30)."""
        assert self.hbuf_is_ready or self.host_slots() == self.hbuf_depth
        self.hbuf_is_ready = False
        assert self.hbuf_write(bytes(payload), me_addr, host_addr, internal) == 0
        self.writes_waiting = 1
        self.run_threads()
        return 0 if self.writes_waiting == 0 else -ETIME

    def hbm_request(self, payload):
        """A control message (connect, disconnect, notify, flow control) and the answer."""
        self.responses.clear()
        self.hbuf_is_ready = False
        assert self.hbm_write(payload) == 0
        self.run_threads()
        return self.responses[0] if self.responses else None

    def rescan(self):
        """mei_cl_bus_rescan_work: the fixups run for each client; MKHI's reads fw_ver."""
        self.rescan_work = False
        self.run_threads()
        for address, props in self.me_clients.items():
            if uuid.UUID(bytes_le=props[:16]) != MKHI_UUID:
                continue
            assert props[18] == address                     # fixed address: no HBM connect
            self.fixed_connected = address
            assert self.cl_write((0xFF, 0x02, 0, 0), address) == 0
            reply = self.fixed_rx.pop(0) if self.fixed_rx else b""
            if len(reply) < 4 + 8:
                self.err("Could not read FW version")
            else:
                self.fw_ver = [f"{platform}:{major}.{minor}.{hotfix}.{build}"
                               for minor, major, platform, build, hotfix
                               in struct.iter_unpack("<HBBHH", reply[4:4 + 24])]
            os_ver = bytes((0x03, 0x06, 0, 0, 0, 0, 0x10, 0, 8, 0, 0, 0, 0, 2, 0, 0, 0))
            assert self.cl_write(os_ver, address, internal=True) == 0
            self.fixed_connected = None


@pytest.fixture
def driver():
    d = Driver()
    assert d.probe() == 0
    return d


def test_identity_and_configuration_space():
    mei = M.Mei()
    fn = mei.pci
    assert fn.read_config(0x00, 4) == 0xA2BA_8086
    assert fn.read_config(0x08, 4) == 0x0780_0000
    assert fn.read_config(0x2C, 4) == 0x7270_8086
    assert fn.read_config(0x10, 4) == 0x4                       # 64-bit memory
    fn.write_config(0x10, 4, 0xFFFF_FFFF)
    assert fn.read_config(0x10, 4) == 0xFFFF_F004               # 4 KiB
    assert fn.read_config(0x34, 1) == 0x50
    assert fn.read_config(0x50, 4) == 0xC803_8C01               # PM v3, next: MSI
    assert fn.read_config(0x54, 2) == 0x0008                    # D0, NoSoftRst
    assert fn.read_config(0x8C, 4) == 0x0080_0005               # MSI, 64-bit, 1 vector, last
    for offset, value in M.HFS.items():
        assert fn.read_config(offset, 4) == value
        fn.write_config(offset, 4, ~value & 0xFFFF_FFFF)        # read-only
        assert fn.read_config(offset, 4) == value
    assert fn.read_config(M.HFS_1, 4) >> 31 == 1 and fn.read_config(M.HFS_1, 4) & 0xF == 5


def test_probe_initialises_the_link_with_no_clients(driver):
    assert driver.dev_state == ENABLED and driver.hbm_state == HBM_STARTED
    assert driver.version == (2, 0) and driver.hbuf_depth == 128
    assert driver.features == {"pg": True, "dc": True, "ie": True, "os": True, "fa": True,
                               "dr": False, "cap": False}
    assert driver.d0i3_supported and not driver.pg_on
    assert driver.me_clients == {} and driver.clients_map == 0
    assert driver.log == [] and driver.info == [] and driver.mei.guest_errors == 0
    assert driver.fw_ver is None                                # no MKHI client, no fixup
    hcsr = driver.reg(M.H_CSR)
    assert hcsr & (M.H_RDY | M.H_IE) == M.H_RDY | M.H_IE and not hcsr & M.H_RST
    assert hcsr >> 8 & 0xFF == hcsr >> 16 & 0xFF                # host buffer empty
    me_csr = driver.reg(M.ME_CSR_HA)
    assert me_csr & M.ME_RDY_HRA and me_csr >> 8 & 0xFF == me_csr >> 16 & 0xFF
    assert len(driver.messages) >= 3 and not driver.intx.level  # MSI, never INTA#


def test_probe_over_inta():
    d = Driver(msi=False)
    assert d.probe() == 0
    assert d.dev_state == ENABLED and d.log == [] and d.messages == []
    assert not d.intx.level
    assert d.hbm_request((0x06, 3, 1, 0)) == bytes((0x86, 3, 1, 1))


def test_the_probe_fails_without_a_ready_me():
    """Without bus mastering the MSI cannot leave: hw_ready_wait times out, as on HW."""
    d = Driver()
    d.enable()
    d.mei.pci.write_config(COMMAND, 2, CMD_MEMORY)            # no bus master: no MSI gets out
    assert d.mei_start() == -ENODEV
    assert ("err", "wait hw ready failed") in d.log


def test_unknown_clients_are_not_found(driver):
    assert driver.hbm_request((0x06, 5, 1, 0)) == bytes((0x86, 5, 1, 1))    # connect
    assert driver.hbm_request((0x07, 5, 1, 0)) == bytes((0x87, 5, 1, 1))    # disconnect
    assert driver.hbm_request((0x10, 5, 1, 1)) == bytes((0x90, 5, 1, 1, 1, 0, 0, 0))
    assert driver.hbm_request((0x08, 5, 1, 0, 0, 0, 0, 0)) is None          # flow control
    assert driver.hbuf_is_ready                                # the ME took it: interrupt
    driver.clients_map = 1 << 9                                # ask for a client not there
    driver.dev_state, driver.hbm_state = INIT_CLIENTS, HBM_CLIENT_PROPERTIES
    assert driver.prop_req(0) == 0
    driver.run_threads()
    assert driver.me_clients == {} and driver.hbm_state == HBM_STARTED
    assert driver.log == []


def test_runtime_pm_enters_and_leaves_d0i3(driver):
    assert driver.runtime_suspend() == 0
    assert driver.pg_on and driver.reg(M.H_D0I3C) & M.D0I3C_I3
    assert driver.runtime_resume() == 0
    assert not driver.pg_on and not driver.reg(M.H_D0I3C) & M.D0I3C_I3
    assert driver.hbm_request((0x06, 2, 1, 0))[3] == 1         # the link still works
    assert driver.log == []


def test_suspend_and_resume_reset_the_link(driver):
    driver.mei_stop()                                          # mei_me_pci_suspend
    assert driver.dev_state == DISABLED and driver.pg_on
    assert driver.reg(M.H_D0I3C) & M.D0I3C_I3 and not driver.reg(M.H_CSR) & M.H_RDY
    assert driver.mei_restart() == 0                           # mei_me_pci_resume
    assert driver.dev_state == ENABLED and driver.hbm_state == HBM_STARTED
    assert not driver.pg_on and driver.log == []


def test_a_reset_in_the_middle_of_init_starts_over_cleanly():
    """The host resets while the ME's HOST_START answer is unread and half a message sits in
    the host buffer; the re-initialisation sees nothing stale."""
    d = Driver()
    d.enable()
    d.intr_clear()
    d.hw_config()
    d.dev_state = INITIALIZING
    assert d.mei_reset() == 0                                  # HOST_START_REQ is out
    assert d.full_read_slots() == 2                            # its answer waits
    d.set(M.H_CB_WW, 0x8004_0000)                              # a header, no payload yet
    assert d.mei.save()["h_wp"] == d.mei.save()["h_rp"] + 1
    d.thread_pending = False                                   # the answer is never read
    assert d.mei_start() == 0                                  # reset_work: start over
    assert d.dev_state == ENABLED and d.log == [] and d.mei.guest_errors == 0
    assert d.full_read_slots() == 0 and d.host_slots() == 128


def test_reset_while_enabled_and_the_driver_warning(driver):
    """A reset of an enabled device (e.g. after a client timeout) is the driver's own
    'unexpected reset' warning; the ME takes it and the link comes back."""
    driver.mei_reset()
    driver.run_threads()
    assert driver.dev_state == ENABLED
    assert [level for level, text in driver.log] == ["warn"]
    assert driver.log[0][1].startswith("unexpected reset")


def test_me_stop_request_is_answered_by_a_host_stop(driver):
    driver.mei.request_stop()
    driver.hard_irq()
    driver.run_threads()
    assert driver.dev_state == POWER_DOWN and driver.mei.session == M.STOPPED
    assert driver.info == ["hbm: stop response: resetting."]
    assert driver.hbm_state == HBM_STOPPED
    assert driver.log == [("err", f"mei_irq_read_handler ret = {-EPROTO}, state = {POWER_DOWN}.")]
    assert driver.mei_restart() == 0 and driver.dev_state == ENABLED
    assert driver.mei.session == M.STARTED


def test_the_mkhi_client_reports_the_firmware_version():
    d = Driver(mkhi=True)
    assert d.probe() == 0
    assert list(d.me_clients) == [M.MKHI_ADDRESS]
    props = d.me_clients[M.MKHI_ADDRESS]
    assert uuid.UUID(bytes_le=props[:16]) == MKHI_UUID and props[19] == 0
    assert struct.unpack_from("<I", props, 20)[0] == 2048
    assert d.fw_ver == ["0:11.12.50.1400", "0:11.12.50.1400", "0:11.0.0.1180"]
    assert d.log == [] and d.fixed_rx == [] and d.mei.guest_errors == 0


def test_a_host_that_does_not_read_stalls_its_own_writes(driver):
    """Property requests without reading the answers: the ME stops taking requests when
    its buffer has no room for an answer; reading lets it go on; nothing is lost."""
    asked = 0
    driver.thread_pending = False
    for _ in range(40):
        if driver.host_slots() < 2:
            break
        driver.window.write(M.H_CB_WW, 4, 0x8004_0000)
        driver.window.write(M.H_CB_WW, 4, 0x05 | 9 << 8)
        driver.window.write(M.H_CSR, 4, (driver.window.read(M.H_CSR, 4) | M.H_IG) & ~IS_MASK)
        asked += 1
    assert asked == 40
    # 15 answers of 8 slots leave less than the largest answer's 10: the ME waits.
    assert driver.full_read_slots() == 120 and driver.host_slots() == 128 - 2 * (40 - 15)
    answers = 0
    for _ in range(1000):
        if not driver.full_read_slots():
            break
        header = driver.reg(M.ME_CB_RW)
        assert header >> 16 & 0x1FF == 28
        assert driver.read_slots(28)[:3] == bytes((0x85, 9, 1))
        answers += 1
    assert answers == asked and driver.host_slots() == 128


def test_host_buffer_overflow_is_dropped():
    d = Driver()
    d.enable()
    for n in range(300):
        d.window.write(M.H_CB_WW, 4, n)
    hcsr = d.window.read(M.H_CSR, 4)
    assert ((hcsr >> 16) - (hcsr >> 8)) & 0xFF == 128          # full, never past its depth
    assert d.mei.guest_errors == 300 - 128
    assert d.probe() == 0 and d.dev_state == ENABLED            # the reset clears it


def test_garbage_host_bus_messages_are_dropped(driver):
    errors = driver.mei.guest_errors
    assert driver.hbm_request((0x7E, 1, 2, 3)) is None          # unknown command
    assert driver.hbm_request((0x12, 0, 0, 0)) is None          # DMA setup: not offered
    assert driver.hbuf_write(b"", 0, 0) == 0                    # empty HBM message
    driver.set(M.H_CB_WW, 0x01FF_0000 | 1 << 31)                # 511 bytes announced
    driver.set(M.H_CB_WW, 0x1234)
    driver.set_hig()
    driver.set(M.H_CB_WW, 0x0004_0000)                          # not "complete"
    driver.set(M.H_CB_WW, 0x0000_0004)
    driver.set_hig()
    driver.run_threads()
    assert driver.mei.guest_errors == errors + 5
    assert driver.host_slots() == 128 and driver.full_read_slots() == 0
    assert driver.hbm_request((0x06, 1, 1, 0)) == bytes((0x86, 1, 1, 1))   # still up
    assert driver.log == []


def test_requests_before_host_start_are_ignored():
    d = Driver()
    d.enable()
    d.intr_clear()
    d.hw_config()
    d.dev_state = RESETTING
    d.hw_reset(True)
    assert d.hw_start() == 0
    assert d.hbuf_write(bytes((0x04, 3, 0, 0))) == 0            # enumeration, no session
    assert d.full_read_slots() == 0 and d.mei.guest_errors == 1


def test_msi_edges_follow_h_is_and_h_ie():
    d = Driver()
    d.enable()
    mei = d.mei
    mei.write(M.H_CSR, 4, M.H_RST)                              # reset: H_IS, no H_IE
    assert d.messages == [] and mei.read(M.H_CSR, 4) & M.H_IS
    mei.write(M.H_CSR, 4, M.H_RST | M.H_IE)                     # enabling: the edge
    assert d.messages == [(MSI_ADDRESS, MSI_DATA)]
    mei.write(M.H_CSR, 4, M.H_RST | M.H_IE)                     # still pending: no new edge
    assert len(d.messages) == 1
    mei.write(M.H_CSR, 4, M.H_RST | M.H_IE | M.H_IS)            # cleared
    assert not mei.read(M.H_CSR, 4) & M.H_IS and len(d.messages) == 1


def test_inta_follows_the_level_and_the_command_register():
    d = Driver(msi=False)
    d.enable()
    mei = d.mei
    mei.write(M.H_CSR, 4, M.H_RST | M.H_IE)
    assert d.intx.level and mei.pci.read_config(0x06, 2) & 1 << 3
    d.mei.pci.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER | CMD_INTX_DISABLE)
    assert not d.intx.level
    d.mei.pci.write_config(COMMAND, 2, CMD_MEMORY | CMD_BUS_MASTER)
    mei.write(M.H_CSR, 4, M.H_RST | M.H_IS)
    assert not d.intx.level


def test_reset_returns_to_power_on(driver):
    driver.mei.request_stop()
    driver.mei.reset()
    mei = driver.mei
    assert mei.read(M.H_CSR, 4) == 0x8000_0000
    assert mei.read(M.ME_CSR_HA, 4) == 0x8000_0009
    assert mei.read(M.H_D0I3C, 4) == 0 and mei.session == M.IDLE
    assert mei.pci.read_config(COMMAND, 2) == 0 and mei.pci.read_config(0x10, 4) == 4
    assert not mei.msi.enabled and not driver.intx.level
    assert mei.save() == M.Mei(intx=IrqLine()).save()
    again = Driver(mei=mei)
    assert again.probe() == 0 and again.log == []


def test_save_and_load_carry_a_conversation_on(driver):
    driver.thread_pending = False
    driver.window.write(M.H_CB_WW, 4, 0x8004_0000)              # a request, answered...
    driver.window.write(M.H_CB_WW, 4, 0x06 | 4 << 8 | 2 << 16)
    driver.window.write(M.H_CSR, 4, (driver.window.read(M.H_CSR, 4) | M.H_IG) & ~IS_MASK)
    driver.window.write(M.H_CB_WW, 4, 0x8004_0000)              # ...and half of another
    saved = driver.mei.save()
    assert is_plain(saved) and isinstance(driver.mei, Device)
    other = Driver(mkhi=False)
    other.mei.load(saved)
    assert other.mei.save() == saved
    other.hbuf_depth, other.dev_state = 128, ENABLED
    other.hbm_state, other.version = HBM_STARTED, (2, 0)
    assert other.mei.pci.read_config(BAR0, 4) & ~0xF == BAR           # decoding came back
    assert other.full_read_slots() == 2                              # the first answer
    other.set(M.H_CB_WW, 0x07 | 4 << 8 | 2 << 16)               # the second half, then H_IG
    other.set_hig()
    assert other.full_read_slots() == 4
    answers = [other.read_slots(4) for _ in range(2) if other.reg(M.ME_CB_RW) >> 16 == 0x8004]
    assert answers == [bytes((0x86, 4, 2, 1)), bytes((0x87, 4, 2, 1))]


def test_a_bad_state_is_refused_and_changes_nothing(driver):
    saved = driver.mei.save()
    fresh = M.Mei(intx=IrqLine())
    before = fresh.save()
    bad = [{k: v for k, v in saved.items() if k != "session"},
           {**saved, "session": "dancing"},
           {**saved, "h_wp": 200, "h_rp": 10},
           {**saved, "me_rp": 256},
           {**saved, "h_ie": 1},
           {**saved, "d0i3c": 1},
           {**saved, "host_buffer": b"\0" * 10},
           {**saved, "pci": {**saved["pci"], "config": saved["pci"]["config"][:0x40]
                             + b"\xff" * 4 + saved["pci"]["config"][0x44:]}},
           {**saved, "msi": {"x": 1}},
           "not a mapping"]
    for state in bad:
        with pytest.raises(StateError):
            fresh.load(state)
        assert fresh.save() == before
    fresh.load(saved)
    assert fresh.save() == saved


def test_a_hostile_guest_cannot_break_it():
    """Random BAR and config accesses and random host bus traffic on a link that keeps
    coming up: no exception, no growth, no interrupt storm; then the driver probes again
    from whatever state it left."""
    rng = random.Random(16)
    driver = Driver(mkhi=True)
    assert driver.probe() == 0
    mei, fn = driver.mei, driver.mei.pci
    offsets = [M.H_CB_WW, M.H_CSR, M.ME_CB_RW, M.ME_CSR_HA, M.H_HPG_CSR, M.H_D0I3C, 0x14, 0xFFC]
    commands = (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x0A, 0x0B, 0x0F, 0x10, 0x12,
                0x13, 0x14, 0x87, 0x8B, 0x8F, 0xFF, 0x00)
    handled = {}
    for _ in range(6000):
        roll = rng.random()
        offset = rng.choice(offsets) if rng.random() < 0.9 else rng.randrange(0, 4096)
        if roll < 0.05:                                          # the link comes up
            mei.write(M.H_CSR, 4, M.H_RST | M.H_IE)
            mei.write(M.H_CSR, 4, M.H_RDY | M.H_IE | M.H_IG | M.H_IS)
            for word in (0x8004_0000, 0x0202_0001):
                mei.write(M.H_CB_WW, 4, word)
            mei.write(M.H_CSR, 4, M.H_RDY | M.H_IE | M.H_IG)
        elif roll < 0.45:                                        # a message, more or less
            length = rng.randrange(0, 48)
            me_addr = rng.choice((0, 0, 0, M.MKHI_ADDRESS, rng.randrange(256)))
            host_addr = rng.choice((0, 0, 0, rng.randrange(256)))
            flags = rng.choice((1 << 31, 1 << 31, 1 << 31, 0, rng.getrandbits(7) << 25))
            mei.write(M.H_CB_WW, 4, me_addr | host_addr << 8 | length << 16 | flags)
            first = rng.choice(commands) | rng.getrandbits(24) << 8
            if me_addr == M.MKHI_ADDRESS:
                first = rng.choice((0x02FF, 0x0603, first))
            words = [first] + [rng.getrandbits(32) for _ in range(47)]
            for word in words[:max(0, -(-length // 4) + rng.choice((0, 0, 0, -1, 1)))]:
                mei.write(M.H_CB_WW, 4, word)
            if rng.random() < 0.9:
                mei.write(M.H_CSR, 4, (mei.read(M.H_CSR, 4) | M.H_IG) & ~IS_MASK)
        elif roll < 0.6:
            for _ in range(rng.randrange(1, 12)):
                mei.read(M.ME_CB_RW, 4)
            if rng.random() < 0.7:
                mei.write(M.H_CSR, 4, (mei.read(M.H_CSR, 4) | M.H_IG) & ~IS_MASK)
        elif roll < 0.7:
            mei.write(offset, rng.choice((1, 2, 4, 4, 4, 8)), rng.getrandbits(64))
        elif roll < 0.8:
            mei.read(offset, rng.choice((1, 2, 4, 8, 3)))
        elif roll < 0.88:
            where = rng.randrange(0, 256) & ~3
            if where not in (0x10, 0x14):                        # BAR0 stays where it is
                fn.write_config(where, rng.choice((1, 2, 4)), rng.getrandbits(32))
        elif roll < 0.95:
            mei.write(M.H_CSR, 4, rng.getrandbits(32))
        else:
            mei.request_stop()
        handled[mei.session] = handled.get(mei.session, 0) + 1
        assert len(mei.host_buffer) == len(mei.me_buffer) == M.DEPTH
        assert (mei.h_wp - mei.h_rp) & 0xFF <= M.DEPTH
        assert (mei.me_wp - mei.me_rp) & 0xFF <= M.DEPTH
    assert handled[M.STARTED] > 1000                             # the traffic got through
    assert len(driver.messages) < 6000
    copy = M.Mei(intx=IrqLine(), mkhi=True)
    copy.load(mei.save())
    assert copy.save() == mei.save()
    for offset, value in M.HFS.items():
        assert fn.read_config(offset, 4) == value
    again = Driver(mei=mei)                                     # the driver reloads
    mei.pci.write_config(COMMAND, 2, 0)
    mei.pci.write_config(mei.msi.offset + 2, 2, 0)
    assert again.probe() == 0 and again.dev_state == ENABLED
    assert again.fw_ver == ["0:11.12.50.1400", "0:11.12.50.1400", "0:11.0.0.1180"]
    assert all(level == "warn" and text.startswith("H_R") for level, text in again.log)
