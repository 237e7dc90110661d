"""Wi-Fi: the iMac Pro's Broadcom BCM4364 card as brcmfmac probes it (bcm4364.py)."""
