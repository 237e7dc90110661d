"""What a NIC does to Ethernet frames in hardware: checksums, TCP/UDP segmentation (LSO), 802.1Q
tags, and the classification its receive write-back reports.

Frames are bytes without the FCS. Every input is guest-made (a transmitted frame) or from the
network (a received one), so nothing here raises on a malformed frame: a header that does not
parse leaves the frame as it was given, as hardware sends what software gave it.

Checksums are the Internet checksum (RFC 1071): a ones'-complement sum of 16-bit words, which
is byte-order independent, so it is summed here as native words by `sum()` over a memoryview
and swapped once at the end (one C loop per frame, not a Python loop per word).
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass

ETH_HLEN = 14
VLAN_HLEN = 4
ETH_P_IP, ETH_P_IPV6, ETH_P_ARP, ETH_P_8021Q = 0x0800, 0x86DD, 0x0806, 0x8100
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6, IPPROTO_SCTP = 1, 6, 17, 58, 132
IPV6_HLEN = 40
TCP_FLAGS = 13            # offset of the flags byte pair's low byte in a TCP header
MAX_SEGMENTS = 1024       # an LSO payload is at most 256 KiB (18-bit length): MSS ≥ 256


def internet_sum(data, start: int = 0) -> int:
    """The ones'-complement sum of `data` (big-endian words, an odd last byte padded),
    added to `start`, folded to 16 bits (not complemented)."""
    view = memoryview(data)
    even = len(view) & ~1
    total = _fold(sum(view[:even].cast("H")))
    if sys.byteorder == "little":       # RFC 1071 §2(B): swap the sum, not every word
        total = ((total & 0xFF) << 8) | (total >> 8)
    if len(view) & 1:
        total += view[-1] << 8
    return _fold(total + start)


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum(data, start: int = 0) -> int:
    """The Internet checksum field's value for `data` (and a pseudo-header sum `start`)."""
    return ~internet_sum(data, start) & 0xFFFF


@dataclass(frozen=True)
class Headers:
    """Where a frame's headers are. `l3` is the offset of the IP header (after any 802.1Q
    tag), `l4` of the TCP/UDP/ICMP header; `end` the end of the IP packet (frames may be
    padded past it)."""
    ethertype: int
    l3: int
    version: int = 0          # 4, 6, or 0 (not IP)
    protocol: int = -1        # the L4 protocol (IPv4's protocol, IPv6's next header)
    l4: int = -1
    end: int = 0
    vlan: bool = False


def parse(frame) -> Headers | None:
    """The frame's headers, or None if it is too short to be Ethernet."""
    if len(frame) < ETH_HLEN:
        return None
    ethertype, l3, vlan = struct.unpack_from(">H", frame, 12)[0], ETH_HLEN, False
    if ethertype == ETH_P_8021Q and len(frame) >= ETH_HLEN + VLAN_HLEN:
        ethertype, l3, vlan = struct.unpack_from(">H", frame, 16)[0], ETH_HLEN + VLAN_HLEN, True
    if ethertype == ETH_P_IP and len(frame) >= l3 + 20 and frame[l3] >> 4 == 4:
        ihl = (frame[l3] & 0xF) * 4
        total = struct.unpack_from(">H", frame, l3 + 2)[0]
        if ihl < 20 or total < ihl or l3 + total > len(frame):
            return Headers(ethertype, l3, vlan=vlan)
        fragment = struct.unpack_from(">H", frame, l3 + 6)[0] & 0x3FFF
        protocol = frame[l3 + 9] if not fragment else -1   # a fragment has no L4 header here
        return Headers(ethertype, l3, 4, protocol, l3 + ihl, l3 + total, vlan)
    if ethertype == ETH_P_IPV6 and len(frame) >= l3 + IPV6_HLEN and frame[l3] >> 4 == 6:
        payload = struct.unpack_from(">H", frame, l3 + 4)[0]
        if l3 + IPV6_HLEN + payload > len(frame):
            return Headers(ethertype, l3, vlan=vlan)
        return Headers(ethertype, l3, 6, frame[l3 + 6], l3 + IPV6_HLEN,
                       l3 + IPV6_HLEN + payload, vlan)
    return Headers(ethertype, l3, vlan=vlan)


def pseudo_header_sum(frame, h: Headers, length: int) -> int:
    """The TCP/UDP pseudo-header's sum for an L4 segment of `length` bytes."""
    if h.version == 4:
        addresses = frame[h.l3 + 12:h.l3 + 20]
    else:
        addresses = frame[h.l3 + 8:h.l3 + 40]
    return internet_sum(addresses, h.protocol + length)


def l4_checksum_offset(h: Headers) -> int | None:
    if h.protocol == IPPROTO_TCP:
        return h.l4 + 16
    if h.protocol == IPPROTO_UDP:
        return h.l4 + 6
    return None


