"""The VNC server as a standard client meets it: `imacpro boot --vnc`, the password from the
bundle, the whole screen equal to `imacpro screenshot --native-size`, typing that reaches the
guest's shell on tty1, updates that carry only what was drawn, and clients that send garbage
or a wrong password dropped while the machine runs on. The client is written here from
RFC 6143."""

import json
import socket
import struct
import time

import numpy as np

from imacpro.viewer.rfb import RAW, vnc_response
from machines import create, imacpro, signed_guest  # noqa: F401 (a fixture)
from test_display import read_png


def recv_exactly(sock, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        out += chunk
    return bytes(out)


class Client:
    def __init__(self, port: int, password: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        assert recv_exactly(self.sock, 12) == b"RFB 003.008\n"
        self.sock.sendall(b"RFB 003.008\n")
        count, kind = recv_exactly(self.sock, 2)
        assert (count, kind) == (1, 2)                     # VNC authentication only
        self.sock.sendall(bytes((2,)))
        self.sock.sendall(vnc_response(recv_exactly(self.sock, 16), password))
        assert recv_exactly(self.sock, 4) == b"\0\0\0\0"
        self.sock.sendall(b"\x01")
        self.width, self.height = struct.unpack(">HH", recv_exactly(self.sock, 4))
        recv_exactly(self.sock, 16)
        self.name = recv_exactly(self.sock, struct.unpack(">I", recv_exactly(self.sock, 4))[0])

    def update(self, incremental: bool, x=0, y=0, w=None, h=None) -> list:
        self.sock.sendall(struct.pack(">BBHHHH", 3, incremental, x, y, w or self.width,
                                      h or self.height))
        kind, count = struct.unpack(">BxH", recv_exactly(self.sock, 4))
        assert kind == 0
        rects = []
        for _ in range(count):
            x, y, w, h, encoding = struct.unpack(">HHHHi", recv_exactly(self.sock, 12))
            assert encoding == RAW
            pixels = np.frombuffer(recv_exactly(self.sock, w * h * 4), dtype="<u4")
            rects.append((x, y, w, h, pixels.reshape(h, w)))
        return rects

    def key(self, keysym: int) -> None:
        self.sock.sendall(struct.pack(">BBxxI", 4, 1, keysym) +
                          struct.pack(">BBxxI", 4, 0, keysym))

    def type(self, text: str) -> None:
        for char in text:
            shifted = char in '~!@#$%^&*()_+{}|:"<>?' or char.isupper()
            if shifted:
                self.sock.sendall(struct.pack(">BBxxI", 4, 1, 0xFFE1))
            self.key(0xFF0D if char == "\n" else ord(char))
            if shifted:
                self.sock.sendall(struct.pack(">BBxxI", 4, 0, 0xFFE1))


def exec_ok(command: str) -> str:
    result = imacpro("exec", "vnc", command, timeout=600)
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def test_a_vnc_client_sees_the_screen_types_and_is_sent_only_what_changed(  # noqa: F811
        signed_guest, imacpro_home, tmp_path):
    create("vnc")
    booted = imacpro("boot", "vnc", "--vnc", "0", "--detach")
    assert booted.returncode == 0, booted.stderr
    try:
        bundle = imacpro_home / "machines" / "vnc"
        settings = json.loads((bundle / "vnc.json").read_text())
        assert (bundle / "vnc.json").stat().st_mode & 0o077 == 0
        exec_ok("while ! grep -qs 'Magic Keyboard' /proc/bus/input/devices; do sleep 1; done; "
                "printf '\\033[2J\\033[H\\033[?25l' > /dev/tty1; "
                "echo 0 > /sys/class/graphics/fbcon/cursor_blink; "
                "echo 'VNC SCREEN' > /dev/tty1")
        client = Client(settings["port"], settings["password"])
        assert (client.width, client.height, client.name) == (3840, 2160, b"vnc")
        (x, y, w, h, pixels), = client.update(False)
        assert (x, y, w, h) == (0, 0, 3840, 2160) and pixels.any()
        shot = tmp_path / "shot.png"
        assert imacpro("screenshot", "vnc", "-o", str(shot), "--native-size").returncode == 0
        picture, _ = read_png(shot)
        as_rgb = np.stack([pixels >> 16 & 0xFF, pixels >> 8 & 0xFF, pixels & 0xFF], axis=-1)
        assert np.array_equal(as_rgb, (picture >> 8).astype(np.uint32))

        # Typed through VNC: the shell on tty1 runs it; the update holds the rows it drew.
        client.type("echo VIEWER-OK > /tmp/v\n")
        exec_ok("while [ ! -s /tmp/v ]; do sleep 1; done")
        assert exec_ok("cat /tmp/v") == "VIEWER-OK\n"
        rects = client.update(True)
        assert rects
        assert sum(w * h for _, _, w, h, _ in rects) < 3840 * 2160 // 16   # a few lines' text

        # A wrong password, a client that sends garbage and one that leaves mid-update are
        # dropped; the machine runs on.
        try:
            Client(settings["port"], "wrong")
            raise AssertionError("a wrong password was let in")
        except (AssertionError, ConnectionError) as exc:
            assert "let in" not in str(exc)
        junk = socket.create_connection(("127.0.0.1", settings["port"]), timeout=60)
        recv_exactly(junk, 12)
        junk.sendall(b"GET / HTTP/1.1\r\n\r\n")
        time.sleep(1)
        assert junk.recv(100) == b""
        leaver = Client(settings["port"], settings["password"])
        leaver.sock.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, 3840, 2160))
        leaver.sock.close()                                    # gone before its update came
        assert imacpro("status", "vnc").returncode == 0
        client.key(ord("x"))                                   # the first client still works
        client.sock.close()
    finally:
        imacpro("stop", "vnc", "--force")
    assert not (imacpro_home / "machines" / "vnc" / "vnc.json").exists()


