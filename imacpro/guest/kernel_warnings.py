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
)


def warnings_in(output: str) -> list[str]:
    """The warning lines WARNINGS_SH printed, without their prefix."""
    return [line[len("warning: "):] for line in output.splitlines()
            if line.startswith("warning: ")]


def unexpected(warnings: list[str]) -> list[str]:
    return [w for w in warnings if not w.startswith(EXPECTED)]
