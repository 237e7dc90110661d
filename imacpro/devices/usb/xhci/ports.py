"""The root hub's ports: PORTSC and its companions (xHCI 1.1 §5.4.8-5.4.11, §4.19).

Each port speaks one protocol (the Supported Protocol capabilities say which: USB 2 or USB 3).
A device plugs into a port of its own protocol: a SuperSpeed device into a USB 3 port, a low,
full or high speed one into a USB 2 port.

PORTSC (operational base + 0x400 + 0x10 × (port - 1)):

    | bits  | field                                                    | access          |
    |-------|----------------------------------------------------------|-----------------|
    | 0     | CCS: a device is connected                               | RO              |
    | 1     | PED: port enabled                                        | RW1C (disable)  |
    | 4     | PR: port reset (done at once: PRC, PED, U0)              | RW1S            |
    | 8:5   | PLS: link state (written with LWS: U0, U3, RxDetect, Resume) | RWS         |
    | 9     | PP: port power (no power switching: always 1)            | RO              |
    | 13:10 | port speed (the protocol's default speed IDs)            | RO              |
    | 15:14 | PIC: indicator                                           | RW              |
    | 16    | LWS: link write strobe                                   | RW (reads 0)    |
    | 17-23 | CSC, PEC, WRC, OCC, PRC, PLC, CEC: change bits           | RW1C            |
    | 24    | CAS: cold attach status                                  | RO 0            |
    | 25-27 | WCE, WDE, WOE: wake on connect, disconnect, over-current | RWS             |
    | 30    | DR: device not removable                                 | RO              |
    | 31    | WPR: warm port reset (USB 3)                             | RW1S            |

PORTPMSC (+4) keeps what software writes (its power-management fields have no effect here),
PORTLI (+8) reads 0 (no link errors), PORTHLPMC (+C) keeps what software writes.

A change bit that goes from 0 to 1 makes the controller post a Port Status Change event.
"""

from __future__ import annotations

from imacpro.devices.usb.device import SUPER, UsbDevice

CCS, PED, PR, PP, LWS = 1 << 0, 1 << 1, 1 << 4, 1 << 9, 1 << 16
CSC, PEC, WRC, OCC, PRC, PLC, CEC = (1 << n for n in range(17, 24))
CHANGE_BITS = CSC | PEC | WRC | OCC | PRC | PLC | CEC
WAKE_BITS = 0b111 << 25
PIC_MASK = 0b11 << 14
DR, WPR = 1 << 30, 1 << 31
PLS_SHIFT, PLS_MASK = 5, 0xF << 5
SPEED_SHIFT = 10

U0, U3, DISABLED, RX_DETECT, POLLING, RESUME = 0, 3, 4, 5, 7, 15


class Port:
    def __init__(self, number: int, usb3: bool, removable: bool = True):
        self.number = number              # 1-based, as the controller numbers it
        self.usb3 = usb3
        self.removable = removable
        self.device: UsbDevice | None = None
        self.reset()

    def reset(self) -> None:
        """Controller reset: the link retrains; a connected device shows as a new connect."""
        self.enabled = False
        self.link = RX_DETECT
        self.changes = 0
        self.indicator_wake = 0           # PIC and the wake bits, as software wrote them
        self.pmsc = self.hlpmc = 0
        if self.device is not None:
            self._connected()

    def accepts(self, device: UsbDevice) -> bool:
        return (device.speed == SUPER) == self.usb3

    def attach(self, device: UsbDevice) -> int:
        """Plug `device` in; returns the change bits that went to 1."""
        if self.device is not None:
            raise ValueError(f"port {self.number} is in use")
        if not self.accepts(device):
            raise ValueError(f"port {self.number} does not speak the device's protocol")
        self.device = device
        device.reset()
        return self._connected()

    def _connected(self) -> int:
        if self.usb3:                       # link training enables a USB 3 port by itself
            self.enabled, self.link = True, U0
        else:                               # USB 2 waits for software's port reset
            self.enabled, self.link = False, POLLING
        return self._change(CSC)

    def detach(self) -> tuple[UsbDevice | None, int]:
        device, self.device = self.device, None
        if device is None:
            return None, 0
        self.enabled, self.link = False, RX_DETECT
        return device, self._change(CSC)

    def _change(self, bits: int) -> int:
        new = bits & ~self.changes
        self.changes |= bits
        return new

    @property
    def portsc(self) -> int:
        value = PP | self.changes | self.indicator_wake | self.link << PLS_SHIFT
        if self.device is not None:
            value |= CCS
            if self.enabled or self.usb3:
                value |= self.device.speed << SPEED_SHIFT
        if self.enabled:
            value |= PED
        if not self.removable:
            value |= DR
        return value

    def write_portsc(self, value: int) -> int:
        """Software's write; returns the change bits that went to 1."""
        self.changes &= ~(value & CHANGE_BITS)
        self.indicator_wake = value & (PIC_MASK | WAKE_BITS)
        new = 0
        if value & PED and self.enabled:
            self.enabled = False            # software disables the port (no change bit)
        if value & (PR | WPR) and self.device is not None:
            new |= self._port_reset(warm=bool(value & WPR) and self.usb3)
        elif value & LWS:
            new |= self._link_write(value >> PLS_SHIFT & 0xF)
        return new

    def _port_reset(self, warm: bool) -> int:
        self.device.reset()
        self.enabled, self.link = True, U0
        return self._change(PRC | (WRC if warm else 0))

    def _link_write(self, state: int) -> int:
        if state == U3 and self.enabled and self.link == U0:
            self.link = U3                  # selective suspend: no change bit
        elif state == U0 and self.link in (U3, RESUME) and self.enabled:
            self.link = U0
            return self._change(PLC)
        elif state == RESUME and self.link == U3 and not self.usb3:
            self.link = RESUME
        elif state == RX_DETECT and self.usb3 and self.link == DISABLED:
            self.link = RX_DETECT if self.device is None else U0
            self.enabled = self.device is not None
        elif state == DISABLED and self.usb3:
            self.enabled, self.link = False, DISABLED
        return 0

    # --- state -----------------------------------------------------------------------------

    def save(self) -> dict:
        return {"enabled": self.enabled, "link": self.link, "changes": self.changes,
                "indicator_wake": self.indicator_wake, "pmsc": self.pmsc, "hlpmc": self.hlpmc}

    FIELDS = ("enabled", "link", "changes", "indicator_wake", "pmsc", "hlpmc")
