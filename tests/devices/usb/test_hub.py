"""The USB 2.0 hub driven as Linux's hub driver drives it: hub descriptor, port power, reset
and status, the status-change endpoint, devices plugged in and out at run time."""

import struct

import pytest

from imacpro.devices.contract import StateError
from imacpro.devices.usb import device as usb
from imacpro.devices.usb import hub as hubs
from imacpro.devices.usb.device import Identity, Setup, Stall, UsbDevice
from imacpro.devices.usb.storage import UsbFlashDrive

PORT_POWER, PORT_RESET, PORT_ENABLE, PORT_SUSPEND = 8, 4, 1, 2
C_PORT_CONNECTION, C_PORT_RESET, C_PORT_SUSPEND = 16, 20, 18


class Plain(UsbDevice):
    def __init__(self, speed):
        super().__init__(Identity(0x1234, 0x5678, 0x0100, "", ""), (), speed)


class Host:
    def __init__(self, ports=4):
        self.hub = hubs.UsbHub(ports)
        self.ready = []
        self.hub.on_ready = self.ready.append
        self.hub.control(Setup(0x00, usb.SET_ADDRESS, 2, 0, 0), b"")
        self.hub.control(Setup(0x00, usb.SET_CONFIGURATION, 1, 0, 0), b"")

    def set_port(self, port, feature):
        self.hub.control(Setup(0x23, usb.SET_FEATURE, feature, port, 0), b"")

    def clear_port(self, port, feature):
        self.hub.control(Setup(0x23, usb.CLEAR_FEATURE, feature, port, 0), b"")

    def status(self, port):
        return struct.unpack("<HH", self.hub.control(Setup(0xA3, usb.GET_STATUS, 0, port, 4),
                                                     b""))

    def changes(self):
        return self.hub.data_in(0x81, 1)


def test_descriptors():
    hub = hubs.UsbHub()
    device = hub.device_descriptor()
    assert device[4:7] == bytes((9, 0, 1))                              # hub, single TT
    assert struct.unpack_from("<HH", device, 8) == (0x05AC, 0x100E)
    assert hub.string_descriptor(2, 0x409)[2:].decode("utf-16-le") == "USB2.0 Hub"
    config = hub.configuration_descriptor()
    assert config[7] == 0xE0                                            # self-powered, wake
    assert config[9:25] == bytes((9, 4, 0, 0, 1, 9, 0, 0, 0, 7, 5, 0x81, 3, 1, 0, 12))
    host = Host()
    assert host.hub.control(Setup(0xA0, usb.GET_DESCRIPTOR, 0x2900, 0, 71), b"") == \
        bytes((9, 0x29, 4, 0x09, 0x00, 50, 100, 0x00, 0xFF))
    # The same as a standard request, and for a 15-port hub two bytes of each bitmap.
    assert host.hub.control(Setup(0x80, usb.GET_DESCRIPTOR, 0x2900, 0, 9), b"")[:3] == \
        bytes((9, 0x29, 4))
    assert hubs.UsbHub(15).hub_descriptor() == \
        bytes((11, 0x29, 15, 0x09, 0x00, 50, 100, 0, 0, 0xFF, 0xFF))
    with pytest.raises(ValueError):
        hubs.UsbHub(16)


def test_hub_status_and_bad_requests():
    host = Host()
    assert host.hub.control(Setup(0xA0, usb.GET_STATUS, 0, 0, 4), b"") == bytes(4)
    for setup in (Setup(0xA3, usb.GET_STATUS, 0, 0, 4), Setup(0xA3, usb.GET_STATUS, 0, 5, 4),
                  Setup(0x23, usb.SET_FEATURE, 21, 1, 0), Setup(0x20, usb.SET_FEATURE, 0, 0, 0),
                  Setup(0x23, usb.SET_FEATURE, C_PORT_RESET, 1, 0),
                  Setup(0xA3, hubs.GET_TT_STATE, 0, 1, 4)):
        with pytest.raises(Stall):
            host.hub.control(setup, b"")
    unconfigured = hubs.UsbHub()
    with pytest.raises(Stall):
        unconfigured.control(Setup(0xA3, usb.GET_STATUS, 0, 1, 4), b"")


def test_power_connect_reset_enable():
    host = Host()
    drive = UsbFlashDrive()
    host.hub.attach(1, drive)
    assert host.status(1) == (0, 0)                     # powered off: nothing to see
    assert host.changes() is None                       # NAK
    host.set_port(1, PORT_POWER)
    assert host.status(1) == (0x0101, 0x0001)           # power, connection; C_CONNECTION
    assert host.ready == [0x81] and host.changes() == b"\x02"
    host.clear_port(1, C_PORT_CONNECTION)
    assert host.status(1) == (0x0101, 0) and host.changes() is None
    assert host.hub.device_at(1) is None                # not reachable before a reset
    # The device had an address from an earlier life: the reset takes it away.
    drive.address = 9
    host.set_port(1, PORT_RESET)
    assert host.status(1) == (0x0503, 0x0010)           # high speed, enabled; C_RESET
    assert drive.address == 0
    assert host.changes() == b"\x02"
    host.clear_port(1, C_PORT_RESET)
    assert host.changes() is None
    assert host.hub.device_at(1) is drive and host.hub.attached(1) is drive
    host.clear_port(1, PORT_ENABLE)
    assert host.status(1) == (0x0101, 0) and host.hub.device_at(1) is None
    host.set_port(1, PORT_ENABLE)                       # only a reset enables a port
    assert host.status(1) == (0x0101, 0)


