"""Checks that `load()` needs beyond contract.load_fields.

load_fields checks each value's kind against the field's current one. It does not check
ranges, the items of lists, lists whose length varies (a FIFO), or the type of a field that is
None now. It also works on one object at a time, while a device made of parts must check all
of them before it changes any. These helpers read a value out of a saved state and check it,
raising contract.StateError and changing nothing, so a `load()` can check everything first
and then apply it.
"""

from __future__ import annotations

from typing import Any, Iterable

from imacpro.devices.contract import StateError, deadline, load_fields

U8, U16, U32, U64 = 0xFF, 0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF


def mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise StateError(f"{where}: saved state is not a mapping")
    return value


def field(state: dict, name: str, where: str) -> Any:
    if name not in mapping(state, where):
        raise StateError(f"{where}: saved state has no {name!r}")
    return state[name]


def integer(value: Any, where: str, low: int | None = 0, high: int | None = None, *,
            none: bool = False) -> int | None:
    """An int (not a bool) in [low, high] (an open end where None); None too if `none`."""
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise StateError(f"{where}: {type(value).__name__} where an integer belongs")
    if (low is not None and value < low) or (high is not None and value > high):
        raise StateError(f"{where}: {value} is out of range")
    return value


def int_field(state: dict, name: str, where: str, low: int | None = 0,
              high: int | None = None, *, none: bool = False) -> int | None:
    return integer(field(state, name, where), f"{where}.{name}", low, high, none=none)


def bool_field(state: dict, name: str, where: str) -> bool:
    value = field(state, name, where)
    if not isinstance(value, bool):
        raise StateError(f"{where}.{name}: {type(value).__name__} where a bool belongs")
    return value


def bytes_field(state: dict, name: str, where: str, length: int) -> bytes:
    value = field(state, name, where)
    if not isinstance(value, bytes) or len(value) != length:
        raise StateError(f"{where}.{name}: not {length} bytes")
    return value


def list_field(state: dict, name: str, where: str, *, length: int | None = None,
               max_length: int | None = None) -> list:
    value = field(state, name, where)
    if not isinstance(value, list):
        raise StateError(f"{where}.{name}: {type(value).__name__} where a list belongs")
    if length is not None and len(value) != length:
        raise StateError(f"{where}.{name}: {len(value)} items where {length} belong")
    if max_length is not None and len(value) > max_length:
        raise StateError(f"{where}.{name}: {len(value)} items, more than {max_length}")
    return value


def int_list(state: dict, name: str, where: str, low: int = 0, high: int | None = None, *,
             length: int | None = None, max_length: int | None = None) -> list[int]:
    items = list_field(state, name, where, length=length, max_length=max_length)
    return [integer(item, f"{where}.{name}[{n}]", low, high) for n, item in enumerate(items)]


def ranges(state: dict, where: str, spec: dict[str, tuple[int | None, int | None]], *,
           none: Iterable[str] = ()) -> None:
    """Check the int fields of `spec` (name: (low, high)); those in `none` may be None."""
    nullable = set(none)
    for name, (low, high) in spec.items():
        int_field(state, name, where, low, high, none=name in nullable)


def timer_field(state: dict, name: str, where: str) -> int | None:
    """A saved timer deadline (contract.deadline: None or a non-negative int)."""
    return deadline(field(state, name, where), f"{where}.{name}")


def staged(part: object, state: Any, names: list[str], where: str, *,
           optional_none: Iterable[str] = ()) -> object:
    """load_fields into `part`, a scratch object of a part's class, so a device can check
    every part before it changes any; the caller copies the fields over afterwards."""
    load_fields(part, mapping(state, where), names, optional_none=optional_none)
    return part


def copy_fields(source: object, target: object, names: Iterable[str]) -> None:
    for name in names:
        setattr(target, name, getattr(source, name))