def fill_checksums(frame: bytearray, ip: bool, l4: bool) -> None:
    """Compute the IPv4 header checksum (`ip`) and the TCP or UDP checksum (`l4`) in place,
    as the TX checksum offload does; anything else is left alone."""
    h = parse(frame)
    if h is None or not h.version:
        return
    if ip and h.version == 4:
        struct.pack_into(">H", frame, h.l3 + 10, 0)
        struct.pack_into(">H", frame, h.l3 + 10, checksum(frame[h.l3:h.l4]))
    field = l4_checksum_offset(h)
    if not l4 or field is None or field + 2 > h.end:
        return
    struct.pack_into(">H", frame, field, 0)
    value = checksum(frame[h.l4:h.end], pseudo_header_sum(frame, h, h.end - h.l4))
    if h.protocol == IPPROTO_UDP and value == 0:
        value = 0xFFFF                     # RFC 768: a computed zero is sent as all ones
    struct.pack_into(">H", frame, field, value)


def l4_checksum_good(frame, h: Headers) -> bool | None:
    """Whether the TCP/UDP checksum verifies; None when there is none to check (not TCP or
    UDP, a UDP checksum of 0 over IPv4, a truncated header)."""
    field = l4_checksum_offset(h)
    if field is None or field + 2 > h.end:
        return None
    if h.protocol == IPPROTO_UDP and h.version == 4 and frame[field:field + 2] == b"\0\0":
        return None
    return internet_sum(frame[h.l4:h.end], pseudo_header_sum(frame, h, h.end - h.l4)) == 0xFFFF


def ipv4_header_good(frame, h: Headers) -> bool:
    return internet_sum(frame[h.l3:h.l4]) == 0xFFFF


def insert_vlan(frame, tci: int) -> bytes:
    """The frame with an 802.1Q tag carrying `tci` after its addresses."""
    return bytes(frame[:12]) + struct.pack(">HH", ETH_P_8021Q, tci & 0xFFFF) + bytes(frame[12:])


def strip_vlan(frame) -> tuple[bytes, int | None]:
    """The frame without its first 802.1Q tag, and that tag's TCI (None: untagged)."""
    if len(frame) >= ETH_HLEN + VLAN_HLEN and struct.unpack_from(">H", frame, 12)[0] == ETH_P_8021Q:
        return bytes(frame[:12]) + bytes(frame[16:]), struct.unpack_from(">H", frame, 14)[0]
    return bytes(frame), None


def segment(frame, l2: int, l3: int, l4: int, mss: int, tcp: bool,
            flag_masks: tuple[int, int, int] = (0xFFF, 0xFFF, 0xFFF)) -> list[bytearray]:
    """TCP/UDP segmentation offload: `frame` is headers (`l2`, `l3`, `l4` bytes long) and a
    payload larger than `mss`; each segment gets a copy of the headers with its IP length
    and ID, TCP sequence number and flags (first, middle, last masks over the 12 flag bits,
    as the NIC's LSO flag-mask registers give them), UDP length, and fresh checksums.
    Headers that do not parse as IPv4/IPv6 with TCP/UDP where the lengths say: the frame
    is sent as it is (one segment)."""
    header_len = l2 + l3 + l4
    h = parse(frame)
    if (h is None or not h.version or h.l3 != l2 or h.l4 < 0 or mss <= 0
            or h.protocol != (IPPROTO_TCP if tcp else IPPROTO_UDP)
            or h.l4 != l2 + l3 or header_len >= len(frame)
            or l4 < (20 if tcp else 8)):
        return [bytearray(frame)]
    headers, payload = bytes(frame[:header_len]), memoryview(bytes(frame[header_len:]))
    count = -(-len(payload) // mss)
    if count > MAX_SEGMENTS:
        return [bytearray(frame)]
    segments = []
    sequence = struct.unpack_from(">I", headers, h.l4 + 4)[0] if tcp else 0
    ip_id = struct.unpack_from(">H", headers, l2 + 4)[0] if h.version == 4 else 0
    for i in range(count):
        chunk = payload[i * mss:(i + 1) * mss]
        out = bytearray(headers)
        out += chunk
        if h.version == 4:
            struct.pack_into(">HH", out, l2 + 2, l3 + l4 + len(chunk), (ip_id + i) & 0xFFFF)
        else:
            struct.pack_into(">H", out, l2 + 4, l3 - IPV6_HLEN + l4 + len(chunk))
        if tcp:
            struct.pack_into(">I", out, h.l4 + 4, (sequence + i * mss) & 0xFFFF_FFFF)
            mask = flag_masks[0] if i == 0 else flag_masks[2] if i == count - 1 else flag_masks[1]
            flags = struct.unpack_from(">H", out, h.l4 + 12)[0]
            struct.pack_into(">H", out, h.l4 + 12, (flags & 0xF000) | (flags & mask & 0x0FFF))
        else:
            struct.pack_into(">H", out, h.l4 + 4, l4 + len(chunk))
        fill_checksums(out, ip=True, l4=True)
        segments.append(out)
    return segments
