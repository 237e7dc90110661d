"""passt as the machine's network: started, spoken to in QEMU's stream protocol, stopped."""

import random
import select
import socket
import struct

import pytest

from imacpro.errors import UserError
from imacpro.net.passt import GATEWAY, GUEST_ADDRESS, Forward, Passt

GUEST_MAC = bytes.fromhex("a483e7123456")


def dhcp_discover(xid: int) -> bytes:
    """A DHCPDISCOVER from GUEST_MAC, as a whole Ethernet frame (RFC 2131)."""
    bootp = struct.pack(">BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, bytes(4),
                        bytes(4), bytes(4), bytes(4), GUEST_MAC.ljust(16, b"\0"), bytes(64),
                        bytes(128))
    options = bytes([99, 130, 83, 99, 53, 1, 1, 55, 3, 1, 3, 6, 255])
    udp_payload = bootp + options
    udp = struct.pack(">HHHH", 68, 67, 8 + len(udp_payload), 0) + udp_payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes(4),
                     b"\xff" * 4)
    checksum = _checksum(ip)
    ip = ip[:10] + struct.pack(">H", checksum) + ip[12:]
    return b"\xff" * 6 + GUEST_MAC + b"\x08\x00" + ip + udp


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frames_until(net: Passt, want, timeout=10.0):
    seen = []
    net.on_frame = seen.append
    end = timeout
    while not any(want(f) for f in seen):
        ready, _, _ = select.select([net.reader], [], [], end)
        assert ready, f"nothing from passt; got {len(seen)} frames"
        assert net.deliver()
    return [f for f in seen if want(f)][0]


def test_dhcp_gives_the_guest_its_address_and_the_gateway():
    net = Passt()
    net.start()
    try:
        xid = random.getrandbits(32)
        net.send(dhcp_discover(xid))
        offer = frames_until(net, lambda f: len(f) > 282 and f[23] == 17
                             and struct.unpack_from(">I", f, 46)[0] == xid)
        yiaddr = socket.inet_ntoa(offer[58:62])
        assert yiaddr == GUEST_ADDRESS
        options = offer[282:]
        router = options[options.index(bytes([3, 4])) + 2:][:4]
        assert socket.inet_ntoa(router) == GATEWAY
    finally:
        net.close()


def test_a_forwarded_port_listens_on_loopback_only_and_a_busy_one_is_an_error():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        net = Passt((Forward(busy, 22),))
        with pytest.raises(UserError, match="passt.*did not start"):
            net.start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    net = Passt((Forward(free, 22),))
    net.start()
    try:
        with socket.create_connection(("127.0.0.1", free), timeout=5):
            pass                                     # passt accepted it for the guest
    finally:
        net.close()


def test_closing_ends_passt_and_reading_after_says_gone():
    net = Passt()
    net.start()
    process = net._process
    net.close()
    assert process.poll() is not None


@pytest.mark.parametrize("text", ["tcp:0:22", "udp:80:80", "tcp:80", "tcp:65536:1", "tcp:a:b"])
def test_bad_forwards_are_one_line_errors(text):
    with pytest.raises(UserError, match="tcp:HOSTPORT:GUESTPORT"):
        Forward.parse(text)
    assert Forward.parse("tcp:2222:22") == Forward(2222, 22)
