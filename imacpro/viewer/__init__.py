"""Sitting at the machine from the host: the RFB (VNC) protocol (rfb.py)."""
