"""Device models, one per file.

Every device follows the same shape (see DESIGN.md):
- the class docstring holds its register map and the specification section it follows;
- `read(offset, size) -> int` and `write(offset, size, value)` where `offset` is relative to the
  device's base on its bus (port I/O or MMIO) and `size` is 1, 2, 4 or 8 bytes;
- `reset()` returns it to its power-on state; its state is plain data (ints, lists, bytes);
- the guest is hostile: no guest access ever raises; bad ones are logged and ignored.
"""
