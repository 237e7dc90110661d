"""Transfer rings (xHCI 1.1 §4.11): the TDs a doorbell starts, moved to and from the device.

Control endpoints (DCI 1) run a Setup Stage TD (an immediate-data Setup TRB), an optional Data
Stage TD (a Data TRB, then Normal TRBs chained to it) and a Status Stage TD as one control
transfer, only once all three are on the ring. Bulk and interrupt endpoints run TDs of chained
Normal TRBs: an OUT TD's buffers go to the device as one transfer, an IN TD asks the device for
up to the TD's length. Isochronous endpoints are not modelled (Configure Endpoint refuses them).

A device that NAKs leaves its TD on the ring; the controller runs it again when the device
calls on_ready (or the doorbell rings again). A STALL halts the endpoint with a Stall Error
event; the ring stays at the TD until software's Reset Endpoint and Set TR Dequeue Pointer.

Events, one or none per TRB (§4.10.1): a TRB with IOC gets one (Success); the TRB at which an
IN transfer came short gets one if it has ISP or IOC (Short Packet, with what it did not
receive), and the rest of the TD gets none but the next IOC's, which also says Short Packet;
an Event Data TRB with IOC reports its parameter and the bytes moved since the last one.
The event's transfer length is what the TRB did not move.
"""

from __future__ import annotations

import logging

from imacpro.devices.usb.device import Setup, Stall, UsbDevice
from imacpro.devices.usb.xhci import contexts as C
from imacpro.devices.usb.xhci import trb as T
from imacpro.devices.usb.xhci.rings import RingError

log = logging.getLogger(__name__)

MAX_TDS_PER_RUN = 1024          # then the endpoint waits for its next doorbell
EMPTY, WAITING, DONE, HALTED = range(4)


class TransferError(Exception):
    """Ends a TD with a completion code at a TRB (and, for some codes, halts the endpoint)."""

    def __init__(self, code: int, address: int, residual: int = 0, halt: bool = True):
        super().__init__(f"completion code {code}")
        self.code, self.address, self.residual, self.halt = code, address, residual, halt


