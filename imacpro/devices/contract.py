"""The one contract every device model keeps, and the plain-data state it saves.

    class Device(Protocol):
        read(offset, size) -> int          a guest read at `offset` from the device's base
        write(offset, size, value)         a guest write
        reset()                            power-on state (a reboot resets the board in place)
        save() -> dict                     the device's state as plain data
        load(state)                        the state back, timers re-armed at their deadlines

Plain data is what a state file can hold without code: None, bool, int, str, bytes, and lists
and str-keyed dicts of them. A device's wiring (its clock, IRQ lines, buses, callbacks) is not
state: `load` keeps the wiring the builder gave it and takes only the values. Timers are owned
handles (clock.Timer); a device saves each one's `deadline_ns` and re-arms it with `arm_from`.

`load` checks what it is given: a missing field or a value of another type raises StateError,
and the device is left as it was (state files are authenticated before they are read, but a
format written by another version must end in an error line, never in a half-loaded device).
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Protocol, runtime_checkable


class StateError(ValueError):
    """A saved state that does not fit the device it is loaded into."""


@runtime_checkable
class Device(Protocol):
    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...

    def reset(self) -> None: ...

    def save(self) -> dict: ...

    def load(self, state: dict) -> None: ...


PLAIN_SCALARS = (type(None), bool, int, str, bytes)


def is_plain(value: Any) -> bool:
    """True if `value` is plain data (see the module docstring)."""
    if isinstance(value, PLAIN_SCALARS):
        return True
    if isinstance(value, list):
        return all(is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and is_plain(item) for key, item in value.items())
    return False


def plain(value: Any) -> Any:
    """A plain-data copy: tuples become lists, bytearrays bytes, int-keyed dicts str-keyed."""
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, PLAIN_SCALARS):
        return value
    raise TypeError(f"not plain data: {type(value).__name__}")


def save_fields(obj: object, names: Iterable[str]) -> dict:
    """{name: plain copy of obj.name} for each name."""
    return {name: plain(getattr(obj, name)) for name in names}


def _same_shape(current: Any, saved: Any) -> bool:
    if isinstance(current, bool) or isinstance(saved, bool):
        return isinstance(current, bool) and isinstance(saved, bool)
    if isinstance(current, int):
        return isinstance(saved, int)
    if isinstance(current, (bytes, bytearray)):
        return isinstance(saved, bytes) and len(saved) == len(current)
    if isinstance(current, (list, tuple)):
        return isinstance(saved, list) and len(saved) == len(current)
    if isinstance(current, dict):
        return isinstance(saved, dict) and saved.keys() == {str(k) for k in current}
    return current is None or saved is None or type(saved) is type(current)


def load_fields(obj: object, state: dict, names: Iterable[str], *,
                optional_none: Iterable[str] = ()) -> None:
    """Set obj.name from state[name] for each name, after checking every one: a value must be
    of the field's current kind (bytes and lists of its length; a field named in
    `optional_none` may also be or become None). Raises StateError before changing anything."""
    names = list(names)
    nullable = set(optional_none)
    if not isinstance(state, dict):
        raise StateError(f"{type(obj).__name__}: state is not a mapping")
    for name in names:
        if name not in state:
            raise StateError(f"{type(obj).__name__}: saved state has no {name!r}")
        current, saved = getattr(obj, name), state[name]
        if not is_plain(saved):
            raise StateError(f"{type(obj).__name__}.{name}: not plain data")
        if name in nullable and (current is None or saved is None):
            continue
        if not _same_shape(current, saved):
            raise StateError(f"{type(obj).__name__}.{name}: saved {type(saved).__name__} "
                             f"does not fit {type(current).__name__}")
    for name in names:
        # A copy: the device changes its lists and dicts in place, and must not change the
        # caller's state with them (nor another device loaded from the same state).
        current, saved = getattr(obj, name), copy.deepcopy(state[name])
        if isinstance(current, bytearray):
            current[:] = saved
        elif isinstance(current, tuple):
            setattr(obj, name, tuple(saved))
        elif isinstance(current, dict) and current and not isinstance(next(iter(current)), str):
            key_type = type(next(iter(current)))
            setattr(obj, name, {key_type(k): v for k, v in saved.items()})
        else:
            setattr(obj, name, saved)


def deadline(value: Any, where: str) -> int | None:
    """A saved timer deadline: None or a non-negative int."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise StateError(f"{where}: bad timer deadline {value!r}")
