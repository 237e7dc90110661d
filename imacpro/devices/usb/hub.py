"""A USB 2.0 high-speed hub (USB 2.0 chapter 11): Apple's 05ac:100e, an internal hub of the
iMac Pro, with N downstream ports (1..15, default 4), one transaction translator.

Identity: 05ac:100e as the real hub; its strings and bcdDevice are not known to us, so the
manufacturer "Apple Inc.", product "USB2.0 Hub" and bcdDevice 1.00 are our own plain words.
Device class 09h protocol 01h (single TT); interface 09h/00h/00h; status-change endpoint 0x81,
interrupt, ceil((N + 1) / 8) bytes, bInterval 12 (256 ms). Self-powered, remote wake-up.

Hub descriptor (29h, §11.23.2.1): bNbrPorts N; wHubCharacteristics 0009h (per-port power
switching, per-port over-current reporting, TT think time 8 FS bit times, no indicators);
bPwrOn2PwrGood 50 (100 ms); bHubContrCurrent 100 mA; DeviceRemovable all 0 (removable);
PortPwrCtrlMask all 1s (§11.23.2.1 keeps it for USB 1.0 software).

Class requests (§11.24.2): GetHubStatus (A0h 00h, 4 bytes, always 0), GetPortStatus (A3h 00h,
wPortStatus and wPortChange), ClearHubFeature (C_HUB_LOCAL_POWER, C_HUB_OVER_CURRENT),
Set/ClearPortFeature, GetHubDescriptor (A0h 06h, also as a standard request), and the TT
requests CLEAR_TT_BUFFER, RESET_TT, STOP_TT, accepted as no-ops (this hub buffers nothing: the
host controller hands transfers to the device directly). Anything else is a request error.

    wPortStatus: 0 CONNECTION  1 ENABLE  2 SUSPEND  3 OVER_CURRENT  4 RESET  8 POWER
                 9 LOW_SPEED  10 HIGH_SPEED (neither: full speed; set while enabled)
    wPortChange: 0 C_CONNECTION  1 C_ENABLE  2 C_SUSPEND  3 C_OVER_CURRENT  4 C_RESET

Ports start powered off (after power-on, a port reset of the hub, or SET_CONFIGURATION 0).
SetPortFeature(PORT_POWER) powers one; a device plugged in is then connected (C_CONNECTION).
SetPortFeature(PORT_RESET) resets the device (`device.reset()`), enables the port and reports
its speed, completing at once (RESET reads 0, C_RESET set). ClearPortFeature(PORT_ENABLE)
disables it; PORT_SUSPEND suspends an enabled port, and clearing it resumes at once
(C_SUSPEND). A port is enabled only by a reset (§11.24.2.7.1.2): SetPortFeature(PORT_ENABLE)
is accepted and does nothing. Clearing PORT_POWER returns the port to powered-off (status and
changes 0) and resets its device, which lost its power.

The status-change endpoint answers a bitmap (bit 0 the hub, bit n port n) while any change
bit is set, NAKs otherwise, and calls `on_ready(0x81)` when a change arrives. `attach(port,
device)` and `detach(port)` plug devices in and out at run time; `device_at(port)` is the
device a host controller reaches through the port (the route string), only while the port is
enabled and not suspended. Ports stop at 15: an xHCI route string gives each tier 4 bits
(xHCI 1.1 §8.9). A SuperSpeed device is refused: its descriptors are fixed at SuperSpeed, and
a USB 2.0 hub would run it at high speed.

A device behind the hub calls its `on_ready` like any other; the hub hands that on as
`on_child_ready(device, address)`, which the host controller sets on a hub it is given (a hub
behind this one hands its children's calls up the same way).

Saved state: each port's power, enable, suspend and change bits, and the state of the device
plugged into it (the devices themselves are wiring: `load` needs the same kinds of devices in
the same ports, and checks every one's state before it changes any).
"""

from __future__ import annotations

import struct
from typing import Callable

from imacpro.devices import _state
from imacpro.devices.contract import StateError
from imacpro.devices.usb.device import (CLEAR_FEATURE, GET_DESCRIPTOR, GET_STATUS, HIGH,
                                        INTERRUPT, LOW, SET_FEATURE, SUPER, TO_DEVICE,
                                        TYPE_CLASS, Endpoint, Identity,
                                        Interface, Setup, Stall, UsbDevice)

