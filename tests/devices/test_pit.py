"""8254 PIT and port 0x61: modes, latches, read-back, IRQ 0 edges and the TSC calibration path."""

import random

from imacpro.clock import NS_PER_S, Clock
from imacpro.devices.pit import PIT_HZ, Pit8254, SystemControlPortB
from imacpro.irq import IrqLine

CH0, CH2, CONTROL = 0, 2, 3


def make():
    clock = Clock(realtime=False)
    edges = []
    irq0 = IrqLine("irq0")
    irq0.connect(lambda level: edges.append(clock.now_ns()) if level else None)
    pit = Pit8254(clock, irq0)
    edges.clear()  # power-on: counter 0's OUT starts high
    return pit, SystemControlPortB(pit), clock, irq0, edges


def program(pit, channel, control, count):
    pit.write(CONTROL, 1, control)
    pit.write(channel, 1, count & 0xFF)
    pit.write(channel, 1, count >> 8)


def latched(pit, channel):
    pit.write(CONTROL, 1, channel << 6)  # counter latch command
    return pit.read(channel, 1) | pit.read(channel, 1) << 8


def run_until(clock, end_ns):
    """An idle machine: warp to each timer and run it."""
    while (deadline := clock.next_deadline()) is not None and deadline <= end_ns:
        clock.warp_to(deadline)
        clock.run_due()
    clock.warp_to(end_ns)
    clock.run_due()


