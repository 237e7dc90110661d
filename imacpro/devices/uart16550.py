"""16550A UART, as the PC's COM1 (ports 0x3F8-0x3FF, ISA IRQ 4)."""

from __future__ import annotations

import logging
from typing import Callable

from imacpro.devices import _state
from imacpro.devices.contract import StateError, load_fields, save_fields
from imacpro.devices.lpc import ByteRegisters
from imacpro.irq import IrqLine

log = logging.getLogger(__name__)

FIFO_SIZE = 16
RX_TRIGGER = (1, 4, 8, 14)  # FCR bits 7:6 -> receive FIFO trigger level (bytes)

# Register offsets (PC16550D datasheet, table II).
RBR_THR, IER, IIR_FCR, LCR, MCR, LSR, MSR, SCR = range(8)

IER_ERBFI, IER_ETBEI, IER_ELSI, IER_EDSSI = 0x01, 0x02, 0x04, 0x08
IER_MASK = 0x0F  # bits 7:4 read 0 on a 16550A (Linux tests this: the Xscale UUE bit 6)

IIR_NONE, IIR_MSI, IIR_THRI, IIR_RDI, IIR_RLSI, IIR_CTI = 0x01, 0x00, 0x02, 0x04, 0x06, 0x0C
IIR_FIFO = 0xC0  # bits 7:6 = 11: FIFOs enabled (what makes Linux say "16550A")

FCR_ENABLE, FCR_CLEAR_RX = 0x01, 0x02  # bit 2 clears the transmit FIFO: always empty here
FCR_KEPT = 0xC9  # trigger level, DMA mode, enable; the clear bits are self-clearing

LCR_DLAB = 0x80

MCR_DTR, MCR_RTS, MCR_OUT1, MCR_OUT2, MCR_LOOP = 0x01, 0x02, 0x04, 0x08, 0x10
MCR_MASK = 0x1F  # bits 7:5 read 0 on a 16550A (AFE is a 16750 bit)

# Only OE of the error bits (OE, PE 0x04, FE 0x08, BI 0x10) can happen here: no framing.
LSR_DR, LSR_OE, LSR_THRE, LSR_TEMT = 0x01, 0x02, 0x20, 0x40

MSR_DCTS, MSR_DDSR, MSR_TERI, MSR_DDCD = 0x01, 0x02, 0x04, 0x08
MSR_CTS, MSR_DSR, MSR_RI, MSR_DCD = 0x10, 0x20, 0x40, 0x80
MSR_DELTAS = 0x0F
# The host side is a console that is always there: carrier, data set ready and clear to send.
MSR_LINES_CONNECTED = MSR_DCD | MSR_DSR | MSR_CTS


