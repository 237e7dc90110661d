"""The package's machine-check banks (Intel SDM vol. 3B ch. 15), as Linux's mce code uses them.

    | MSR           | what                                                                |
    |---------------|---------------------------------------------------------------------|
    | 0x179         | MCG_CAP: 20 banks (7:0), CMCI_P (10): banks signal corrected errors, |
    |               | SER_P (24): software error recovery (the S and AR status bits)      |
    | 0x17A         | MCG_STATUS (each CPU's, cpu/msr.py): RIPV 0, EIPV 1, MCIP 2         |
    | 0x280 + n     | MCn_CTL2: corrected-error threshold (14:0), CMCI_EN (30)            |
    | 0x400 + 4n    | MCn_CTL: which errors the bank reports (RW)                         |
    | 0x401 + 4n    | MCn_STATUS: VAL 63, OVER 62, UC 61, EN 60, MISCV 59, ADDRV 58,      |
    |               | PCC 57, S 56, AR 55, corrected count 52:38, MSCOD 31:16, MCA error  |
    |               | code 15:0 (writes: 0)                                               |
    | 0x402 + 4n    | MCn_ADDR: the error's physical address                              |
    | 0x403 + 4n    | MCn_MISC: address mode 8:6 (2: physical), address LSB 5:0           |

The banks are numbered as on Skylake-SP/W: 13-15 the memory controller 0's channels 0-2,
16-18 controller 1's. Every bank here is the package's, shared by its logical CPUs (on the
real part banks 0-3 are each core's); so the first CPU that sets a bank's CMCI_EN owns the
bank, as Linux's CMCI discovery expects of a shared bank, and the bank's CMCI goes to it
(its local APIC's LVT CMCI).

Errors appear only when the owner injects one (`imacpro inject`): a corrected memory error
is logged in its channel's bank (memory read error, code 0000 0000 1001 cccc with the channel,
MSCOD 0x0001: our choice; the real decode of MSCOD is not public), with its address and
MISC saying a physical address at cache-line grain, and the bank's CMCI fires once the
corrected count reaches CTL2's threshold. A bank holding an error that software has not
cleared sets OVER and adds to the count, as the hardware does.

An uncorrected memory error is what the patrol scrubber finds in a line no process has read
yet: UC with S set and AR clear (software recoverable, action optional), memory scrubbing
(code 0000 0000 1100 cccc), its address and MISC as above, and a machine-check exception
broadcast to every CPU (Machine.inject_memory_error; each CPU's MCG_STATUS says RIPV and
MCIP, cpu/vcpu.py). SER_P in MCG_CAP is what lets Linux recover from it, as Skylake-SP's
server parts report: it offlines the page (memory_failure) rather than panicking, and its
EDAC counts an uncorrected error against the DIMM. Whether Apple's W-21xxB sets SER_P is not
in the probes we have; without it Linux would panic ("Fatal machine check").

Saved state: each bank's CTL, CTL2, STATUS, ADDR, MISC, and the APIC ID that owns it.
"""

from __future__ import annotations

from imacpro.devices import _state
from imacpro.devices.contract import StateError

BANKS = 20
MCG_CMCI_P = 1 << 10
MCG_SER_P = 1 << 24
MCG_CAP = BANKS | MCG_CMCI_P | MCG_SER_P
MCG_STATUS_RIPV, MCG_STATUS_EIPV, MCG_STATUS_MCIP = 1, 2, 4
IA32_MC0_CTL2, IA32_MC0_CTL = 0x280, 0x400
CTL2_CMCI_EN, CTL2_THRESHOLD = 1 << 30, 0x7FFF
VAL, OVER, UC, EN, MISCV, ADDRV = (1 << 63, 1 << 62, 1 << 61, 1 << 60, 1 << 59, 1 << 58)
PCC, S, AR = 1 << 57, 1 << 56, 1 << 55
COUNT_SHIFT, COUNT_MASK = 38, 0x7FFF
MEMORY_READ_ERROR = 0x0090            # 0000 0000 1 001 cccc: memory controller, read
MEMORY_SCRUB_ERROR = 0x00C0          # 0000 0000 1 100 cccc: memory controller, scrubbing
MSCOD_DATA_ECC = 0x0001
MISC_PHYSICAL_LINE = 2 << 6 | 6       # address mode physical, LSB 6 (a 64-byte line)
IMC_BANKS = {(0, 0): 13, (0, 1): 14, (0, 2): 15, (1, 0): 16, (1, 1): 17, (1, 2): 18}
U64 = (1 << 64) - 1
HANDLED, GP_FAULT = 1, -1


