"""The SMC's key window, driven as Linux's applesmc does on T2 Macs (its iomem_* functions),
and the thermal model behind its sensors."""

import struct

import pytest

from imacpro.clock import Clock
from imacpro.devices import smc as s
from imacpro.devices import thermal
from imacpro.devices.contract import StateError
from imacpro.devices.thermal import ThermalModel


class Package:
    """A package whose busy cores the test sets; its work advances with the clock."""

    def __init__(self, clock):
        self.clock = clock
        self.busy_cores = 0.0
        self.work = 0.0
        self.at_ns = clock.now_ns()

    def work_s(self) -> float:
        now = self.clock.now_ns()
        self.work += self.busy_cores * (now - self.at_ns) / 1e9 * 4.2 / 3.2
        self.at_ns = now
        return self.work


@pytest.fixture
def rig():
    clock = Clock()
    package = Package(clock)
    model = ThermalModel(120, 8, 4.2 / 3.2, package.work_s, clock.now_ns)
    return s.AppleSmc(model), clock, package


def command(smc, cmd: int, key: bytes, data: bytes = b"", length: int | None = None):
    """One transaction as the driver makes it: clear the status, the key, (the data and its
    length), the SMC id as a 32-bit write, the command as a 32-bit write, wait for 0x20."""
    if smc.read(s.STATUS, 1):
        smc.write(s.STATUS, 1, 0)
    smc.write(s.KEY, 4, int.from_bytes(key, "little"))
    if cmd == s.WRITE:
        for n, byte in enumerate(data):
            smc.write(s.DATA + n, 1, byte)
        smc.write(s.DATA_LENGTH, 4, len(data) if length is None else length)
    smc.write(s.SMC_ID, 4, 0)
    smc.write(s.COMMAND, 4, cmd)
    assert smc.read(s.STATUS, 1) & 0x20
    return smc.read(s.COMMAND, 1)


def read_key(smc, name: bytes) -> bytes:
    assert command(smc, s.READ, name) == 0
    length = smc.read(s.DATA_LENGTH, 1)
    return bytes(smc.read(s.DATA + n, 1) for n in range(length))


def key_info(smc, name: bytes):
    assert command(smc, s.KEY_INFO, name) == 0
    return (smc.read(s.DATA, 4).to_bytes(4, "little"), smc.read(5, 1), smc.read(6, 1))


def test_the_driver_finds_the_window_usable_and_every_key_by_index(rig):
    smc, _, _ = rig
    assert smc.read(s.STATUS, 1) != 0xFF                 # iomem is not dead
    assert read_key(smc, b"LDKN") == bytes([3])          # >= 2: the driver uses MMIO
    count = struct.unpack(">I", read_key(smc, b"#KEY"))[0]
    names = []
    for index in range(count):
        assert command(smc, s.KEY_BY_INDEX, struct.pack(">I", index)) == 0
        names.append(smc.read(s.DATA, 4).to_bytes(4, "little"))
    assert names == sorted(names) and len(set(names)) == count     # bisectable
    assert command(smc, s.KEY_BY_INDEX, struct.pack(">I", count)) == s.INDEX_RANGE
    for name in (b"FNum", b"F0Ac", b"F0Mn", b"F0Mx", b"F1Ac", b"RPlt", b"TC0P", b"TG0P",
                 b"TM0P"):
        assert name in names
    assert read_key(smc, b"FNum") == bytes([2])
    assert read_key(smc, b"RPlt").rstrip(b"\0") == b"j137"
    assert key_info(smc, b"TC0P") == (b"sp78", 2, s.READABLE)
    assert key_info(smc, b"F0Mn") == (b"flt ", 4, s.READABLE | s.WRITABLE)
    assert struct.unpack("<f", read_key(smc, b"F0Mn"))[0] == 1100.0
    assert struct.unpack("<f", read_key(smc, b"F0Mx"))[0] == 2500.0


def test_errors_are_the_smcs(rig):
    smc, _, _ = rig
    assert command(smc, s.READ, b"ZZZZ") == s.NOT_FOUND
    assert command(smc, 0x55, b"TC0P") == s.BAD_COMMAND
    assert command(smc, s.WRITE, b"TC0P", b"\x10\x00") == s.NOT_WRITABLE
    assert command(smc, s.WRITE, b"F0Mn", b"\0\0") == s.SIZE_MISMATCH
    # The SMC id write alone (it covers the command byte with 0) starts nothing.
    smc.write(s.STATUS, 1, 0)
    smc.write(s.SMC_ID, 4, 0)
    assert smc.read(s.STATUS, 1) == 0


def celsius(smc, name: bytes) -> float:
    return struct.unpack(">h", read_key(smc, name))[0] / 256


def rpm(smc, name: bytes) -> float:
    return struct.unpack("<f", read_key(smc, name))[0]


