"""USB as a user meets it, in Debian's kernel: the controller and Apple's devices enumerate
with their IDs, `imacpro type`, `key` and `pointer` reach tty1 and /dev/input with the right
codes, and a raw image attached as a USB drive keeps its data across detach and attach, and
can be pulled out while the guest reads it."""

import subprocess
import time
from pathlib import Path

import pytest

from imacpro.guest import overlay
from machines import create, imacpro, signed_guest  # noqa: F401 (a fixture)

PROGRAMS = Path(__file__).parent / "programs"
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))

# Linux key codes (include/uapi/linux/input-event-codes.h) of the US layout's keys.
KEYS = dict(zip("1234567890-=", range(2, 14))) | dict(zip("qwertyuiop[]", range(16, 28))) \
    | dict(zip("asdfghjkl;'`", range(30, 42))) | {"\\": 43} \
    | dict(zip("zxcvbnm,./", range(44, 54))) | {" ": 57, "\n": 28, "\t": 15, "\b": 14}
SHIFTED = dict(zip('!@#$%^&*()_+QWERTYUIOP{}ASDFGHJKL:"~|ZXCVBNM<>?',
                   '1234567890-=qwertyuiop[]asdfghjkl;\'`\\zxcvbnm,./'))
KEY_LEFTSHIFT, KEY_LEFTCTRL, KEY_LEFTALT, KEY_LEFTMETA = 42, 29, 56, 125
NAMED = {"up": 103, "down": 108, "left": 105, "right": 106, "home": 102, "end": 107,
         "pageup": 104, "pagedown": 109, "esc": 1, "delete": 111, "kp0": 82, "kp1": 79,
         "kp5": 76, "kp9": 73, "kp_enter": 96, "kp_plus": 78, "kp_minus": 74,
         "kp_multiply": 55, "kp_divide": 98, "kp_dot": 83, "kp_equal": 117,
         **{f"f{n}": 58 + n for n in range(1, 11)}, "f11": 87, "f12": 88}
EV_KEY, EV_REL, EV_ABS = 1, 2, 3
REL_X, REL_Y, REL_WHEEL = 0, 1, 8
BTN_LEFT, BTN_RIGHT = 0x110, 0x111
ABS_MT_POSITION_X = 0x35


def presses(text: str) -> list[int]:
    """The key codes `text` presses: Shift goes down before the first of a run of
    characters that need it (and up after it), as a typist holds it."""
    out, shift = [], False
    for char in text:
        if (char in SHIFTED) != shift:
            shift = not shift
            if shift:
                out.append(KEY_LEFTSHIFT)
        out.append(KEYS[SHIFTED.get(char, char)])
    return out


def exec_ok(command: str, timeout: float = 600) -> str:
    result = imacpro("exec", "desk", command, timeout=timeout)
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def retry(*args, seconds: float = 300):
    """An imacpro command until it succeeds: input waits for the guest's USB drivers (a
    bound, not a measure: a host running other machines beside this one is slow)."""
    end = time.monotonic() + seconds
    while True:
        result = imacpro(*args)
        if result.returncode == 0 or time.monotonic() > end:
            return result
        time.sleep(1)


def events(log: str, device: str) -> list[tuple[int, int, int]]:
    return [tuple(int(n) for n in line.split("|", 1)[1].split())
            for line in log.splitlines() if line.startswith(device + "|")]


@pytest.fixture
def desk(signed_guest, tmp_path, imacpro_home):  # noqa: F811
    files = {}
    for name in ("input-events", "xhci-poke"):
        program = tmp_path / name
        subprocess.run(["gcc", "-O2", "-static", "-o", str(program),
                        str(PROGRAMS / (name.replace("-", "_") + ".c"))],
                       check=True, capture_output=True)
        files[f"bin/{name}"] = program.read_bytes()
    image = overlay.with_programs(signed_guest, [], tmp_path / "image", files)
    create("desk", "--pointer", "both")
    booted = imacpro("boot", "desk", "--kernel", str(image.kernel), "--initrd",
                     str(image.initrd), "--append", image.cmdline, "--manifest",
                     str(image.manifest), "--detach")
    assert booted.returncode == 0, booted.stderr
    # The shell answers once /init has loaded the USB drivers (xhci_pci, usbhid): then the
    # keyboard's enumeration is all that is left to wait for.
    exec_ok("true")
    yield
    imacpro("stop", "desk", "--force")


