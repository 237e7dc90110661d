"""A Configuration: one iMac Pro as Apple sold it, validated against the catalog and a date.

Rules (each with the catalog's sources):
- every option must exist; 512 GB memory only with third-party modules (an explicit opt-in);
- with an "as of" date, every Apple option must have been on sale that day, the machine itself
  must have been on sale (2017-12-14 until 2021-03-19), and from 2021-03-05 only the stock
  configuration was sold ("no longer custom configurable");
- without a date, some day must have offered the whole combination;
- options left out default to the stock configuration on sale that day (no date: today, which
  after the machine was delisted means the last day it was sold).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from imacpro.catalog import data
from imacpro.errors import UserError


@dataclass(frozen=True)
class Configuration:
    cpu: int
    memory: int
    graphics: str
    storage: str
    as_of: date | None = None
    third_party_memory: bool = False
    pointer: str = "mouse"

    @property
    def processor(self) -> data.Processor:
        return data.PROCESSORS[self.cpu]

    @property
    def memory_option(self) -> data.MemoryOption:
        return data.MEMORY[self.memory]

    @property
    def graphics_option(self) -> data.GraphicsOption:
        return data.GRAPHICS[self.graphics]

    @property
    def storage_option(self) -> data.StorageOption:
        return data.STORAGE[self.storage]

    @property
    def pointer_option(self) -> data.PointerOption:
        return data.POINTERS[self.pointer]

    @property
    def logical_cpus(self) -> int:
        return self.processor.threads

    def is_stock_on(self, day: date) -> bool:
        base = base_configuration(day)
        return base is not None and (self.cpu, self.memory, self.graphics, self.storage) == (
            base.cpu, base.memory, base.graphics, base.storage)

    def sale_window(self) -> data.Window | None:
        """The days on which Apple sold exactly this configuration, or None (third-party memory)."""
        if self.third_party_memory:
            return None
        return _combined_window(self)

    def to_dict(self) -> dict:
        out = {"cpu": self.cpu, "memory": self.memory, "graphics": self.graphics,
               "storage": self.storage, "third_party_memory": self.third_party_memory,
               "pointer": self.pointer}
        if self.as_of is not None:
            out["as_of"] = self.as_of
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> Configuration:
        """Rebuild and re-validate a stored configuration; raises UserError if it is not valid."""
        try:
            as_of = raw.get("as_of")
            if isinstance(as_of, str):
                as_of = date.fromisoformat(as_of)
            return configure(cpu=raw["cpu"], memory=raw["memory"], graphics=raw["graphics"],
                             storage=raw["storage"], as_of=as_of,
                             third_party_memory=bool(raw.get("third_party_memory", False)),
                             pointer=raw.get("pointer", "mouse"))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"invalid configuration ({exc!r})") from None


def last_day_sold() -> date:
    return data.DELISTED - timedelta(days=1)


def base_configuration(day: date) -> data.BaseConfiguration | None:
    for base in data.BASE_CONFIGURATIONS:
        if base.window.contains(day):
            return base
    return None


def configure(cpu: int | None = None, memory: int | None = None, graphics: str | None = None,
              storage: str | None = None, as_of: date | None = None,
              third_party_memory: bool = False, today: date | None = None,
              pointer: str | None = None) -> Configuration:
    """Build a validated Configuration; unspecified options take the stock configuration's."""
    day = as_of if as_of is not None else min(today or date.today(), last_day_sold())
    _check_machine_on_sale(as_of)
    base = base_configuration(max(day, data.RELEASED))
    config = Configuration(
        cpu=base.cpu if cpu is None else cpu,
        memory=base.memory if memory is None else memory,
        graphics=base.graphics if graphics is None else graphics,
        storage=base.storage if storage is None else storage,
        as_of=as_of,
        third_party_memory=third_party_memory,
        pointer="mouse" if pointer is None else pointer,
    )
    _check_options_exist(config)
    if as_of is not None:
        _check_on_sale(config, as_of)
    else:
        _check_sold_some_day(config)
    return config


