"""The suspended state file: sealed by the machine's T2, whole or refused, never half."""

import os
import shutil

import pytest

from imacpro import bundle, suspend
from imacpro.catalog import configure
from imacpro.memory.ram import HostMemory, Ram

STATE = {"now_ns": 123_456_789, "cpus": [{"engine": b"\x00\x01" * 100}], "devices": {},
         "config": {"cpu": 8}, "running": {"boots": 1}, "big": 1 << 200}


@pytest.fixture
def machine():
    created = bundle.create("pro", configure(cpu=8))
    return created, created.t2()


def guest_ram():
    ram = Ram(6 << 30)
    ram.write(0x1000, b"low memory")
    ram.write(0x3F_F000, os.urandom(8192))              # across a chunk boundary
    ram.write((5 << 30) + 123, b"high memory")           # above 4 GiB
    ram.write(0x20_0000, bytes(4096))                    # touched, but zero
    return ram


def resident_bytes(ram):
    return {offset: bytes(ram.view[offset:offset + size]) for offset, size in ram.resident()}


def test_state_and_ram_round_trip_and_the_resume_consumes_them(machine):
    machine_bundle, chip = machine
    ram = guest_ram()
    written = suspend.write(machine_bundle.path, chip, STATE, suspend.Memories(ram))
    assert oct(os.stat(written.path).st_mode & 0o777) == "0o600"
    assert written.ram_bytes <= 3 * suspend.CHUNK and written.size < 2 * suspend.CHUNK
    found = suspend.find(machine_bundle.path, chip)
    assert {k: v for k, v in found.state.items() if k != "token"} == STATE
    copy = Ram(6 << 30)
    found.restore_ram(suspend.Memories(copy))
    for offset, data in resident_bytes(ram).items():
        assert bytes(copy.view[offset:offset + len(data)]) == data
    found.consume()
    assert not written.path.exists() and chip.settings().suspend_token == ""
    assert suspend.find(machine_bundle.path, chip) is None


def test_device_memory_rides_after_ram(machine):
    """The VRAM aperture (what the screen shows) is saved and restored beside RAM."""
    machine_bundle, chip = machine
    ram, vram = guest_ram(), HostMemory(256 << 20)
    vram.view[:8] = b"pixels!!"
    vram.view[(200 << 20) + 5:(200 << 20) + 10] = b"later"
    suspend.write(machine_bundle.path, chip, STATE, suspend.Memories(ram, vram))
    found = suspend.find(machine_bundle.path, chip)
    ram_copy, vram_copy = Ram(6 << 30), HostMemory(256 << 20)
    found.restore_ram(suspend.Memories(ram_copy, vram_copy))
    assert bytes(vram_copy.view[:8]) == b"pixels!!"
    assert bytes(vram_copy.view[(200 << 20) + 5:(200 << 20) + 10]) == b"later"
    for offset, data in resident_bytes(ram).items():
        assert bytes(ram_copy.view[offset:offset + len(data)]) == data


def refused(machine_bundle, chip, match):
    with pytest.raises(suspend.StateRefused, match=match) as info:
        found = suspend.find(machine_bundle.path, chip)
        found.restore_ram(suspend.Memories(Ram(6 << 30)))
    assert "\n" not in str(info.value) and "--discard-state" in str(info.value)


@pytest.mark.parametrize("where", ["header", "state", "ram", "end"])
def test_one_byte_changed_anywhere_is_refused(machine, where):
    machine_bundle, chip = machine
    written = suspend.write(machine_bundle.path, chip, STATE, suspend.Memories(guest_ram()))
    data = bytearray(written.path.read_bytes())
    header_end = data.index(b"\n", len(suspend.MAGIC)) + 1
    at = {"header": header_end - 10, "state": header_end + 40, "ram": len(data) // 2,
          "end": len(data) - 3}[where]
    data[at] ^= 0x01
    written.path.write_bytes(bytes(data))
    refused(machine_bundle, chip, "modified|damaged|header")
    assert written.path.exists()                      # refused, not destroyed


def test_a_truncated_file_is_refused(machine):
    machine_bundle, chip = machine
    written = suspend.write(machine_bundle.path, chip, STATE, suspend.Memories(guest_ram()))
    data = written.path.read_bytes()
    written.path.write_bytes(data[:-5])
    refused(machine_bundle, chip, "truncated")


