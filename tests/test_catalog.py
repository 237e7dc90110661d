from datetime import date

import pytest

from imacpro.catalog import Configuration, base_configuration, configure, data
from imacpro.errors import UserError

D = date.fromisoformat


def test_processors_match_apple_and_intel():
    expect = {8: ("W-2140B", 3.2, 4.2, 11 * 1024), 10: ("W-2150B", 3.0, 4.5, 13.75 * 1024),
              14: ("W-2170B", 2.5, 4.3, 19.25 * 1024), 18: ("W-2191B", 2.3, 4.3, 24.75 * 1024)}
    for cores, (name, base, turbo, l3) in expect.items():
        p = data.PROCESSORS[cores]
        assert (p.name, p.cores, p.threads, p.base_ghz, p.turbo_ghz, p.l3_kib) == (
            name, cores, 2 * cores, base, turbo, l3)
        assert p.l2_per_core_kib == 1024
        assert (p.family, p.model, p.stepping, p.socket) == (6, 0x55, 4, "LGA2066")


def test_brand_strings():
    assert data.PROCESSORS[8].brand_string == "Intel(R) Xeon(R) W-2140B CPU @ 3.20GHz"
    assert data.PROCESSORS[18].brand_string == "Intel(R) Xeon(R) W-2191B CPU @ 2.30GHz"


def test_every_fact_has_known_sources():
    records = [*data.PROCESSORS.values(), *data.MEMORY.values(), *data.GRAPHICS.values(),
               *data.STORAGE.values(), *data.MODEL.values(), data.SERIAL_PLANT,
               data.SERIAL_MODEL_CODES, data.APPLE_OUIS]
    for record in records:
        assert record.sources, record
        assert set(record.sources) <= set(data.SOURCES), record


def test_identity_facts():
    assert data.MODEL["model_identifier"].value == "iMacPro1,1"
    assert data.MODEL["board_id"].value == "Mac-7BA5B2D9E42DDD94"
    assert data.MODEL["order_number"].value == "MQ2Y2"
    assert data.MODEL["base_price"].value == "$4,999"


def test_memory_is_four_equal_ddr4_ecc_dimms():
    for m in data.MEMORY.values():
        assert m.dimm_gb * data.MEMORY_SLOTS == m.key
    assert (data.MEMORY_TYPE, data.MEMORY_SPEED_MTS, data.MEMORY_ECC) == ("DDR4", 2666, True)
    assert [m.key for m in data.MEMORY.values() if m.apple] == [32, 64, 128, 256]


def test_graphics_and_storage():
    assert {k: g.vram_gb for k, g in data.GRAPHICS.items()} == {
        "vega56": 8, "vega64": 16, "vega64x": 16}
    assert {k: s.capacity_bytes for k, s in data.STORAGE.items()} == {
        "1TB": 10**12, "2TB": 2 * 10**12, "4TB": 4 * 10**12}


# --- date rules ---------------------------------------------------------------------------

@pytest.mark.parametrize("day,cores", [
    ("2017-12-14", 8), ("2020-08-03", 8), ("2020-08-04", 10), ("2021-03-18", 10)])
def test_base_configuration_by_day(day, cores):
    base = base_configuration(D(day))
    assert (base.cpu, base.memory, base.graphics, base.storage) == (cores, 32, "vega56", "1TB")


def test_defaults_are_the_stock_configuration_of_the_day():
    assert configure(as_of=D("2018-01-01")).cpu == 8
    assert configure(as_of=D("2020-08-04")).cpu == 10
    # No date: today; after delisting that means the last configuration sold.
    c = configure(today=D("2026-11-23"))
    assert (c.cpu, c.memory, c.graphics, c.storage, c.as_of) == (10, 32, "vega56", "1TB", None)
    assert configure(today=D("2019-01-01")).cpu == 8


@pytest.mark.parametrize("kwargs,day,ok", [
    ({"memory": 256}, "2019-03-18", False),
    ({"memory": 256}, "2019-03-19", True),
    ({"graphics": "vega64x"}, "2019-03-18", False),
    ({"graphics": "vega64x"}, "2019-03-19", True),
    ({"cpu": 8}, "2020-08-03", True),
    ({"cpu": 8}, "2020-08-04", False),
    ({"cpu": 18, "memory": 128}, "2021-03-04", True),
    ({"cpu": 18, "memory": 128}, "2021-03-05", False),  # no longer configurable
    ({}, "2021-03-05", True),  # the stock configuration is still sold
    ({}, "2021-03-18", True),
    ({}, "2021-03-19", False),  # delisted
    ({}, "2017-12-13", False),  # announced, not yet on sale
    ({}, "2017-12-14", True),
])
def test_date_boundaries(kwargs, day, ok):
    if ok:
        assert configure(as_of=D(day), **kwargs).as_of == D(day)
    else:
        with pytest.raises(UserError):
            configure(as_of=D(day), **kwargs)


def test_refusals_name_the_dates():
    with pytest.raises(UserError, match="2019-03-19"):
        configure(cpu=18, memory=256, as_of=D("2018-06-01"))
    with pytest.raises(UserError, match="2020-08-03"):
        configure(cpu=8, as_of=D("2020-09-01"))
    with pytest.raises(UserError, match="2017-12-14"):
        configure(as_of=D("2017-07-01"))
    with pytest.raises(UserError, match="2021-03-19"):
        configure(as_of=D("2022-01-01"))
    with pytest.raises(UserError, match="2021-03-05"):
        configure(storage="4TB", as_of=D("2021-03-10"))


def test_unknown_options_refused():
    for kwargs in ({"cpu": 12}, {"memory": 48}, {"graphics": "vega20"}, {"storage": "8TB"}):
        with pytest.raises(UserError):
            configure(**kwargs)


def test_third_party_memory():
    with pytest.raises(UserError, match="--third-party-memory"):
        configure(memory=512)
    c = configure(memory=512, third_party_memory=True)
    assert c.memory_option.size_bytes == 512 << 30 and c.sale_window() is None
    # Third-party modules are not bound to Apple's dates ...
    assert configure(cpu=18, memory=256, third_party_memory=True, as_of=D("2018-06-01"))
    # ... but the rest of the machine is.
    with pytest.raises(UserError):
        configure(graphics="vega64x", third_party_memory=True, as_of=D("2018-06-01"))


def test_sale_window_of_a_configuration():
    c = configure(cpu=8, memory=256)
    assert (c.sale_window().offered_from, c.sale_window().offered_until) == (
        D("2019-03-19"), D("2020-08-04"))
    custom = configure(cpu=18)
    assert custom.sale_window().offered_until == D("2021-03-05")
    stock = configure(cpu=10)
    assert stock.sale_window().offered_until == D("2021-03-19")


def test_round_trip_through_dict():
    c = configure(cpu=14, memory=128, graphics="vega64", storage="2TB", as_of=D("2018-02-01"))
    assert Configuration.from_dict(c.to_dict()) == c


def test_from_dict_revalidates():
    raw = configure(cpu=8).to_dict() | {"memory": 256, "as_of": "2018-01-01"}
    with pytest.raises(UserError):
        Configuration.from_dict(raw)
    with pytest.raises(UserError):
        Configuration.from_dict({"cpu": 8})
