"""The xHCI controller driven as Linux's xhci_hcd drives it, with a small test device."""

import pytest

from imacpro.devices.usb import device as U
from imacpro.devices.usb.xhci import contexts as C
from imacpro.devices.usb.xhci import ports as P
from imacpro.devices.usb.xhci import registers as R
from imacpro.devices.usb.xhci import trb as T
from tests.devices.usb.xhci_driver import OP, XhciDriver


class Button(U.UsbDevice):
    """A full-speed device with one interrupt IN endpoint that sends what is queued."""

    def __init__(self, speed=U.FULL):
        super().__init__(U.Identity(0x1234, 0x5678, 0x0100, "Maker", "Button", "S1"),
                         (U.Interface(0, 3, 0, 0, (U.Endpoint(0x81, U.INTERRUPT, 8, 10),)),),
                         speed)
        self.queue = []

    def press(self, report: bytes) -> None:
        self.queue.append(report)
        self.on_ready(0x81)

    def endpoint_in(self, address, length):
        return self.queue.pop(0) if self.queue else None


@pytest.fixture
def host():
    driver = XhciDriver()
    driver.start()
    return driver


def code(event):
    return event.status >> 24


def test_capabilities_and_extended_capabilities():
    driver = XhciDriver()
    assert driver.r32(0) == 0x0100_0080
    params = driver.r32(4)
    assert params & 0xFF == 64 and params >> 24 == 26 and params >> 8 & 0x7FF == 8
    assert driver.r32(0x14) == R.DBOFF and driver.r32(0x18) == R.RTSOFF
    xecp = (driver.r32(0x10) >> 16) * 4
    found = {}
    while True:
        header = driver.r32(xecp)
        if header & 0xFF == 2:
            ports = driver.r32(xecp + 8)
            found[header >> 24] = (ports & 0xFF, ports >> 8 & 0xFF)
            assert driver.r32(xecp + 4) == int.from_bytes(b"USB ", "little")
        nxt = header >> 8 & 0xFF
        if not nxt:
            break
        xecp += 4 * nxt
    assert found == {2: (1, 16), 3: (17, 10)}
    assert driver.r32(OP + R.USBSTS) & R.HCH
    assert driver.r32(OP + R.PAGESIZE) == 1


def test_bios_handoff_semaphores():
    driver = XhciDriver()
    driver.w32(R.LEGACY_SUPPORT, R.OS_OWNED)
    assert driver.r32(R.LEGACY_SUPPORT) & (R.OS_OWNED | R.BIOS_OWNED) == R.OS_OWNED
    assert driver.r32(R.LEGACY_SUPPORT) & 0xFF == 1


def test_a_usb2_device_connects_resets_and_enumerates(host):
    button = Button()
    host.xhci.plug(3, button)
    (event,) = host.events()
    assert event.type == T.PORT_STATUS_CHANGE and event.parameter >> 24 == 3
    sc = host.portsc(3)
    assert sc & P.CCS and sc & P.CSC and not sc & P.PED
    host.w32(OP + R.PORTS + 0x20, P.PP | P.CSC)            # clear the change
    assert not host.portsc(3) & P.CSC
    host.reset_port(3)
    (event,) = host.events()
    assert event.type == T.PORT_STATUS_CHANGE
    sc = host.portsc(3)
    assert sc & P.PED and sc & P.PRC and sc >> 10 & 0xF == U.FULL and sc >> 5 & 0xF == 0
    slot = host.enable_slot()
    assert slot == 1
    done = host.address_device(slot, 3, U.FULL)
    assert code(done) == T.SUCCESS and done.slot == slot
    assert button.address == slot
    assert C.slot_state(host.context(slot, 0)) == C.SLOT_ADDRESSED
    assert C.ep_state(host.context(slot, 1)) == C.EP_RUNNING
    status, descriptor = host.control(slot, U.Setup(0x80, U.GET_DESCRIPTOR, 0x100, 0, 18))
    assert status == T.SUCCESS and descriptor == button.device_descriptor()
    # A longer request than the descriptor: a short packet, then the status stage.
    status, config = host.control(slot, U.Setup(0x80, U.GET_DESCRIPTOR, 0x200, 0, 255))
    assert status == T.SUCCESS and config == button.configuration_descriptor()
    assert code(host.events_seen[-2]) == T.SHORT_PACKET
    assert host.events_seen[-2].status & 0xFFFFFF == 255 - len(config)
    status, _ = host.control(slot, U.Setup(0x00, U.SET_CONFIGURATION, 1, 0, 0))
    assert status == T.SUCCESS and button.configuration == 1
    assert code(host.configure(slot, [(0x81, C.INTERRUPT_IN, 8)])) == T.SUCCESS
    assert C.slot_state(host.context(slot, 0)) == C.SLOT_CONFIGURED
    assert C.context_entries(host.context(slot, 0)) == 3


