"""The machine's network: passt.py, user-mode networking without root; link.py, the cable
between the 10GbE port and it."""
