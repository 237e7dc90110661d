"""The xHCI's saved state: registers, interrupters and their event rings, the command ring,
the slots with their endpoints' rings, the root ports and the devices plugged into them.

Which devices are plugged in is wiring (the machine's configuration); a state whose ports hold
devices where this controller has none, or none where it has one, does not fit and is refused.
A slot's device is found again by its port and route string after the ports are loaded.
Everything is checked before anything changes (contract.py).
"""

from __future__ import annotations

from collections import deque

from imacpro.devices import _state
from imacpro.devices.contract import StateError
from imacpro.devices.usb.xhci import contexts as C
from imacpro.devices.usb.xhci import registers as R
from imacpro.devices.usb.xhci import trb as T
from imacpro.devices.usb.xhci.commands import Endpoint, Slot
from imacpro.devices.usb.xhci.ports import Port
from imacpro.devices.usb.xhci.rings import (MAX_SEGMENT_TRBS, MAX_WAITING, MIN_SEGMENT_TRBS,
                                            ConsumerRing)

WHERE = "XhciController"
U64 = (1 << 64) - 1
REGISTERS = {"usbcmd": (0, R.USBCMD_WRITABLE), "usbsts": (0, 0x1FFF), "dnctrl": (0, 0xFFFF),
             "crcr_low": (0, 0xFFFF_FFFF), "dcbaap": (0, U64), "config": (0, 0x3FF),
             "legacy": (0, R.BIOS_OWNED | R.OS_OWNED), "legacy_control": (0, 0xFFFF_FFFF)}


def save(x) -> dict:
    return {
        "pci": x.pci.save(), "msi": x.msi.save(),
        **{name: getattr(x, name) for name in REGISTERS},
        "command_ring": x.command_ring.save(), "command_running": x.command_running,
        "interrupters": [_save_interrupter(ir) for ir in x.interrupters],
        "ports": [{**port.save(), "device": None if port.device is None
                   else port.device.save()} for port in x.ports],
        "slots": {str(n): _save_slot(slot) for n, slot in x.slots.items()},
    }


def _save_interrupter(ir) -> dict:
    ring = ir.ring
    return {"pending": ir.pending, "enabled": ir.enabled, "imod": ir.imod,
            "erstsz": ir.erstsz, "erstba": ir.erstba, "erdp": ir.erdp, "busy": ir.busy,
            "segments": [list(s) for s in ring.segments], "segment": ring.segment,
            "index": ring.index, "cycle": ring.cycle, "lost": ring.lost,
            "full_reported": ring.full_reported,
            "waiting": [[e.parameter, e.status, e.control] for e in ring.waiting]}


def _save_slot(slot: Slot) -> dict:
    return {"state": slot.state, "root_port": slot.root_port, "route": slot.route,
            "interrupter": slot.interrupter, "output": slot.output,
            "context": list(slot.context), "waiting": sorted(slot.waiting),
            "attached": slot.device is not None,
            "endpoints": {str(dci): {"kind": ep.kind, "state": ep.state,
                                     "max_packet": ep.max_packet,
                                     "interval_ns": ep.interval_ns, "next_ns": ep.next_ns,
                                     "armed": ep.timer is not None and ep.timer.armed,
                                     **ep.ring.save()}
                          for dci, ep in slot.endpoints.items()}}


def load(x, state: dict) -> None:
    _state.mapping(state, WHERE)
    pci = x.pci.check_state(_state.field(state, "pci", WHERE))
    msi = x.msi.check_state(_state.field(state, "msi", WHERE))
    registers = {name: _state.int_field(state, name, WHERE, low, high)
                 for name, (low, high) in REGISTERS.items()}
    command = _ring(_state.field(state, "command_ring", WHERE), f"{WHERE}.command_ring")
    running = _state.bool_field(state, "command_running", WHERE)
    interrupters = [_interrupter(item, f"{WHERE}.interrupters[{n}]") for n, item in
                    enumerate(_state.list_field(state, "interrupters", WHERE,
                                                length=R.MAX_INTERRUPTERS))]
    ports = _state.list_field(state, "ports", WHERE, length=R.MAX_PORTS)
    checked_ports = []
    for port, saved in zip(x.ports, ports):
        where = f"{WHERE}.ports[{port.number}]"
        fields = {name: _state.int_field(saved, name, where) if name != "enabled"
                  else _state.bool_field(saved, name, where) for name in Port.FIELDS}
        if fields["link"] > 15:
            raise StateError(f"{where}.link: out of range")
        device = _state.field(saved, "device", where)
        if (device is None) != (port.device is None):
            raise StateError(f"{where}: the saved machine had "
                             f"{'no device' if device is None else 'a device'} there")
        if device is not None:
            device = port.device.check_state(device)
        checked_ports.append((port, fields, device))
    slots = {}
    for key, saved in _state.mapping(_state.field(state, "slots", WHERE), WHERE).items():
        if not key.isdigit() or not 1 <= int(key) <= R.MAX_SLOTS:
            raise StateError(f"{WHERE}.slots: bad slot {key!r}")
        slots[int(key)] = _slot(saved, f"{WHERE}.slots[{key}]")
    x.pci.apply_state(pci)
    x.msi.apply_state(msi)
    for port, fields, device in checked_ports:
        if device is not None:
            port.device.apply_state(device)
        for name, value in fields.items():
            setattr(port, name, value)
    for name, value in registers.items():
        setattr(x, name, value)
    x.command_ring = command
    x.command_running = running
    for ir, (fields, ring_fields) in zip(x.interrupters, interrupters):
        for name, value in fields.items():
            setattr(ir, name, value)
        for name, value in ring_fields.items():
            setattr(ir.ring, name, value)
    for slot in x.slots.values():
        for ep in slot.endpoints.values():
            if ep.timer is not None:
                ep.timer.cancel()
    x.slots = {}
    for n, (slot, attached) in slots.items():
        if attached:
            slot.device = x._find_device(slot.root_port, slot.route)
        x.slots[n] = slot
        for dci, ep in slot.endpoints.items():
            x.pace(n, slot, dci)
            if ep.timer is not None and ep.next_ns:
                ep.timer.arm(ep.next_ns)        # the endpoint runs on when it is due
    x._update_intx()


