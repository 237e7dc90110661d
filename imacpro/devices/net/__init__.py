"""Network devices: the AQC107 10 Gigabit Ethernet controller (aqc107.py) and the frame work it
does in hardware (offload.py)."""
