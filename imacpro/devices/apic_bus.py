"""The APIC message fabric: interrupt messages from IPIs and I/O APICs to local APICs.

Not a guest-visible device. On Skylake the "APIC bus" is a message on the ring/mesh; what the
guest can observe is only the routing, which follows Intel SDM vol. 3A ch. 10 (xAPIC):
10.6.2 (destination modes), 10.6.1 (ICR shorthands and delivery modes), 10.8.5 (EOI to the
I/O APICs).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from imacpro.devices.apic_core import ApicCoreBus

if TYPE_CHECKING:
    from imacpro.devices.lapic import LocalApic

log = logging.getLogger(__name__)

# Delivery modes (ICR / LVT / redirection entry bits 10:8).
FIXED, LOWEST_PRIORITY, SMI, REMOTE_READ, NMI, INIT, STARTUP, EXTINT = range(8)
# Destination shorthands (ICR bits 19:18).
NO_SHORTHAND, SELF, ALL_INCLUDING_SELF, ALL_EXCLUDING_SELF = range(4)
BROADCAST = 0xFF  # xAPIC destination that every local APIC accepts
DFR_FLAT, DFR_CLUSTER = 0xF, 0x0  # DFR bits 31:28 (model)
MSI_ADDRESS_BASE = 0xFEE0_0000


class ApicBus:
    """Routes interrupt messages to the attached local APICs.

    `deliver()` returns how many local APICs accepted the message, so a level-triggered I/O APIC
    pin knows whether to wait for an EOI. Destinations (SDM 10.6.2):
    - physical: the APIC ID in bits 7:0; 0xFF is a broadcast;
    - logical, flat model (DFR 31:28 = 1111): accepted when LDR bits 31:24 & dest != 0;
    - logical, cluster model (DFR 31:28 = 0000): dest 7:4 is the cluster, 3:0 a member bitmap,
      matched against LDR 31:28 and 27:24; a DFR with another model matches nothing;
    - logical 0xFF is a broadcast in either model (as KVM does; the SDM calls all-ones "all").
    Lowest priority picks, among the matched software-enabled APICs, the one with the lowest
    arbitration priority (APR), ties broken by the lowest APIC ID: deterministic. Focus
    processor checking does not exist on Xeon (SVR bit 9 is reserved there).
    INIT level de-assert (INIT, level trigger, level 0) only resynchronises arbitration IDs on
    old parts: ignored. SMI and remote read are logged and dropped.

    `eoi_listeners` are called with the vector when a local APIC EOIs a level-triggered
    interrupt (TMR bit set): the I/O APICs register `on_eoi` there. The EOIs of the edge
    vectors in `edge_eoi_vectors` go there too: the I/O APIC puts there the vectors of pins
    whose source wants to know when its edge was taken (the PIT's lost-tick reinjection;
    KVM's "ack notifiers"). Real hardware sends no EOI message for an edge interrupt; no
    guest can tell the difference.

    `cores` is the same fabric for the local APICs' cores (devices/apic_core.py), which send
    the common IPIs (fixed, physical or by shorthand) between themselves in C with the same
    routing; its `wake` hears of a halted CPU they sent one to.
    """

    def __init__(self):
        self.lapics: list[LocalApic] = []
        self.eoi_listeners: list[Callable[[int], None]] = []
        self._edge_eoi_vectors: frozenset[int] = frozenset()
        self.cores = ApicCoreBus()

    @property
    def edge_eoi_vectors(self) -> frozenset[int]:
        return self._edge_eoi_vectors

    @edge_eoi_vectors.setter
    def edge_eoi_vectors(self, vectors) -> None:
        """The local APICs' cores take an EOI of these to Python (devices/apic_core.py)."""
        self._edge_eoi_vectors = frozenset(vectors)
        for lapic in self.lapics:
            lapic.core.set_eoi_notify(self._edge_eoi_vectors)

    def attach(self, lapic: LocalApic) -> None:
        if lapic not in self.lapics:
            self.lapics.append(lapic)
            lapic.core.set_eoi_notify(self._edge_eoi_vectors)
            self.cores.attach(lapic.core)

    def eoi(self, vector: int) -> None:
        for listener in list(self.eoi_listeners):
            listener(vector)

    def deliver(self, dest: int, dest_mode_logical: bool, delivery_mode: int, vector: int,
                level_triggered: bool, shorthand: int = NO_SHORTHAND,
                source: LocalApic | None = None, level_assert: bool = True) -> int:
        delivery_mode &= 7
        vector &= 0xFF
        if delivery_mode == INIT and level_triggered and not level_assert:
            log.debug("INIT level de-assert ignored")
            return 0
        if delivery_mode in (SMI, REMOTE_READ):
            log.debug("delivery mode %d (vector %#x) not modelled, dropped", delivery_mode, vector)
            return 0
        targets = [lapic for lapic in self._targets(dest & 0xFF, dest_mode_logical, shorthand,
                                                    source)
                   if lapic.hardware_enabled]
        if delivery_mode == LOWEST_PRIORITY:
            candidates = [lapic for lapic in targets if lapic.software_enabled]
            if not candidates:
                return 0
            targets = [min(candidates, key=lambda l: (l.arbitration_priority(), l.apic_id))]
            delivery_mode = FIXED
        return sum(lapic.receive(delivery_mode, vector, level_triggered) for lapic in targets)

    def deliver_msi(self, address: int, data: int) -> bool:
        """A message signalled interrupt (SDM 10.11): address 0xFEEx_xxxx with the destination
        in bits 19:12 and the destination mode in bit 2; data with the vector in 7:0, the
        delivery mode in 10:8 and the trigger mode in 15. False if `address` is not in the
        interrupt range (the write is then an ordinary memory write)."""
        if address >> 20 != MSI_ADDRESS_BASE >> 20:
            return False
        # The common message (fixed, edge, one CPU by its ID) goes in C, as IPIs do.
        fixed = fixed_message(address, data)
        if fixed is not None and self.cores.send_fixed(*fixed):
            return True
        dest, logical, mode, vector, level = ((address >> 12) & 0xFF, bool(address & 0x4),
                                              (data >> 8) & 7, data & 0xFF, bool(data & 0x8000))
        self.deliver(dest, logical, mode, vector, level)
        return True

    def _targets(self, dest: int, logical: bool, shorthand: int,
                 source: LocalApic | None) -> list[LocalApic]:
        if shorthand == SELF:
            return [source] if source is not None else []
        if shorthand == ALL_INCLUDING_SELF:
            return list(self.lapics)
        if shorthand == ALL_EXCLUDING_SELF:
            return [lapic for lapic in self.lapics if lapic is not source]
        if dest == BROADCAST:
            return list(self.lapics)
        if not logical:
            return [lapic for lapic in self.lapics if lapic.apic_id == dest]
        return [lapic for lapic in self.lapics if _logical_match(lapic, dest)]


def fixed_message(address: int, data: int) -> tuple[int, int] | None:
    """(APIC ID, vector) of an MSI that is fixed, edge-triggered and physically addressed,
    the message the APICs' cores send in C (ApicCoreBus.send_fixed); None for any other."""
    if address >> 20 != MSI_ADDRESS_BASE >> 20 or address & 0x4 or (data >> 8) & 7 != FIXED \
            or data & 0x8000:
        return None
    return (address >> 12) & 0xFF, data & 0xFF


def _logical_match(lapic: LocalApic, dest: int) -> bool:
    model = lapic.dfr >> 28
    ldr = lapic.ldr >> 24
    if model == DFR_FLAT:
        return bool(ldr & dest)
    if model == DFR_CLUSTER:
        return (ldr >> 4) == (dest >> 4) and bool(ldr & dest & 0xF)
    return False
