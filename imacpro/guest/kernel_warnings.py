"""What Linux logs at warning level or worse on this machine, each for a reason docs/LINUX.md
gives: the integration tests and the soak (bench/soak.py) fail on any other such line."""

from __future__ import annotations

# `dmesg -r` lines of levels 0-4 turned into "warning: <text>" (the shell's side: WARNINGS_SH).
WARNINGS_SH = "dmesg -r | sed -n 's/^<[0-4]>\\[ *[0-9.]*\\] /warning: /p'"

EXPECTED = (
    "RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks",
    "MDS CPU bug present and SMT on, data leak possible.",
    "MMIO Stale Data CPU bug present and SMT on, data leak possible.",
    "  #",                                   # the SMP bring-up line's continuation ("  #2  #3")
    "hrtimer: interrupt took ",
    "integrity: Reading UEFI Secure Boot Certs is not supported on T2 Macs.",
    # The installed Debian's udev loads every module that matches the hardware:
    "device-mapper: core: CONFIG_IMA_DISABLE_HTABLE is disabled.",
    "applesmc: probe of applesmc.768 failed with error -5",
    "applesmc: driver init failed (ret=-5)!",
    "snd_hda_intel 0000:f3:00.1: CORB reset timeout#1, CORBRP = 0",
    "snd_hda_intel 0000:f3:00.1: no codecs found!",
    # systemd-networkd asks for nl80211, which loads cfg80211; it looks for the wireless
    # regulatory database, which Debian's wireless-regdb (not installed) holds:
    "platform regulatory.0: firmware: failed to load regulatory.db (-2)",
    "platform regulatory.0: Direct firmware load for regulatory.db failed with error -2",
    "firmware_class: See https://wiki.debian.org/Firmware for information about missing "
    "firmware",
    # brcmfmac finds the Wi-Fi chip and no firmware for it (Apple's is not in Debian):
    "brcmfmac 0000:01:00.0: firmware: failed to load brcm/brcmfmac4364-pcie.",
    "brcmfmac 0000:01:00.0: Direct firmware load for brcm/brcmfmac4364-pcie.",
)

# Kernel warnings with a call trace that Linux 6.1 prints on the real machine too, each as
# (what the WARNING line names, a function its call trace must pass through).
EXPECTED_TRACES = (
    # brcmfmac's remove after the failed firmware request cancels a work item that only the
    # firmware's start-up initialises (kernel/workqueue.c: WARN_ON(!work->func)).
    ("kernel/workqueue.c", "brcmf_pcie_remove+"),
)
TRACE_START, TRACE_END = "------------[ cut here ]------------", "---[ end trace"


def warnings_in(output: str) -> list[str]:
    """The warning lines WARNINGS_SH printed, without their prefix."""
    return [line[len("warning: "):] for line in output.splitlines()
            if line.startswith("warning: ")]


def unexpected(warnings: list[str]) -> list[str]:
    """The lines no reason covers: a line that EXPECTED does not start, and every line of a
    call trace (from "cut here" to "end trace") that EXPECTED_TRACES does not name."""
    out: list[str] = []
    trace: list[str] | None = None
    for line in warnings:
        if trace is not None:
            trace.append(line)
            if line.startswith(TRACE_END):
                if not _expected_trace(trace):
                    out += trace
                trace = None
        elif line.startswith(TRACE_START):
            trace = [line]
        elif not line.startswith(EXPECTED):
            out.append(line)
    return out + (trace or [])             # a trace cut short is not one we know


def _expected_trace(trace: list[str]) -> bool:
    site = next((line for line in trace if line.startswith("WARNING: ")), "")
    return any(f" at {where}:" in site and any(frame.strip().startswith(function)
                                               for frame in trace)
               for where, function in EXPECTED_TRACES)