class MachineCheckBanks:
    def __init__(self, cmci_of=lambda apic_id: None):
        """`cmci_of(apic_id)`: the function that raises that CPU's CMCI (its local APIC's)."""
        self.cmci_of = cmci_of
        self.reset()

    def reset(self) -> None:
        self.ctl = [0] * BANKS
        self.ctl2 = [0] * BANKS
        self.status = [0] * BANKS
        self.addr = [0] * BANKS
        self.misc = [0] * BANKS
        self.owner: list[int | None] = [None] * BANKS

    @staticmethod
    def holds(index: int) -> bool:
        return IA32_MC0_CTL <= index < IA32_MC0_CTL + 4 * BANKS \
            or IA32_MC0_CTL2 <= index < IA32_MC0_CTL2 + BANKS

    def read(self, index: int) -> int:
        if index < IA32_MC0_CTL:
            return self.ctl2[index - IA32_MC0_CTL2]
        bank, register = divmod(index - IA32_MC0_CTL, 4)
        return (self.ctl, self.status, self.addr, self.misc)[register][bank]

    def write(self, index: int, value: int, apic_id: int) -> int:
        value &= U64
        if index < IA32_MC0_CTL:
            bank = index - IA32_MC0_CTL2
            if value & ~(CTL2_CMCI_EN | CTL2_THRESHOLD):
                return GP_FAULT
            self.ctl2[bank] = value
            self.owner[bank] = apic_id if value & CTL2_CMCI_EN else None
            return HANDLED
        bank, register = divmod(index - IA32_MC0_CTL, 4)
        if register == 1 and value:
            return GP_FAULT                       # MCi_STATUS takes only zero
        (self.ctl, self.status, self.addr, self.misc)[register][bank] = value
        return HANDLED

    # --- what the owner injects -------------------------------------------------------------

    def corrected_memory_error(self, imc: int, channel: int, address: int) -> int:
        """A corrected ECC error read at `address` on memory controller `imc`'s `channel`:
        logged in its bank, the CMCI raised when due. Returns the bank."""
        bank = IMC_BANKS[imc, channel]
        status = self.status[bank]
        count = 1
        if status & VAL:
            count = min(COUNT_MASK, ((status >> COUNT_SHIFT) & COUNT_MASK) + 1)
        self._log(bank, count << COUNT_SHIFT | MEMORY_READ_ERROR | channel, address)
        ctl2 = self.ctl2[bank]
        if ctl2 & CTL2_CMCI_EN and count >= max(1, ctl2 & CTL2_THRESHOLD) \
                and self.owner[bank] is not None:
            self.cmci_of(self.owner[bank])
        return bank

    def uncorrected_memory_error(self, imc: int, channel: int, address: int) -> int:
        """An uncorrected ECC error the patrol scrubber found at `address` on memory
        controller `imc`'s `channel`: logged in its bank, software recoverable and action
        optional (UC, S; not AR, not PCC). The caller signals the machine check. An error
        the bank already holds makes it OVER. Returns the bank."""
        bank = IMC_BANKS[imc, channel]
        self._log(bank, UC | S | MEMORY_SCRUB_ERROR | channel, address)
        return bank

    def _log(self, bank: int, kind: int, address: int) -> None:
        """A memory error of `kind` (its status bits) at `address` in `bank`: valid, enabled,
        with its address at line grain; OVER if the bank still held one."""
        self.status[bank] = (VAL | EN | MISCV | ADDRV | MSCOD_DATA_ECC << 16 | kind
                             | (OVER if self.status[bank] & VAL else 0))
        self.addr[bank] = address & ~0x3F
        self.misc[bank] = MISC_PHYSICAL_LINE

    # --- state ------------------------------------------------------------------------------

    def save(self) -> dict:
        return {"ctl": list(self.ctl), "ctl2": list(self.ctl2), "status": list(self.status),
                "addr": list(self.addr), "misc": list(self.misc), "owner": list(self.owner)}

    def load(self, state) -> None:
        where = "MachineCheckBanks"
        state = _state.mapping(state, where)
        lists = {name: _state.int_list(state, name, where, 0, U64, max_length=BANKS)
                 for name in ("ctl", "ctl2", "status", "addr", "misc")}
        owner = _state.list_field(state, "owner", where)
        if any(len(values) != BANKS for values in lists.values()) or len(owner) != BANKS \
                or any(o is not None and (not isinstance(o, int) or isinstance(o, bool)
                                          or not 0 <= o <= 0xFF) for o in owner) \
                or any(v & ~(CTL2_CMCI_EN | CTL2_THRESHOLD) for v in lists["ctl2"]):
            raise StateError(f"{where}: not {BANKS} banks of registers and owners")
        for name, values in lists.items():
            setattr(self, name, values)
        self.owner = owner