def _ring(saved, where: str) -> ConsumerRing:
    return ConsumerRing(_state.int_field(saved, "dequeue", where, 0, U64),
                        _state.int_field(saved, "cycle", where, 0, 1))


def _interrupter(saved, where: str) -> tuple[dict, dict]:
    fields = {"pending": _state.bool_field(saved, "pending", where),
              "enabled": _state.bool_field(saved, "enabled", where),
              "imod": _state.int_field(saved, "imod", where, 0, 0xFFFF_FFFF),
              "erstsz": _state.int_field(saved, "erstsz", where, 0, 0xFFFF),
              "erstba": _state.int_field(saved, "erstba", where, 0, U64),
              "erdp": _state.int_field(saved, "erdp", where, 0, U64),
              "busy": _state.bool_field(saved, "busy", where)}
    segments = []
    for item in _state.list_field(saved, "segments", where, max_length=1 << R.ERST_MAX):
        if not (isinstance(item, list) and len(item) == 2):
            raise StateError(f"{where}.segments: not [base, size] pairs")
        base = _state.integer(item[0], f"{where}.segments", 0, U64)
        size = _state.integer(item[1], f"{where}.segments", MIN_SEGMENT_TRBS, MAX_SEGMENT_TRBS)
        segments.append((base, size))
    segment = _state.int_field(saved, "segment", where, 0, max(len(segments) - 1, 0))
    index = _state.int_field(saved, "index", where, 0,
                             segments[segment][1] - 1 if segments else 0)
    waiting = []
    for item in _state.list_field(saved, "waiting", where, max_length=MAX_WAITING + 1):
        if not (isinstance(item, list) and len(item) == 3):
            raise StateError(f"{where}.waiting: not TRBs")
        waiting.append(T.Trb(_state.integer(item[0], where, 0, U64),
                             _state.integer(item[1], where, 0, 0xFFFF_FFFF),
                             _state.integer(item[2], where, 0, 0xFFFF_FFFF)))
    ring = {"segments": segments, "segment": segment, "index": index,
            "cycle": _state.int_field(saved, "cycle", where, 0, 1),
            "lost": _state.int_field(saved, "lost", where),
            "full_reported": _state.bool_field(saved, "full_reported", where),
            "waiting": deque(waiting)}
    return fields, ring


def _slot(saved, where: str) -> tuple[Slot, bool]:
    slot = Slot(state=_state.int_field(saved, "state", where, 0, C.SLOT_CONFIGURED),
                root_port=_state.int_field(saved, "root_port", where, 0, 0xFF),
                route=_state.int_field(saved, "route", where, 0, 0xFFFFF),
                interrupter=_state.int_field(saved, "interrupter", where, 0, 0x3FF),
                output=_state.int_field(saved, "output", where, 0, U64),
                context=_state.int_list(saved, "context", where, 0, 0xFFFF_FFFF, length=8))
    endpoints = _state.mapping(_state.field(saved, "endpoints", where), where)
    for key, item in endpoints.items():
        if not key.isdigit() or not 1 <= int(key) < C.ENTRIES:
            raise StateError(f"{where}.endpoints: bad DCI {key!r}")
        ew = f"{where}.endpoints[{key}]"
        slot.endpoints[int(key)] = Endpoint(
            _state.int_field(item, "kind", ew, 0, 7), _ring(item, ew),
            state=_state.int_field(item, "state", ew, 0, C.EP_ERROR),
            max_packet=_state.int_field(item, "max_packet", ew, 0, 0xFFFF),
            interval_ns=_state.int_field(item, "interval_ns", ew, 0, 125_000 << 15),
            next_ns=_state.int_field(item, "next_ns", ew))
        _state.bool_field(item, "armed", ew)
    slot.waiting = set(_state.int_list(saved, "waiting", where, 1, C.ENTRIES - 1))
    if not slot.waiting <= set(slot.endpoints):
        raise StateError(f"{where}.waiting: an endpoint the slot does not have")
    return slot, _state.bool_field(saved, "attached", where)