def test_devices_enumerate_and_input_reaches_tty1_and_dev_input(desk):
    assert retry("type", "desk", " ").returncode == 0      # the keyboard is set up
    found = exec_ok("while [ $(cat /sys/bus/usb/devices/*/idVendor | grep -c 05ac) -lt 5 ]; "
                    "do sleep 1; done; "
                    "for d in /sys/bus/usb/devices/*; do [ -e $d/idVendor ] && "
                    "echo $(cat $d/idVendor $d/idProduct) $(cat $d/product); done; "
                    "cat /sys/bus/pci/devices/0000:00:14.0/vendor "
                    "/sys/bus/pci/devices/0000:00:14.0/device "
                    "/sys/bus/pci/devices/0000:00:14.0/class")
    for line in ("05ac 026c Magic Keyboard with Numeric Keypad", "05ac 0269 Magic Mouse 2",
                 "05ac 0265 Magic Trackpad 2", "05ac 8408 SD Card Reader",
                 "05ac 100e USB2.0 Hub", "1d6b 0002 xHCI Host Controller",
                 "1d6b 0003 xHCI Host Controller", "0x8086\n0xa2af\n0x0c0330"):
        assert line in found, found
    drivers = exec_ok("ls /sys/bus/hid/drivers/apple /sys/bus/hid/drivers/magicmouse")
    assert "0003:05AC:026C" in drivers and "0003:05AC:0269" in drivers \
        and "0003:05AC:0265" in drivers

    # Watch /dev/input while the host types into the shell on tty1 (a `cat` that saves it).
    exec_ok("input-events 30 > /tmp/events 2>&1 & "
            "while ! grep -qs ready /tmp/events; do usleep 100000; done")
    assert imacpro("type", "desk", r"\bcat > /tmp/typed\n").returncode == 0
    text = PRINTABLE + "\tab\bc"
    assert imacpro("type", "desk", "--raw", text).returncode == 0
    assert imacpro("type", "desk", r"\n").returncode == 0
    assert imacpro("key", "desk", "ctrl+d").returncode == 0
    keys = ["up", "down", "left", "right", "home", "end", "pageup", "pagedown", "esc",
            "delete", "kp0", "kp1", "kp5", "kp9", "kp_enter", "kp_plus", "kp_minus",
            "kp_multiply", "kp_divide", "kp_dot", "kp_equal"] + [f"f{n}" for n in range(1, 13)]
    assert imacpro("key", "desk", *keys).returncode == 0
    assert imacpro("key", "desk", "shift+ctrl+alt+cmd+x").returncode == 0
    for args in (["--move", "30", "-20"], ["--click", "left"], ["--click", "right"],
                 ["--scroll", "2"], ["--trackpad", "--move", "200", "100"],
                 ["--trackpad", "--click", "left"]):
        assert imacpro("pointer", "desk", *args).returncode == 0, args
    assert imacpro("key", "desk", "bad+combo").returncode == 2

    exec_ok("while pidof input-events >/dev/null; do sleep 1; done")
    assert exec_ok("cat /tmp/typed") == PRINTABLE + "\tac\n"
    log = exec_ok("cat /tmp/events")
    assert "|dropped" not in log, [l for l in log.splitlines() if l.endswith("|dropped")]
    keyboard = events(log, "Apple Inc. Magic Keyboard with Numeric Keypad")
    pressed = [code for kind, code, value in keyboard if kind == EV_KEY and value == 1]
    typed = presses("\bcat > /tmp/typed\n" + text + "\n")
    assert pressed[:len(typed)] == typed, log[:3000]
    rest = pressed[len(typed):]
    assert rest[:2] == [KEY_LEFTCTRL, KEYS["d"]]
    assert rest[2:2 + len(keys)] == [NAMED[k] for k in keys]
    assert sorted(rest[2 + len(keys):]) == sorted([KEY_LEFTSHIFT, KEY_LEFTCTRL, KEY_LEFTALT,
                                                   KEY_LEFTMETA, KEYS["x"]])
    released = [code for kind, code, value in keyboard if kind == EV_KEY and value == 0]
    assert sorted(released) == sorted(pressed)              # every key came back up

    mouse = events(log, "Apple Inc. Magic Mouse 2")
    assert sum(v for k, c, v in mouse if k == EV_REL and c == REL_X) == 30
    assert sum(v for k, c, v in mouse if k == EV_REL and c == REL_Y) == -20
    assert sum(v for k, c, v in mouse if k == EV_REL and c == REL_WHEEL) == 2
    assert [(c, v) for k, c, v in mouse if k == EV_KEY] == \
        [(BTN_LEFT, 1), (BTN_LEFT, 0), (BTN_RIGHT, 1), (BTN_RIGHT, 0)]
    trackpad = events(log, "Apple Inc. Magic Trackpad 2")
    assert any(k == EV_ABS and c == ABS_MT_POSITION_X for k, c, v in trackpad)
    assert (EV_KEY, BTN_LEFT, 1) in trackpad and (EV_KEY, BTN_LEFT, 0) in trackpad


