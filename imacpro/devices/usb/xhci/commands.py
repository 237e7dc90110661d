"""The command ring (xHCI 1.1 §4.6): what each command does to the slots and endpoints.

    | TRB type | command                  | what happens here                                |
    |----------|--------------------------|--------------------------------------------------|
    | 9        | Enable Slot              | the lowest free slot up to CONFIG.MaxSlotsEn     |
    | 10       | Disable Slot             | the slot and its endpoints go                    |
    | 11       | Address Device           | slot and EP0 from the input context; SET_ADDRESS |
    |          |                          | to the device unless BSR                         |
    | 12       | Configure Endpoint       | endpoints dropped and added (or deconfigure)     |
    | 13       | Evaluate Context         | interrupter target, max exit latency, EP0's max  |
    |          |                          | packet size                                      |
    | 14       | Reset Endpoint           | halted → stopped                                 |
    | 15       | Stop Endpoint            | running → stopped; a pending TD reports Stopped  |
    | 16       | Set TR Dequeue Pointer   | a stopped endpoint's ring moves                  |
    | 17       | Reset Device             | back to the default state, endpoints but EP0 go  |
    | 23       | No Op                    | success                                          |
Any other type completes with TRB Error. The controller keeps its own record of every slot's
and endpoint's state (the output contexts in guest memory are written from it, never read
back: a guest that scribbles on them changes nothing but what it reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from imacpro.devices.usb.device import SET_ADDRESS, Setup, Stall, UsbDevice
from imacpro.devices.usb.xhci import contexts as C
from imacpro.devices.usb.xhci import registers as R
from imacpro.devices.usb.xhci import trb as T
from imacpro.devices.usb.xhci.rings import ConsumerRing, RingError

MAX_COMMANDS_PER_DOORBELL = 256


class CommandError(Exception):
    def __init__(self, code: int):
        super().__init__(f"completion code {code}")
        self.code = code


@dataclass
class Endpoint:
    kind: int                          # contexts.CONTROL, BULK_IN, ...
    ring: ConsumerRing
    state: int = C.EP_RUNNING
    max_packet: int = 0
    interval_ns: int = 0               # an interrupt endpoint's service interval
    next_ns: int = 0                   # when it may complete its next TD
    timer: object = None               # clock.Timer that runs it then


@dataclass
class Slot:
    state: int = C.SLOT_DISABLED       # "enabled", before Address Device
    device: UsbDevice | None = None
    root_port: int = 0
    route: int = 0
    interrupter: int = 0
    output: int = 0                    # the output device context's address
    context: list = field(default_factory=lambda: [0] * 8)   # the slot context's dwords
    endpoints: dict = field(default_factory=dict)            # DCI -> Endpoint
    waiting: set = field(default_factory=set)                # DCIs whose TD the device NAKed


class Commands:
    """Mixed into XhciController: the command doorbell and the commands."""

    def _doorbell(self, target: int, value: int) -> None:
        if not self.running:
            return
        if target == 0:
            if value & 0xFF == 0:
                self._run_commands()
        else:
            self.ring_endpoint(target, value & 0xFF)

    def _run_commands(self) -> None:
        self.command_running = True
        for _ in range(MAX_COMMANDS_PER_DOORBELL):
            if not self.command_running or not self.running:
                return
            try:
                found = self.command_ring.peek(self._dma_read)
            except RingError as exc:
                if exc.code is None:
                    raise
                self._post(T.event(T.COMMAND_COMPLETION, self.command_ring.dequeue, exc.code))
                return
            if found is None:
                return
            address, command = found
            self.command_ring.consume()
            slot_id = command.slot if command.type != T.ENABLE_SLOT else 0
            try:
                slot_id, parameter = self._command(command)
                code = T.SUCCESS
            except CommandError as exc:
                code, parameter = exc.code, 0
            self._post(T.event(T.COMMAND_COMPLETION, address, code, parameter, slot=slot_id))

    def _command(self, c: T.Trb) -> tuple[int, int]:
        """Run one command: (the slot ID for its completion event, the completion
        parameter). Raises CommandError."""
        kind = c.type
        if kind == T.COMMAND_NOOP:
            return 0, 0
        if kind == T.ENABLE_SLOT:
            return self._enable_slot(c), 0
        handlers = {T.DISABLE_SLOT: self._disable_slot, T.ADDRESS_DEVICE: self._address_device,
                    T.CONFIGURE_ENDPOINT: self._configure_endpoint,
                    T.EVALUATE_CONTEXT: self._evaluate_context,
                    T.RESET_ENDPOINT: self._reset_endpoint, T.STOP_ENDPOINT: self._stop_endpoint,
                    T.SET_TR_DEQUEUE: self._set_dequeue, T.RESET_DEVICE: self._reset_device}
        handler = handlers.get(kind)
        if handler is None:
            raise CommandError(T.TRB_ERROR)
        slot = self.slots.get(c.slot)
        if slot is None:
            raise CommandError(T.SLOT_NOT_ENABLED)
        handler(c, slot)
        return c.slot, 0

    # --- slots -----------------------------------------------------------------------------

    def _enable_slot(self, c: T.Trb) -> int:
        if c.control >> 16 & 0x1F != 0:                   # slot type: the protocols' is 0
            raise CommandError(T.TRB_ERROR)
        for n in range(1, (self.config & 0xFF) + 1):
            if n not in self.slots:
                self.slots[n] = Slot()
                return n
        raise CommandError(T.NO_SLOTS)

    def _disable_slot(self, c: T.Trb, slot: Slot) -> None:
        for ep in slot.endpoints.values():
            if ep.timer is not None:
                ep.timer.cancel()
        del self.slots[c.slot]
        if slot.output:
            context = list(slot.context)
            C.set_slot_state(context, C.SLOT_DISABLED, 0)
            self._write_context(slot, 0, context)

    def _input_context(self, c: T.Trb) -> tuple[int, int, list[list[int]]]:
        """(drop flags, add flags, [slot context, EP contexts 1-31]) of the command's input
        context."""
        raw = self._dma_read(c.parameter & ~0xF, C.INPUT_CONTEXT)
        if raw is None or c.parameter & 0xF:
            raise CommandError(T.PARAMETER_ERROR)
        control = C.dwords(raw)
        contexts = [C.dwords(raw[C.SIZE * (n + 1):]) for n in range(C.ENTRIES)]
        return control[0], control[1], contexts

    def _output_address(self, slot_id: int) -> int:
        raw = self._dma_read(self.dcbaap + 8 * slot_id, 8)
        if raw is None:
            raise RingError(f"DCBAA at {self.dcbaap:#x} is not memory", None)
        address = int.from_bytes(raw, "little")
        if address & 0x3F or self._dma_read(address, C.DEVICE_CONTEXT) is None:
            raise CommandError(T.PARAMETER_ERROR)
        return address

    def _write_context(self, slot: Slot, index: int, words: list[int]) -> None:
        if not self._dma_write(slot.output + C.SIZE * index, C.pack(words)):
            raise RingError(f"device context at {slot.output:#x} is not memory", None)

    def _find_device(self, root_port: int, route: int) -> UsbDevice | None:
        """The device at root port `root_port` and, below it, the hub ports `route` names
        (one nibble per tier, the first tier lowest)."""
        if not 1 <= root_port <= R.MAX_PORTS:
            return None
        port = self.ports[root_port - 1]
        device = port.device if port.enabled else None
        while device is not None and route & 0xF:
            below = getattr(device, "device_at", None)
            device = below(route & 0xF) if below is not None else None
            route >>= 4
        return device

    def _address_device(self, c: T.Trb, slot: Slot) -> None:
        block = c.has(T.BSR)
        if slot.state not in (C.SLOT_DISABLED, C.SLOT_DEFAULT) or \
                slot.state == C.SLOT_DEFAULT and block:
            raise CommandError(T.CONTEXT_STATE_ERROR)
        drop, add, contexts = self._input_context(c)
        if add & 3 != 3:
            raise CommandError(T.PARAMETER_ERROR)
        slot_context, ep0 = contexts[0], contexts[1]
        if C.ep_type(ep0) != C.CONTROL or C.max_packet(ep0) == 0:
            raise CommandError(T.PARAMETER_ERROR)
        output = self._output_address(c.slot)
        device = self._find_device(C.root_port(slot_context), C.route_string(slot_context))
        if device is None:
            raise CommandError(T.TRANSACTION_ERROR)
        address = 0 if block else c.slot
        if not block:
            try:
                device.control(Setup(0x00, SET_ADDRESS, address, 0, 0), b"")
            except Stall:
                raise CommandError(T.TRANSACTION_ERROR) from None
        slot.device, slot.output = device, output
        slot.root_port, slot.route = C.root_port(slot_context), C.route_string(slot_context)
        slot.interrupter = C.interrupter_target(slot_context)
        slot.state = C.SLOT_DEFAULT if block else C.SLOT_ADDRESSED
        slot.context = list(slot_context)
        C.set_context_entries(slot.context, 1)
        C.set_slot_state(slot.context, slot.state, address)
        pointer, cycle = C.dequeue(ep0)
        slot.endpoints = {1: Endpoint(C.CONTROL, ConsumerRing(pointer, cycle),
                                      max_packet=C.max_packet(ep0))}
        slot.waiting.clear()
        self._write_context(slot, 0, slot.context)
        ep0 = list(ep0)
        C.set_ep_state(ep0, C.EP_RUNNING)
        self._write_context(slot, 1, ep0)

    def _configure_endpoint(self, c: T.Trb, slot: Slot) -> None:
        if slot.state not in (C.SLOT_ADDRESSED, C.SLOT_CONFIGURED):
            raise CommandError(T.CONTEXT_STATE_ERROR)
        if c.has(T.DECONFIGURE):
            for dci in [d for d in slot.endpoints if d > 1]:
                self._drop_endpoint(slot, dci)
            self._slot_configured(slot)
            return
        drop, add, contexts = self._input_context(c)
        adding = [dci for dci in range(2, C.ENTRIES) if add >> dci & 1]
        for dci in adding:
            ep = contexts[dci]
            if C.ep_type(ep) == 0 or C.max_packet(ep) == 0 or \
                    C.ep_type(ep) in (C.ISOCH_OUT, C.ISOCH_IN):
                raise CommandError(T.PARAMETER_ERROR if C.ep_type(ep) else T.TRB_ERROR)
        for dci in range(2, C.ENTRIES):
            if drop >> dci & 1 or add >> dci & 1:
                self._drop_endpoint(slot, dci)
        for dci in adding:
            ep = list(contexts[dci])
            pointer, cycle = C.dequeue(ep)
            slot.endpoints[dci] = Endpoint(C.ep_type(ep), ConsumerRing(pointer, cycle),
                                           max_packet=C.max_packet(ep),
                                           interval_ns=C.service_interval_ns(ep))
            self.pace(c.slot, slot, dci)
            C.set_ep_state(ep, C.EP_RUNNING)
            self._write_context(slot, dci, ep)
        if add & 1:                   # the slot context's hub fields come with it
            entries = C.context_entries(slot.context)
            slot.context[0:3] = contexts[0][0:3]
            C.set_context_entries(slot.context, entries)
            slot.interrupter = C.interrupter_target(slot.context)
        self._slot_configured(slot)

    def _drop_endpoint(self, slot: Slot, dci: int) -> None:
        ep = slot.endpoints.get(dci)
        if ep is not None and ep.timer is not None:
            ep.timer.cancel()
        if slot.endpoints.pop(dci, None) is not None:
            slot.waiting.discard(dci)
            self._write_context(slot, dci, [0] * 8)

    def _slot_configured(self, slot: Slot) -> None:
        last = max(slot.endpoints, default=1)
        slot.state = C.SLOT_CONFIGURED if last > 1 else C.SLOT_ADDRESSED
        C.set_context_entries(slot.context, last)
        C.set_slot_state(slot.context, slot.state, slot.context[3] & 0xFF)
        self._write_context(slot, 0, slot.context)

    def _evaluate_context(self, c: T.Trb, slot: Slot) -> None:
        if slot.state == C.SLOT_DISABLED:
            raise CommandError(T.CONTEXT_STATE_ERROR)
        drop, add, contexts = self._input_context(c)
        if add & 1:
            source = contexts[0]
            slot.context[1] = slot.context[1] & ~0xFFFF | source[1] & 0xFFFF
            slot.context[2] = slot.context[2] & 0x003F_FFFF | source[2] & ~0x003F_FFFF
            slot.interrupter = C.interrupter_target(slot.context)
            self._write_context(slot, 0, slot.context)
        if add & 2 and 1 in slot.endpoints:
            size = C.max_packet(contexts[1])
            if size == 0:
                raise CommandError(T.PARAMETER_ERROR)
            slot.endpoints[1].max_packet = size
            self._write_endpoint(slot, 1)

    def _write_endpoint(self, slot: Slot, dci: int) -> None:
        """The endpoint's state, dequeue pointer and max packet size into its output
        context, over what the context held."""
        ep = slot.endpoints[dci]
        raw = self._dma_read(slot.output + C.SIZE * dci, C.SIZE)
        if raw is None:
            raise RingError(f"device context at {slot.output:#x} is not memory", None)
        words = C.dwords(raw)
        C.set_ep_state(words, ep.state)
        C.set_dequeue(words, ep.ring.dequeue, ep.ring.cycle)
        words[1] = words[1] & 0xFFFF | ep.max_packet << 16
        self._write_context(slot, dci, words)

    def _endpoint(self, c: T.Trb, slot: Slot) -> Endpoint:
        ep = slot.endpoints.get(c.endpoint)
        if ep is None:
            raise CommandError(T.ENDPOINT_NOT_ENABLED)
        return ep

    def _reset_endpoint(self, c: T.Trb, slot: Slot) -> None:
        ep = self._endpoint(c, slot)
        if ep.state != C.EP_HALTED:
            raise CommandError(T.CONTEXT_STATE_ERROR)
        ep.state = C.EP_STOPPED
        slot.waiting.discard(c.endpoint)
        self._write_endpoint(slot, c.endpoint)

    def _stop_endpoint(self, c: T.Trb, slot: Slot) -> None:
        ep = self._endpoint(c, slot)
        if ep.state != C.EP_RUNNING:
            raise CommandError(T.CONTEXT_STATE_ERROR)
        if c.endpoint in slot.waiting:
            slot.waiting.discard(c.endpoint)
            self.report_stopped(c.slot, slot, c.endpoint)
        ep.state = C.EP_STOPPED
        self._write_endpoint(slot, c.endpoint)

    def _set_dequeue(self, c: T.Trb, slot: Slot) -> None:
        ep = self._endpoint(c, slot)
        if ep.state not in (C.EP_STOPPED, C.EP_ERROR):
            raise CommandError(T.CONTEXT_STATE_ERROR)
        pointer = c.parameter & ~0xF
        if self._dma_read(pointer, T.SIZE) is None:
            raise CommandError(T.PARAMETER_ERROR)
        ep.ring.set(pointer, c.parameter & 1)
        self._write_endpoint(slot, c.endpoint)

    def _reset_device(self, c: T.Trb, slot: Slot) -> None:
        if slot.state not in (C.SLOT_ADDRESSED, C.SLOT_CONFIGURED):
            raise CommandError(T.CONTEXT_STATE_ERROR)
        for dci in [d for d in slot.endpoints if d > 1]:
            self._drop_endpoint(slot, dci)
        slot.state = C.SLOT_DEFAULT
        C.set_context_entries(slot.context, 1)
        C.set_slot_state(slot.context, C.SLOT_DEFAULT, 0)
        self._write_context(slot, 0, slot.context)