def _check_machine_on_sale(as_of: date | None) -> None:
    if as_of is None:
        return
    if as_of < data.RELEASED:
        raise UserError(
            f"the iMac Pro went on sale on {data.RELEASED} (announced "
            f"{data.MODEL['introduced'].value}); nothing was sold on {as_of}")
    if as_of >= data.DELISTED:
        raise UserError(f"the iMac Pro was delisted on {data.DELISTED} (last sold "
                        f"{last_day_sold()}); nothing was sold on {as_of}")


def _choices(keys) -> str:
    keys = [str(k) for k in keys]
    return ", ".join(keys[:-1]) + " or " + keys[-1]


def _check_options_exist(config: Configuration) -> None:
    if config.cpu not in data.PROCESSORS:
        raise UserError(f"no {config.cpu}-core iMac Pro was made: choose "
                        f"{_choices(data.PROCESSORS)} cores")
    if config.memory not in data.MEMORY:
        raise UserError(f"no {config.memory} GB memory option: choose "
                        f"{_choices(data.MEMORY)} GB")
    if config.graphics not in data.GRAPHICS:
        raise UserError(f"unknown graphics '{config.graphics}': choose "
                        f"{_choices(data.GRAPHICS)}")
    if config.storage not in data.STORAGE:
        raise UserError(f"unknown storage '{config.storage}': choose {_choices(data.STORAGE)}")
    if config.pointer not in data.POINTERS:
        raise UserError(f"unknown pointing device '{config.pointer}': choose "
                        f"{_choices(data.POINTERS)}")
    if not config.memory_option.apple and not config.third_party_memory:
        apple_max = max(m.key for m in data.MEMORY.values() if m.apple)
        raise UserError(f"{config.memory} GB needs third-party memory modules (Apple sold up to "
                        f"{apple_max} GB): pass --third-party-memory")


def _dated_options(config: Configuration) -> list[tuple[str, data.Window]]:
    """(description, sale window) of each option whose dates matter for this configuration."""
    p = config.processor
    options = [
        (f"the {p.cores}-core Xeon {p.name}", p.window),
        (config.graphics_option.name, config.graphics_option.window),
        (f"{config.storage_option.capacity_tb} TB storage", config.storage_option.window),
    ]
    if not config.third_party_memory:
        options.append((f"{config.memory} GB memory", config.memory_option.window))
    return options


def _stock_only_message(day: date) -> str:
    base = base_configuration(day)
    return (f"from {data.NO_LONGER_CONFIGURABLE} the iMac Pro was no longer configurable: only "
            f"the stock {base.cpu}-core, {base.memory} GB, {data.GRAPHICS[base.graphics].name}, "
            f"{base.storage} was sold until {data.DELISTED}; not on sale on {day}")


def _check_on_sale(config: Configuration, day: date) -> None:
    for what, window in _dated_options(config):
        if not window.contains(day):
            raise UserError(f"{what} was offered {window.describe()}; not on sale on {day}")
    if day >= data.NO_LONGER_CONFIGURABLE and not config.is_stock_on(day):
        raise UserError(_stock_only_message(day))


def _combined_window(config: Configuration) -> data.Window | None:
    windows = [w for _, w in _dated_options(config)]
    start = max(w.offered_from for w in windows)
    ends = [w.offered_until for w in windows if w.offered_until is not None]
    end = min(ends) if ends else None
    if end is not None and start >= end:
        return None
    # Custom configurations stopped on 2021-03-05; the stock one was sold until delisting.
    if (end is None or end > data.NO_LONGER_CONFIGURABLE) and not config.is_stock_on(
            data.NO_LONGER_CONFIGURABLE):
        end = data.NO_LONGER_CONFIGURABLE
        if start >= end:
            return None
    return data.Window(start, end)


def _check_sold_some_day(config: Configuration) -> None:
    if _combined_window(config) is None:
        offered = "; ".join(f"{what} {window.describe()}"
                            for what, window in _dated_options(config))
        raise UserError(f"Apple never sold this combination on one day: {offered}")