def enumerated(host, device=None, port=3):
    device = device or Button()
    host.xhci.plug(port, device)
    host.reset_port(port)
    host.events()
    slot = host.enable_slot()
    host.address_device(slot, port, device.speed)
    host.control(slot, U.Setup(0x00, U.SET_CONFIGURATION, 1, 0, 0))
    host.configure(slot, [(0x81, C.INTERRUPT_IN, 8)])
    return slot, device


def test_an_interrupt_in_td_waits_for_the_device(host):
    slot, button = enumerated(host)
    buffer = host.queue_in(slot, 3, 8)
    assert host.events() == []                             # NAKed: nothing yet
    button.press(b"\x01\x02")
    (event,) = host.events()
    assert event.type == T.TRANSFER_EVENT and code(event) == T.SHORT_PACKET
    assert event.status & 0xFFFFFF == 6 and event.slot == slot and event.endpoint == 3
    assert host.ram.read(buffer, 2) == b"\x01\x02"
    button.press(b"\x03" * 8)                              # no TD queued: it waits
    assert host.events() == []
    host.queue_in(slot, 3, 8)
    (event,) = host.events()
    assert code(event) == T.SUCCESS


def test_msi_is_sent_once_per_pending_bit(host):
    sent = []
    host.xhci.pci.send_msi = lambda address, data: sent.append((address, data))
    msi = host.xhci.msi.offset
    host.xhci.pci.write_config(msi + 4, 4, 0xFEE0_0000)
    host.xhci.pci.write_config(msi + 12, 2, 0x41)
    host.xhci.pci.write_config(msi + 2, 2, 1)
    slot, button = enumerated(host)
    sent.clear()
    host.queue_in(slot, 3, 8)
    button.press(b"a")
    assert sent == [(0xFEE0_0000, 0x41)]
    button.press(b"b")                                     # queued, no TD: no event
    host.queue_in(slot, 3, 8)                              # event while IP is still set
    assert sent == [(0xFEE0_0000, 0x41)]
    host.events()                                          # the handler clears IP, EHB
    host.queue_in(slot, 3, 8)
    button.press(b"c")
    assert len(sent) == 2


def test_a_stall_halts_the_endpoint_until_reset_endpoint(host):
    slot, button = enumerated(host)
    status, _ = host.control(slot, U.Setup(0x80, U.GET_DESCRIPTOR, 0x0900, 0, 8))
    assert status == T.STALL
    assert C.ep_state(host.context(slot, 1)) == C.EP_HALTED
    assert code(host.command(0, T.RESET_ENDPOINT, slot << 24 | 1 << 16)) == T.SUCCESS
    assert C.ep_state(host.context(slot, 1)) == C.EP_STOPPED
    ring = host.slot_rings[slot, 1]
    target = ring.base + 16 * ring.index
    done = host.command(target | ring.cycle, T.SET_TR_DEQUEUE, slot << 24 | 1 << 16)
    assert code(done) == T.SUCCESS
    status, descriptor = host.control(slot, U.Setup(0x80, U.GET_DESCRIPTOR, 0x100, 0, 18))
    assert status == T.SUCCESS and descriptor[:2] == b"\x12\x01"


def test_stop_endpoint_reports_the_pending_td_and_writes_the_dequeue_pointer(host):
    slot, button = enumerated(host)
    host.queue_in(slot, 3, 8)
    ring = host.slot_rings[slot, 3]
    host.w32(R.DBOFF, 0)
    address = host.commands.put(0, 0, T.STOP_ENDPOINT << 10 | slot << 24 | 3 << 16)
    host.w32(R.DBOFF, 0)
    events = host.events()
    assert [(e.type, code(e)) for e in events] == [(T.TRANSFER_EVENT, T.STOPPED),
                                                    (T.COMMAND_COMPLETION, T.SUCCESS)]
    assert events[0].parameter == ring.base and events[1].parameter == address
    ep = host.context(slot, 3)
    assert C.ep_state(ep) == C.EP_STOPPED and C.dequeue(ep) == (ring.base, 1)
    button.press(b"x")                                     # stopped: the TD does not run
    assert host.events() == []
    host.w32(R.DBOFF + 4 * slot, 3)                        # the doorbell restarts it
    assert code(host.events()[0]) == T.SHORT_PACKET