def test_a_usb_drive_keeps_its_data_and_can_be_pulled_out_mid_read(signed_guest,  # noqa
                                                                   tmp_path, imacpro_home):
    stick, card = tmp_path / "stick.img", tmp_path / "card.img"
    for image, size in ((stick, 64 << 20), (card, 32 << 20)):
        with open(image, "wb") as f:
            f.truncate(size)
    create("drive")
    booted = imacpro("boot", "drive", "--usb", str(stick), "--sd", str(card), "--detach")
    assert booted.returncode == 0, booted.stderr
    try:
        check_drive_and_card(stick, tmp_path)
    finally:
        imacpro("stop", "drive", "--force")


def check_drive_and_card(stick: Path, tmp_path: Path) -> None:
    def run(command: str) -> str:
        result = imacpro("exec", "drive", command, timeout=600)
        assert result.returncode == 0, (result.stdout, result.stderr)
        return result.stdout

    listed = imacpro("usb", "list", "drive").stdout
    assert f"USB-A 3            1209:0001 imacpro USB flash drive ({stick})" in listed, listed
    refused = imacpro("suspend", "drive")
    assert refused.returncode == 2 and "USB drives attached" in refused.stderr
    disk = "/dev/$(basename $(dirname $(dirname $(grep -l 'USB Flash Drive' "\
           "/sys/block/sd*/device/model))))"
    reader = "$(basename $(dirname $(dirname $(grep -l 'SD Card Reader' "\
             "/sys/block/sd*/device/model))))"
    run("while ! grep -qs 'USB Flash Drive' /sys/block/sd*/device/model; do sleep 1; done")
    assert run(f"cat /sys/block/$(basename {disk})/size") == "131072\n"
    assert run(f"cat /sys/block/{reader}/size") == "65536\n"       # the card: 32 MiB
    written = run(f"mke2fs -q {disk} && mkdir -p /mnt && mount {disk} /mnt && "
                  "dd if=/dev/urandom of=/mnt/data bs=1M count=8 2>/dev/null && "
                  "md5sum /mnt/data && umount /mnt && sync")
    checksum = written.splitlines()[-1]                    # (busybox mke2fs talks)
    assert checksum.endswith("  /mnt/data")
    assert imacpro("usb", "detach", "drive", str(stick)).returncode == 0
    run("while grep -qs 'USB Flash Drive' /sys/block/sd*/device/model; do sleep 1; done")
    assert imacpro("usb", "attach", "drive", str(stick)).returncode == 0
    run("while ! grep -qs 'USB Flash Drive' /sys/block/sd*/device/model; do sleep 1; done")
    assert run(f"mount {disk} /mnt && md5sum /mnt/data && umount /mnt") == checksum + "\n"

    # Pulled out while the guest reads it: the reads fail, both sides run on.
    run(f"d={disk}; (while dd if=$d of=/dev/null bs=64k 2>/dev/null; do :; done; "
        "echo reader-ended) > /tmp/reader 2>&1 &")
    time.sleep(1)
    assert imacpro("usb", "detach", "drive", "USB-A 3").returncode == 0
    run("while [ ! -s /tmp/reader ]; do sleep 1; done")
    assert run("cat /tmp/reader") == "reader-ended\n"
    assert imacpro("status", "drive").returncode == 0
    assert imacpro("usb", "detach", "drive", "USB-A 3").returncode == 2    # nothing there
    assert imacpro("usb", "attach", "drive", str(tmp_path / "none.img")).returncode == 2
    suspended = imacpro("suspend", "drive")
    assert suspended.returncode == 0, suspended.stderr     # no drive left: it may sleep


