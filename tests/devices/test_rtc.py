"""CMOS RTC: time in BCD/binary, advancing with the machine clock, interrupts, CMOS RAM."""

import calendar
import datetime
import random

from imacpro.clock import NS_PER_S, Clock
from imacpro.devices.rtc import CmosRtc, civil_from_days, days_from_civil
from imacpro.irq import IrqLine

# 2021-03-19 13:45:30.25 UTC, a Friday (the iMac Pro's last day on sale).
START = calendar.timegm((2021, 3, 19, 13, 45, 30)) + 0.25
TIME_INDEXES = (0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32)


def make(start=START):
    clock = Clock(realtime=False)
    irq = IrqLine("irq8")
    return CmosRtc(clock, irq, start_time=start), clock, irq


def rd(rtc, index):
    rtc.write(0, 1, index)
    return rtc.read(1, 1)


def wr(rtc, index, value):
    rtc.write(0, 1, index)
    rtc.write(1, 1, value)


def now_regs(rtc):
    return [rd(rtc, i) for i in TIME_INDEXES]


def set_time(rtc, regs):
    wr(rtc, 0x0B, rd(rtc, 0x0B) | 0x80)
    for index, value in zip(TIME_INDEXES, regs):
        wr(rtc, index, value)
    wr(rtc, 0x0B, rd(rtc, 0x0B) & ~0x80)


def run_until(clock, end_ns, on_wake):
    """An idle machine: warp to each timer, run it, let the ISR react."""
    while (deadline := clock.next_deadline()) is not None and deadline <= end_ns:
        clock.warp_to(deadline)
        clock.run_due()
        on_wake()


def test_power_on_time_in_bcd():
    rtc, _, _ = make()
    assert now_regs(rtc) == [0x30, 0x45, 0x13, 0x06, 0x19, 0x03, 0x21, 0x20]
    assert rd(rtc, 0x0A) == 0x26 and rd(rtc, 0x0B) == 0x02 and rd(rtc, 0x0D) == 0x80


def test_binary_and_12_hour_modes():
    rtc, _, _ = make()
    wr(rtc, 0x0B, 0x06)
    assert now_regs(rtc) == [30, 45, 13, 6, 19, 3, 21, 20]
    wr(rtc, 0x0B, 0x00)  # BCD, 12-hour: 1 PM
    assert rd(rtc, 0x04) == 0x81
    wr(rtc, 0x0B, 0x04)  # binary, 12-hour
    assert rd(rtc, 0x04) == 0x81
    rtc2, _, _ = make(calendar.timegm((2021, 3, 19, 0, 5, 0)))
    wr(rtc2, 0x0B, 0x00)
    assert rd(rtc2, 0x04) == 0x12  # 00:05 is 12 AM


