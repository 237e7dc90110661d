"""The cable between the AQC107 and its backend (net/link.py): a real DHCP exchange with passt
through the NIC's rings, flow control both ways, and passt going away."""

import socket
import struct

import pytest

from imacpro.host_events import HostEvents
from imacpro.net import link as net_link
from imacpro.net.link import Network, NetworkLink
from imacpro.net.passt import GATEWAY, GUEST_ADDRESS, OUTBOX_LIMIT, Forward, Passt
from imacpro.errors import UserError

from test_aqc107 import MAC, RING_SIZE, RX_BUFFERS, RX_RING, Driver
from tests.net.test_passt import dhcp_discover


@pytest.fixture
def events():
    hub = HostEvents()
    yield hub
    hub.close()


def opened_driver():
    d = Driver()
    assert d.probe() == MAC
    d.open()
    return d


def serve(events, until, rounds=500, wait=0.02):
    for _ in range(rounds):
        events.poll(wait)
        if until():
            return True
    return False


def test_a_dhcp_offer_from_passt_arrives_in_the_rx_ring(events):
    d = opened_driver()
    backend = Passt()
    backend.start()
    link = NetworkLink(backend, events)
    try:
        link.plug(d.nic)
        assert d.reg(0x370) == 0x800                       # 10G with the cable in
        d.transmit([dhcp_discover(0x1234_5678)])
        offers = []

        def offered():
            for frame, *_ in d.received():
                if len(frame) > 282 and frame[23] == 17 and \
                        struct.unpack_from(">I", frame, 46)[0] == 0x1234_5678:
                    offers.append(frame)
            return bool(offers)

        assert serve(events, offered), "no DHCP offer reached the guest's ring"
        assert socket.inet_ntoa(offers[0][58:62]) == GUEST_ADDRESS
        options = offers[0][282:]
        assert socket.inet_ntoa(options[options.index(bytes([3, 4])) + 2:][:4]) == GATEWAY
    finally:
        link.close()


def peer_link(events, d):
    """A link whose backend's other end is the test's: it plays passt."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    backend = Passt()
    backend.adopt(ours)
    link = NetworkLink(backend, events)
    link.plug(d.nic)
    return link, theirs


def frame(n: int) -> bytes:
    return b"\xff" * 6 + bytes.fromhex("02fc00000001") + b"\x08\x00" + n.to_bytes(4, "big") * 20


def test_with_the_rx_ring_full_the_rest_waits_in_passt_and_nothing_is_dropped(events):
    d = opened_driver()
    last = RING_SIZE - 1                 # the one descriptor open() leaves for the tail
    d.ram.write(RX_RING + 16 * last, struct.pack("<QQ", RX_BUFFERS + 2048 * last, 0))
    link, peer = peer_link(events, d)
    count = 2000                         # far more than the ring and the NIC's queue hold
    peer.sendall(b"".join(struct.pack(">I", len(frame(i))) + frame(i) for i in range(count)))
    assert serve(events, lambda: not link.reading, rounds=100)
    assert not d.nic.wants_frames()      # the NIC is full, and the rest stays with the peer
    got = []
    for _ in range(20_000):
        if len(got) == count:
            break
        events.poll(0.001)
        got += [f for f, *_ in d.received()]
        d.set(0x5B10, (d.rx_next - 1) % RING_SIZE)     # the driver gives its buffers back
    assert [int.from_bytes(f[14:18], "big") for f in got] == list(range(count))
    assert d.nic.counters["rx_drops"] == 0
    link.close()
    peer.close()


def test_a_full_outbox_holds_the_tx_ring_until_the_socket_drains(events):
    d = opened_driver()
    link, peer = peer_link(events, d)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    big = frame(0) + bytes(8000)
    sent = 0
    while link.backend.can_send():                     # nobody reads the peer: it fills
        d.transmit([big[:4000], big[4000:]])
        sent += 1
        assert sent < 10_000
    assert link.writing and link.backend.backlog >= OUTBOX_LIMIT
    d.transmit([frame(1)])
    assert link.backend.frames_out == sent             # held in the ring, not queued
    peer.setblocking(False)
    received = bytearray()
    while link.backend.frames_out < sent + 1 or link.writing:
        events.poll(0.01)
        try:
            received += peer.recv(1 << 20)
        except BlockingIOError:
            pass
    assert link.backend.frames_out == sent + 1          # the waiting frame went once drained
    link.close()
    peer.close()


def test_passt_going_away_pulls_the_cable(events):
    d = opened_driver()
    link, peer = peer_link(events, d)
    assert d.nic.link_up
    peer.close()
    assert serve(events, lambda: not d.nic.link_up, rounds=50)
    assert d.reg(0x370) == 0
    d.transmit([frame(2)])                               # dropped, as with no link
    assert not link.connected
    link.close()


def test_no_network_is_no_backend_and_a_missing_passt_a_notice_unless_asked_for(
        events, monkeypatch):
    assert net_link.start(Network("none"), events, print) is None
    monkeypatch.setenv("PATH", "/nonexistent")
    notices = []
    assert net_link.start(Network(), events, notices.append) is None
    assert "passt is not installed" in notices[0]
    with pytest.raises(UserError, match="passt is not installed"):
        net_link.start(Network("user", (Forward(2222, 22),), required=True), events, print)


def test_after_a_resume_old_connections_are_reset_and_new_ones_pass(events):
    from tests.net.test_stale import GUEST_MAC, segment
    from imacpro.net.stale import ACK, RST, SYN
    d = opened_driver()
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    backend = Passt()
    backend.adopt(ours)
    link = NetworkLink(backend, events)
    link.plug(d.nic, resumed=True)
    d.transmit([segment(ACK, payload=b"after the resume")])
    (reply, *_), = d.received()
    assert reply[:6] == GUEST_MAC and reply[14 + 20 + 13] & 0x3F == RST
    assert backend.frames_out == 0
    d.transmit([segment(SYN, sport=42000)])
    d.transmit([segment(ACK, sport=42000, payload=b"new")])
    assert backend.frames_out == 2 and not d.received()
    link.close()
    peer.close()
