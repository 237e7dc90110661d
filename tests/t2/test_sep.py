"""The Secure Enclave: UID-bound keys, erase, the administrator password and its rate limit."""

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from imacpro.errors import UserError
from imacpro.files import read_toml, write_toml
from imacpro.t2.sep import KeyUnwrapError, RateLimited, SecureEnclave, WrongPassword

ECID = 0x0012_3456_789A_BCDE
REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self):
        self.t = 1_000_000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sep(tmp_path, clock):
    return SecureEnclave.create(tmp_path / "t2", ECID, now=clock)


def test_derived_keys_differ_per_purpose_and_per_machine(tmp_path, sep):
    other = SecureEnclave.create(tmp_path / "other", ECID)
    uid = (tmp_path / "t2" / "uid").read_bytes()
    keys = {sep.derive_key("a"), sep.derive_key("b"), other.derive_key("a")}
    assert len(keys) == 3 and uid not in keys
    assert sep.derive_key("a") == SecureEnclave.open(tmp_path / "t2", ECID).derive_key("a")
    assert sep.derive_key("a") != SecureEnclave.open(tmp_path / "t2", ECID + 2).derive_key("a")
    assert len(sep.derive_key("xts", 64)) == 64
    # The UID is kept only in a private (name-mangled) attribute.
    assert uid not in [value for name, value in vars(sep).items() if not name.startswith("_")]
    assert uid.hex() not in repr(sep)


def test_wrap_round_trip_and_another_chip_cannot_unwrap(tmp_path, sep):
    media_key = os.urandom(64)
    wrapped = sep.wrap("media", media_key)
    assert media_key not in wrapped
    assert sep.unwrap("media", wrapped) == media_key
    assert SecureEnclave.open(tmp_path / "t2", ECID).unwrap("media", wrapped) == media_key
    with pytest.raises(KeyUnwrapError):
        sep.unwrap("other purpose", wrapped)
    other = SecureEnclave.create(tmp_path / "other", ECID)
    with pytest.raises(KeyUnwrapError, match="another T2"):
        other.unwrap("media", wrapped)


def test_mac(tmp_path, sep):
    tag = sep.mac("nvram", b"policy=full")
    assert sep.verify_mac("nvram", b"policy=full", tag)
    assert not sep.verify_mac("nvram", b"policy=none", tag)
    assert not sep.verify_mac("other", b"policy=full", tag)
    assert not SecureEnclave.create(tmp_path / "o", ECID).verify_mac("nvram", b"policy=full", tag)


def test_erase_makes_old_keys_unrecoverable_and_removes_the_password(tmp_path, sep):
    wrapped = sep.wrap("media", bytes(32))
    derived, tag = sep.derive_key("a"), sep.mac("nvram", b"x")
    sep.set_password("hunter2")
    effaceable = (tmp_path / "t2" / "effaceable").read_bytes()
    sep.erase()
    assert (tmp_path / "t2" / "effaceable").read_bytes() != effaceable
    for chip in (sep, SecureEnclave.open(tmp_path / "t2", ECID)):
        with pytest.raises(KeyUnwrapError):
            chip.unwrap("media", wrapped)
        assert chip.derive_key("a") != derived and not chip.verify_mac("nvram", b"x", tag)
        assert not chip.has_password()


def test_password_set_check_change_remove(sep):
    assert not sep.has_password()
    with pytest.raises(UserError, match="no administrator password"):
        sep.check_password("anything")
    sep.set_password("correct horse")
    assert sep.has_password()
    sep.check_password("correct horse")
    with pytest.raises(WrongPassword):
        sep.check_password("battery staple")
    assert sep.failed_attempts() == 1
    sep.check_password("correct horse")
    assert sep.failed_attempts() == 0
    with pytest.raises(UserError, match="current one is needed"):
        sep.set_password("new")
    with pytest.raises(WrongPassword):
        sep.set_password("new", current="wrong")
    sep.set_password("new", current="correct horse")
    with pytest.raises(WrongPassword):
        sep.check_password("correct horse")
    sep.check_password("new")
    with pytest.raises(UserError, match="empty"):
        sep.set_password("", current="new")
    sep.set_password(None, current="new")
    assert not sep.has_password()


def test_delay_schedule():
    assert [SecureEnclave.delay_after(n) for n in range(12)] == \
        [0, 0, 0, 0, 0, 60, 300, 900, 900, 3600, 3600, 3600]