class Uart16550(ByteRegisters):
    """National Semiconductor PC16550D (16550A) UART with 16-byte FIFOs.

    Follows the PC16550D datasheet (section 8, "Registers"): offsets from the base (0x3F8):

    | off | DLAB=0 read / write       | DLAB=1    | notes                                        |
    |-----|---------------------------|-----------|----------------------------------------------|
    | 0   | RBR (receive) / THR       | DLL       | THR goes to `output` at once, no baud pacing |
    | 1   | IER (bits 3:0)            | DLM       | ERBFI, ETBEI, ELSI, EDSSI                    |
    | 2   | IIR (read) / FCR (write)  | same      | IIR bits 7:6 = 11 while FIFOs are enabled    |
    | 3   | LCR                       |           | bit 7 = DLAB; framing bits kept, unused      |
    | 4   | MCR (bits 4:0)            |           | DTR, RTS, OUT1, OUT2, LOOP                   |
    | 5   | LSR                       |           | DR, OE (read clears), THRE, TEMT always set  |
    | 6   | MSR                       |           | deltas cleared by reading; loopback = MCR    |
    | 7   | SCR                       |           | scratch                                      |

    Interrupt priority (datasheet table IV): line status (OE) > received data / character
    timeout > THR empty > modem status. THR-empty follows the hardware (and QEMU's
    hw/char/serial.c): pending when THR becomes empty or ETBEI is newly enabled while it is
    empty; cleared by reading IIR while it is the reported source, by writing THR (the byte
    then leaves at once, so it is pending again: one edge per byte), or by clearing ETBEI.

    Character timeout: host input arrives in whole `feed()` bursts and nothing is paced, so
    the line is idle as soon as a burst ends. A FIFO holding fewer bytes than the trigger level
    therefore reports the timeout (IIR 0xCC) at once instead of after four character times;
    reading RBR does not end it while bytes remain, just as the real timer would fire again.

    Output to the PC: IRQ = an interrupt pending AND MCR.OUT2 (OUT2 gates the IRQ driver) AND
    not loopback (in loopback the datasheet forces the OUT pins inactive). In loopback, THR
    goes to the receiver and `feed()` input is dropped (the serial input is disconnected).
    Multi-byte accesses are split into byte accesses, as the LPC bus does for an 8-bit device;
    bytes outside 0..7 read 0xFF (nothing answers) and writes there are ignored. Access sizes
    other than 1, 2, 4, 8 read 0 and are ignored. Not modelled: parity/framing errors, break,
    DMA mode (FCR bit 3 is kept, no effect), the transmit FIFO (always empty).

    Saved state: every register (the divisor latch and scratch included), the receive FIFO
    (its bytes, oldest first), the last byte read, the OE bit not yet read from LSR, the
    MSR deltas and the THR-empty interrupt latch. The transmit FIFO is always empty here
    (a written byte leaves at once), so there is nothing of it to save. `load()` drives the
    IRQ to what the loaded state asks for; `output` is wiring.
    """

    # A derived UART may have larger FIFOs and more MCR bits.
    fifo_size, rx_trigger, mcr_mask = FIFO_SIZE, RX_TRIGGER, MCR_MASK

    def __init__(self, irq: IrqLine, output: Callable[[bytes], None] | None = None):
        self._irq = irq
        self._output = output
        # Not affected by a master reset (datasheet table V); 0x000C = 9600 baud on 1.8432 MHz.
        self.dll = 0x0C
        self.dlm = 0x00
        self.scr = 0x00
        self.rbr = 0x00  # the last byte read: what RBR shows once the receiver is empty
        self.reset()

    def reset(self) -> None:
        self.ier = 0
        self.fcr = 0
        self.lcr = 0
        self.mcr = 0
        self.lsr_errors = 0
        self.msr = MSR_LINES_CONNECTED
        self.rx: list[int] = []
        self.thr_pending = False
        self._update_irq()

    # -- saved state -------------------------------------------------------------------------

    def save(self) -> dict:
        state = save_fields(self, _SAVED)
        state["rx"] = bytes(self.rx)
        return state

    def load(self, state: dict) -> None:
        where = type(self).__name__
        _state.ranges(state, where, {name: (0, 0xFF) for name in _BYTES})
        if state["ier"] & ~IER_MASK or state["mcr"] & ~self.mcr_mask \
                or state["fcr"] & ~FCR_KEPT or state["lsr_errors"] & ~LSR_OE:
            raise StateError(f"{where}: register bits no guest can set")
        rx = _state.field(state, "rx", where)
        capacity = self.fifo_size if state["fcr"] & FCR_ENABLE else 1
        if not isinstance(rx, bytes) or len(rx) > capacity:
            raise StateError(f"{where}.rx: not a FIFO of at most {capacity} bytes")
        load_fields(self, state, _SAVED)
        self.rx = list(rx)
        self._update_irq()

    # -- host side ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Host input arriving on the serial line."""
        if self.mcr & MCR_LOOP:
            log.debug("uart: %d input bytes dropped in loopback mode", len(data))
            return
        for byte in bytes(data):
            self._receive(byte)
        self._update_irq()

    def rx_free(self) -> int:
        """How many bytes `feed()` can take now without an overrun (for host-side pacing)."""
        return max(0, self._rx_capacity() - len(self.rx))

    # -- guest side --------------------------------------------------------------------------


    def _read_byte(self, reg: int) -> int:
        dlab = self.lcr & LCR_DLAB
        if reg == RBR_THR:
            return self.dll if dlab else self._read_rbr()
        if reg == IER:
            return self.dlm if dlab else self.ier
        if reg == IIR_FCR:
            return self._read_iir()
        if reg == LCR:
            return self.lcr
        if reg == MCR:
            return self.mcr
        if reg == LSR:
            value = LSR_THRE | LSR_TEMT | self.lsr_errors | (LSR_DR if self.rx else 0)
            self.lsr_errors = 0  # reading LSR clears the error bits
            self._update_irq()
            return value
        if reg == MSR:
            value = self.msr
            self.msr &= ~MSR_DELTAS
            self._update_irq()
            return value
        if reg == SCR:
            return self.scr
        log.debug("uart: read of unknown offset %#x", reg)
        return 0xFF

    def _write_byte(self, reg: int, value: int) -> None:
        dlab = self.lcr & LCR_DLAB
        if reg == RBR_THR:
            if dlab:
                self.dll = value
            else:
                self._write_thr(value)
        elif reg == IER:
            if dlab:
                self.dlm = value
            else:
                self._write_ier(value)
        elif reg == IIR_FCR:
            self._write_fcr(value)
        elif reg == LCR:
            self.lcr = value
        elif reg == MCR:
            self.mcr = value & self.mcr_mask
            self._update_msr()
            self._update_irq()
        elif reg == SCR:
            self.scr = value
        else:  # LSR and MSR are read-only (their writes are factory test modes)
            log.debug("uart: write %#x to offset %#x ignored", value, reg)

    def _read_rbr(self) -> int:
        if self.rx:
            self.rbr = self.rx.pop(0)
            self._update_irq()
        return self.rbr

    def _read_iir(self) -> int:
        iid = self._interrupt_id()
        if iid == IIR_THRI:  # reading IIR acknowledges THR empty when it is the source
            self.thr_pending = False
            self._update_irq()
        return iid | (IIR_FIFO if self.fcr & FCR_ENABLE else 0)

    def _write_thr(self, value: int) -> None:
        self.thr_pending = False
        self._update_irq()
        if self.mcr & MCR_LOOP:
            self._receive(value)
        elif self._output is not None:
            self._output(bytes((value,)))
        self.thr_pending = True  # the byte left at once: THR is empty again
        self._update_irq()

    def _write_ier(self, value: int) -> None:
        value &= IER_MASK
        if (value ^ self.ier) & IER_ETBEI:
            # Enabling ETBEI while THR is empty (always, here) raises it; Windows and Linux's
            # UART_BUG_THRE probe rely on this. Disabling it drops the pending interrupt.
            self.thr_pending = bool(value & IER_ETBEI)
        self.ier = value
        self._update_irq()

    def _write_fcr(self, value: int) -> None:
        # Changing FIFO mode clears both FIFOs; other FCR bits act only with bit 0 set
        # (datasheet, FCR bits 0 and 1).
        if (value ^ self.fcr) & FCR_ENABLE or value & (FCR_ENABLE | FCR_CLEAR_RX) == 0x03:
            self.rx.clear()
        self.fcr = value & FCR_KEPT if value & FCR_ENABLE else 0
        self._update_irq()

    def _rx_capacity(self) -> int:
        return self.fifo_size if self.fcr & FCR_ENABLE else 1

    def _receive(self, byte: int) -> None:
        if len(self.rx) < self._rx_capacity():
            self.rx.append(byte)
            return
        self.lsr_errors |= LSR_OE
        if not self.fcr & FCR_ENABLE:
            self.rx[0] = byte  # 16450 mode: the new character overwrites RBR
        # FIFO mode: the character in the shift register is lost, the FIFO is kept.

    def _update_msr(self) -> None:
        old = self.msr
        if self.mcr & MCR_LOOP:
            mcr = self.mcr
            lines = ((MSR_CTS if mcr & MCR_RTS else 0) | (MSR_DSR if mcr & MCR_DTR else 0)
                     | (MSR_RI if mcr & MCR_OUT1 else 0) | (MSR_DCD if mcr & MCR_OUT2 else 0))
        else:
            lines = MSR_LINES_CONNECTED
        changed = (old ^ lines) & 0xF0
        deltas = ((MSR_DCTS if changed & MSR_CTS else 0) | (MSR_DDSR if changed & MSR_DSR else 0)
                  | (MSR_DDCD if changed & MSR_DCD else 0)
                  | (MSR_TERI if old & MSR_RI and not lines & MSR_RI else 0))
        self.msr = lines | (old & MSR_DELTAS) | deltas

    def _interrupt_id(self) -> int:
        ier = self.ier
        if ier & IER_ELSI and self.lsr_errors:
            return IIR_RLSI
        if ier & IER_ERBFI and self.rx:
            if self.fcr & FCR_ENABLE and len(self.rx) < self.rx_trigger[self.fcr >> 6]:
                return IIR_CTI
            return IIR_RDI
        if ier & IER_ETBEI and self.thr_pending:
            return IIR_THRI
        if ier & IER_EDSSI and self.msr & MSR_DELTAS:
            return IIR_MSI
        return IIR_NONE

    def _update_irq(self) -> None:
        wired = self.mcr & (MCR_OUT2 | MCR_LOOP) == MCR_OUT2
        self._irq.set(wired and self._interrupt_id() != IIR_NONE)


_BYTES = ("dll", "dlm", "scr", "rbr", "ier", "fcr", "lcr", "mcr", "lsr_errors", "msr")
_SAVED = (*_BYTES, "thr_pending")