VENDOR_APPLE, PRODUCT_HUB = 0x05AC, 0x100E
CLASS_HUB, PROTOCOL_SINGLE_TT = 0x09, 0x01
HUB_DESCRIPTOR = 0x29
STATUS_CHANGE = 0x81
MAX_PORTS = 15
TO_OTHER = 3                            # bmRequestType recipient "other": a port

# Class requests beyond the standard numbers (USB 2.0 Table 11-16).
CLEAR_TT_BUFFER, RESET_TT, GET_TT_STATE, STOP_TT = 8, 9, 10, 11

# Feature selectors (USB 2.0 Table 11-17).
C_HUB_LOCAL_POWER, C_HUB_OVER_CURRENT = 0, 1
PORT_CONNECTION, PORT_ENABLE, PORT_SUSPEND, PORT_OVER_CURRENT, PORT_RESET = 0, 1, 2, 3, 4
PORT_POWER, PORT_LOW_SPEED = 8, 9
C_PORT_CONNECTION, C_PORT_ENABLE, C_PORT_SUSPEND = 16, 17, 18
C_PORT_OVER_CURRENT, C_PORT_RESET = 19, 20

# wPortStatus / wPortChange bits (USB 2.0 Tables 11-21 and 11-22).
CONNECTION, ENABLE, SUSPEND, OVER_CURRENT, RESET = 0x01, 0x02, 0x04, 0x08, 0x10
POWER, LOW_SPEED, HIGH_SPEED = 0x100, 0x200, 0x400
C_CONNECTION, C_ENABLE, C_SUSPEND, C_OVER_CURRENT, C_RESET = 0x01, 0x02, 0x04, 0x08, 0x10
CHANGE_BITS = 0x1F

HUB_CHARACTERISTICS = 0x0009            # per-port power switching and over-current
POWER_ON_TO_GOOD = 50                   # × 2 ms
CONTROLLER_CURRENT = 100                # mA


class _Port:
    def __init__(self):
        self.device: UsbDevice | None = None
        self.power = False
        self.enabled = False
        self.suspended = False
        self.change = 0

    def off(self) -> None:
        self.power = self.enabled = self.suspended = False
        self.change = 0


