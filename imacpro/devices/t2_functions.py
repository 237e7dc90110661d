"""The T2's PCI functions besides the SSD: 02:00.1-3, as lspci shows them on the real iMac Pro.

The T2 is one PCIe device behind the PCH's root port 00:1c.0, with four functions that share a
layout (function 0, the SSD, is devices/nvme.py):

    | fn | ID        | class  | what                  |
    |----|-----------|--------|-----------------------|
    | .1 | 106b:1801 | 000000 | the T2's bridge       |
    | .2 | 106b:1802 | 000000 | the Secure Enclave    |
    | .3 | 106b:1803 | 040100 | audio                 |

Each: revision 01, subsystem 106b:1800, BAR0 4 MiB 64-bit prefetchable, BAR2 512 KiB, BAR4
64 KiB (all 64-bit), MSI offering 8 vectors, no MSI-X, a PCI Express endpoint.

No stock Linux driver binds these functions (their classes match no generic driver and their
IDs are in no driver's table), and macOS talks to them through Apple's own mailbox protocols.
What is behind their BARs is not modelled: the registers read 0 and ignore writes
(bus/pci.Unmodelled). The T2's security functions themselves (secure boot, the SEP, the SSD's
keys) are t2/: they act for the machine's firmware and its owner, not through these BARs.
"""

from __future__ import annotations

from imacpro.bus.msi import Msi
from imacpro.bus.pci import MemoryBar, PciFunction, Unmodelled
from imacpro.bus.pcie import CAP_PCI_EXPRESS, ENDPOINT, pcie_capability
from imacpro.devices import nvme

CLASS_NONE, CLASS_AUDIO = 0x000000, 0x040100
FUNCTIONS = {1: (0x1801, CLASS_NONE), 2: (0x1802, CLASS_NONE), 3: (0x1803, CLASS_AUDIO)}


def t2_function(number: int) -> PciFunction:
    """Function `number` (1-3) of the T2."""
    device, class_code = FUNCTIONS[number]
    fn = PciFunction(nvme.VENDOR_APPLE, device, class_code, nvme.REVISION,
                     subsystem_vendor=nvme.VENDOR_APPLE, subsystem=nvme.SUBSYSTEM_T2_SSD)
    Msi(fn, nvme.MSI_VECTORS)
    fn.add_capability(CAP_PCI_EXPRESS, *pcie_capability(ENDPOINT, *nvme.LINK, max_payload=128))
    for index, size, prefetchable in ((0, nvme.BAR0_SIZE, True), (2, nvme.BAR2_SIZE, False),
                                      (4, nvme.BAR4_SIZE, False)):
        fn.add_memory_bar(MemoryBar(index, size, Unmodelled(), prefetchable=prefetchable))
    return fn
