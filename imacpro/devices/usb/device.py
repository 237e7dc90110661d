"""A USB device as its host controller sees it: descriptors, endpoint 0's standard requests,
bulk and interrupt endpoints (USB 2.0 chapter 9; USB 3.2 chapter 9 for the BOS descriptor and
the SuperSpeed endpoint companion).

A host controller drives a device through these calls, and nothing else:

    reset()                        a port reset: address 0, unconfigured, no endpoint halted
    control(setup, data) -> bytes  a control transfer on endpoint 0: `setup` the SETUP packet,
                                   `data` the OUT data stage (b"" when none); returns the IN
                                   data stage, at most setup.length bytes
    data_in(address, length)       an IN transfer of at most `length` bytes on endpoint
      -> bytes | None              `address` (0x81 ... 0x8F): the data, or None for a NAK
    data_out(address, data) -> bool  an OUT transfer (0x01 ... 0x0F); False: a NAK
    on_ready(address)              set by the host: the device calls it when an endpoint it
                                   NAKed can go on (a key was pressed; the drive took a block)

`control`, `data_in` and `data_out` raise Stall: a request the device does not support (a
protocol stall, which ends with the next SETUP) or an endpoint that is halted (a functional
stall, until the host clears ENDPOINT_HALT, which calls `endpoint_reset`).

A device model is a subclass: it gives its Identity and Interfaces, and overrides what its
class adds: `class_request` (requests of type class or vendor), `class_descriptor` (HID's
report descriptor, read with GET_DESCRIPTOR from an interface), `endpoint_in`/`endpoint_out`
for its endpoints, `configured` (SET_CONFIGURATION), and `save_extra`/`check_extra`/
`apply_extra` for its own state. Why write this at all: no maintained library models USB
devices for an emulator to drive (the kernel's gadget API runs on the other side of a real
bus), and every byte here is what the guest's USB core parses.

Saved state: the address, the configuration, each interface's alternate setting, the halted
endpoints, remote wake-up, and what the subclass adds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

from imacpro.devices import _state
from imacpro.devices.contract import StateError

# Speeds, as the xHCI's default Protocol Speed IDs number them (xHCI 1.1 §7.2.1).
FULL, LOW, HIGH, SUPER = 1, 2, 3, 4
SPEED_NAMES = {FULL: "full", LOW: "low", HIGH: "high", SUPER: "super"}

# Descriptor types (USB 2.0 Table 9-5, USB 3.2 Table 9-6).
DEVICE, CONFIGURATION, STRING, INTERFACE, ENDPOINT = 1, 2, 3, 4, 5
DEVICE_QUALIFIER, BOS, DEVICE_CAPABILITY, SS_ENDPOINT_COMPANION = 6, 15, 16, 48

# Standard requests (USB 2.0 Table 9-4).
GET_STATUS, CLEAR_FEATURE, SET_FEATURE, SET_ADDRESS = 0, 1, 3, 5
GET_DESCRIPTOR, SET_DESCRIPTOR, GET_CONFIGURATION, SET_CONFIGURATION = 6, 7, 8, 9
GET_INTERFACE, SET_INTERFACE, SET_SEL, SET_ISOCH_DELAY = 10, 11, 48, 49
FEATURE_ENDPOINT_HALT, FEATURE_REMOTE_WAKEUP = 0, 1
FEATURE_U1_ENABLE, FEATURE_U2_ENABLE, FEATURE_LTM_ENABLE = 48, 49, 50

# bmRequestType.
DIR_IN = 0x80
TYPE_MASK, TYPE_STANDARD, TYPE_CLASS, TYPE_VENDOR = 0x60, 0x00, 0x20, 0x40
RECIPIENT_MASK, TO_DEVICE, TO_INTERFACE, TO_ENDPOINT = 0x1F, 0, 1, 2

# Endpoint transfer types (bmAttributes 1:0).
CONTROL, ISOCHRONOUS, BULK, INTERRUPT = 0, 1, 2, 3

CONFIG_VALUE = 1          # every model has one configuration
LANGUAGE_US_ENGLISH = 0x0409


class Stall(Exception):
    """The device answers with STALL."""


@dataclass(frozen=True)
class Setup:
    """A SETUP packet (USB 2.0 §9.3)."""
    request_type: int
    request: int
    value: int
    index: int
    length: int

    @classmethod
    def parse(cls, packet: bytes) -> Setup:
        return cls(*struct.unpack("<BBHHH", packet[:8]))

    def pack(self) -> bytes:
        return struct.pack("<BBHHH", self.request_type, self.request, self.value, self.index,
                           self.length)

    @property
    def device_to_host(self) -> bool:
        return bool(self.request_type & DIR_IN)

    @property
    def kind(self) -> int:
        return self.request_type & TYPE_MASK

    @property
    def recipient(self) -> int:
        return self.request_type & RECIPIENT_MASK


@dataclass(frozen=True)
class Endpoint:
    address: int              # bit 7 set: IN
    kind: int                 # BULK or INTERRUPT
    max_packet: int
    interval: int = 0         # bInterval, in the unit the device's speed gives it
    max_burst: int = 0        # SuperSpeed companion: packets per burst - 1

    @property
    def is_in(self) -> bool:
        return bool(self.address & DIR_IN)

    def descriptor(self, speed: int) -> bytes:
        body = struct.pack("<BBBBHB", 7, ENDPOINT, self.address, self.kind, self.max_packet,
                           self.interval)
        if speed == SUPER:
            body += struct.pack("<BBBBH", 6, SS_ENDPOINT_COMPANION, self.max_burst, 0,
                                self.max_packet * (self.max_burst + 1)
                                if self.kind == INTERRUPT else 0)
        return body


@dataclass(frozen=True)
class Interface:
    number: int
    cls: int
    subclass: int
    protocol: int
    endpoints: tuple[Endpoint, ...] = ()
    extra: bytes = b""        # class descriptors between the interface and its endpoints
    name: str = ""


@dataclass(frozen=True)
class Identity:
    vendor: int
    product: int
    release: int              # bcdDevice
    manufacturer: str
    product_name: str
    serial: str = ""
    usb: int = 0x0200         # bcdUSB
    cls: int = 0              # device class (0: per interface)
    subclass: int = 0
    protocol: int = 0
    max_power_ma: int = 100
    self_powered: bool = False
    remote_wakeup: bool = False


class UsbDevice:
    """The standard part of every device (see the module docstring)."""

    def __init__(self, identity: Identity, interfaces: tuple[Interface, ...], speed: int):
        if speed not in SPEED_NAMES:
            raise ValueError(f"unknown USB speed {speed}")
        self.identity = identity
        self.interfaces = interfaces
        self.speed = speed
        self.strings: list[str] = []
        self._manufacturer = self._string(identity.manufacturer)
        self._product = self._string(identity.product_name)
        self._serial = self._string(identity.serial)
        self._interface_names = [self._string(i.name) for i in interfaces]
        self.endpoints = {ep.address: ep for i in interfaces for ep in i.endpoints}
        self.on_ready: Callable[[int], None] = lambda address: None
        self.address = 0
        self.configuration = 0
        self.alternates = [0] * len(interfaces)
        self.halted: list[int] = []
        self.remote_wakeup = False

    def _string(self, text: str) -> int:
        """The string's descriptor index (0: none)."""
        if not text:
            return 0
        self.strings.append(text)
        return len(self.strings)

    # --- descriptors ------------------------------------------------------------------------

    @property
    def max_packet0(self) -> int:
        return {LOW: 8, SUPER: 512}.get(self.speed, 64)

    def device_descriptor(self) -> bytes:
        i = self.identity
        packet0 = 9 if self.speed == SUPER else self.max_packet0   # SuperSpeed: 2^9
        return struct.pack("<BBHBBBBHHHBBBB", 18, DEVICE, i.usb, i.cls, i.subclass, i.protocol,
                           packet0, i.vendor, i.product, i.release, self._manufacturer,
                           self._product, self._serial, 1)

    def configuration_descriptor(self) -> bytes:
        body = b""
        for interface, name in zip(self.interfaces, self._interface_names):
            body += struct.pack("<BBBBBBBBB", 9, INTERFACE, interface.number, 0,
                                len(interface.endpoints), interface.cls, interface.subclass,
                                interface.protocol, name)
            body += interface.extra
            body += b"".join(ep.descriptor(self.speed) for ep in interface.endpoints)
        i = self.identity
        attributes = 0x80 | (0x40 if i.self_powered else 0) | (0x20 if i.remote_wakeup else 0)
        unit = 8 if self.speed == SUPER else 2                      # bMaxPower's mA per unit
        return struct.pack("<BBHBBBBB", 9, CONFIGURATION, 9 + len(body), len(self.interfaces),
                           CONFIG_VALUE, 0, attributes,
                           min(255, -(-i.max_power_ma // unit))) + body

    def bos_descriptor(self) -> bytes:
        """USB 2.0 extension (LPM) and, for SuperSpeed, the SuperSpeed capability."""
        caps = struct.pack("<BBBI", 7, DEVICE_CAPABILITY, 2, 0)      # USB 2.0 extension
        if self.speed == SUPER:
            # Speeds supported: full, high, super; U1/U2 exit latencies as common drives.
            caps += struct.pack("<BBBBHBBH", 10, DEVICE_CAPABILITY, 3, 0, 0x000E, 1, 10, 2047)
        count = 2 if self.speed == SUPER else 1
        return struct.pack("<BBHB", 5, BOS, 5 + len(caps), count) + caps

    def string_descriptor(self, index: int, language: int) -> bytes:
        if index == 0:
            return struct.pack("<BBH", 4, STRING, LANGUAGE_US_ENGLISH)
        if not 1 <= index <= len(self.strings):
            raise Stall
        text = self.strings[index - 1].encode("utf-16-le")[:252]
        return bytes((2 + len(text), STRING)) + text

    def class_descriptor(self, setup: Setup) -> bytes:
        """GET_DESCRIPTOR of a type the device class defines (HID's report descriptor)."""
        raise Stall

    def _descriptor(self, setup: Setup) -> bytes:
        kind, index = setup.value >> 8, setup.value & 0xFF
        if setup.recipient != TO_DEVICE:
            return self.class_descriptor(setup)
        if kind == DEVICE:
            return self.device_descriptor()
        if kind == CONFIGURATION and index == 0:
            return self.configuration_descriptor()
        if kind == STRING:
            return self.string_descriptor(index, setup.index)
        if kind == BOS and self.identity.usb >= 0x0201:
            return self.bos_descriptor()
        if kind == DEVICE_QUALIFIER and self.speed == HIGH:
            d = self.device_descriptor()
            return struct.pack("<BBH", 10, DEVICE_QUALIFIER, self.identity.usb) + d[4:8] + \
                bytes((1, 0))
        return self.class_descriptor(setup)

    # --- endpoint 0 -------------------------------------------------------------------------

    def control(self, setup: Setup, data: bytes) -> bytes:
        if setup.kind != TYPE_STANDARD:
            reply = self.class_request(setup, data)
        else:
            reply = self._standard(setup)
        return reply[:setup.length] if setup.device_to_host else b""

    def _standard(self, setup: Setup) -> bytes:
        request, recipient = setup.request, setup.recipient
        if request == GET_DESCRIPTOR and setup.device_to_host:
            return self._descriptor(setup)
        if request == SET_ADDRESS and recipient == TO_DEVICE:
            if setup.value > 127 or self.configuration:
                raise Stall
            self.address = setup.value
            return b""
        if request == GET_CONFIGURATION:
            return bytes((self.configuration,))
        if request == SET_CONFIGURATION:
            if setup.value not in (0, CONFIG_VALUE) or self.address == 0:
                raise Stall
            self.configuration = setup.value
            self.alternates = [0] * len(self.interfaces)
            self.halted.clear()
            self.configured(setup.value)
            return b""
        if request in (GET_INTERFACE, SET_INTERFACE) and recipient == TO_INTERFACE:
            slot = self._interface_slot(setup.index)
            if request == GET_INTERFACE:
                return bytes((self.alternates[slot],))
            if setup.value != 0:                        # one alternate setting each
                raise Stall
            self.alternates[slot] = 0
            return b""
        if request == GET_STATUS:
            return self._status(setup)
        if request in (CLEAR_FEATURE, SET_FEATURE):
            self._feature(setup, request == SET_FEATURE)
            return b""
        if request in (SET_SEL, SET_ISOCH_DELAY) and self.speed == SUPER:
            return b""                                   # timing hints with nothing to time
        raise Stall

    def _interface_slot(self, number: int) -> int:
        for slot, interface in enumerate(self.interfaces):
            if interface.number == number & 0xFF and self.configuration:
                return slot
        raise Stall

    def _status(self, setup: Setup) -> bytes:
        if setup.recipient == TO_DEVICE:
            bits = (1 if self.identity.self_powered else 0) | (2 if self.remote_wakeup else 0)
        elif setup.recipient == TO_INTERFACE:
            self._interface_slot(setup.index)
            bits = 0
        elif setup.recipient == TO_ENDPOINT:
            address = setup.index & 0x8F
            if address & 0x0F and address not in self.endpoints:
                raise Stall
            bits = 1 if address in self.halted else 0
        else:
            raise Stall
        return struct.pack("<H", bits)

    def _feature(self, setup: Setup, on: bool) -> None:
        if setup.recipient == TO_DEVICE:
            if setup.value == FEATURE_REMOTE_WAKEUP:
                self.remote_wakeup = on
            elif setup.value not in (FEATURE_U1_ENABLE, FEATURE_U2_ENABLE, FEATURE_LTM_ENABLE):
                raise Stall                            # (link power states: accepted, no-op)
        elif setup.recipient == TO_ENDPOINT and setup.value == FEATURE_ENDPOINT_HALT:
            address = setup.index & 0x8F
            if address & 0x0F == 0:
                return
            if address not in self.endpoints:
                raise Stall
            if on:
                self.halt(address)
            else:
                self.clear_halt(address)
        elif setup.recipient == TO_INTERFACE:
            self._interface_slot(setup.index)           # function suspend: accepted
        else:
            raise Stall

    def halt(self, address: int) -> None:
        if address not in self.halted:
            self.halted.append(address)

    def clear_halt(self, address: int) -> None:
        if address in self.halted:
            self.halted.remove(address)
        self.endpoint_reset(address)

    # --- bulk and interrupt endpoints -------------------------------------------------------

    def _usable(self, address: int) -> None:
        if not self.configuration or address not in self.endpoints or address in self.halted:
            raise Stall

    def data_in(self, address: int, length: int) -> bytes | None:
        self._usable(address)
        return self.endpoint_in(address, length)

    def data_out(self, address: int, data: bytes) -> bool:
        self._usable(address)
        return self.endpoint_out(address, data)

    # --- what a device class overrides ------------------------------------------------------

    def class_request(self, setup: Setup, data: bytes) -> bytes:
        raise Stall

    def endpoint_in(self, address: int, length: int) -> bytes | None:
        return None

    def endpoint_out(self, address: int, data: bytes) -> bool:
        raise Stall

    def configured(self, value: int) -> None:
        """SET_CONFIGURATION chose `value` (0: deconfigured)."""

    def endpoint_reset(self, address: int) -> None:
        """The host cleared the endpoint's halt: its sequence (and the class's) restarts."""

    def device_reset(self) -> None:
        """A port reset: the class's own state returns to power-on."""

    # --- contract ---------------------------------------------------------------------------

    def reset(self) -> None:
        self.address = 0
        self.configuration = 0
        self.alternates = [0] * len(self.interfaces)
        self.halted = []
        self.remote_wakeup = False
        self.device_reset()

    def save(self) -> dict:
        return {"address": self.address, "configuration": self.configuration,
                "alternates": list(self.alternates), "halted": list(self.halted),
                "remote_wakeup": self.remote_wakeup, **self.save_extra()}

    def load(self, state: dict) -> None:
        self.apply_state(self.check_state(state))

    def check_state(self, state: dict) -> tuple:
        """The saved state, checked (StateError), for a holder that loads several devices
        and must check them all before it changes any."""
        where = type(self).__name__
        address = _state.int_field(state, "address", where, 0, 127)
        configuration = _state.int_field(state, "configuration", where, 0, CONFIG_VALUE)
        alternates = _state.int_list(state, "alternates", where, 0, 0,
                                     length=len(self.interfaces))
        halted = _state.int_list(state, "halted", where, 0, 0xFF)
        if any(a not in self.endpoints for a in halted):
            raise StateError(f"{where}.halted: an endpoint the device does not have")
        wakeup = _state.bool_field(state, "remote_wakeup", where)
        return address, configuration, alternates, halted, wakeup, self.check_extra(state)

    def apply_state(self, checked: tuple) -> None:
        (self.address, self.configuration, alternates, halted, self.remote_wakeup,
         extra) = checked
        self.alternates, self.halted = list(alternates), list(halted)
        self.apply_extra(extra)

    def save_extra(self) -> dict:
        return {}

    def check_extra(self, state: dict) -> object:
        """The class's saved fields, checked (StateError), before anything changes."""
        return None

    def apply_extra(self, checked: object) -> None:
        pass