class UsbHub(UsbDevice):
    """The hub (see the module docstring); ports are numbered 1..ports."""

    def __init__(self, ports: int = 4):
        if not 1 <= ports <= MAX_PORTS:
            raise ValueError(f"a hub of {ports} ports: 1 to {MAX_PORTS} are possible")
        self.bitmap_bytes = (ports + 1 + 7) // 8
        identity = Identity(VENDOR_APPLE, PRODUCT_HUB, 0x0100, "Apple Inc.", "USB2.0 Hub",
                            cls=CLASS_HUB, protocol=PROTOCOL_SINGLE_TT, max_power_ma=0,
                            self_powered=True, remote_wakeup=True)
        interface = Interface(0, CLASS_HUB, 0, 0, (
            Endpoint(STATUS_CHANGE, INTERRUPT, self.bitmap_bytes, interval=12),))
        super().__init__(identity, (interface,), HIGH)
        self.ports = [_Port() for _ in range(ports)]
        # Set by the host controller, as on_ready is: a device behind this hub (or behind a
        # hub behind it) can go on with an endpoint it NAKed.
        self.on_child_ready: Callable[[UsbDevice, int], None] = lambda device, address: None

    # --- plugging devices in (the user's side) ----------------------------------------------

    def _port(self, port: int) -> _Port:
        if not isinstance(port, int) or not 1 <= port <= len(self.ports):
            raise ValueError(f"port {port!r}: this hub has ports 1 to {len(self.ports)}")
        return self.ports[port - 1]

    def attach(self, port: int, device: UsbDevice) -> None:
        """Plug `device` into `port`: connected (C_CONNECTION) if the port is powered."""
        slot = self._port(port)
        if slot.device is not None:
            raise ValueError(f"hub port {port} has a device already")
        if device.speed == SUPER:
            raise ValueError("a SuperSpeed device cannot be attached to a USB 2.0 hub: make it "
                             "with speed=HIGH")
        slot.device = device
        device.on_ready = lambda address, d=device: self.on_child_ready(d, address)
        if isinstance(device, UsbHub):
            device.on_child_ready = lambda d, address: self.on_child_ready(d, address)
        if slot.power:
            self._changed(slot, C_CONNECTION)

    def detach(self, port: int) -> UsbDevice | None:
        """Unplug the device in `port` (None if there was none): disconnected, disabled."""
        slot = self._port(port)
        device, slot.device = slot.device, None
        if device is not None:
            device.on_ready = lambda address: None
            if isinstance(device, UsbHub):
                device.on_child_ready = lambda d, address: None
        if device is not None and slot.power:
            slot.enabled = slot.suspended = False
            self._changed(slot, C_CONNECTION)
        return device

    def attached(self, port: int) -> UsbDevice | None:
        """The device plugged into `port`, reachable or not."""
        return self._port(port).device

    def device_at(self, port: int) -> UsbDevice | None:
        """The device a host reaches through `port`: only once the port was reset and
        enabled, and while it is not suspended. Any other port number: None."""
        if not isinstance(port, int) or not 1 <= port <= len(self.ports):
            return None
        slot = self.ports[port - 1]
        return slot.device if slot.enabled and not slot.suspended else None

    def port_status(self, port: int) -> tuple[int, int]:
        """(wPortStatus, wPortChange) of `port`."""
        slot = self._port(port)
        status = 0
        if slot.power:
            status |= POWER
            if slot.device is not None:
                status |= CONNECTION
        if slot.enabled:
            status |= ENABLE
            status |= {LOW: LOW_SPEED, HIGH: HIGH_SPEED}.get(slot.device.speed, 0)
        if slot.suspended:
            status |= SUSPEND
        return status, slot.change

    def _changed(self, slot: _Port, bits: int) -> None:
        slot.change |= bits
        self.on_ready(STATUS_CHANGE)

    # --- descriptors and class requests -----------------------------------------------------

    def hub_descriptor(self) -> bytes:
        n = len(self.ports)
        removable = bytes(self.bitmap_bytes)                    # every port: removable
        power_mask = b"\xFF" * self.bitmap_bytes
        return struct.pack("<BBBHBB", 7 + 2 * self.bitmap_bytes, HUB_DESCRIPTOR, n,
                           HUB_CHARACTERISTICS, POWER_ON_TO_GOOD, CONTROLLER_CURRENT) + \
            removable + power_mask

    def class_descriptor(self, setup: Setup) -> bytes:
        # Some hosts ask for the hub descriptor as a standard request (USB 2.0 §11.24.2.5).
        if setup.value == HUB_DESCRIPTOR << 8 and setup.recipient == TO_DEVICE:
            return self.hub_descriptor()
        raise Stall

    def class_request(self, setup: Setup, data: bytes) -> bytes:
        if setup.kind != TYPE_CLASS or (not self.configuration and
                                        setup.request != GET_DESCRIPTOR):
            raise Stall
        request, recipient = setup.request, setup.recipient
        if recipient == TO_DEVICE:
            return self._hub_request(setup)
        if recipient != TO_OTHER:
            raise Stall
        if not 1 <= setup.index & 0xFF <= len(self.ports):
            raise Stall
        port = setup.index & 0xFF
        if request == GET_STATUS and setup.device_to_host and setup.value == 0:
            return struct.pack("<HH", *self.port_status(port))
        if request == SET_FEATURE and not setup.device_to_host:
            self._set_port_feature(port, setup.value)
            return b""
        if request == CLEAR_FEATURE and not setup.device_to_host:
            self._clear_port_feature(port, setup.value)
            return b""
        if request in (CLEAR_TT_BUFFER, RESET_TT, STOP_TT) and not setup.device_to_host:
            return b""
        raise Stall

    def _hub_request(self, setup: Setup) -> bytes:
        request = setup.request
        if request == GET_DESCRIPTOR and setup.device_to_host and \
                setup.value == HUB_DESCRIPTOR << 8:
            return self.hub_descriptor()
        if request == GET_STATUS and setup.device_to_host and setup.value == 0 and \
                setup.index == 0:
            return bytes(4)              # local power good, no over-current, no changes
        if request == CLEAR_FEATURE and not setup.device_to_host and setup.index == 0 and \
                setup.value in (C_HUB_LOCAL_POWER, C_HUB_OVER_CURRENT):
            return b""                   # those change bits are never set
        raise Stall

    def _set_port_feature(self, port: int, feature: int) -> None:
        slot = self.ports[port - 1]
        if feature == PORT_POWER:
            if not slot.power:
                slot.power = True
                if slot.device is not None:
                    self._changed(slot, C_CONNECTION)
        elif feature == PORT_RESET:
            if slot.power and slot.device is not None:
                slot.device.reset()
                slot.enabled, slot.suspended = True, False
                self._changed(slot, C_RESET)
        elif feature == PORT_SUSPEND:
            if slot.enabled:
                slot.suspended = True
        elif feature != PORT_ENABLE:     # enabled only by a reset: accepted, no effect
            raise Stall

    def _clear_port_feature(self, port: int, feature: int) -> None:
        slot = self.ports[port - 1]
        changes = {C_PORT_CONNECTION: C_CONNECTION, C_PORT_ENABLE: C_ENABLE,
                   C_PORT_SUSPEND: C_SUSPEND, C_PORT_OVER_CURRENT: C_OVER_CURRENT,
                   C_PORT_RESET: C_RESET}
        if feature in changes:
            slot.change &= ~changes[feature]
        elif feature == PORT_ENABLE:
            slot.enabled = slot.suspended = False
        elif feature == PORT_SUSPEND:
            if slot.suspended:
                slot.suspended = False   # the resume completes at once
                self._changed(slot, C_SUSPEND)
        elif feature == PORT_POWER:
            self._power_off(slot)
        else:
            raise Stall

    def _power_off(self, slot: _Port) -> None:
        if slot.power and slot.device is not None:
            slot.device.reset()          # it lost its power
        slot.off()

    # --- the status-change endpoint ---------------------------------------------------------

    def endpoint_in(self, address: int, length: int) -> bytes | None:
        bitmap = 0
        for n, slot in enumerate(self.ports, 1):
            if slot.change:
                bitmap |= 1 << n
        if not bitmap:
            return None                  # NAK: nothing changed
        return bitmap.to_bytes(self.bitmap_bytes, "little")[:length]

    def configured(self, value: int) -> None:
        if value == 0:                   # an unconfigured hub powers its ports off
            for slot in self.ports:
                self._power_off(slot)

    def device_reset(self) -> None:
        for slot in self.ports:
            self._power_off(slot)

    # --- state ------------------------------------------------------------------------------

    def save_extra(self) -> dict:
        return {"ports": [{"power": p.power, "enabled": p.enabled, "suspended": p.suspended,
                           "change": p.change,
                           "device": p.device.save() if p.device is not None else None}
                          for p in self.ports]}

    def check_extra(self, state: dict) -> object:
        where = "UsbHub"
        saved = _state.list_field(state, "ports", where, length=len(self.ports))
        checked = []
        for n, (port, slot) in enumerate(zip(saved, self.ports), 1):
            at = f"{where}.ports[{n}]"
            _state.mapping(port, at)
            power = _state.bool_field(port, "power", at)
            enabled = _state.bool_field(port, "enabled", at)
            suspended = _state.bool_field(port, "suspended", at)
            change = _state.int_field(port, "change", at, 0, CHANGE_BITS)
            device = _state.field(port, "device", at)
            if (device is None) != (slot.device is None):
                raise StateError(f"{at}: saved with{'out' if device is None else ''} a device,"
                                 f" and the port has{' one' if slot.device else ' none'}")
            if (enabled and (not power or slot.device is None)) or (suspended and not enabled):
                raise StateError(f"{at}: enabled or suspended without a powered device")
            if device is not None:
                _state.mapping(device, f"{at}.device")
                device = slot.device.check_state(device)
            checked.append((power, enabled, suspended, change, device))
        return checked

    def apply_extra(self, checked: object) -> None:
        for slot, (power, enabled, suspended, change, device) in zip(self.ports, checked):
            slot.power, slot.enabled, slot.suspended, slot.change = (power, enabled,
                                                                     suspended, change)
            if device is not None:
                slot.device.apply_state(device)
