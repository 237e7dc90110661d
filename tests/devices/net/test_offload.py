"""The NIC's frame offloads against a plain RFC 1071 checksum written out word by word."""

import random
import struct

import pytest

from imacpro.devices.net import offload

MAC_A, MAC_B = bytes.fromhex("a483e7123456"), bytes.fromhex("02fc00000001")


def reference_checksum(data: bytes, start: int = 0) -> int:
    if len(data) % 2:
        data += b"\0"
    total = start
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(protocol: int, payload: bytes, ident: int = 7) -> bytes:
    header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64,
                         protocol, 0, bytes([10, 0, 2, 15]), bytes([10, 0, 2, 2]))
    return header + payload


def ipv6(next_header: int, payload: bytes) -> bytes:
    return struct.pack(">IHBB16s16s", 6 << 28, len(payload), next_header, 64,
                       bytes(15) + b"\1", bytes.fromhex("fe80") + bytes(13) + b"\2") + payload


def ethernet(ethertype: int, body: bytes, vlan: int | None = None) -> bytes:
    tag = struct.pack(">HH", 0x8100, vlan) if vlan is not None else b""
    return MAC_B + MAC_A + tag + struct.pack(">H", ethertype) + body


def tcp(payload: bytes, seq: int = 1000, flags: int = 0x018) -> bytes:
    return struct.pack(">HHIIHHHH", 40000, 80, seq, 1, 5 << 12 | flags, 65535, 0, 0) + payload


def udp(payload: bytes) -> bytes:
    return struct.pack(">HHHH", 5353, 53, 8 + len(payload), 0) + payload


def pseudo(version: int, packet: bytes, protocol: int) -> int:
    if version == 4:
        addresses, length = packet[12:20], len(packet) - 20
    else:
        addresses, length = packet[8:40], len(packet) - 40
    total = protocol + length
    for i in range(0, len(addresses), 2):
        total += addresses[i] << 8 | addresses[i + 1]
    return total


@pytest.mark.parametrize("length", [0, 1, 2, 3, 1499, 9000])
def test_the_sum_is_rfc_1071s(length):
    data = random.Random(length).randbytes(length)
    assert offload.checksum(data) == reference_checksum(data)
    assert offload.checksum(data, 0x1234F) == reference_checksum(data, 0x1234F)


@pytest.mark.parametrize("version,proto", [(4, 6), (4, 17), (6, 6), (6, 17)])
def test_tx_checksums_are_filled_in(version, proto):
    body = (tcp if proto == 6 else udp)(random.Random(1).randbytes(333))
    packet = (ipv4 if version == 4 else ipv6)(proto, body)
    frame = bytearray(ethernet(0x0800 if version == 4 else 0x86DD, packet))
    offload.fill_checksums(frame, ip=True, l4=True)
    l3 = frame[14:]
    if version == 4:
        assert reference_checksum(bytes(l3[:20])) == 0
        segment = bytes(l3[20:])
    else:
        segment = bytes(l3[40:])
    assert reference_checksum(segment, pseudo(version, bytes(l3), proto)) == 0
    h = offload.parse(frame)
    assert offload.l4_checksum_good(frame, h) is True


def test_a_vlan_tagged_frame_and_a_bad_one():
    frame = bytearray(ethernet(0x0800, ipv4(17, udp(b"x" * 10)), vlan=5))
    offload.fill_checksums(frame, ip=True, l4=True)
    h = offload.parse(frame)
    assert h.vlan and h.l3 == 18 and offload.l4_checksum_good(frame, h)
    frame[-1] ^= 1
    assert offload.l4_checksum_good(frame, offload.parse(frame)) is False
    assert offload.strip_vlan(frame)[1] == 5
    untagged, tci = offload.strip_vlan(frame)
    assert offload.insert_vlan(untagged, tci) == bytes(frame)


def test_garbage_is_left_alone():
    rng = random.Random(5)
    for _ in range(500):
        frame = bytearray(rng.randbytes(rng.randrange(0, 200)))
        if len(frame) > 14 and rng.random() < 0.5:
            frame[12:14] = rng.choice([b"\x08\x00", b"\x86\xdd", b"\x81\x00"])
            if len(frame) > 14:
                frame[14] = rng.choice([0x45, 0x4F, 0x60, 0x41])
        before = bytes(frame)
        offload.fill_checksums(frame, ip=True, l4=True)
        assert len(frame) == len(before)
        h = offload.parse(frame)
        if h is not None and h.version:
            offload.l4_checksum_good(frame, h)
        offload.segment(frame, 14, 20, 20, 100, True)


@pytest.mark.parametrize("version", [4, 6])
def test_tcp_segmentation(version):
    payload = random.Random(2).randbytes(10000)
    packet = (ipv4 if version == 4 else ipv6)(6, tcp(payload, seq=0xFFFFF000, flags=0x019))
    frame = ethernet(0x0800 if version == 4 else 0x86DD, packet)
    l3 = 20 if version == 4 else 40
    segments = offload.segment(frame, 14, l3, 20, 1448, True, (0xFF6, 0xFF6, 0xF7F))
    assert len(segments) == 7
    assert b"".join(bytes(s[14 + l3 + 20:]) for s in segments) == payload
    for i, s in enumerate(segments):
        h = offload.parse(s)
        assert h.end == len(s) and offload.l4_checksum_good(s, h)
        assert struct.unpack_from(">I", s, h.l4 + 4)[0] == (0xFFFFF000 + 1448 * i) & 0xFFFFFFFF
        flags = s[h.l4 + 13]
        assert bool(flags & 0x01) == (i == len(segments) - 1)          # FIN on the last only
        assert bool(flags & 0x08) == (i == len(segments) - 1)          # PSH too
        if version == 4:
            assert offload.ipv4_header_good(s, h)
            assert struct.unpack_from(">H", s, 18)[0] == 7 + i         # the IP ID counts


def test_udp_segmentation():
    payload = bytes(range(256)) * 20
    frame = ethernet(0x0800, ipv4(17, udp(payload)))
    segments = offload.segment(frame, 14, 20, 8, 1000, False)
    assert len(segments) == 6
    assert b"".join(bytes(s[42:]) for s in segments) == payload
    for s in segments:
        h = offload.parse(s)
        assert struct.unpack_from(">H", s, 38)[0] == len(s) - 34
        assert offload.l4_checksum_good(s, h)


def test_segmentation_of_what_does_not_parse_sends_it_as_it_is():
    frame = ethernet(0x0800, ipv4(6, tcp(b"x" * 3000)))
    assert offload.segment(frame, 14, 20, 20, 0, True) == [bytearray(frame)]       # MSS 0
    assert offload.segment(frame, 14, 24, 20, 1000, True) == [bytearray(frame)]    # wrong L3
    assert offload.segment(frame, 14, 20, 20, 1000, False) == [bytearray(frame)]   # not UDP
