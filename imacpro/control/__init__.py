"""A running machine, from outside: the control socket in its bundle (docs/CONTROL.md).

    protocol.py   the messages: JSON lines with a version field, their limits
    server.py     served by the machine's process from its run loop
    client.py     what `imacpro status|exec|console|stop` use
"""
