from datetime import date

from imacpro.catalog import configure
from imacpro.identity import (Identity, half_year_code, is_valid_serial, new_identity,
                              week_code)

D = date.fromisoformat


def test_half_year_codes_follow_apples_table():
    assert half_year_code(D("2010-01-05")) == "C"
    assert half_year_code(D("2010-07-01")) == "D"
    assert half_year_code(D("2017-12-14")) == "V"
    assert half_year_code(D("2018-03-01")) == "W"
    assert half_year_code(D("2019-12-31")) == "Z"
    assert half_year_code(D("2020-08-04")) == "D"  # the letters repeat each decade


def test_week_codes():
    assert week_code(D("2018-01-01")) == "1"
    assert week_code(D("2018-03-05")) == "C"  # week 10
    assert week_code(D("2018-07-01")) == "1"
    assert week_code(D("2018-12-31")) == "Y"  # week 27 of the half-year


def test_identity_is_well_formed():
    ident = new_identity(configure(as_of=D("2019-06-01")))
    assert is_valid_serial(ident.serial_number) and len(ident.serial_number) == 12
    assert ident.serial_number.startswith("C02")
    assert D("2019-04-06") <= ident.manufactured <= D("2019-06-01")
    assert ident.serial_number[3] == half_year_code(ident.manufactured)
    assert 0 < ident.t2_ecid < 2**64
    for mac in (ident.ethernet_mac, ident.wifi_mac, ident.bluetooth_mac):
        assert len(mac.split(":")) == 6


def test_manufacture_date_lies_in_the_sale_window():
    config = configure(cpu=8, memory=256)  # sold 2019-03-19 .. 2020-08-03
    for _ in range(50):
        assert D("2019-03-19") <= new_identity(config).manufactured <= D("2020-08-03")


def test_identities_are_unique_and_avoid_taken_values():
    config = configure()
    seen: set[str] = set()
    for _ in range(300):
        ident = new_identity(config, seen)
        assert not ident.unique_keys() & seen
        seen |= ident.unique_keys()
    assert len(seen) == 300 * 6


def test_round_trip():
    ident = new_identity(configure())
    assert Identity.from_dict(ident.to_dict()) == ident
