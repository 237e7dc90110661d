"""The guest's TCP connections a new backend cannot know: after a resume, they are reset.

passt ends with the machine's process when it suspends, and the host ends of every connection
through it close then (the host's peers see them end at once). A resumed machine gets a new
passt, which knows none of the connections the guest still has open, and drops their segments
without a word (Debian's passt 2023.03 sends no RST for a segment that matches nothing): a
guest that keeps writing would retransmit for about 15 minutes (Linux's tcp_retries2) before
giving up. A NAT router that lost its state and said so would answer with a reset; so does the
link: from a resume on, it watches which connections start (a SYN either way) and answers a
segment of any other connection with the RST that RFC 793 §3.4 prescribes for a segment that
matches no connection, from the segment's destination. The guest's socket then fails at once
with ECONNRESET, as a connection to a host that forgot it does.

Connections that start after the resume are passed through untouched. The set of them is
bounded (FLOW_LIMIT): past it, every segment is passed (the old connections time out as
before), so a guest opening connections without end costs bounded memory. Only IPv4 TCP is
judged (the guest network is IPv4 only); the frame is guest-made, so it is parsed by
offload.parse, which never raises.
"""

from __future__ import annotations

import struct

from imacpro.devices.net import offload

FLOW_LIMIT = 16384
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10


class StaleFlows:
    def __init__(self):
        self.started: set[bytes] = set()      # the connections seen to start since the resume
        self.judging = True
        self.resets = 0

    def reset_for(self, frame) -> bytes | None:
        """The RST to give the guest instead of sending `frame` (a segment of a connection
        from before the resume); None: send `frame` on."""
        if not self.judging:
            return None
        h = offload.parse(frame)
        if h is None or h.version != 4 or h.protocol != offload.IPPROTO_TCP or \
                h.l4 + 20 > h.end:
            return None
        sport, dport, seq, ack, offset_flags = struct.unpack_from(">HHIIH", frame, h.l4)
        flags = offset_flags & 0x3F
        key = bytes(frame[h.l3 + 12:h.l3 + 20]) + struct.pack(">HH", sport, dport)
        if flags & RST:
            self.started.discard(key)
            return None
        if flags & SYN:
            if len(self.started) >= FLOW_LIMIT:
                self.judging = False          # too many to follow: pass everything
                self.started.clear()
            else:
                self.started.add(key)
            return None
        if key in self.started:
            return None
        self.resets += 1
        payload = h.end - h.l4 - (offset_flags >> 12) * 4
        length = max(payload, 0) + (1 if flags & FIN else 0)
        if flags & ACK:
            reply_seq, reply_ack, reply_flags = ack, 0, RST
        else:
            reply_seq, reply_ack, reply_flags = 0, (seq + length) & 0xFFFF_FFFF, RST | ACK
        return _segment(frame, h, dport, sport, reply_seq, reply_ack, reply_flags)


def _segment(frame, h: offload.Headers, sport: int, dport: int, seq: int, ack: int,
             flags: int) -> bytes:
    """A bare TCP segment back to the sender of `frame`: addresses and ports swapped."""
    ethernet = bytes(frame[6:12]) + bytes(frame[0:6]) + struct.pack(">H", offload.ETH_P_IP)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, offload.IPPROTO_TCP, 0,
                     bytes(frame[h.l3 + 16:h.l3 + 20]), bytes(frame[h.l3 + 12:h.l3 + 16]))
    tcp = struct.pack(">HHIIHHHH", sport, dport, seq, ack, 5 << 12 | flags, 0, 0, 0)
    reply = bytearray(ethernet + ip + tcp)
    offload.fill_checksums(reply, ip=True, l4=True)
    return bytes(reply)