def test_attempts_are_rate_limited_with_escalating_delays(tmp_path, sep, clock):
    sep.set_password("right")
    for attempt in range(1, 6):                      # 1-5 are checked at once
        with pytest.raises(WrongPassword):
            sep.check_password("wrong")
        assert sep.failed_attempts() == attempt
    # After the 5th failure: refused for 60 s, even the right password, and not counted.
    with pytest.raises(RateLimited) as refused:
        sep.check_password("right")
    assert refused.value.wait_s == 60 and sep.failed_attempts() == 5
    clock.t += 59.5
    with pytest.raises(RateLimited) as refused:
        sep.check_password("right")
    assert refused.value.wait_s == pytest.approx(0.5)
    # The counter is on disk: another instance (a reboot) sees the same delay.
    with pytest.raises(RateLimited):
        SecureEnclave.open(tmp_path / "t2", ECID, now=clock).check_password("right")
    for failures, delay in [(6, 300), (7, 900), (8, 900), (9, 3600), (10, 3600)]:
        clock.t += SecureEnclave.delay_after(failures - 1)
        with pytest.raises(WrongPassword):
            sep.check_password("wrong")
        with pytest.raises(RateLimited) as refused:
            sep.check_password("right")
        assert refused.value.wait_s == delay
    clock.t += 3600
    sep.check_password("right")
    assert sep.failed_attempts() == 0
    sep.check_password("right")                      # no delay once the counter is reset


def test_clock_set_back_does_not_shorten_the_delay(sep, clock):
    sep.set_password("right")
    for _ in range(5):
        with pytest.raises(WrongPassword):
            sep.check_password("wrong")
    clock.t -= 10_000
    with pytest.raises(RateLimited) as refused:
        sep.check_password("right")
    assert refused.value.wait_s == 60


CHILD = """
import sys
from pathlib import Path
from imacpro.t2.sep import SecureEnclave
SecureEnclave.open(Path(sys.argv[1]), int(sys.argv[2])).check_password("wrong")
print("compared", flush=True)
"""


def test_killing_a_check_mid_way_keeps_the_counted_attempt(tmp_path):
    directory = tmp_path / "t2"
    sep = SecureEnclave.create(directory, ECID)
    sep.set_password("right")
    for _ in range(4):
        with pytest.raises(WrongPassword):
            sep.check_password("wrong")
    # Make scrypt in the child take minutes (p = 5000, ~5 min) so it is surely killed
    # between writing the counter and comparing. The verifier no longer matches "right" with
    # these parameters; the child only tries a wrong password.
    state = read_toml(directory / "passcode.toml")
    write_toml(directory / "passcode.toml", {**state, "p": 5000})
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(directory), str(ECID)],
                             cwd=REPO, stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60         # a guard against hanging, not a measurement
        while read_toml(directory / "passcode.toml")["failures"] == 4:
            assert child.poll() is None and time.monotonic() < deadline, "child never counted"
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL and b"compared" not in out
    rebooted = SecureEnclave.open(directory, ECID)
    assert rebooted.failed_attempts() == 5
    with pytest.raises(RateLimited):
        rebooted.check_password("right")


def test_passcode_file_alone_does_not_allow_an_offline_guess(tmp_path, sep):
    sep.set_password("correct horse")
    passcode = (tmp_path / "t2" / "passcode.toml").read_bytes()
    state = read_toml(tmp_path / "t2" / "passcode.toml")
    # An attacker with passcode.toml, the effaceable key and the ECID, guessing the right
    # password, cannot check it: scrypt alone, or keyed without the real UID, never matches.
    stretched = Scrypt(salt=bytes.fromhex(state["salt"]), length=32, n=state["n"], r=state["r"],
                       p=state["p"]).derive(b"correct horse")
    effaceable = (tmp_path / "t2" / "effaceable").read_bytes()
    guessed_uid = os.urandom(32)
    key = HKDF(hashes.SHA256(), 32, salt=None,
               info=b"imacpro-t2:passcode" + ECID.to_bytes(8, "big")).derive(
        guessed_uid + effaceable)
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(stretched)
    assert bytes.fromhex(state["verifier"]) not in (stretched, h.finalize())
    # The same file on another chip (another UID) does not accept the right password.
    other = SecureEnclave.create(tmp_path / "other", ECID)
    (tmp_path / "other" / "passcode.toml").write_bytes(passcode)
    with pytest.raises(WrongPassword):
        other.check_password("correct horse")
    sep.check_password("correct horse")               # while on its own chip it does


def test_files_are_private(tmp_path, sep):
    sep.set_password("x")
    sep.erase()
    for name in ("uid", "effaceable", "passcode.toml"):
        assert stat.S_IMODE((tmp_path / "t2" / name).stat().st_mode) == 0o600, name


def test_create_never_replaces_a_uid(tmp_path, sep):
    with pytest.raises(UserError, match="only once"):
        SecureEnclave.create(tmp_path / "t2", ECID)


@pytest.mark.parametrize("name, content", [("uid", b"short"), ("effaceable", None),
                                           ("uid", None)])
def test_damaged_or_missing_key_files_are_named(tmp_path, sep, name, content):
    path = tmp_path / "t2" / name
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match=re.escape(str(path))):
        SecureEnclave.open(tmp_path / "t2", ECID)


def test_damaged_passcode_file_is_named(tmp_path, sep):
    path = tmp_path / "t2" / "passcode.toml"
    path.write_text("failures = 'many'\n")
    chip = SecureEnclave.open(tmp_path / "t2", ECID)
    with pytest.raises(UserError, match=re.escape(str(path))):
        chip.has_password()
    chip.erase()                                      # the remedy
    assert not chip.has_password()