def test_load_heats_the_cpu_and_the_fans_follow_then_settle_back(rig):
    smc, clock, package = rig
    clock.warp_to(clock.now_ns() + 120 * 10**9)
    idle_c = celsius(smc, b"TC0P")
    assert 35 <= idle_c <= 45 and rpm(smc, b"F0Ac") == 1100.0
    package.busy_cores = 16                       # 16 busy threads on the 8-core die
    readings = []
    for _ in range(60):
        clock.warp_to(clock.now_ns() + 5 * 10**9)
        readings.append((celsius(smc, b"TC0P"), rpm(smc, b"F0Ac"), rpm(smc, b"F1Ac")))
    assert readings[-1][0] > idle_c + 30 and 80 <= readings[-1][0] <= 95
    assert readings[-1][1] > 2000 and readings[-1][1] == readings[-1][2]
    assert all(b[1] >= a[1] for a, b in zip(readings, readings[1:]))    # the fan only rises
    assert smc.sensors()["package_w"] == 120.0
    package.busy_cores = 0
    clock.warp_to(clock.now_ns() + 600 * 10**9)
    assert celsius(smc, b"TC0P") < idle_c + 2 and rpm(smc, b"F0Ac") == 1100.0


def test_the_owner_sets_a_fan_by_hand(rig):
    smc, clock, _ = rig
    assert command(smc, s.WRITE, b"F0Md", b"\x01") == 0
    assert command(smc, s.WRITE, b"F0Tg", struct.pack("<f", 2000.0)) == 0
    clock.warp_to(clock.now_ns() + 30 * 10**9)
    assert rpm(smc, b"F0Ac") == 2000.0 and rpm(smc, b"F1Ac") == 1100.0
    assert command(smc, s.WRITE, b"F0Tg", struct.pack("<f", float("nan"))) == 0
    clock.warp_to(clock.now_ns() + 30 * 10**9)
    assert rpm(smc, b"F0Ac") == 1100.0                 # NaN is no speed: the minimum


def test_a_reboot_keeps_the_heat_and_forgets_the_owners_settings(rig):
    """A platform reset is not a power cycle: the CPU stays as warm as the work before it
    made it, the fans go on from their speed, and the owner's manual mode is gone."""
    smc, clock, package = rig
    assert command(smc, s.WRITE, b"F1Md", b"\x01") == 0
    package.busy_cores = 16
    clock.warp_to(clock.now_ns() + 60 * 10**9)
    package.busy_cores = 0
    hot_c, fan = celsius(smc, b"TC0P"), rpm(smc, b"F0Ac")
    clock.warp_to(clock.now_ns() + 10**9)
    package.work = 0.0                       # the CPUs' counters restart after the devices
    smc.reset()
    assert celsius(smc, b"TC0P") > hot_c - 3 and rpm(smc, b"F0Ac") > fan - 400
    assert read_key(smc, b"F1Md") == b"\x00"
    clock.warp_to(clock.now_ns() + 600 * 10**9)
    assert rpm(smc, b"F0Ac") == 1100.0        # and it cools as an idle machine does


def test_state_round_trips_and_bad_state_is_refused(rig):
    smc, clock, package = rig
    package.busy_cores = 8
    clock.warp_to(clock.now_ns() + 60 * 10**9)
    command(smc, s.WRITE, b"F1Mn", struct.pack("<f", 1500.0))
    saved = smc.save()
    hot = celsius(smc, b"TC0P")
    smc.reset()
    package.busy_cores = 0
    clock.warp_to(clock.now_ns() + 600 * 10**9)
    assert celsius(smc, b"TC0P") < hot - 20
    assert struct.unpack("<f", read_key(smc, b"F1Mn"))[0] == 1100.0
    smc.load(saved)
    assert abs(celsius(smc, b"TC0P") - hot) < 0.5
    assert struct.unpack("<f", read_key(smc, b"F1Mn"))[0] == 1500.0
    for bad in ({**saved, "status": 7}, {**saved, "registers": b"x"},
                {**saved, "thermal": {**saved["thermal"], "cpu_mc": 10**9}},
                {**saved, "thermal": {**saved["thermal"], "fan_manual": [1, 0]}}):
        with pytest.raises(StateError):
            smc.load(bad)


def test_random_writes_never_break_the_window(rig):
    import random
    smc, _, _ = rig
    rng = random.Random(7)
    for _ in range(20000):
        offset = rng.choice([rng.randrange(0, 0x90), s.STATUS, rng.randrange(0, s.SIZE - 8)])
        size = rng.choice([1, 2, 4, 8])
        smc.write(offset, size, rng.getrandbits(8 * size))
        smc.read(offset, size)
    assert read_key(smc, b"LDKN") == bytes([3])
    assert thermal.FAN_MIN_RPM <= smc.sensors()["fans"][0]["rpm"] <= thermal.FAN_MAX_RPM
