"""The T2 from the command line: security settings, the administrator password, sign, erase."""

import json

import pytest

from imacpro.cli import main


def run(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_defaults_are_full_security_and_no_external_boot(capsys):
    assert run(capsys, "create", "m")[0] == 0
    code, out, _ = run(capsys, "security", "m", "--json")
    assert code == 0
    assert json.loads(out) == {"name": "m", "policy": "full", "external_boot": "disallow",
                               "highest_booted_version": 0}
    assert "Full Security" in run(capsys, "security", "m")[1]


def test_changes_need_the_password_once_one_is_set(capsys, tmp_path):
    run(capsys, "create", "m")
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("correct horse\n")
    bad.write_text("battery staple\n")
    assert run(capsys, "security", "m", "--policy", "medium")[0] == 0       # no password yet
    assert run(capsys, "password", "m", "--new-password-file", str(good))[0] == 0
    code, _, err = run(capsys, "security", "m", "--policy", "none")
    assert code == 2 and "--password-file" in err and len(err.splitlines()) == 1
    code, _, err = run(capsys, "security", "m", "--policy", "none", "--password-file", str(bad))
    assert code == 2 and len(err.splitlines()) == 1
    code, out, _ = run(capsys, "security", "m", "--policy", "none", "--external-boot", "allow",
                       "--password-file", str(good), "--json")
    assert code == 0
    assert json.loads(out)["policy"] == "none" and json.loads(out)["external_boot"] == "allow"


def test_hand_edited_nvram_is_reported(capsys, imacpro_home):
    run(capsys, "create", "m")
    nvram = imacpro_home / "machines" / "m" / "t2" / "nvram.toml"
    nvram.write_text(nvram.read_text().replace('"full"', '"none"'))
    code, _, err = run(capsys, "security", "m")
    assert code == 2 and "modified outside the T2" in err
    assert run(capsys, "security", "m", "--reset-nvram")[0] == 0
    assert json.loads(run(capsys, "security", "m", "--json")[1])["policy"] == "full"


def test_sign_writes_a_manifest_with_the_platform_key(capsys, tmp_path, imacpro_home):
    (tmp_path / "k").write_bytes(b"kernel")
    (tmp_path / "i").write_bytes(b"initrd")
    code, out, _ = run(capsys, "sign", "--kernel", str(tmp_path / "k"), "--initrd",
                       str(tmp_path / "i"), "--append", "console=ttyS0", "--version", "3",
                       "-o", str(tmp_path / "m.toml"), "--json")
    assert code == 0 and json.loads(out)["version"] == 3
    assert (imacpro_home / "keys" / "platform.key").exists()
    assert 'version = 3' in (tmp_path / "m.toml").read_text()


def test_erase_needs_confirmation_and_rekeys(capsys, imacpro_home):
    run(capsys, "create", "m")
    t2 = imacpro_home / "machines" / "m" / "t2"
    before = (t2 / "effaceable").read_bytes()
    code, _, err = run(capsys, "erase", "m")
    assert code == 2 and "--yes" in err
    assert run(capsys, "erase", "m", "--yes")[0] == 0
    assert (t2 / "effaceable").read_bytes() != before


def test_bless_needs_the_password_and_an_installed_system(capsys, tmp_path):
    """The happy path: tests/disk/test_bless.py and the Debian integration test."""
    run(capsys, "create", "m")
    code, _, err = run(capsys, "bless", "m")
    assert code == 2 and "has no GPT" in err and len(err.splitlines()) == 1
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel" * 1000)
    assert run(capsys, "install", "m", "--kernel", str(kernel), "--yes")[0] == 0
    code, _, err = run(capsys, "bless", "m")          # the root partition is empty
    assert code == 2 and "Linux root partition" in err and "has no /vmlinuz" in err
    password = tmp_path / "pw"
    password.write_text("correct horse\n")
    assert run(capsys, "password", "m", "--new-password-file", str(password))[0] == 0
    code, _, err = run(capsys, "bless", "m")
    assert code == 2 and "--password-file" in err and len(err.splitlines()) == 1
    code, _, err = run(capsys, "bless", "m", "--password-file", str(password))
    assert code == 2 and "has no /vmlinuz" in err
