"""User-mode networking through passt: the guest's Ethernet frames to and from the host's network,
with no root on the host.

Why passt (Debian's package `passt`): a maintained user-mode network stack (it is what podman
and libvirt use for rootless networking) that runs as its own process, isolated in its own
namespaces under seccomp, so the frames a hostile guest sends are parsed there, never by a
TCP/IP stack inside the emulator. QEMU's libslirp would parse them in this process, through
ctypes glue this project would have to keep. passt speaks QEMU's stream socket protocol: over
a connected UNIX stream socket, each frame (Ethernet, no FCS) is a 4-byte big-endian length
and the frame's bytes, both ways.

The network the guest sees (set explicitly, as QEMU's user networking has it, so it does not
depend on the host's):
    the guest         10.0.2.15/24, given by passt's DHCP server (infinite lease), MTU 1500
    the gateway       10.0.2.2: also the host's loopback, so a server on the host's
                      127.0.0.1:PORT is 10.0.2.2:PORT in the guest (TCP and UDP)
    DNS               the host's resolver (or 10.0.2.2 when the host's is on loopback)
    forwards          `--forward tcp:HOSTPORT:GUESTPORT`: passt listens on the host's
                      127.0.0.1:HOSTPORT, and connections reach the guest's GUESTPORT
                      (from 10.0.2.2)
IPv4 only (`--ipv4-only`): the guest gets no IPv6 address.

passt is started with `--fd`: it inherits one end of a socketpair and exits when the other
end closes, so it never outlives the machine, even a killed one. It writes its pid file
once its ports are bound (as root it runs as nobody, so that file is made for it first): `start` waits for that file, and a passt that exits first (a
forwarded port already in use, a host without user namespaces or without a route out) is a
one-line UserError with passt's own last line.

Flow control: passt does not hold what it cannot write. Debian's passt (2023.03) writes the
frames it has for the guest in batches (up to about 390 KB) with one non-blocking call, drops
the part that does not fit its socket's buffer, and its TCP then sends everything again from
the gap, over and over. So passt's end gets the largest send buffer the host allows
(SEND_BUFFER, capped at twice net.core.wmem_max: 416 KiB on a stock host, a whole batch), and
a thread outside the interpreter (net/stream_reader.py) empties the socket into a bounded ring
as soon as passt writes, so each batch finds it empty; the run loop, busy with vCPUs, reads
it only between slices. docs/PERFORMANCE.md (the network) has the measurements. Frames are
taken from the ring only while the NIC takes them (`accepts`); when the ring is full its
thread stops reading and passt's dropping applies again, so nothing grows without bound.
Frames to passt wait in an outbox of at most OUTBOX_LIMIT bytes; while it is full the NIC
stops running its TX rings (`can_send`), so a guest flooding the network is held at passt's
speed, not buffered.
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from imacpro.errors import UserError
from imacpro.host_events import GONE, send_some
from imacpro.net.stream_reader import SocketReader, ThreadReader, open_reader

GUEST_ADDRESS, NETMASK_BITS, GATEWAY = "10.0.2.15", 24, "10.0.2.2"
MTU = 1500
OUTBOX_LIMIT = 1 << 20
READ_SIZE = 256 * 1024          # taken from the reader at a time
SEND_BUFFER = 4 << 20           # asked for passt's end; the host caps it (net.core.wmem_max)
MAX_FRAME = 65535 + 14         # passt's largest (it does not segment what the host sends)
START_TIMEOUT_S = 10.0
FORWARD = re.compile(r"tcp:(\d{1,5}):(\d{1,5})")


@dataclass(frozen=True)
class Forward:
    """A host TCP port on 127.0.0.1 forwarded to a guest port."""
    host_port: int
    guest_port: int

    @classmethod
    def parse(cls, text: str) -> Forward:
        m = FORWARD.fullmatch(text)
        if not m or not all(1 <= int(p) <= 65535 for p in m.groups()):
            raise UserError(f"--forward {text!r}: expected tcp:HOSTPORT:GUESTPORT with ports "
                            "1-65535")
        return cls(int(m.group(1)), int(m.group(2)))


def find_passt() -> str:
    path = shutil.which("passt")
    if path is None:
        raise UserError("passt is not installed: imacpro's user-mode networking needs it "
                        "(apt-get install passt), or boot with --network none")
    return path


class Passt:
    """One machine's passt process and the socket its frames go through."""

    def __init__(self, forwards: tuple[Forward, ...] = ()):
        self.forwards = forwards
        self.on_frame: Callable[[bytes], None] = lambda frame: None
        self.accepts: Callable[[], bool] = lambda: True
        self._delivering = False
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._process: subprocess.Popen | None = None
        self._socket: socket.socket | None = None
        self.reader: ThreadReader | SocketReader | None = None   # readable: frames to take
        self.connected = False
        self._log = None
        self.frames_in = self.frames_out = 0

    def command(self, fd: int, pid_file: Path) -> list[str]:
        ports = [arg for f in self.forwards
                 for arg in ("--tcp-ports", f"127.0.0.1/{f.host_port}:{f.guest_port}")]
        return [find_passt(), "--foreground", "--quiet", "--ipv4-only",
                "--address", GUEST_ADDRESS, "--netmask", str(NETMASK_BITS),
                "--gateway", GATEWAY, "--mtu", str(MTU),
                *(ports or ["--tcp-ports", "none"]), "--udp-ports", "none",
                "--pid", str(pid_file), "--fd", str(fd)]

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # passt drops the frames a write of its batch (up to ~390 KB of TCP) does not fit:
        # the default buffer (208 KiB) never holds a whole one, the doubled wmem_max a stock
        # host allows (416 KiB) does, when the reader has emptied it in between.
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        with tempfile.TemporaryDirectory(prefix="imacpro-passt-") as tmp:
            # Started by root, passt runs as nobody: the pid file it writes is made here,
            # empty and writable, in a directory nobody may pass through but not list.
            pid_file = Path(tmp) / "passt.pid"
            pid_file.touch(0o666)
            pid_file.chmod(0o666)
            Path(tmp).chmod(0o711)
            self._log = tempfile.TemporaryFile()
            try:
                self._process = subprocess.Popen(
                    self.command(theirs.fileno(), pid_file), pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                    start_new_session=True)
            except OSError as exc:
                ours.close()
                raise UserError(f"cannot start passt: {exc.strerror}") from None
            finally:
                theirs.close()
            deadline = time.monotonic() + START_TIMEOUT_S
            while not pid_file.stat().st_size:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    ours.close()
                    self._stop_process()
                    raise UserError(f"user-mode networking (passt) did not start: "
                                    f"{self._last_log_line()}; or boot with --network none")
                time.sleep(0.01)
        self.adopt(ours)

    def adopt(self, sock: socket.socket) -> None:
        """Speak the stream protocol over `sock`, already connected to a peer that speaks it
        (a passt started elsewhere, or a test's own end of a socketpair)."""
        sock.setblocking(False)
        self._socket = sock
        self.reader = open_reader(sock)
        self.connected = True

    def hand_over(self) -> int:
        """Stop reading passt's socket here and give its descriptor, for another process
        to speak the stream protocol over (bench/network.py gives it to QEMU)."""
        self.reader.close()
        self.reader, self.connected = None, False
        return self._socket.fileno()

    def _last_log_line(self) -> str:
        if self._log is None:
            return "no output"
        self._log.seek(0)
        lines = [line.strip() for line in self._log.read().decode(errors="replace").splitlines()
                 if line.strip() and "syslog" not in line]
        return lines[-1] if lines else f"exit status {self._process.returncode}"

    def fileno(self) -> int:
        """The socket, for waiting until it takes more frames (`reader` is for reading)."""
        return self._socket.fileno()

    # --- frames --------------------------------------------------------------------------

    def deliver(self) -> bool:
        """Hand frames to `on_frame` while `accepts()`, taking passt's bytes from the
        reader only as they are needed (when the reader is readable, and when a receiver
        that had no room has some again); False once passt has gone or its stream is out
        of step."""
        if self._delivering:
            return True                   # called back from on_frame: the loop below goes on
        self._delivering = True
        try:
            while self.connected and self.accepts():
                frame = self._next_frame()
                if frame is None:
                    break
                self.frames_in += 1
                self.on_frame(frame)
            return self.connected
        finally:
            self._delivering = False

    def _next_frame(self) -> bytes | None:
        """The next whole frame, or None until more of it has come (or when the stream
        has ended or is out of step: `connected` is then False)."""
        while True:
            if len(self._inbox) >= 4:
                length = struct.unpack_from(">I", self._inbox)[0]
                if length > MAX_FRAME:
                    self.connected = False    # not passt's stream
                    return None
                if len(self._inbox) >= 4 + length:
                    frame = bytes(self._inbox[4:4 + length])
                    del self._inbox[:4 + length]
                    return frame
            data = self.reader.take(READ_SIZE)
            if not data:
                self.connected = data is not None
                return None
            self._inbox += data

    def can_send(self) -> bool:
        return len(self._outbox) < OUTBOX_LIMIT

    def send(self, frame: bytes) -> None:
        """Queue a frame for passt (the caller checked `can_send`) and send what the socket
        takes now."""
        self._outbox += struct.pack(">I", len(frame)) + frame
        self.frames_out += 1
        self.flush()

    def flush(self) -> bool:
        """Send what the socket takes; True when the outbox is empty."""
        if self._socket is None:
            return not self._outbox
        if send_some(self._socket, self._outbox) == GONE:
            self._outbox.clear()              # passt has gone: the frames are lost
        return not self._outbox

    @property
    def backlog(self) -> int:
        return len(self._outbox)

    # --- the end -------------------------------------------------------------------------

    def close(self) -> None:
        """Close our end (passt exits on it) and reap passt."""
        self.connected = False
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._stop_process()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _stop_process(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        try:
            self._process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

