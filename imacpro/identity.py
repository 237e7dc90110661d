"""A machine's identity, made once at creation: serial number, hardware UUID, T2 ECID, MACs.

Serial numbers follow Apple's 12-character format PPP Y W SSS CCCC:
  PPP   manufacturing plant (iMac Pros carry C02)
  Y     half-year of manufacture: C = 2010 H1, D = 2010 H2, F = 2011 H1 … Z = 2019 H2, then the
        letters repeat for the next decade (C = 2020 H1)
  W     week within that half-year, 1…27, as 1-9 then C D F G H J K L M N P Q R T V W X Y
  SSS   unit number, digits and consonants
  CCCC  model code (one of the iMacPro1,1 codes)
The manufacture date is drawn from the weeks before the configuration's "as of" date, or from the
days its configuration was on sale, so the serial tells the same story as the configuration.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import asdict, dataclass
from datetime import date, timedelta

from imacpro.catalog import Configuration, data
from imacpro.errors import UserError

HALF_YEAR_CODES = "CDFGHJKLMNPQRSTVWXYZ"  # 2010 H1 … 2019 H2, repeating each decade
WEEK_CODES = "123456789CDFGHJKLMNPQRTVWXY"  # weeks 1…27 of a half-year
UNIT_CODES = "0123456789BCDFGHJKLMNPQRSTVWXYZ"
MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")


@dataclass(frozen=True)
class Identity:
    serial_number: str
    hardware_uuid: str
    t2_ecid: int
    ethernet_mac: str
    wifi_mac: str
    bluetooth_mac: str
    manufactured: date

    def unique_keys(self) -> set[str]:
        """Values that must differ from every other machine's."""
        return {self.serial_number, self.hardware_uuid, f"ecid:{self.t2_ecid}",
                self.ethernet_mac, self.wifi_mac, self.bluetooth_mac}

    def to_dict(self) -> dict:
        out = asdict(self)
        out["t2_ecid"] = f"0x{self.t2_ecid:016X}"
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> Identity:
        try:
            manufactured = raw["manufactured"]
            if isinstance(manufactured, str):
                manufactured = date.fromisoformat(manufactured)
            ident = cls(serial_number=str(raw["serial_number"]),
                        hardware_uuid=str(uuid.UUID(raw["hardware_uuid"])).upper(),
                        t2_ecid=int(raw["t2_ecid"], 16), ethernet_mac=str(raw["ethernet_mac"]),
                        wifi_mac=str(raw["wifi_mac"]), bluetooth_mac=str(raw["bluetooth_mac"]),
                        manufactured=manufactured)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"invalid identity ({exc!r})") from None
        if not is_valid_serial(ident.serial_number):
            raise UserError(f"invalid serial number {ident.serial_number!r}")
        for name in ("ethernet_mac", "wifi_mac", "bluetooth_mac"):
            if not MAC.fullmatch(getattr(ident, name)):
                raise UserError(f"invalid {name.replace('_', ' ')} {getattr(ident, name)!r}")
        return ident

    @property
    def ethernet_address(self) -> bytes:
        """The 10GbE port's MAC address as its six bytes."""
        return bytes.fromhex(self.ethernet_mac.replace(":", ""))


def half_year_code(day: date) -> str:
    return HALF_YEAR_CODES[((day.year - 2010) % 10) * 2 + (day.month > 6)]


def week_code(day: date) -> str:
    half_start = date(day.year, 7 if day.month > 6 else 1, 1)
    return WEEK_CODES[min((day - half_start).days // 7, len(WEEK_CODES) - 1)]


def model_codes() -> list[str]:
    return data.SERIAL_MODEL_CODES.value.split()


def is_valid_serial(serial: str) -> bool:
    return (len(serial) == 12 and serial[:3] == data.SERIAL_PLANT.value
            and serial[3] in HALF_YEAR_CODES and serial[4] in WEEK_CODES
            and all(c in UNIT_CODES for c in serial[5:8]) and serial[8:] in model_codes())


def serial_number(manufactured: date) -> str:
    unit = "".join(secrets.choice(UNIT_CODES) for _ in range(3))
    return (data.SERIAL_PLANT.value + half_year_code(manufactured) + week_code(manufactured)
            + unit + secrets.choice(model_codes()))


def _random_day(first: date, last: date) -> date:
    return first + timedelta(days=secrets.randbelow((last - first).days + 1))


def manufacture_date(config: Configuration) -> date:
    if config.as_of is not None:
        # Built in the eight weeks before it was bought, but not before production began.
        return _random_day(max(data.RELEASED - timedelta(weeks=4), config.as_of - timedelta(weeks=8)),
                           config.as_of)
    window = config.sale_window() or data.WHOLE_LIFE
    return _random_day(window.offered_from, window.offered_until - timedelta(days=1))


def apple_mac() -> str:
    oui = secrets.choice(data.APPLE_OUIS.value.split())
    return oui + "".join(f":{b:02X}" for b in secrets.token_bytes(3))


def new_identity(config: Configuration, taken: set[str] = frozenset()) -> Identity:
    """A fresh random identity that shares no serial, UUID, ECID or MAC with `taken`."""
    for _ in range(1000):
        manufactured = manufacture_date(config)
        ident = Identity(
            serial_number=serial_number(manufactured),
            hardware_uuid=str(uuid.uuid4()).upper(),
            t2_ecid=secrets.randbits(64) | 1,  # never zero
            ethernet_mac=apple_mac(), wifi_mac=apple_mac(), bluetooth_mac=apple_mac(),
            manufactured=manufactured,
        )
        macs = {ident.ethernet_mac, ident.wifi_mac, ident.bluetooth_mac}
        if len(macs) == 3 and not (ident.unique_keys() & taken):
            return ident
    raise UserError("could not draw a unique machine identity")  # 1000 collisions: not random
