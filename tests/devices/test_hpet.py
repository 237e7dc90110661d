"""HPET: capabilities, the main counter, one-shot and periodic comparators, routes, levels."""

import random

from imacpro.clock import NS_PER_S, Clock
from imacpro.devices.hpet import HPET_HZ, Hpet
from imacpro.irq import IrqLine

GCAP_ID, GEN_CONF, GINTR_STA, MAIN_CNT = 0x000, 0x010, 0x020, 0x0F0
ENABLE, LEGACY = 0x1, 0x2
LEVEL, INT_ENB, PERIODIC, VAL_SET, MODE32 = 1 << 1, 1 << 2, 1 << 3, 1 << 6, 1 << 8


def conf(n):
    return 0x100 + 0x20 * n


def cmp(n):
    return 0x108 + 0x20 * n


class Recorder:
    """Every IrqLine the HPET may drive, with the times of its rising edges."""

    def __init__(self, clock, names):
        self.lines = {}
        self.edges = {}
        for name in names:
            line = IrqLine(str(name))
            self.edges[name] = []
            line.connect(lambda level, name=name: level and self.edges[name].append(
                clock.now_ns()))
            self.lines[name] = line


def make(callable_routes=False):
    clock = Clock(realtime=False)
    rec = Recorder(clock, [20, 21, 22, 23, "irq0", "irq8"])
    gsis = {n: rec.lines[n] for n in (20, 21, 22, 23)}
    hpet = Hpet(clock, gsis.__getitem__ if callable_routes else gsis,
                legacy_irq0=rec.lines["irq0"], legacy_irq8=rec.lines["irq8"])
    return hpet, clock, rec


