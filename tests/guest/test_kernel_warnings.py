"""Which kernel warnings the tests accept: the lines docs/LINUX.md gives a reason for, and the
call traces that Linux 6.1 prints on the real machine too, matched whole."""

from imacpro.guest.kernel_warnings import unexpected, warnings_in

# brcmfmac's remove after its firmware request failed, from a boot of the installed Debian.
BRCMFMAC_TRACE = """\
------------[ cut here ]------------
WARNING: CPU: 0 PID: 17 at kernel/workqueue.c:3073 __flush_work+0x85/0x90
Modules linked in: brcmfmac brcmutil cfg80211 rfkill mei_me mei ioatdma(+) dca
CPU: 0 PID: 17 Comm: kworker/0:1 Not tainted 6.1.0-57-amd64 #1  Debian 6.1.192-3
Workqueue: events request_firmware_work_func
RIP: 0010:__flush_work+0x85/0x90
Call Trace:
 <TASK>
 __cancel_work_timer+0x104/0x1a0
 brcmf_bus_cancel_reset_work+0x2f/0x40 [brcmfmac]
 brcmf_pcie_remove+0x75/0x160 [brcmfmac]
 pci_device_remove+0x3c/0xa0
 request_firmware_work_func+0x55/0xa0
 </TASK>
---[ end trace 0000000000000000 ]---""".splitlines()


def test_listed_lines_pass_and_others_are_reported():
    output = ("warning: hrtimer: interrupt took 15087245 ns\n"
              "not a warning line\n"
              "warning: brcmfmac 0000:01:00.0: Direct firmware load for "
              "brcm/brcmfmac4364-pcie.bin failed with error -2\n"
              "warning: unchecked MSR access error: RDMSR from 0x300\n")
    assert unexpected(warnings_in(output)) == ["unchecked MSR access error: RDMSR from 0x300"]


def test_a_known_call_trace_passes_whole():
    assert unexpected(["hrtimer: interrupt took 1 ns", *BRCMFMAC_TRACE]) == []


def test_another_call_trace_is_reported_whole():
    other = [line.replace("brcmf_pcie_remove", "some_other_remove") for line in BRCMFMAC_TRACE]
    assert unexpected(other) == other
    elsewhere = [line.replace("kernel/workqueue.c", "mm/slub.c") for line in BRCMFMAC_TRACE]
    assert unexpected(elsewhere) == elsewhere


def test_a_trace_cut_short_is_reported():
    assert unexpected(BRCMFMAC_TRACE[:-1]) == BRCMFMAC_TRACE[:-1]