def test_booting_from_a_usb_drive_is_external_boot_under_the_t2s_policy(signed_guest,  # noqa
                                                                         tmp_path,
                                                                         imacpro_home):
    assert imacpro("create", "stick").returncode == 0
    drive = tmp_path / "usb.img"
    assert imacpro("install", "stick", "--disk", str(drive), "--size", "1").returncode == 0
    refused = imacpro("boot", "stick", "--usb", str(drive), "--boot-usb", "--exec", "true")
    assert refused.returncode == 1 and "external boot" in refused.stderr
    assert "booting from external media is disallowed" in refused.stderr
    assert imacpro("security", "stick", "--external-boot", "allow").returncode == 0
    booted = imacpro("boot", "stick", "--usb", str(drive), "--boot-usb", "--exec",
                     "while ! grep -qs 'USB Flash Drive' /sys/block/sd*/device/model; "
                     "do sleep 1; done; grep -l 'USB Flash Drive' /sys/block/sd*/device/model",
                     "--timeout", "600")
    assert booted.returncode == 0, booted.stderr
    assert "/device/model" in booted.stdout
    assert imacpro("boot", "stick", "--boot-usb", "--exec", "true").returncode == 2


APPLE_DEVICES = "while [ $(cat /sys/bus/usb/devices/*/idVendor | grep -c 05ac) -lt 5 ]; " \
                "do sleep 1; done"


def test_a_guest_that_scribbles_on_the_controller_gets_it_back_by_a_reset(desk):
    """Random register writes from the guest (its rings and contexts are fuzzed by
    tests/devices/usb/test_xhci.py): the machine runs on, and xhci_hcd, bound again, resets
    the controller and finds every device. The writes go in while the driver is unbound:
    Linux lets no one map a BAR its driver holds."""
    assert retry("type", "desk", " ").returncode == 0
    exec_ok(APPLE_DEVICES)
    exec_ok("echo 0000:00:14.0 > /sys/bus/pci/drivers/xhci_hcd/unbind")
    for seed in (1, 2, 3):
        assert exec_ok(f"xhci-poke 3000 {seed}") == "poked 3000\n"
    assert imacpro("status", "desk").returncode == 0
    exec_ok("echo 0000:00:14.0 > /sys/bus/pci/drivers/xhci_hcd/bind; " + APPLE_DEVICES)
    assert retry("type", "desk", r"\becho typed-after-reset > /tmp/back\n").returncode == 0
    exec_ok("while [ ! -s /tmp/back ]; do sleep 1; done")
    assert exec_ok("cat /tmp/back") == "typed-after-reset\n"
    errors = imacpro("status", "desk", "--json")
    assert '"guest_errors": 0' in errors.stdout, errors.stdout
