import os
from datetime import date

import pytest

from imacpro import bundle
from imacpro.catalog import configure
from imacpro.errors import UserError


def test_home_defaults_to_xdg_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("IMACPRO_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert bundle.machines_dir() == tmp_path / "xdg" / "imacpro" / "machines"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert bundle.machines_dir() == tmp_path / "h" / ".local" / "share" / "imacpro" / "machines"


def test_round_trip(imacpro_home):
    config = configure(cpu=18, memory=256, graphics="vega64x", storage="4TB",
                       as_of=date(2019, 6, 1))
    created = bundle.create("pro", config)
    assert created.path == imacpro_home / "machines" / "pro"
    again = bundle.open_bundle("pro")
    assert again.config() == config
    assert again.identity() == created.identity()
    assert [b.name for b in bundle.list_bundles()] == ["pro"]


def test_duplicate_name_refused():
    bundle.create("a", configure())
    with pytest.raises(UserError, match="already exists"):
        bundle.create("a", configure())


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "../x", "x" * 65, "sp ace"])
def test_bad_names_refused(name):
    with pytest.raises(UserError, match="invalid machine name"):
        bundle.create(name, configure())


def test_identities_unique_across_machines():
    keys = set()
    for i in range(20):
        ident = bundle.create(f"m{i}", configure()).identity()
        assert not ident.unique_keys() & keys
        keys |= ident.unique_keys()


def test_delete():
    bundle.create("gone", configure())
    bundle.delete("gone")
    assert bundle.list_bundles() == []
    assert not any(p.name.startswith(".gone") for p in bundle.machines_dir().iterdir())
    with pytest.raises(UserError, match="no machine"):
        bundle.delete("gone")


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "f.toml"
    bundle.atomic_write(target, b"old = 1\n")

    def crash(*args):
        raise OSError(5, "simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        bundle.atomic_write(target, b"new = 2\n")
    assert target.read_bytes() == b"old = 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.toml"]  # no temporary left behind


def test_failed_create_leaves_no_bundle(monkeypatch):
    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle, "write_toml", crash)
    with pytest.raises(OSError):
        bundle.create("half", configure())
    assert bundle.list_bundles() == []
    assert list(bundle.machines_dir().iterdir()) == []


@pytest.mark.parametrize("damage,match", [
    (lambda p: p.write_text("cpu = [unclosed"), "cannot read .*config.toml"),
    (lambda p: p.unlink(), "config.toml is missing"),
    (lambda p: p.write_text('cpu = 8\nmemory = 256\ngraphics = "vega56"\nstorage = "1TB"\n'
                            'as_of = 2018-01-01\n'), "config.toml.*256 GB"),
    (lambda p: p.write_bytes(b"\xff\xfe garbage"), "cannot read .*config.toml"),
])
def test_damaged_config_named_in_error(damage, match):
    b = bundle.create("d", configure())
    damage(b.path / bundle.CONFIG_FILE)
    with pytest.raises(UserError, match=match):
        bundle.open_bundle("d").config()


def test_damaged_identity_named_in_error():
    b = bundle.create("d", configure())
    (b.path / bundle.IDENTITY_FILE).write_text('serial_number = "nope"\n')
    with pytest.raises(UserError, match="identity.toml"):
        b.identity()