def test_command_errors(host):
    assert code(host.command(0, T.DISABLE_SLOT, 5 << 24)) == T.SLOT_NOT_ENABLED
    assert code(host.command(0, 31)) == T.TRB_ERROR              # not a command
    slot = host.enable_slot()
    # No device on port 9: the address command finds nobody.
    assert code(host.address_device(slot, 9, U.HIGH)) == T.TRANSACTION_ERROR
    assert code(host.command(0, T.CONFIGURE_ENDPOINT, slot << 24)) == T.CONTEXT_STATE_ERROR
    assert code(host.command(0, T.RESET_ENDPOINT, slot << 24 | 1 << 16)) == \
        T.ENDPOINT_NOT_ENABLED
    assert code(host.command(0, T.COMMAND_NOOP)) == T.SUCCESS
    for _ in range(3):
        host.enable_slot()
    host.w32(OP + R.CONFIG, 4)
    assert code(host.command(0, T.ENABLE_SLOT)) == T.NO_SLOTS


def test_a_ring_of_link_trbs_is_a_trb_error_not_a_hang(host):
    slot, button = enumerated(host)
    ring = host.slot_rings[slot, 3]
    host.ram.write(ring.base, T.Trb(ring.base, 0, T.LINK << 10 | 1).pack())
    host.w32(R.DBOFF + 4 * slot, 3)
    (event,) = host.events()
    assert code(event) == T.TRB_ERROR
    assert C.ep_state(host.context(slot, 3)) == C.EP_HALTED


def test_a_command_ring_outside_memory_is_a_host_system_error(host):
    host.w32(OP + R.USBCMD, 0)
    host.w64(OP + R.CRCR, 0xFEE0_0000 | 1)
    host.w32(OP + R.USBCMD, R.RUN)
    host.w32(R.DBOFF, 0)
    assert host.r32(OP + R.USBSTS) & (R.HSE | R.HCH) == R.HSE | R.HCH
    host.w32(OP + R.USBCMD, R.HCRST)                       # a reset brings it back
    assert host.r32(OP + R.USBSTS) & R.HSE == 0


def test_events_wait_for_room_in_a_full_event_ring(host):
    slot, button = enumerated(host)
    host.events()
    for n in range(100):                                   # more than the ring's 64 TRBs
        button.queue.append(bytes([n]))
    for n in range(60):
        host.queue_in(slot, 3, 1)
    for n in range(40):
        host.queue_in(slot, 3, 1)
        if n % 20 == 19:
            host.events()
    seen = [e for e in host.events_seen if e.type == T.TRANSFER_EVENT][-100:]
    host.events()
    seen = [e for e in host.events_seen if e.type == T.TRANSFER_EVENT]
    assert len([e for e in seen if e.endpoint == 3]) == 100


def test_usb3_device_is_enabled_by_link_training():
    driver = XhciDriver()
    driver.start()
    device = Button(speed=U.SUPER)
    with pytest.raises(ValueError):
        driver.xhci.plug(1, device)
    driver.xhci.plug(17, device)
    sc = driver.portsc(17)
    assert sc & P.PED and sc >> 10 & 0xF == U.SUPER and sc >> 5 & 0xF == P.U0
    driver.xhci.unplug(17)
    sc = driver.portsc(17)
    assert not sc & P.CCS and sc & P.CSC and sc >> 5 & 0xF == P.RX_DETECT


def test_transfers_to_an_unplugged_device_fail_with_transaction_error(host):
    slot, button = enumerated(host)
    host.xhci.unplug(3)
    host.events()
    host.queue_in(slot, 3, 8)
    (event,) = host.events()
    assert code(event) == T.TRANSACTION_ERROR


