"""After a resume, the guest's TCP connections from before get RFC 793's reset; new ones pass."""

import random
import struct

from imacpro.devices.net import offload
from imacpro.net import stale
from imacpro.net.stale import ACK, FIN, RST, SYN, StaleFlows

GUEST_MAC, GATEWAY_MAC = bytes.fromhex("000393874171"), bytes.fromhex("9a55c24b0e01")
GUEST, HOST = bytes([10, 0, 2, 15]), bytes([10, 0, 2, 2])


def segment(flags, seq=1000, ack=5000, payload=b"", sport=40000, dport=8080, src=GUEST,
            dst=HOST):
    tcp = struct.pack(">HHIIHHHH", sport, dport, seq, ack, 5 << 12 | flags, 65535, 0, 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 1, 0x4000, 64, 6, 0, src,
                     dst)
    frame = bytearray(GATEWAY_MAC + GUEST_MAC + b"\x08\x00" + ip + tcp + payload)
    offload.fill_checksums(frame, ip=True, l4=True)
    return bytes(frame)


def fields(reply):
    h = offload.parse(reply)
    assert offload.ipv4_header_good(reply, h) and offload.l4_checksum_good(reply, h)
    sport, dport, seq, ack, offset_flags = struct.unpack_from(">HHIIH", reply, h.l4)
    return (reply[:6], reply[6:12], reply[h.l3 + 12:h.l3 + 16], reply[h.l3 + 16:h.l3 + 20],
            sport, dport, seq, ack, offset_flags & 0x3F)


def test_data_on_a_connection_from_before_gets_a_reset_from_its_peer():
    flows = StaleFlows()
    reply = flows.reset_for(segment(ACK | 0x08, seq=1000, ack=5000, payload=b"two\n"))
    assert fields(reply) == (GUEST_MAC, GATEWAY_MAC, HOST, GUEST, 8080, 40000, 5000, 0, RST)
    assert flows.resets == 1


def test_a_segment_without_ack_is_answered_with_rst_ack_past_its_data_and_fin():
    reply = StaleFlows().reset_for(segment(FIN, seq=0xFFFF_FFFE, payload=b"ab"))
    *_, seq, ack, flags = fields(reply)
    assert (seq, ack, flags) == (0, 1, RST | ACK)                      # wraps


def test_connections_that_start_after_the_resume_pass_both_ways():
    flows = StaleFlows()
    assert flows.reset_for(segment(SYN)) is None                       # the guest connects
    assert flows.reset_for(segment(ACK, payload=b"x")) is None
    # a forwarded connection: the host's SYN reaches the guest, which answers SYN+ACK
    assert flows.reset_for(segment(SYN | ACK, sport=22, dport=51000)) is None
    assert flows.reset_for(segment(ACK, sport=22, dport=51000, payload=b"y")) is None
    assert flows.reset_for(segment(RST | ACK)) is None                 # the guest resets it
    assert flows.reset_for(segment(ACK)) is not None                   # and it is gone


def test_rsts_udp_and_anything_unparsable_pass_untouched():
    flows = StaleFlows()
    assert flows.reset_for(segment(RST)) is None
    udp = bytearray(segment(ACK))
    udp[14 + 9] = 17
    assert flows.reset_for(bytes(udp)) is None
    rng = random.Random(5)
    for _ in range(2000):
        junk = bytearray(segment(ACK, payload=bytes(rng.randrange(256) for _ in range(8))))
        for _ in range(rng.randrange(1, 6)):
            junk[rng.randrange(len(junk))] = rng.randrange(256)
        junk = junk[:rng.randrange(len(junk) + 1)]
        reply = flows.reset_for(bytes(junk))                          # never raises
        assert reply is None or len(reply) == 54


def test_past_the_flow_limit_it_stops_judging_and_forgets(monkeypatch):
    monkeypatch.setattr(stale, "FLOW_LIMIT", 3)
    flows = StaleFlows()
    for port in range(4):
        flows.reset_for(segment(SYN, sport=41000 + port))
    assert not flows.judging and not flows.started
    assert flows.reset_for(segment(ACK)) is None
