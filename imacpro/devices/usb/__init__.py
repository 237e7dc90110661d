"""USB: the platform's xHCI controller (xhci/) and the devices on its ports.

device.py is the small framework every device model is written on (descriptors, the
standard requests of endpoint 0, bulk and interrupt endpoints); a host controller talks to a
device only through `UsbDevice`'s methods.
"""