def ticks_ns(ticks):
    return -(-ticks * NS_PER_S // PIT_HZ)


def test_power_on_channel_0_is_the_18_2_hz_square_wave():
    pit, _, clock, _, edges = make()
    assert pit.read(CONTROL, 1) == 0xFF  # the control register is write-only
    pit.write(CONTROL, 1, 0xE2)  # read-back status of counter 0
    assert pit.read(CH0, 1) == 0x80 | 0x36  # OUT high, LSB/MSB, mode 3, binary
    run_until(clock, NS_PER_S)
    assert len(edges) == 18  # 1193182 / 65536 = 18.2


def test_mode_2_count_1193_gives_1000_irq0_edges_per_second():
    pit, _, clock, irq0, edges = make()
    program(pit, CH0, 0x34, 1193)  # what Linux's pit_set_periodic writes
    start = clock.now_ns()
    run_until(clock, start + NS_PER_S)
    assert len(edges) == 1000
    assert edges[0] - start == ticks_ns(1193) and edges[1] - edges[0] in range(999_800, 1_000_200)
    assert irq0.level  # OUT is high between the one-tick low pulses


def test_mode_2_edges_survive_a_run_loop_that_checks_timers_late():
    pit, _, clock, _, edges = make()
    program(pit, CH0, 0x34, 1193)
    for _ in range(1000):  # timers checked every millisecond, not at their deadlines
        clock.advance(1_000_000)
        clock.run_due()
    assert len(edges) == 1000
    for _ in range(10):  # checked only every 10 ms: missed periods merge into one edge
        clock.advance(10_000_000)
        clock.run_due()
    assert len(edges) == 1010


def test_periods_a_late_timer_missed_come_back_one_per_acknowledgement():
    pit, _, clock, _, edges = make()
    program(pit, CH0, 0x34, 4773)  # 250 Hz, Linux's HZ
    run_until(clock, clock.now_ns() + ticks_ns(4773 * 3))
    assert len(edges) == 3 and pit.lost_edges == 0  # on time: nothing lost
    clock.advance(ticks_ns(4773 * 12) + 1000)  # the host ran nothing for 12 periods
    clock.run_due()
    assert len(edges) == 4 and pit.lost_edges == 11
    for n in range(11):  # each IRQ 0 the guest takes brings back one edge, at once
        pit.irq0_acked()
        assert len(edges) == 5 + n
    pit.irq0_acked()
    assert len(edges) == 15 and pit.lost_edges == 0
    run_until(clock, clock.now_ns() + ticks_ns(4773 * 10))
    assert len(edges) == 25  # and the rate goes on as before


def test_lost_periods_are_kept_up_to_one_second_and_forgotten_on_a_new_count():
    pit, _, clock, _, edges = make()
    program(pit, CH0, 0x36, 4773)  # mode 3, as firmware leaves it
    clock.advance(5 * NS_PER_S)
    clock.run_due()
    assert pit.lost_edges == 1193182 // 4773
    state = pit.save()
    assert state["lost_edges"] == pit.lost_edges
    program(pit, CH0, 0x34, 11932)
    assert pit.lost_edges == 0
    pit.irq0_acked()
    assert pit.lost_edges == 0
    pit.load(state)
    assert pit.lost_edges == 1193182 // 4773
    pit.set_irq0_enabled(False)  # the HPET takes IRQ 0 over
    assert pit.lost_edges == 0


def test_one_shot_modes_lose_nothing_to_give_back():
    pit, _, clock, _, edges = make()
    program(pit, CH0, 0x30, 1000)  # mode 0
    clock.advance(NS_PER_S)
    clock.run_due()
    assert len(edges) == 1 and pit.lost_edges == 0


def test_mode_0_is_a_one_shot_on_terminal_count():
    pit, _, clock, irq0, edges = make()
    pit.write(CONTROL, 1, 0x30)
    assert not irq0.level  # mode 0: OUT low from the control word
    pit.write(CH0, 1, 0xE8)
    pit.write(CH0, 1, 0x03)  # 1000 ticks
    start = clock.now_ns()
    run_until(clock, start + NS_PER_S)
    assert edges == [start + ticks_ns(1000)]
    assert irq0.level and clock.next_deadline() is None
    assert latched(pit, CH0) == (1000 - PIT_HZ) % 65536  # the count wraps and goes on


def test_mode_4_one_shot_as_linux_programs_it():
    pit, _, clock, irq0, edges = make()
    pit.write(CONTROL, 1, 0x38)  # Linux's pit_set_oneshot: mode 4
    assert irq0.level
    start = clock.now_ns()
    pit.write(CH0, 1, 100)
    pit.write(CH0, 1, 0)  # pit_next_event
    run_until(clock, start + 10_000_000)
    assert edges == [start + ticks_ns(101)]  # low for the one tick after terminal count
    assert irq0.level and clock.next_deadline() is None


def test_reprogramming_cancels_the_old_schedule():
    pit, _, clock, _, edges = make()
    program(pit, CH0, 0x34, 1193)
    clock.advance(500_000)
    program(pit, CH0, 0x30, 0)  # Linux's pit_shutdown: mode 0, count 0 = 65536
    start = clock.now_ns()
    run_until(clock, start + NS_PER_S)
    assert edges == [start + ticks_ns(65536)]


def test_count_0_is_65536_and_lsb_msb_only_access_modes():
    pit, _, clock, _, _ = make()
    pit.write(CONTROL, 1, 0x10 | 0x04 << 1 | 0x40)  # counter 1, LSB only, mode 4
    pit.write(1, 1, 0)
    assert pit.read(1, 1) == 0  # 65536 shows as 0
    clock.advance(ticks_ns(1))
    assert pit.read(1, 1) == 0xFF
    pit.write(CONTROL, 1, 0x60)  # counter 1, MSB only, mode 0
    pit.write(1, 1, 0x12)
    assert pit.read(1, 1) == 0x12
    clock.advance(ticks_ns(0x1200 - 0x1100))
    assert pit.read(1, 1) == 0x11


def test_latch_holds_the_count_and_a_second_latch_is_ignored():
    pit, _, clock, _, _ = make()
    program(pit, CH0, 0x30, 50_000)
    clock.advance(ticks_ns(1000))
    pit.write(CONTROL, 1, 0x00)
    clock.advance(ticks_ns(5000))
    pit.write(CONTROL, 1, 0x00)  # ignored: the first latch was not read yet
    assert pit.read(CH0, 1) | pit.read(CH0, 1) << 8 == 49_000
    assert latched(pit, CH0) == 44_000


def test_unlatched_reads_alternate_lsb_and_msb():
    pit, _, clock, _, _ = make()
    program(pit, CH0, 0x30, 0x1234)
    assert (pit.read(CH0, 1), pit.read(CH0, 1)) == (0x34, 0x12)
    # a 16-bit IN at 0x40 is two byte reads: counter 0 (LSB), then counter 1
    assert pit.read(CH0, 2) & 0xFF == 0x34 and pit.read(CH0, 1) == 0x12
    assert pit.read(0x04, 1) == 0xFF and pit.read(CONTROL, 2) == 0xFFFF


def test_read_back_latches_status_then_count():
    pit, _, clock, _, _ = make()
    pit.write(CONTROL, 1, 0x30)
    pit.write(CONTROL, 1, 0xE2)  # read-back: status of counter 0
    assert pit.read(CH0, 1) == 0x40 | 0x30  # OUT low, NULL COUNT: no count written yet
    pit.write(CH0, 1, 0x00)
    pit.write(CH0, 1, 0x10)
    clock.advance(ticks_ns(0x100))
    pit.write(CONTROL, 1, 0xC2)
    clock.advance(ticks_ns(0x100))
    assert pit.read(CH0, 1) == 0x30  # count loaded: NULL COUNT clear
    assert pit.read(CH0, 1) | pit.read(CH0, 1) << 8 == 0x0F00
    pit.write(CONTROL, 1, 0xDC)  # count only, counters 1 and 2
    pit.write(CONTROL, 1, 0x7C)  # mode 6 alias of mode 2 on counter 1
    pit.write(1, 1, 10)
    pit.write(1, 1, 0)
    pit.write(CONTROL, 1, 0xE4)  # status only, counter 1
    assert pit.read(1, 1) == 0x80 | 0x3C  # the status echoes M = 110


def test_mode_6_and_7_act_as_2_and_3():
    pit, _, clock, _, edges = make()
    program(pit, CH0, 0x3C, 1193)  # mode 6
    run_until(clock, NS_PER_S)
    assert len(edges) == 1000
    program(pit, CH0, 0x3E, 11932)  # mode 7: square wave, 100 Hz
    start = clock.now_ns()
    run_until(clock, start + ticks_ns(100 * 11932))
    assert len(edges) == 1100 and edges[-1] == start + ticks_ns(100 * 11932)


def test_bcd_counting():
    pit, _, clock, _, _ = make()
    program(pit, CH0, 0x31, 0x1000)  # mode 0, BCD, 1000 decimal
    clock.advance(ticks_ns(10))
    assert latched(pit, CH0) == 0x0990
    program(pit, CH0, 0x31, 0)  # BCD 0 is 10000
    clock.advance(ticks_ns(1))
    assert latched(pit, CH0) == 0x9999


def test_channel_2_mode_0_and_port_61_bit_5_as_pit_calibrate_tsc():
    pit, port_b, clock, _, _ = make()
    assert port_b.read(0, 1) & 0x21 == 0x20  # gate low; mode 3 holds OUT high
    port_b.write(0, 1, (port_b.read(0, 1) & ~0x02) | 0x01)  # gate high, speaker off
    latch = PIT_HZ // 20  # 50 ms
    program(pit, CH2, 0xB0, latch)
    start = clock.now_ns()
    assert latched(pit, CH2) == latch
    step, seen = 10_000, []
    while not port_b.read(0, 1) & 0x20:
        seen.append(latched(pit, CH2))
        clock.advance(step)
    assert clock.now_ns() - start == -(-ticks_ns(latch) // step) * step  # the first poll after
    # counting down at 1.193182 MHz: 10 us is 11.93 ticks
    assert all(a - b in (11, 12) for a, b in zip(seen, seen[1:]))
    clock.advance(20_000)
    assert latched(pit, CH2) > 0xFF00  # wrapped past 0 and counting on


def test_quick_pit_calibrate_sees_the_msb_fall_every_256_ticks():
    pit, port_b, clock, _, _ = make()
    port_b.write(0, 1, 0x01)
    pit.write(CONTROL, 1, 0xB0)
    pit.write(CH2, 1, 0xFF)
    pit.write(CH2, 1, 0xFF)
    msbs = []
    for _ in range(3000):
        pit.read(CH2, 1)  # pit_verify_msb: the LSB first, then the MSB
        msbs.append(pit.read(CH2, 1))
        clock.advance(1000)
    assert msbs[0] == 0xFF
    changes = [i for i in range(1, len(msbs)) if msbs[i] != msbs[i - 1]]
    assert [msbs[i] for i in changes] == list(range(0xFE, 0xFE - len(changes), -1))
    assert all(b - a in (214, 215) for a, b in zip(changes, changes[1:]))  # 256 ticks = 214.6 us


def test_gate_controls_channel_2():
    pit, port_b, clock, _, _ = make()
    program(pit, CH2, 0xB0, 1000)  # mode 0 with the gate low: loaded, not counting
    clock.advance(ticks_ns(500))
    assert latched(pit, CH2) == 1000
    port_b.write(0, 1, 0x01)
    clock.advance(ticks_ns(300))
    port_b.write(0, 1, 0x00)  # mode 0: a low gate pauses
    clock.advance(ticks_ns(5000))
    assert latched(pit, CH2) == 700 and not port_b.read(0, 1) & 0x20
    port_b.write(0, 1, 0x01)
    clock.advance(ticks_ns(700))
    assert port_b.read(0, 1) & 0x20
    program(pit, CH2, 0xB4, 100)  # mode 2: a low gate forces OUT high, a rising one reloads
    clock.advance(ticks_ns(99))
    assert not pit.out(2)
    port_b.write(0, 1, 0x00)
    assert pit.out(2)
    port_b.write(0, 1, 0x01)
    clock.advance(ticks_ns(10))
    assert latched(pit, CH2) == 90
    program(pit, CH2, 0xB2, 50)  # mode 1 waits for a gate trigger
    clock.advance(ticks_ns(100))
    assert pit.out(2)
    port_b.write(0, 1, 0x00)
    port_b.write(0, 1, 0x01)
    assert not pit.out(2)
    clock.advance(ticks_ns(50))
    assert pit.out(2)


def test_port_61_bits():
    pit, port_b, clock, _, _ = make()
    port_b.write(0, 1, 0xFF)
    assert port_b.read(0, 1) & 0xCF == 0x0F  # NMI status bits 6-7 read 0
    toggles = set()
    for _ in range(8):
        toggles.add(port_b.read(0, 1) & 0x10)
        clock.advance(15_085)
    assert toggles == {0, 0x10}
    assert port_b.read(1, 1) == 0xFF and port_b.read(0, 3) == 0
    port_b.reset()
    assert port_b.read(0, 1) & 0x0F == 0 and not pit.channels[2].gate


def test_hpet_legacy_route_disconnects_irq0_and_reset():
    pit, _, clock, irq0, edges = make()
    program(pit, CH0, 0x34, 1193)
    pit.set_irq0_enabled(False)
    run_until(clock, NS_PER_S)
    assert edges == [] and not irq0.level
    pit.set_irq0_enabled(True)  # reconnecting a high OUT is an edge
    run_until(clock, 2 * NS_PER_S)
    assert edges[0] == NS_PER_S and len(edges) == 1001
    pit.reset()
    pit.write(CONTROL, 1, 0xE2)
    assert pit.read(CH0, 1) & 0x3F == 0x36


def test_fuzz_never_raises():
    rng = random.Random(8254)
    pit, port_b, clock, _, _ = make()
    sizes = (1, 1, 1, 1, 2, 4, 8, 0, 3, -1)
    for _ in range(25_000):
        op = rng.random()
        device = port_b if rng.random() < 0.15 else pit
        offset = rng.choice((0, 1, 2, 3, 3, 3, rng.randrange(-8, 16)))
        if op < 0.4:
            assert device.read(offset, rng.choice(sizes)) >= 0
        elif op < 0.9:
            value = rng.choice((rng.getrandbits(8), rng.getrandbits(64), -rng.getrandbits(16),
                                rng.choice((0x30, 0x34, 0x36, 0x38, 0xB0, 0xC2, 0xE2, 0x00))))
            device.write(offset, rng.choice(sizes), value)
        elif op < 0.995:
            clock.advance(rng.choice((rng.randrange(0, 10_000), rng.randrange(0, 10**8))))
            clock.run_due()
        else:
            pit.reset()
    assert all(0 <= ch.count <= 0x10000 for ch in pit.channels)