def test_a_state_moved_to_another_machine_is_refused(machine):
    machine_bundle, chip = machine
    written = suspend.write(machine_bundle.path, chip, STATE, suspend.Memories(guest_ram()))
    other = bundle.create("other", configure(cpu=8))
    shutil.copy(written.path, suspend.state_path(other.path))
    refused(other, other.t2(), "another machine")


def test_a_state_from_before_the_machine_last_ran_is_refused(machine):
    machine_bundle, chip = machine
    first = suspend.write(machine_bundle.path, chip, STATE, suspend.Memories(guest_ram()))
    kept = first.path.read_bytes()
    suspend.find(machine_bundle.path, chip).consume()       # resumed, ran …
    suspend.write(machine_bundle.path, chip, STATE, suspend.Memories(guest_ram()))  # suspended again
    first.path.write_bytes(kept)                              # the old one put back
    refused(machine_bundle, chip, "has run since")


def test_another_format_or_engine_is_refused_with_its_reason(machine, monkeypatch):
    machine_bundle, chip = machine
    monkeypatch.setattr(suspend, "FORMAT", 0)
    suspend.write(machine_bundle.path, chip, STATE, suspend.Memories(guest_ram()))
    monkeypatch.setattr(suspend, "FORMAT", 1)
    refused(machine_bundle, chip, "format 0, and this imacpro reads format 1")
    suspend.write(machine_bundle.path, chip, STATE, suspend.Memories(guest_ram()))
    monkeypatch.setattr(suspend, "engine_build", lambda: "unicorn-9")
    refused(machine_bundle, chip, "another build of the CPU engine")


class Killed(BaseException):
    """What a kill -9 looks like from inside: nothing after it runs."""


@pytest.mark.parametrize("step", ["writing", "nvram", "rename"])
def test_a_suspend_killed_at_any_step_leaves_the_old_state_or_the_new(machine, monkeypatch,
                                                                      step):
    machine_bundle, chip = machine
    old = suspend.write(machine_bundle.path, chip, {**STATE, "now_ns": 1},
                        suspend.Memories(guest_ram()))
    old_bytes = old.path.read_bytes()
    suspend.find(machine_bundle.path, chip).consume()        # resumed and running again

    def die(*args, **kwargs):
        raise Killed()

    if step == "writing":
        monkeypatch.setattr(suspend, "_compress", die)
    elif step == "nvram":
        monkeypatch.setattr(type(chip.nvram), "save", die)
    else:
        monkeypatch.setattr(suspend.os, "replace", die)
    with pytest.raises(Killed):
        suspend.write(machine_bundle.path, chip, {**STATE, "now_ns": 2},
                      suspend.Memories(guest_ram()))
    monkeypatch.undo()
    # Nothing half-written is ever taken for a state: the machine boots afresh (it was
    # running; its disk is as after a power cut, which the journal handles).
    assert suspend.find(machine_bundle.path, chip) is None
    assert not list(machine_bundle.path.glob(".suspended*"))
    assert chip.settings().suspend_token == ""
    # And a kill after the rename is simply a suspended machine.
    suspend.write(machine_bundle.path, chip, {**STATE, "now_ns": 3},
                  suspend.Memories(guest_ram()))
    assert suspend.find(machine_bundle.path, chip).state["now_ns"] == 3
    assert old_bytes != suspend.state_path(machine_bundle.path).read_bytes()


def test_discard_state_forgets_it(machine):
    machine_bundle, chip = machine
    suspend.write(machine_bundle.path, chip, STATE, suspend.Memories(guest_ram()))
    assert suspend.find(machine_bundle.path, chip, discard_state=True) is None
    assert suspend.find(machine_bundle.path, chip) is None


def test_install_refuses_a_suspended_machine_and_erase_forgets_its_state(machine, capsys):
    from imacpro.cli import main
    machine_bundle, chip = machine
    suspend.write(machine_bundle.path, chip, STATE, suspend.Memories(guest_ram()))
    with pytest.raises(SystemExit) as exit_status:
        main(["install", "pro", "--yes", "--kernel", __file__])
    assert exit_status.value.code == 2 and "is suspended" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_status:
        main(["erase", "pro", "--yes"])
    assert exit_status.value.code == 0
    assert not suspend.state_path(machine_bundle.path).exists()
