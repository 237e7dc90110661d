"""Secure boot decisions under each policy, tickets, anti-rollback, NVRAM authentication."""

import pytest

from imacpro.t2.secure_boot import BootImage, Nvram, NvramTampered, Settings, evaluate, record_boot
from imacpro.t2.sep import SecureEnclave
from imacpro.t2.signing import Manifest, SigningServer

KERNEL, INITRD, CMDLINE = b"\x4d\x5a bzImage" * 100, b"070701 initramfs" * 100, "console=ttyS0"
ECID = 0x1234_5678_9ABC_DEF1
OTHER_ECID = 0x0FED_CBA9_8765_4321


@pytest.fixture
def server(tmp_path):
    return SigningServer.load_or_create(tmp_path / "keys")


@pytest.fixture
def rogue(tmp_path):
    return SigningServer.load_or_create(tmp_path / "rogue-keys")


def signed(server, version=1, kernel=KERNEL, initrd=INITRD, cmdline=CMDLINE, external=False):
    manifest = server.sign(KERNEL, INITRD, CMDLINE, version) if server else None
    return BootImage(kernel, initrd, cmdline, manifest, external)


def decide(image, server, policy="full", external="disallow", highest=0, request=None,
           nonce=None):
    settings = Settings(policy=policy, external_boot=external, highest_version=highest)
    request = request or server.personalize
    return evaluate(image, settings, server.public_key, ECID, request, nonce=nonce)


CASES = {
    # name: (image factory, decide kwargs, reason fragment under Full)
    "good": (lambda s, r: signed(s), {}, None),
    "tampered kernel": (lambda s, r: signed(s, kernel=KERNEL + b"!"), {}, "kernel differs"),
    "tampered initrd": (lambda s, r: signed(s, initrd=INITRD[:-1]), {}, "initrd differs"),
    "tampered cmdline": (lambda s, r: signed(s, cmdline=CMDLINE + " init=/bin/sh"), {},
                         "command line differs"),
    "wrong signer": (lambda s, r: signed(r), {}, "unknown key"),
    "unsigned": (lambda s, r: signed(None), {}, "not signed"),
    "replayed ticket": (lambda s, r: signed(s), {"replay": True}, "replayed ticket"),
    "other machine's ticket": (lambda s, r: signed(s), {"other_ecid": True}, "another machine"),
    "rollback": (lambda s, r: signed(s, version=2), {"highest": 3}, "older than version 3"),
    "external disallowed": (lambda s, r: signed(s, external=True), {}, "external media"),
}


def run_case(name, server, rogue, policy):
    make, options, _ = CASES[name]
    image = make(server, rogue)
    request = None
    if options.get("replay"):
        old = server.personalize(image.manifest, ECID, "00" * 16)   # a ticket from an earlier boot
        request = lambda manifest, ecid, nonce: old
    if options.get("other_ecid"):
        request = lambda manifest, ecid, nonce: server.personalize(manifest, OTHER_ECID, nonce)
    return decide(image, server, policy=policy, highest=options.get("highest", 0),
                  request=request)


@pytest.mark.parametrize("name", CASES)
def test_full_security_refuses_each_with_its_own_reason(name, server, rogue):
    verdict = run_case(name, server, rogue, "full")
    expected = CASES[name][2]
    if expected is None:
        assert verdict.allowed, verdict.render()
    else:
        assert not verdict.allowed
        assert expected in verdict.reason, verdict.render()


MEDIUM_ALLOWS = {"good", "replayed ticket", "other machine's ticket", "rollback"}
NONE_ALLOWS = set(CASES) - {"external disallowed"}


@pytest.mark.parametrize("name", CASES)
def test_medium_and_no_security_accept_their_subsets(name, server, rogue):
    assert run_case(name, server, rogue, "medium").allowed == (name in MEDIUM_ALLOWS)
    assert run_case(name, server, rogue, "none").allowed == (name in NONE_ALLOWS)


def test_external_boot_when_allowed(server):
    image = signed(server, external=True)
    assert decide(image, server, external="allow").allowed


def test_each_boot_has_a_fresh_nonce(server):
    nonces = []
    def request(manifest, ecid, nonce):
        nonces.append(nonce)
        return server.personalize(manifest, ecid, nonce)
    for _ in range(3):
        assert decide(signed(server), server, request=request).allowed
    assert len(set(nonces)) == 3


def test_anti_rollback_floor_rises_with_each_full_boot(tmp_path, server):
    sep = SecureEnclave.create(tmp_path / "t2", ECID)
    nvram = Nvram(tmp_path / "t2", sep)
    settings = nvram.load()
    verdict = evaluate(signed(server, version=5), settings, server.public_key, ECID,
                       server.personalize)
    record_boot(nvram, settings, verdict)
    settings = nvram.load()
    assert settings.highest_version == 5
    verdict = evaluate(signed(server, version=4), settings, server.public_key, ECID,
                       server.personalize)
    assert not verdict.allowed and "older than version 5" in verdict.reason


def test_nvram_edited_by_hand_is_detected(tmp_path):
    sep = SecureEnclave.create(tmp_path / "t2", ECID)
    nvram = Nvram(tmp_path / "t2", sep)
    nvram.save(Settings(policy="full"))
    assert nvram.load().policy == "full"
    text = nvram.path.read_text()
    nvram.path.write_text(text.replace('"full"', '"none"'))
    with pytest.raises(NvramTampered, match="modified outside the T2"):
        nvram.load()
    nvram.path.write_text("policy = ")
    with pytest.raises(NvramTampered):
        nvram.load()


def test_nvram_from_another_chip_is_rejected(tmp_path):
    mine = SecureEnclave.create(tmp_path / "a", ECID)
    other = SecureEnclave.create(tmp_path / "b", OTHER_ECID)
    Nvram(tmp_path / "b", other).save(Settings(policy="none"))
    (tmp_path / "a" / "nvram.toml").write_bytes((tmp_path / "b" / "nvram.toml").read_bytes())
    with pytest.raises(NvramTampered):
        Nvram(tmp_path / "a", mine).load()


def test_manifest_round_trip_and_key_reuse(tmp_path, server):
    manifest = server.sign(KERNEL, INITRD, CMDLINE, 7)
    manifest.save(tmp_path / "boot.manifest")
    assert Manifest.load(tmp_path / "boot.manifest") == manifest
    again = SigningServer.load_or_create(tmp_path / "keys")
    assert again.fingerprint == server.fingerprint
    assert oct((tmp_path / "keys" / "platform.key").stat().st_mode & 0o777) == "0o600"