class Transfers:
    """Mixed into XhciController: the endpoint doorbells and what they run."""

    def ring_endpoint(self, slot_id: int, dci: int) -> None:
        slot = self.slots.get(slot_id)
        ep = slot.endpoints.get(dci) if slot is not None else None
        if ep is None:
            return
        if ep.state == C.EP_STOPPED:              # a doorbell restarts a stopped endpoint
            ep.state = C.EP_RUNNING
            self._write_endpoint(slot, dci)
        if ep.state == C.EP_RUNNING:
            slot.waiting.discard(dci)
            self._run_endpoint(slot_id, slot, dci)

    def device_ready(self, device: UsbDevice, address: int) -> None:
        """`device` can go on with endpoint `address`, which had NAKed."""
        dci = (address & 0xF) * 2 + (1 if address & 0x80 else 0)
        for slot_id, slot in list(self.slots.items()):
            if slot.device is device and dci in slot.waiting:
                slot.waiting.discard(dci)
                try:
                    self._run_endpoint(slot_id, slot, dci)
                except RingError as exc:
                    self.host_system_error(str(exc))

    def pace(self, slot_id: int, slot, dci: int) -> None:
        """Give an interrupt endpoint its timer: it completes at most one TD per service
        interval, as the device is polled no faster on a real bus (a key press every 8 ms
        for the keyboard), so the guest's readers are never flooded."""
        ep = slot.endpoints[dci]
        if ep.interval_ns and self.clock is not None:
            ep.timer = self.clock.timer(lambda: self._interval_over(slot_id, slot, dci))

    def _interval_over(self, slot_id: int, slot, dci: int) -> None:
        if self.slots.get(slot_id) is slot and dci in slot.endpoints:
            try:
                self._run_endpoint(slot_id, slot, dci)
            except RingError as exc:
                self.host_system_error(str(exc))

    def _too_soon(self, ep) -> bool:
        if ep.timer is None:
            return False
        if self.clock.now_ns() < ep.next_ns:
            ep.timer.arm(ep.next_ns)
            return True
        return False

    def _run_endpoint(self, slot_id: int, slot, dci: int) -> None:
        ep = slot.endpoints[dci]
        for _ in range(MAX_TDS_PER_RUN):
            if not self.running or ep.state != C.EP_RUNNING or self._too_soon(ep):
                return
            try:
                outcome = self._control(slot_id, slot, ep) if dci == 1 \
                    else self._data(slot_id, slot, dci, ep)
            except RingError as exc:
                if exc.code is None:
                    raise
                self._fail(slot_id, slot, dci, TransferError(exc.code, ep.ring.dequeue))
                return
            except TransferError as exc:
                self._fail(slot_id, slot, dci, exc)
                if exc.halt:
                    return
                continue
            if outcome == WAITING:
                slot.waiting.add(dci)
                return
            if outcome == EMPTY:
                return
            if ep.timer is not None:
                ep.next_ns = self.clock.now_ns() + ep.interval_ns

    def _fail(self, slot_id: int, slot, dci: int, error: TransferError) -> None:
        self._post(T.event(T.TRANSFER_EVENT, error.address, error.code, error.residual,
                           slot=slot_id, endpoint=dci), slot.interrupter)
        if error.halt:
            slot.endpoints[dci].state = C.EP_HALTED
            self._write_endpoint(slot, dci)

    def _device(self, slot, address: int) -> UsbDevice:
        """The slot's device, if it is still where it was addressed."""
        device = self._find_device(slot.root_port, slot.route)
        if device is None or device is not slot.device:
            raise TransferError(T.TRANSACTION_ERROR, address)
        return device

    def report_stopped(self, slot_id: int, slot, dci: int) -> None:
        """Stop Endpoint found a TD the device had NAKed: it ends as Stopped, nothing
        moved (the ring stays at it)."""
        try:
            found = slot.endpoints[dci].ring.next_td(self._dma_read)
        except RingError as exc:
            if exc.code is None:
                raise
            return
        if found is not None:
            address, first = found[0][0]
            self._post(T.event(T.TRANSFER_EVENT, address, T.STOPPED, first.length,
                               slot=slot_id, endpoint=dci), slot.interrupter)

    # --- control transfers -----------------------------------------------------------------

    def _control(self, slot_id: int, slot, ep) -> int:
        ring = ep.ring
        found = ring.next_td(self._dma_read)
        if found is None:
            return EMPTY
        (setup_at, setup_trb), *rest = found[0]
        if setup_trb.type == T.TR_NOOP and not rest:
            ring.advance(found[1], found[2])
            self._report(slot_id, slot, 1, found[0], 0, 0)
            return DONE
        if setup_trb.type != T.SETUP or rest or not setup_trb.has(T.IDT) \
                or setup_trb.length != 8:
            raise TransferError(T.TRB_ERROR, setup_at)
        stage = ring.next_td(self._dma_read, found[1], found[2])
        if stage is None:
            return EMPTY                           # the rest is not written yet
        data_td = None
        if stage[0][0][1].type == T.DATA:
            data_td = stage
            stage = ring.next_td(self._dma_read, stage[1], stage[2])
            if stage is None:
                return EMPTY
        status_td, after, cycle = stage
        status_at, status_trb = status_td[-1]
        if status_td[0][1].type != T.STATUS:
            raise TransferError(T.TRB_ERROR, status_td[0][0])
        setup = Setup.parse(setup_trb.parameter.to_bytes(8, "little"))
        device = self._device(slot, status_at)
        buffers = self._buffers(data_td[0]) if data_td else []
        total = sum(t.length for _, t in buffers)
        stall_at = buffers[0][0] if buffers else status_at
        try:
            if setup.device_to_host:
                reply = device.control(setup, b"")[:total]
                moved = self._scatter(buffers, reply)
            else:
                data = self._gather(buffers)
                device.control(setup, data)
                moved = len(data)
        except Stall:
            raise TransferError(T.STALL, stall_at) from None
        ring.advance(after, cycle)
        if data_td:
            self._report(slot_id, slot, 1, data_td[0], moved, total)
        self._report(slot_id, slot, 1, status_td, 0, 0)
        return DONE

    # --- bulk and interrupt transfers ------------------------------------------------------

    def _data(self, slot_id: int, slot, dci: int, ep) -> int:
        found = ep.ring.next_td(self._dma_read)
        if found is None:
            return EMPTY
        trbs, after, cycle = found
        for address, t in trbs:
            if t.type not in (T.NORMAL, T.EVENT_DATA, T.TR_NOOP):
                raise TransferError(T.TRB_ERROR, address)
        buffers = self._buffers(trbs)
        total = sum(t.length for _, t in buffers)
        device = self._device(slot, trbs[-1][0])
        endpoint = C.dci_address(dci)
        first = buffers[0][0] if buffers else trbs[0][0]
        try:
            if dci & 1:                               # IN
                if any(t.has(T.IDT) for _, t in buffers):
                    raise TransferError(T.TRB_ERROR, first)
                data = device.data_in(endpoint, total) if total else b""
                if data is None:
                    return WAITING
                moved = self._scatter(buffers, data[:total])
            else:
                data = self._gather(buffers)
                if total and not device.data_out(endpoint, data):
                    return WAITING
                moved = len(data)
        except Stall:
            raise TransferError(T.STALL, first) from None
        ep.ring.advance(after, cycle)
        self._report(slot_id, slot, dci, trbs, moved, total)
        return DONE

    # --- data and events -------------------------------------------------------------------

    @staticmethod
    def _buffers(trbs: list) -> list:
        return [(address, t) for address, t in trbs if t.type in (T.DATA, T.NORMAL)]

    def _gather(self, buffers: list) -> bytes:
        parts = []
        for address, t in buffers:
            if t.has(T.IDT):
                if t.length > 8:
                    raise TransferError(T.TRB_ERROR, address)
                parts.append(t.parameter.to_bytes(8, "little")[:t.length])
                continue
            chunk = self._dma_read(t.parameter, t.length) if t.length else b""
            if chunk is None:
                raise TransferError(T.DATA_BUFFER_ERROR, address, t.length, halt=False)
            parts.append(chunk)
        return b"".join(parts)

    def _scatter(self, buffers: list, data: bytes) -> int:
        at = 0
        for address, t in buffers:
            chunk = data[at:at + t.length]
            if not chunk:
                break
            if not self._dma_write(t.parameter, chunk):
                raise TransferError(T.DATA_BUFFER_ERROR, address, t.length, halt=False)
            at += len(chunk)
        return at

    def _report(self, slot_id: int, slot, dci: int, trbs: list, moved: int,
                total: int) -> None:
        left, short, since_event_data = moved, moved < total, 0
        for address, t in trbs:
            if t.type == T.EVENT_DATA:
                if t.has(T.IOC):
                    self._post(T.event(T.TRANSFER_EVENT, t.parameter,
                                       T.SHORT_PACKET if short else T.SUCCESS,
                                       since_event_data, slot=slot_id, endpoint=dci,
                                       flags=T.EVENT_DATA_FLAG), slot.interrupter)
                    since_event_data = 0
                continue
            if t.type not in (T.DATA, T.NORMAL):      # Status, No Op: nothing moves
                if t.has(T.IOC):
                    self._post(T.event(T.TRANSFER_EVENT, address, T.SUCCESS, 0,
                                       slot=slot_id, endpoint=dci), slot.interrupter)
                continue
            chunk = min(t.length, left)
            left -= chunk
            since_event_data += chunk
            residual = t.length - chunk
            came_short = short and residual > 0
            if came_short and (t.has(T.ISP) or t.has(T.IOC)):
                self._post(T.event(T.TRANSFER_EVENT, address, T.SHORT_PACKET, residual,
                                   slot=slot_id, endpoint=dci), slot.interrupter)
                return
            if t.has(T.IOC):
                self._post(T.event(T.TRANSFER_EVENT, address, T.SUCCESS, 0,
                                   slot=slot_id, endpoint=dci), slot.interrupter)
