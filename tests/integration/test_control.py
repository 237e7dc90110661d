"""A running machine held from outside, as a user does it: boot --detach, status, exec,
console, stop (the power button) and stop --force, on the default guest."""

import json
import os
import subprocess
import sys
import threading

from machines import create, imacpro, signed_guest  # noqa: F401 (a fixture)


def test_detach_status_exec_console_and_stop(signed_guest, tmp_path):
    create("pro", "--cpu", "8")
    started = imacpro("boot", "pro", "--detach", timeout=300)
    assert started.returncode == 0, started.stderr
    assert "running in the background" in started.stdout
    try:
        again = imacpro("boot", "pro", "--detach")
        assert again.returncode == 2 and again.stderr.count("\n") == 1
        assert "in use" in again.stderr

        status = json.loads(imacpro("status", "pro", "--json").stdout)
        assert status["state"] == "running" and status["vcpus"] == 16
        # The vCPUs run on one host thread per host core by default (IMACPRO_HOST_THREADS=1
        # runs the suite on the single-threaded loop).
        threads = os.environ.get("IMACPRO_HOST_THREADS", "auto")
        assert status["host_threads"] == (
            min(len(os.sched_getaffinity(0)), 16) if threads == "auto" else int(threads))
        assert status["console_log"].endswith("console.log") and status["pid"] > 0

        ran = imacpro("exec", "pro", "uname -r; nproc; exit 3")
        assert ran.returncode == 3, ran.stderr
        assert ran.stdout.splitlines()[1] == "16"

        # 20 execs at once: each gets its own output and status, and they never overlap in
        # the guest (each writes begin and end lines into one file; the file must pair up).
        results = {}

        def one(n):
            results[n] = imacpro("exec", "pro", f"echo b{n} >> /tmp/order; echo out-{n}; "
                                 f"sleep 0.1; echo e{n} >> /tmp/order; exit {n}")

        threads = [threading.Thread(target=one, args=(n,)) for n in range(1, 21)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for n, result in results.items():
            assert (result.returncode, result.stdout) == (n, f"out-{n}\n"), result.stderr
        order = imacpro("exec", "pro", "cat /tmp/order").stdout.split()
        assert len(order) == 40
        assert all(order[i][1:] == order[i + 1][1:] and order[i][0] == "b"
                   for i in range(0, 40, 2)), order

        # The console: what is typed reaches the shell, Ctrl-A D leaves the machine running.
        console = subprocess.Popen([sys.executable, "-m", "imacpro", "console", "pro"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=os.environ.copy())
        console.stdin.write(b"echo typed-$((6*7))\n")
        console.stdin.flush()
        seen = b""
        while b"typed-42\r\n" not in seen:
            chunk = os.read(console.stdout.fileno(), 4096)
            assert chunk, seen
            seen += chunk
        console.stdin.write(b"\x01d")
        console.stdin.flush()
        assert console.wait(30) == 0
        assert b"detached" in console.stderr.read()
        assert b"IMACPRO-EXIT=" in seen              # it joined with the screen's last lines
        assert json.loads(imacpro("status", "pro", "--json").stdout)["state"] == "running"

        stopped = imacpro("stop", "pro", timeout=200)
        assert stopped.returncode == 0, stopped.stderr
        log = open(status["console_log"], "rb").read()
        assert b"The system is going down" in log and b"reboot: Power down" in log
        assert json.loads(imacpro("status", "pro", "--json").stdout)["state"] == "powered off"
        gone = imacpro("exec", "pro", "true")
        assert gone.returncode == 2 and "not running" in gone.stderr
    finally:
        imacpro("stop", "pro", "--force")


def test_stop_force_cuts_the_power(signed_guest, imacpro_home):
    create("pro", "--cpu", "8")
    assert imacpro("boot", "pro", "--detach", timeout=300).returncode == 0
    assert imacpro("exec", "pro", "true").returncode == 0
    stopped = imacpro("stop", "pro", "--force", timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(imacpro("status", "pro", "--json").stdout)["state"] == "powered off"
    log = (imacpro_home / "machines" / "pro" / "console.log").read_bytes()
    assert b"going down" not in log                 # no shutdown: the power went


def test_bad_requests_are_one_line_errors():
    missing = imacpro("status", "nosuch")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert imacpro("create", "idle").returncode == 0
    for args in (("exec", "idle", "true"), ("stop", "idle"), ("console", "idle"),
                 ("view", "idle")):
        result = imacpro(*args)
        assert result.returncode == 2 and "not running" in result.stderr, args
        assert result.stderr.count("\n") == 1
    assert "powered off" in imacpro("status", "idle").stdout
