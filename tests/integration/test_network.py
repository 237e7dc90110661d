"""The 10GbE port as a user meets it on the default guest: atlantic at 10000 Mb/s with the
machine's MAC, an address by DHCP, a file fetched from a server on the host's loopback, a
server in the guest reached through --forward, and a TCP connection across suspend/resume."""

import functools
import hashlib
import http.server
import json
import os
import re
import socket
import threading

from machines import create, imacpro, signed_guest  # noqa: F401 (a fixture)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_directory(path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def guest(name, command):
    ran = imacpro("exec", name, command, timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout


def test_the_guest_is_on_the_network_and_the_host_reaches_it(signed_guest, tmp_path):
    create("net")
    payload = os.urandom(3 << 20)
    (tmp_path / "payload.bin").write_bytes(payload)
    server = serve_directory(tmp_path)
    forward = free_port()
    started = imacpro("boot", "net", "--detach", "--forward", f"tcp:{forward}:8080",
                      timeout=300)
    assert started.returncode == 0, started.stderr
    try:
        seen = guest("net", "cat /sys/class/net/eth0/speed /sys/class/net/eth0/address "
                     "/sys/class/net/eth0/operstate; basename $(readlink "
                     "/sys/class/net/eth0/device/driver); ip -4 -o addr show eth0").split()
        speed, mac, state, driver = seen[:4]
        assert (speed, state, driver) == ("10000", "up", "atlantic")
        info = imacpro("info", "net").stdout
        assert re.search(r"Ethernet MAC Address:\s+(\S+)", info).group(1).lower() == mac
        assert "10.0.2.15/24" in seen
        network = json.loads(imacpro("status", "net", "--json").stdout)["network"]
        assert network["link_up"] and network["frames_to_guest"] > 0
        assert network["forwards"] == [{"host": "127.0.0.1", "host_port": forward,
                                        "guest_port": 8080}]
        assert f"link up, 127.0.0.1:{forward} → guest port 8080" in \
            imacpro("status", "net").stdout

        fetched = guest("net", f"wget -q -O - http://10.0.2.2:{server.server_port}/payload.bin"
                        " | sha256sum")
        assert fetched.split()[0] == hashlib.sha256(payload).hexdigest()

        guest("net", "mkdir -p /tmp/www && echo from-the-guest > /tmp/www/hello && "
              "httpd -p 8080 -h /tmp/www")
        with socket.create_connection(("127.0.0.1", forward), timeout=30) as client:
            client.sendall(b"GET /hello HTTP/1.0\r\n\r\n")
            reply = b"".join(iter(lambda: client.recv(4096), b""))
        assert reply.startswith(b"HTTP/1.") and reply.endswith(b"from-the-guest\n")
    finally:
        imacpro("stop", "net", "--force")
        server.shutdown()


def test_a_connection_open_across_suspend_fails_cleanly_and_new_ones_work(signed_guest):
    create("nap")
    host = socket.create_server(("127.0.0.1", 0))
    host.settimeout(120)
    started = imacpro("boot", "nap", "--detach", timeout=300)
    assert started.returncode == 0, started.stderr
    try:
        # The guest connects to the host and says one line; it writes again after the resume.
        # nc's end is written aside and renamed: a look between the shell's creating the file
        # and echo's writing it found it empty (its vCPU descheduled in between).
        guest("nap", f"(sleep 1; (echo before; sleep 30; echo after; sleep 600) | "
              f"(nc 10.0.2.2 {host.getsockname()[1]}; echo \"nc-ended $?\" > /tmp/nc.part; "
              f"mv /tmp/nc.part /tmp/nc.end)) >/dev/null 2>&1 &")
        peer, _ = host.accept()
        peer.settimeout(120)
        assert peer.recv(100) == b"before\n"
        suspended = imacpro("suspend", "nap", timeout=300)
        assert suspended.returncode == 0, suspended.stderr
        assert peer.recv(100) == b""          # the host's end closed with the machine's passt
        resumed = imacpro("boot", "nap", "--detach", timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        # The guest's end is reset on its next write ("after"), not retransmitted for minutes.
        ended = guest("nap", "for i in $(seq 120); do [ -e /tmp/nc.end ] && break; sleep 1; "
                      "done; cat /tmp/nc.end; netstat -tn | grep -c ESTABLISHED || true")
        assert ended.split()[0] == "nc-ended"
        assert ended.split()[-1] == "0"
        guest("nap", f"echo again | nc 10.0.2.2 {host.getsockname()[1]} & sleep 1")
        second, _ = host.accept()
        second.settimeout(60)
        assert second.recv(100) == b"again\n"
        second.close()
    finally:
        imacpro("stop", "nap", "--force")
        host.close()