def test_random_register_writes_and_trbs_never_raise():
    import random
    rng = random.Random(7)
    driver = XhciDriver()
    driver.start()
    slot, button = enumerated(driver)
    for _ in range(3000):
        choice = rng.random()
        if choice < 0.4:
            offset = rng.choice([0x80, 0x84, 0x98, 0x9C, 0xB0, 0xB8, 0x480, 0x490, 0x2020,
                                 0x2028, 0x2030, 0x2034, 0x2038, 0x3000, 0x3004, 0x8000,
                                 rng.randrange(0, R.BAR_SIZE, 4)])
            driver.xhci.write(offset, rng.choice([1, 2, 4, 8]), rng.getrandbits(64))
        elif choice < 0.8:
            ring = driver.slot_rings[rng.choice(list(driver.slot_rings))]
            address = ring.base + 16 * rng.randrange(64)
            driver.ram.write(address, rng.randbytes(16))
            driver.xhci.write(R.DBOFF + 4 * slot, 4, rng.randrange(1, 8))
        elif choice < 0.9:
            driver.ram.write(driver.commands.base + 16 * rng.randrange(64), rng.randbytes(16))
            driver.xhci.write(R.DBOFF, 4, 0)
        else:                          # contexts: the input ones commands read, the outputs
            where = rng.choice([driver.output[slot], driver.dcbaa, 0x100000,
                                driver.next_free - C.INPUT_CONTEXT])
            driver.ram.write(where + rng.randrange(0, 1024, 4), rng.randbytes(64))
            kind = rng.choice([T.ADDRESS_DEVICE, T.CONFIGURE_ENDPOINT, T.EVALUATE_CONTEXT])
            driver.commands.put(where, 0, kind << 10 | slot << 24)
            driver.xhci.write(R.DBOFF, 4, 0)
            driver.events()
        driver.xhci.read(rng.randrange(0, R.BAR_SIZE, 4), 4)
    # Whatever state that left, a controller reset and a driver starting afresh find the
    # device again, as xhci_hcd does after a host controller error.
    driver.xhci.unplug(3)
    driver.start()
    slot, button = enumerated(driver)
    driver.queue_in(slot, 3, 8)
    button.press(b"ok")
    assert [code(e) for e in driver.events()] == [T.SHORT_PACKET]


def test_save_and_load_carry_a_running_controller():
    from imacpro.devices.contract import StateError
    from imacpro.plaindata import decode, encode
    driver = XhciDriver()
    driver.start()
    slot, button = enumerated(driver)
    driver.queue_in(slot, 3, 8)                             # a TD the device NAKed
    saved = decode(encode(driver.xhci.save()))
    other = XhciDriver(ram=driver.ram)
    twin = Button()
    other.xhci.plug(3, twin)
    other.xhci.load(saved)
    assert other.xhci.save() == driver.xhci.save()
    assert twin.address == slot and twin.configuration == 1
    # The twin goes on where the first left off: the pending TD completes on a press.
    other.event_base, other.event_index, other.event_cycle = (driver.event_base,
                                                              driver.event_index,
                                                              driver.event_cycle)
    twin.press(b"z")
    (event,) = other.events()
    assert code(event) == T.SHORT_PACKET and event.slot == slot
    empty = XhciDriver()                                   # nothing on port 3: refused
    before = empty.xhci.save()
    with pytest.raises(StateError):
        empty.xhci.load(saved)
    assert empty.xhci.save() == before
    broken = dict(saved, slots={"1": dict(saved["slots"]["1"], waiting=[30])})
    with pytest.raises(StateError):
        other.xhci.load(broken)


def test_an_interrupt_endpoint_completes_one_td_per_service_interval():
    from imacpro.clock import Clock
    from imacpro.devices.usb.xhci.controller import XhciController
    clock = Clock()
    driver = XhciDriver(XhciController(clock))
    driver.start()
    slot, button = enumerated(driver)                      # interval 0: 125 us
    ep = driver.xhci.slots[slot].endpoints[3]
    ep.interval_ns = 8_000_000                             # as a keyboard's 8 ms
    for n in range(3):
        button.queue.append(bytes([n]))
        driver.queue_in(slot, 3, 8)
    assert len(driver.events()) == 1                       # one now, the rest later
    clock.advance(7_000_000)
    clock.run_due()
    assert driver.events() == []
    clock.advance(1_000_000)
    clock.run_due()
    assert len(driver.events()) == 1
    clock.advance(8_000_000)
    clock.run_due()
    assert len(driver.events()) == 1 and not button.queue