def ns_of_ticks(ticks):
    return -(-ticks * NS_PER_S // HPET_HZ)


def run_until(clock, end_ns):
    while (deadline := clock.next_deadline()) is not None and deadline <= end_ns:
        clock.warp_to(deadline)
        clock.run_due()
    clock.warp_to(end_ns)
    clock.run_due()


def test_capabilities_and_power_on_registers():
    hpet, _, _ = make()
    gcap = hpet.read(GCAP_ID, 8)
    assert gcap & 0xFF == 1  # revision
    assert (gcap >> 8) & 0x1F == 2  # three timers
    assert gcap >> 13 & 1 and gcap >> 15 & 1  # 64-bit counter, legacy replacement
    assert (gcap >> 16) & 0xFFFF == 0x8086
    assert hpet.read(GCAP_ID + 4, 4) == 69_841_279 == gcap >> 32
    assert hpet.read(GEN_CONF, 8) == hpet.read(GINTR_STA, 8) == hpet.read(MAIN_CNT, 8) == 0
    for n in range(3):
        assert hpet.read(conf(n) + 4, 4) == 0x00F0_0000  # INT_ROUTE_CAP: GSI 20-23
        assert hpet.read(conf(n), 4) == (0x30 if n == 0 else 0x20)  # PER_INT_CAP, SIZE_CAP
        assert hpet.read(cmp(n), 8) == 2**64 - 1
        assert hpet.read(0x110 + 0x20 * n, 8) == 0  # FSB route: not supported
    assert hpet.read(0x160, 8) == hpet.read(0x3F8, 4) == hpet.read(0x400, 4) == 0
    hpet.write(GCAP_ID, 8, 0)
    assert hpet.read(GCAP_ID, 8) == gcap


def test_counter_counts_14318180_per_virtual_second_only_while_enabled():
    hpet, clock, _ = make()
    clock.advance(NS_PER_S)
    assert hpet.read(MAIN_CNT, 8) == 0  # halted
    hpet.write(GEN_CONF, 4, ENABLE)
    clock.advance(NS_PER_S)
    assert hpet.read(MAIN_CNT, 8) == HPET_HZ
    clock.advance(NS_PER_S // 2)
    hpet.write(GEN_CONF, 4, 0)
    frozen = hpet.read(MAIN_CNT, 8)
    assert frozen == HPET_HZ * 3 // 2
    clock.advance(NS_PER_S)
    assert hpet.read(MAIN_CNT, 4) == frozen and hpet.read(MAIN_CNT + 4, 4) == 0


def test_counter_writes_only_while_halted_and_by_halves():
    hpet, clock, _ = make()
    hpet.write(MAIN_CNT + 4, 4, 0x1234_5678)
    hpet.write(MAIN_CNT, 4, 0x9ABC_DEF0)
    assert hpet.read(MAIN_CNT, 8) == 0x1234_5678_9ABC_DEF0
    hpet.write(GEN_CONF, 8, ENABLE)
    hpet.write(MAIN_CNT, 8, 0)  # ignored while running
    clock.advance(1000)
    assert hpet.read(MAIN_CNT, 8) == 0x1234_5678_9ABC_DEF0 + 14
    hpet.write(GEN_CONF, 4, 0)
    hpet.write(MAIN_CNT, 8, 2**64 - 3)
    hpet.write(GEN_CONF, 4, ENABLE)
    clock.advance(ns_of_ticks(5))
    assert hpet.read(MAIN_CNT, 8) == 2  # wraps at 64 bits


def test_one_shot_comparator_fires_once_at_the_match():
    hpet, clock, rec = make(callable_routes=True)
    hpet.write(conf(2), 4, INT_ENB | 21 << 9)
    hpet.write(cmp(2), 8, 1_000_000)
    hpet.write(GEN_CONF, 4, ENABLE)
    run_until(clock, 10 * NS_PER_S)
    assert rec.edges[21] == [ns_of_ticks(1_000_000)]
    assert hpet.read(GINTR_STA, 4) == 0  # edge timers leave no status


def test_linux_oneshot_set_next_event_in_32_bit_mode():
    hpet, clock, rec = make()
    hpet.write(GEN_CONF, 4, ENABLE)
    clock.advance(12_345)
    hpet.write(conf(0), 4, INT_ENB | MODE32 | 20 << 9)  # hpet_clkevt_set_state_oneshot
    counter = hpet.read(MAIN_CNT, 4)
    hpet.write(cmp(0), 4, counter + 14_318)  # about 1 ms ahead
    assert hpet.read(cmp(0) + 4, 4) == 0  # a 32-bit timer has no upper half
    start = clock.now_ns()
    run_until(clock, start + 100 * NS_PER_S)
    fire = ns_of_ticks(counter + 14_318)
    assert rec.edges[20] == [fire]
    run_until(clock, start + 400 * NS_PER_S)  # the low 32 bits come round again (~300 s)
    assert rec.edges[20] == [fire, ns_of_ticks(counter + 14_318 + 2**32)]


def test_32_bit_comparator_matches_across_the_wrap():
    hpet, clock, rec = make()
    hpet.write(MAIN_CNT, 8, 0xFFFF_FF00)
    hpet.write(conf(1), 4, INT_ENB | MODE32 | 22 << 9)
    hpet.write(cmp(1), 4, 0x100)  # the low 32 bits reach 0x100 after 0x200 ticks
    hpet.write(GEN_CONF, 4, ENABLE)
    run_until(clock, NS_PER_S)
    assert rec.edges[22] == [ns_of_ticks(0x200)]
    assert hpet.read(MAIN_CNT + 4, 4) == 1  # the main counter itself stays 64-bit


def test_periodic_timer_as_linux_programs_it():
    hpet, clock, rec = make()
    delta = HPET_HZ // 250  # HZ=250
    hpet.write(GEN_CONF, 4, 0)  # hpet_set_periodic: stop, program, start
    now = hpet.read(MAIN_CNT, 4)
    hpet.write(conf(0), 4, hpet.read(conf(0), 4) | INT_ENB | PERIODIC | VAL_SET | MODE32
               | 20 << 9)
    hpet.write(cmp(0), 4, now + delta)
    assert not hpet.read(conf(0), 4) & VAL_SET  # cleared by the write
    hpet.write(cmp(0), 4, delta)  # the period (AMD needs this second write)
    assert hpet.read(cmp(0), 4) == now + delta
    hpet.write(GEN_CONF, 4, ENABLE)
    run_until(clock, NS_PER_S)
    assert len(rec.edges[20]) == 250
    assert rec.edges[20][:2] == [ns_of_ticks(delta), ns_of_ticks(2 * delta)]
    assert hpet.read(cmp(0), 4) == 251 * delta  # the accumulator is ahead of the counter


def test_periodic_timer_with_late_checks_and_64_bit_writes():
    hpet, clock, rec = make()
    hpet.write(conf(0), 8, INT_ENB | PERIODIC | VAL_SET | 23 << 9)
    hpet.write(cmp(0), 8, 1000)  # accumulator and period: 1000 ticks
    hpet.write(GEN_CONF, 4, ENABLE)
    clock.advance(ns_of_ticks(10_500))
    clock.run_due()  # ten periods missed: one interrupt, the comparator catches up
    assert len(rec.edges[23]) == 1 and hpet.read(cmp(0), 8) == 11_000
    clock.advance(ns_of_ticks(500))
    clock.run_due()
    assert len(rec.edges[23]) == 2 and hpet.read(cmp(0), 8) == 12_000
    hpet.write(cmp(0), 8, 2000)  # VAL_SET clear: the period only
    run_until(clock, ns_of_ticks(16_000))
    assert hpet.read(cmp(0), 8) == 18_000 and len(rec.edges[23]) == 5


def test_periods_a_late_timer_missed_come_back_one_per_acknowledgement():
    hpet, clock, rec = make()
    hpet.write(conf(0), 4, INT_ENB | PERIODIC | VAL_SET)
    hpet.write(cmp(0), 8, 1000)
    hpet.write(GEN_CONF, 4, ENABLE | LEGACY)
    run_until(clock, ns_of_ticks(3000))
    assert len(rec.edges["irq0"]) == 3 and hpet.timers[0].lost == 0  # on time: none lost
    clock.advance(ns_of_ticks(12_500))  # the host ran nothing for 12 periods
    clock.run_due()
    assert len(rec.edges["irq0"]) == 4 and hpet.timers[0].lost == 11
    hpet.acked(rec.lines[20])  # another line's acknowledgement gives nothing back
    assert len(rec.edges["irq0"]) == 4
    for n in range(11):  # each interrupt the guest takes brings back one edge, at once
        hpet.acked(rec.lines["irq0"])
        assert len(rec.edges["irq0"]) == 5 + n
    hpet.acked(rec.lines["irq0"])
    assert len(rec.edges["irq0"]) == 15 and hpet.timers[0].lost == 0
    run_until(clock, clock.now_ns() + ns_of_ticks(10_000))
    assert len(rec.edges["irq0"]) == 25  # and the rate goes on as before


def test_lost_periods_are_kept_up_to_one_second_saved_and_forgotten_on_a_new_setting():
    hpet, clock, rec = make()
    period = HPET_HZ // 250
    hpet.write(conf(0), 4, INT_ENB | PERIODIC | VAL_SET | 21 << 9)
    hpet.write(cmp(0), 8, period)
    hpet.write(GEN_CONF, 4, ENABLE)
    clock.advance(5 * NS_PER_S)
    clock.run_due()
    assert hpet.timers[0].lost == 250
    state = hpet.save()
    assert state["timers"][0]["lost"] == 250
    hpet.write(cmp(0), 8, period)  # a new period: the old one's ticks mean nothing
    assert hpet.timers[0].lost == 0
    hpet.acked(rec.lines[21])
    assert hpet.timers[0].lost == 0 and len(rec.edges[21]) == 1
    hpet.load(state)
    hpet.acked(rec.lines[21])
    assert hpet.timers[0].lost == 249 and len(rec.edges[21]) == 2
    hpet.write(conf(0), 4, hpet.read(conf(0), 4))  # a configuration write forgets them too
    assert hpet.timers[0].lost == 0
    hpet.load(state)
    hpet.write(GEN_CONF, 4, ENABLE | LEGACY)  # and one to GEN_CONF
    assert hpet.timers[0].lost == 0


def test_a_level_timers_missed_periods_merge_in_its_status_bit():
    hpet, clock, rec = make()
    hpet.write(conf(0), 4, LEVEL | INT_ENB | PERIODIC | VAL_SET | 22 << 9)
    hpet.write(cmp(0), 8, 1000)
    hpet.write(GEN_CONF, 4, ENABLE)
    clock.advance(ns_of_ticks(10_500))
    clock.run_due()
    assert hpet.read(GINTR_STA, 4) == 1 and hpet.timers[0].lost == 0


def test_only_timer_0_is_periodic_capable():
    hpet, _, _ = make()
    hpet.write(conf(1), 4, PERIODIC | INT_ENB)
    assert hpet.read(conf(1), 4) & (PERIODIC | INT_ENB) == INT_ENB
    hpet.write(conf(0) + 4, 4, 0)  # the capability half is read-only
    assert hpet.read(conf(0) + 4, 4) == 0x00F0_0000


def test_legacy_replacement_routes_timers_0_and_1_to_irq_0_and_8():
    hpet, clock, rec = make()
    changes = []
    hpet.on_legacy_change = changes.append
    for n in (0, 1, 2):
        hpet.write(conf(n), 4, INT_ENB | 20 << 9)
        hpet.write(cmp(n), 8, 1000 * (n + 1))
    hpet.write(GEN_CONF, 4, ENABLE | LEGACY)
    assert changes == [True]
    run_until(clock, NS_PER_S)
    assert rec.edges["irq0"] == [ns_of_ticks(1000)]
    assert rec.edges["irq8"] == [ns_of_ticks(2000)]
    assert rec.edges[20] == [ns_of_ticks(3000)]  # timer 2 keeps its own route
    hpet.write(GEN_CONF, 4, ENABLE)
    assert changes == [True, False]


def test_turning_the_legacy_route_off_leaves_irq0_at_the_pits_level():
    """The HPET lets go of IRQ 0 before the PIT takes it back, not after (which would lower
    the line under the PIT's high OUT 0)."""
    from imacpro.devices.pit import Pit8254
    hpet, clock, rec = make()
    pit = Pit8254(clock, rec.lines["irq0"])
    hpet.on_legacy_change = lambda on: pit.set_irq0_enabled(not on)
    hpet.write(GEN_CONF, 4, ENABLE | LEGACY)
    hpet.write(conf(0), 4, LEVEL | INT_ENB)
    hpet.write(cmp(0), 8, 10)
    run_until(clock, 10_000)
    assert rec.lines["irq0"].level and pit.out(0)   # held by the HPET; OUT 0 high as well
    hpet.write(GEN_CONF, 4, ENABLE)
    assert rec.lines["irq0"].level == pit.out(0) == pit.irq0_level is True


def test_level_triggered_interrupt_stays_asserted_until_status_cleared():
    hpet, clock, rec = make()
    gsi21 = rec.lines[21]
    hpet.write(conf(1), 4, LEVEL | INT_ENB | 21 << 9)
    hpet.write(cmp(1), 8, 500)
    hpet.write(GEN_CONF, 4, ENABLE)
    run_until(clock, NS_PER_S)
    assert gsi21.level and hpet.read(GINTR_STA, 8) == 0x2
    hpet.write(GINTR_STA, 4, 0x1)  # another bit: no effect
    assert gsi21.level
    hpet.write(GINTR_STA, 4, 0x2)  # write 1 to clear
    assert not gsi21.level and hpet.read(GINTR_STA, 8) == 0
    hpet.write(conf(1), 4, LEVEL | 21 << 9)  # INT_ENB clear: status only
    hpet.write(cmp(1), 8, hpet.read(MAIN_CNT, 8) + 100)
    run_until(clock, 2 * NS_PER_S)
    assert hpet.read(GINTR_STA, 8) == 0x2 and not gsi21.level
    hpet.write(conf(1), 4, LEVEL | INT_ENB | 21 << 9)
    assert gsi21.level  # enabling an active level interrupt asserts it
    hpet.write(GEN_CONF, 4, 0)
    assert not gsi21.level  # halting disables every interrupt


def test_reprogramming_and_halting_cancel_pending_matches():
    hpet, clock, rec = make()
    hpet.write(conf(2), 4, INT_ENB | 20 << 9)
    hpet.write(cmp(2), 8, 1000)
    hpet.write(GEN_CONF, 4, ENABLE)
    hpet.write(cmp(2), 8, 5000)
    run_until(clock, ns_of_ticks(3000))
    assert rec.edges[20] == []
    hpet.write(GEN_CONF, 4, 0)
    assert clock.next_deadline() is None
    run_until(clock, NS_PER_S)
    assert rec.edges[20] == []
    hpet.write(GEN_CONF, 4, ENABLE)  # resumes at the frozen count
    run_until(clock, 2 * NS_PER_S)
    assert len(rec.edges[20]) == 1
    hpet.write(conf(2), 4, INT_ENB | 5 << 9)  # a route outside INT_ROUTE_CAP delivers nothing
    hpet.write(cmp(2), 8, hpet.read(MAIN_CNT, 8) + 10)
    run_until(clock, 3 * NS_PER_S)
    assert sum(map(len, rec.edges.values())) == 1


def test_access_sizes():
    hpet, _, _ = make()
    assert hpet.read(GCAP_ID + 2, 2) == 0x8086 and hpet.read(GCAP_ID, 1) == 1
    assert hpet.read(GCAP_ID + 1, 4) == 0 and hpet.read(GCAP_ID, 3) == 0  # unaligned, odd
    hpet.write(GEN_CONF, 1, ENABLE)  # byte writes are ignored
    assert hpet.read(GEN_CONF, 4) == 0
    hpet.write(GEN_CONF, 8, 2**64 - 1)
    assert hpet.read(GEN_CONF, 8) == ENABLE | LEGACY
    hpet.reset()
    assert hpet.read(GEN_CONF, 8) == 0 and hpet.read(cmp(0), 8) == 2**64 - 1


def test_fuzz_never_raises():
    rng = random.Random(0xFED00000)
    hpet, clock, _ = make()
    registers = [0x000, 0x004, 0x010, 0x014, 0x020, 0x0F0, 0x0F4]
    registers += [0x100 + 0x20 * n + r for n in range(4) for r in (0, 4, 8, 12, 16)]
    sizes = (4, 8, 4, 8, 1, 2, 0, 3, 16, -4)
    for _ in range(25_000):
        op = rng.random()
        offset = rng.choice(registers) if rng.random() < 0.85 else rng.randrange(-16, 0x1010)
        if op < 0.35:
            assert hpet.read(offset, rng.choice(sizes)) >= 0
        elif op < 0.85:
            value = rng.choice((rng.getrandbits(64), rng.getrandbits(32), rng.getrandbits(12),
                                -rng.getrandbits(20), 1, 3, 0))
            hpet.write(offset, rng.choice(sizes), value)
        elif op < 0.998:
            clock.advance(rng.choice((rng.randrange(0, 10_000), rng.randrange(0, 10**9))))
            clock.run_due()
        else:
            hpet.reset()
    assert 0 <= hpet.read(MAIN_CNT, 8) < 2**64
