"""The PCH's own PCI functions, one device model a file."""