def test_speeds_reported_after_reset():
    host = Host()
    host.hub.attach(2, Plain(usb.LOW))
    host.hub.attach(3, Plain(usb.FULL))
    for port, speed_bits in ((2, 0x0200), (3, 0)):
        host.set_port(port, PORT_POWER)
        host.set_port(port, PORT_RESET)
        assert host.status(port) == (0x0103 | speed_bits, 0x0011)
    assert host.changes() == b"\x0C"
    with pytest.raises(ValueError):
        host.hub.attach(4, Plain(usb.SUPER))
    with pytest.raises(ValueError):
        host.hub.attach(2, Plain(usb.HIGH))             # taken
    with pytest.raises(ValueError):
        host.hub.attach(5, Plain(usb.HIGH))


def test_reset_of_an_empty_port_does_nothing():
    host = Host()
    host.set_port(4, PORT_POWER)
    host.set_port(4, PORT_RESET)
    assert host.status(4) == (0x0100, 0) and host.changes() is None


def test_suspend_and_resume():
    host = Host()
    host.hub.attach(1, Plain(usb.HIGH))
    host.set_port(1, PORT_POWER)
    host.set_port(1, PORT_RESET)
    host.clear_port(1, C_PORT_RESET)
    host.clear_port(1, C_PORT_CONNECTION)
    host.set_port(1, PORT_SUSPEND)
    assert host.status(1) == (0x0507, 0) and host.hub.device_at(1) is None
    host.clear_port(1, PORT_SUSPEND)
    assert host.status(1) == (0x0503, 0x0004) and host.changes() == b"\x02"
    host.clear_port(1, C_PORT_SUSPEND)
    assert host.hub.device_at(1) is not None


def test_detach_and_attach_at_run_time():
    host = Host()
    device = Plain(usb.HIGH)
    for port in (1, 2):
        host.set_port(port, PORT_POWER)
    host.hub.attach(2, device)
    assert host.status(2) == (0x0101, 0x0001) and host.changes() == b"\x04"
    host.set_port(2, PORT_RESET)
    host.clear_port(2, C_PORT_RESET)
    host.clear_port(2, C_PORT_CONNECTION)
    host.ready.clear()
    assert host.hub.detach(2) is device
    assert host.status(2) == (0x0100, 0x0001) and host.ready == [0x81]
    assert host.hub.device_at(2) is None and host.hub.detach(2) is None
    assert host.hub.device_at(0) is None and host.hub.device_at(99) is None


def test_power_off_and_deconfigure_power_ports_off():
    host = Host()
    device = Plain(usb.HIGH)
    host.hub.attach(1, device)
    host.set_port(1, PORT_POWER)
    host.set_port(1, PORT_RESET)
    device.address = 3
    host.clear_port(1, PORT_POWER)
    assert host.status(1) == (0, 0) and device.address == 0
    host.set_port(1, PORT_POWER)
    host.set_port(1, PORT_RESET)
    host.hub.control(Setup(0x00, usb.SET_CONFIGURATION, 0, 0, 0), b"")
    host.hub.control(Setup(0x00, usb.SET_CONFIGURATION, 1, 0, 0), b"")
    assert host.status(1) == (0, 0)


def test_save_and_load_round_trip_with_a_child():
    host = Host()
    drive = UsbFlashDrive()
    host.hub.attach(3, drive)
    host.set_port(3, PORT_POWER)
    host.set_port(3, PORT_RESET)
    drive.control(Setup(0x00, usb.SET_ADDRESS, 7, 0, 0), b"")
    state = host.hub.save()
    other = hubs.UsbHub()
    other_drive = UsbFlashDrive()
    other.attach(3, other_drive)
    other.load(state)
    assert other.save() == state
    assert other.device_at(3) is other_drive and other_drive.address == 7
    assert struct.unpack("<HH", other.control(Setup(0xA3, usb.GET_STATUS, 0, 3, 4), b"")) == \
        (0x0503, 0x0011)


def test_a_bad_state_raises_and_changes_nothing():
    host = Host()
    first, second = Plain(usb.HIGH), UsbFlashDrive()
    host.hub.attach(1, first)
    host.hub.attach(2, second)
    host.set_port(1, PORT_POWER)
    before = host.hub.save()
    ports = before["ports"]
    bad_child = {**ports[1], "device": {**ports[1]["device"], "phase": 42}}
    good_first = {**ports[0], "device": {**ports[0]["device"], "address": 12}}
    for state in ({**before, "ports": ports[:3]},
                  {**before, "ports": [{**ports[0], "change": 0x40}] + ports[1:]},
                  {**before, "ports": [{**ports[0], "enabled": True, "power": False}]
                   + ports[1:]},
                  {**before, "ports": ports[:3] + [{**ports[3], "device": ports[1]["device"]}]},
                  {**before, "ports": [good_first, bad_child] + ports[2:]},
                  {**before, "address": 200}):
        with pytest.raises(StateError):
            host.hub.load(state)
        assert host.hub.save() == before
    assert first.address == 0                           # not loaded: the second refused


def test_a_device_behind_the_hub_reaches_the_controller_through_it():
    outer, inner = hubs.UsbHub(), hubs.UsbHub(2)
    calls = []
    outer.on_child_ready = lambda device, address: calls.append((device, address))
    drive, keyboard = UsbFlashDrive(), Plain(usb.LOW)
    outer.attach(1, drive)
    outer.attach(2, inner)
    inner.attach(1, keyboard)
    drive.on_ready(0x81)
    keyboard.on_ready(0x81)
    inner.on_ready(0x81)
    assert calls == [(drive, 0x81), (keyboard, 0x81), (inner, 0x81)]
    outer.detach(1)
    drive.on_ready(0x81)
    assert len(calls) == 3