def test_vncdotool_captures_the_screen_types_and_clicks(signed_guest, imacpro_home,  # noqa
                                                        tmp_path):
    """A standard Python RFB client: its capture is the screenshot's picture, its keys reach
    tty1 (capitals and symbols included, which it sends without Shift), its clicks reach the
    mouse as BTN_LEFT."""
    import subprocess
    from pathlib import Path

    from PIL import Image
    from vncdotool import api

    from imacpro.guest import overlay
    program = tmp_path / "input-events"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(program),
                    str(Path(__file__).parent / "programs" / "input_events.c")],
                   check=True, capture_output=True)
    image = overlay.with_programs(signed_guest, [], tmp_path / "image",
                                  {"bin/input-events": program.read_bytes()})
    create("vnc")
    booted = imacpro("boot", "vnc", "--kernel", str(image.kernel), "--initrd",
                     str(image.initrd), "--append", image.cmdline, "--manifest",
                     str(image.manifest), "--vnc", "0", "--detach")
    assert booted.returncode == 0, booted.stderr
    client = None
    try:
        settings = json.loads((imacpro_home / "machines" / "vnc" / "vnc.json").read_text())
        exec_ok("while ! grep -qs 'Magic Mouse' /proc/bus/input/devices; do sleep 1; done; "
                "printf '\\033[2J\\033[H\\033[?25l' > /dev/tty1; "
                "echo 0 > /sys/class/graphics/fbcon/cursor_blink; "
                "echo 'VNCDOTOOL' > /dev/tty1")
        client = api.connect(f"127.0.0.1::{settings['port']}", password=settings["password"])
        capture = tmp_path / "capture.png"
        client.captureScreen(str(capture))
        shot = tmp_path / "shot.png"
        assert imacpro("screenshot", "vnc", "-o", str(shot), "--native-size").returncode == 0
        picture, _ = read_png(shot)
        captured = np.asarray(Image.open(capture).convert("RGB"))
        assert captured.shape == (2160, 3840, 3)
        assert np.array_equal(captured, (picture >> 8).astype(np.uint8))

        exec_ok("input-events 20 > /tmp/events 2>&1 & "
                "while ! grep -qs ready /tmp/events; do usleep 100000; done")
        for char in "echo VNCdo-OK! > /tmp/w":
            client.keyPress(char)
        client.keyPress("enter")
        client.mouseMove(100, 100)
        client.mouseMove(130, 90)
        client.mousePress(1)
        exec_ok("while [ ! -s /tmp/w ]; do sleep 1; done")
        assert exec_ok("cat /tmp/w") == "VNCdo-OK!\n"
        exec_ok("while pidof input-events >/dev/null; do sleep 1; done")
        mouse = [line.split("|")[1] for line in exec_ok("cat /tmp/events").splitlines()
                 if line.startswith("Apple Inc. Magic Mouse 2|")]
        assert "1 272 1" in mouse and "1 272 0" in mouse        # BTN_LEFT down, up
        assert sum(int(e.split()[2]) for e in mouse if e.startswith("2 0 ")) == 30   # REL_X
    finally:
        if client is not None:
            client.disconnect()
        api.shutdown()
        imacpro("stop", "vnc", "--force")