def test_time_advances_with_the_machine_clock():
    rtc, clock, _ = make()
    clock.advance(NS_PER_S * 3600 + NS_PER_S * 3 // 4)
    assert now_regs(rtc)[:3] == [0x31, 0x45, 0x14]
    rtc2, clock2, _ = make(calendar.timegm((2099, 12, 31, 23, 59, 59)))
    clock2.advance(NS_PER_S)
    assert now_regs(rtc2) == [0x00, 0x00, 0x00, 0x06, 0x01, 0x01, 0x00, 0x21]  # a Friday


def test_guest_sets_the_clock_and_set_freezes_it():
    rtc, clock, _ = make()
    wr(rtc, 0x0B, 0x82)
    clock.advance(5 * NS_PER_S)
    assert rd(rtc, 0x00) == 0x30  # frozen while SET
    for index, value in zip(TIME_INDEXES, (0x58, 0x59, 0x23, 0x01, 0x28, 0x02, 0x24, 0x20)):
        wr(rtc, index, value)
    wr(rtc, 0x0B, 0x02)
    assert now_regs(rtc)[4:6] == [0x28, 0x02]
    clock.advance(2 * NS_PER_S)
    assert now_regs(rtc) == [0x00, 0x00, 0x00, 0x05, 0x29, 0x02, 0x24, 0x20]  # leap day, Thu
    # Writing one field while running keeps the others counting.
    wr(rtc, 0x09, 0x25)
    clock.advance(NS_PER_S)
    # 2025 has no 29 February: the date rolls over into March, as day arithmetic does.
    assert now_regs(rtc) == [0x01, 0x00, 0x00, 0x07, 0x01, 0x03, 0x25, 0x20]
    rtc.reset()  # a machine reset keeps the time
    assert rd(rtc, 0x09) == 0x25


def test_uip_before_each_update():
    rtc, clock, _ = make()
    clock.advance(NS_PER_S * 3 // 4 - 200_000)  # 200 us before the update at :31
    assert rd(rtc, 0x0A) & 0x80
    assert rd(rtc, 0x00) == 0x30
    clock.advance(200_000)
    assert not rd(rtc, 0x0A) & 0x80 and rd(rtc, 0x00) == 0x31
    clock.advance(NS_PER_S // 2)
    assert not rd(rtc, 0x0A) & 0x80


def test_divider_reset_holds_time_and_restarts_half_a_second_later():
    rtc, clock, _ = make()
    wr(rtc, 0x0A, 0x70)
    clock.advance(10 * NS_PER_S)
    assert rd(rtc, 0x00) == 0x30 and not rd(rtc, 0x0A) & 0x80
    wr(rtc, 0x0A, 0x26)
    clock.advance(NS_PER_S // 2 - 1)
    assert rd(rtc, 0x00) == 0x30
    clock.advance(1)
    assert rd(rtc, 0x00) == 0x31


def count_edges(rate_select, seconds=1):
    rtc, clock, irq = make()
    edges = []
    irq.connect(lambda level: level and edges.append(clock.now_ns()))
    wr(rtc, 0x0A, 0x20 | rate_select)
    wr(rtc, 0x0B, 0x42)  # PIE
    run_until(clock, seconds * NS_PER_S, lambda: irq.level and rd(rtc, 0x0C))
    return edges


def test_periodic_interrupt_rate():
    assert len(count_edges(15)) == 2
    assert len(count_edges(6)) == 1024
    assert len(count_edges(1)) == 256
    assert len(count_edges(3)) == 8192
    edges = count_edges(15, seconds=2)
    assert [t % (NS_PER_S // 2) for t in edges] == [NS_PER_S // 4] * 4  # divider phase .25


def test_periodic_flag_without_interrupt_enable():
    rtc, clock, irq = make()
    assert rd(rtc, 0x0C) == 0
    clock.advance(NS_PER_S // 1024 + 1)
    assert rd(rtc, 0x0C) == 0x40  # PF without IRQF
    assert rd(rtc, 0x0C) == 0 and not irq.level
    assert clock.next_deadline() is None  # nothing enabled, no timer


def test_reading_c_clears_irq_and_enabling_pie_with_pf_pending_raises():
    rtc, clock, irq = make()
    clock.advance(NS_PER_S // 100)
    wr(rtc, 0x0B, 0x42)
    assert irq.level  # PF was already set: IRQF follows at once
    assert rd(rtc, 0x0C) & 0xC0 == 0xC0
    assert not irq.level and rd(rtc, 0x0C) == 0
    wr(rtc, 0x0B, 0x02)
    assert clock.next_deadline() is None  # the periodic timer went away with PIE


def test_update_ended_interrupt_every_second():
    rtc, clock, irq = make()
    seen = []
    wr(rtc, 0x0B, 0x12)
    run_until(clock, 3 * NS_PER_S, lambda: seen.append((clock.now_ns(), rd(rtc, 0x0C) & 0x90)))
    assert seen == [(750_000_000, 0x90), (1_750_000_000, 0x90), (2_750_000_000, 0x90)]
    wr(rtc, 0x0B, 0x92)  # SET clears UIE
    assert rd(rtc, 0x0B) == 0x82


def test_alarm_fires_at_the_programmed_time():
    rtc, clock, irq = make()
    wr(rtc, 0x01, 0x35)
    wr(rtc, 0x03, 0x45)
    wr(rtc, 0x05, 0x13)
    wr(rtc, 0x0B, 0x22)  # AIE
    hits = []
    run_until(clock, 20 * NS_PER_S,
              lambda: irq.level and hits.append((clock.now_ns(), rd(rtc, 0x0C))))
    assert len(hits) == 1
    at, flags = hits[0]
    assert at == 4_750_000_000 and flags & 0xA0 == 0xA0
    assert rd(rtc, 0x00) == 0x35
    # "Don't care" in every field: an alarm each second.
    wr(rtc, 0x01, 0xFF)
    wr(rtc, 0x03, 0xC0)
    wr(rtc, 0x05, 0xC0)
    hits.clear()
    run_until(clock, 7_750_000_000, lambda: irq.level and hits.append(rd(rtc, 0x0C)))
    assert len(hits) == 3
    # An alarm that cannot match arms nothing.
    wr(rtc, 0x05, 0x25)
    rd(rtc, 0x0C)
    assert clock.next_deadline() is None


def test_alarm_tomorrow_and_in_12_hour_mode():
    rtc, clock, irq = make()
    wr(rtc, 0x0B, 0x20)  # AIE, BCD, 12-hour
    wr(rtc, 0x01, 0x00)
    wr(rtc, 0x03, 0x00)
    wr(rtc, 0x05, 0x81)  # 1 PM: already past today
    assert clock.next_deadline() == (24 * 3600 - (45 * 60 + 30)) * NS_PER_S - NS_PER_S // 4


def test_reset_keeps_ram_and_time_clears_enables():
    rtc, clock, irq = make()
    wr(rtc, 0x40, 0xAB)
    rtc.write(2, 1, 0x85)
    rtc.write(3, 1, 0xCD)
    wr(rtc, 0x0B, 0x72)
    clock.advance(NS_PER_S)
    clock.run_due()
    assert irq.level
    rtc.reset()
    assert not irq.level and clock.next_deadline() is None
    assert rd(rtc, 0x40) == 0xAB and rd(rtc, 0x0B) == 0x02 and rd(rtc, 0x00) == 0x31
    rtc.write(2, 1, 0x05)
    assert rtc.read(3, 1) == 0xCD and rtc.cmos[0x85] == 0xCD


def test_nmi_mask_and_index_ports():
    rtc, _, _ = make()
    rtc.write(0, 1, 0x8F)
    assert rtc.nmi_masked
    rtc.write(1, 1, 0x42)
    assert rtc.cmos[0x0F] == 0x42
    rtc.write(0, 1, 0x0F)
    assert not rtc.nmi_masked and rtc.read(1, 1) == 0x42
    assert rtc.read(0, 1) == 0xFF and rtc.read(4, 1) == 0xFF
    wr(rtc, 0x0D, 0x00)
    wr(rtc, 0x0C, 0xFF)
    assert rd(rtc, 0x0D) == 0x80 and rd(rtc, 0x0C) == 0


def test_memory_size_fields():
    rtc, _, _ = make()
    rtc.set_memory_size(3 * 1024**3, 125 * 1024**3)
    cmos = rtc.cmos
    assert cmos[0x15] | cmos[0x16] << 8 == 640
    assert cmos[0x17] | cmos[0x18] << 8 == 0xFFFF
    assert cmos[0x30] | cmos[0x31] << 8 == 0xFFFF
    assert cmos[0x34] | cmos[0x35] << 8 == (3 * 1024 - 16) * 16
    assert int.from_bytes(cmos[0x5B:0x5E], "little") == 125 * 1024 * 16
    assert cmos[0x2E] << 8 | cmos[0x2F] == sum(cmos[0x10:0x2E])
    rtc.set_memory_size(8 * 1024**2, 0)
    assert cmos[0x17] | cmos[0x18] << 8 == 7 * 1024 and cmos[0x34] == 0 and cmos[0x5B] == 0


def test_calendar_helpers_match_datetime():
    rng = random.Random(146818)
    for _ in range(2000):
        date = datetime.date.fromordinal(rng.randrange(1, 3_650_000))
        days = (date - datetime.date(1970, 1, 1)).days
        assert days_from_civil(date.year, date.month, date.day) == days
        assert civil_from_days(days) == (date.year, date.month, date.day)


def test_fuzz_never_raises():
    rng = random.Random(8)
    rtc, clock, irq = make(rng.uniform(0, 2**33))
    sizes = (1, 1, 1, 1, 2, 4, 8, 0, 3, -2)
    for _ in range(20_000):
        op = rng.random()
        offset = rng.choice((0, 1, 0, 1, 2, 3, rng.randrange(-8, 16)))
        if op < 0.4:
            assert rtc.read(offset, rng.choice(sizes)) >= 0
        elif op < 0.85:
            value = rng.choice((rng.getrandbits(8), rng.randrange(0x0A, 0x0E),
                                rng.getrandbits(64), -rng.getrandbits(16)))
            rtc.write(offset, rng.choice(sizes), value)
        elif op < 0.97:
            clock.advance(rng.choice((rng.randrange(0, 10**6), rng.randrange(0, 10**10))))
            clock.run_due()
        else:
            rtc.reset() if rng.random() < 0.5 else rtc.set_memory_size(
                rng.getrandbits(32), rng.getrandbits(40))
