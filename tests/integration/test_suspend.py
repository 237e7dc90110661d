"""Suspend and resume on the default guest, as a user does it: a process keeps counting, tmpfs
keeps its files, the SSD's file system is clean, and a state file that was changed, moved or
kept from before is refused."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from machines import create, imacpro, signed_guest  # noqa: F401 (a fixture)

COUNTER = ("echo kept > /tmp/keep; mkdir -p /mnt && mount /dev/nvme0n1p2 /mnt && "
           "dd if=/dev/urandom of=/mnt/data bs=1M count=8 2>/dev/null && "
           "sha256sum /mnt/data > /tmp/sum; "
           # A new file renamed over the old one: a reader never sees it half written.
           "(i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; "
           "mv /tmp/count.new /tmp/count; sleep 0.2; done) & "
           "sleep 1; cat /tmp/count")


def count(name):
    result = imacpro("exec", name, "cat /tmp/count")
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def state_file(home, name):
    return home / "machines" / name / "suspended.state"


def suspend(name):
    result = imacpro("suspend", name, timeout=600)
    assert result.returncode == 0, result.stderr
    assert json.loads(imacpro("status", name, "--json").stdout)["state"] == "suspended"


def resume(name):
    result = imacpro("boot", name, "--detach", timeout=600)
    assert result.returncode == 0, result.stderr


def test_suspend_twice_resume_twice_and_what_is_refused(signed_guest, imacpro_home):
    create("pro", "--cpu", "8")
    create("other", "--cpu", "8")
    resume("pro")
    try:
        assert imacpro("exec", "pro", COUNTER).returncode == 0
        before = count("pro")
        suspend("pro")
        saved = state_file(imacpro_home, "pro")
        assert saved.stat().st_mode & 0o777 == 0o600
        first = saved.read_bytes()

        # Changed by one byte, or moved to another machine: refused, one line, nothing runs.
        changed = bytearray(first)
        changed[len(changed) // 2] ^= 0x40
        saved.write_bytes(bytes(changed))
        result = imacpro("boot", "pro", "--detach")
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "modified" in result.stderr
        assert json.loads(imacpro("status", "pro", "--json").stdout)["state"] == "suspended"
        saved.write_bytes(first)
        shutil.copy(saved, state_file(imacpro_home, "other"))
        result = imacpro("boot", "other", "--detach")
        assert result.returncode == 2 and "another machine" in result.stderr, result.stderr
        os.unlink(state_file(imacpro_home, "other"))

        resume("pro")
        after = count("pro")
        assert after >= before                       # it went on counting from where it was
        time.sleep(1)
        assert count("pro") > after
        check = imacpro("exec", "pro", "cat /tmp/keep; sha256sum -c /tmp/sum")
        assert check.returncode == 0 and check.stdout.startswith("kept\n"), check.stdout
        suspend("pro")                               # twice
        resume("pro")
        assert count("pro") >= after
        clean = imacpro("exec", "pro", "umount /mnt && e2fsck -fn /dev/nvme0n1p2 "
                        ">/dev/null 2>&1; echo fsck=$?; date -u +%s")
        lines = clean.stdout.split()
        assert lines[0] == "fsck=0", clean.stdout
        assert abs(int(lines[1]) - time.time()) < 30   # the wall clock set after the sleep
        suspend("pro")

        # The first state, kept from before the machine last ran: refused.
        current = saved.read_bytes()
        saved.write_bytes(first)
        result = imacpro("boot", "pro", "--detach")
        assert result.returncode == 2 and "has run since" in result.stderr, result.stderr
        saved.write_bytes(current)
        resume("pro")
        assert count("pro") >= after
        assert not saved.exists()
    finally:
        imacpro("stop", "pro", "--force")


def test_a_machine_killed_while_it_suspends_comes_back(signed_guest, imacpro_home):
    """kill -9 of the machine's process at some moment of its suspend: it resumes, or it
    boots afresh; either way it runs."""
    create("pro", "--cpu", "8")
    for delay in (0.0, 0.15, 0.3):
        resume("pro")
        pid = json.loads(imacpro("status", "pro", "--json").stdout)["pid"]
        client = subprocess.Popen([sys.executable, "-m", "imacpro", "suspend", "pro"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=os.environ.copy())
        time.sleep(delay)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass                                       # it had finished: suspended
        client.wait(60)
        for _ in range(100):
            if json.loads(imacpro("status", "pro", "--json").stdout)["state"] != "running":
                break
            time.sleep(0.1)
        resume("pro")
        assert imacpro("exec", "pro", "echo alive").stdout == "alive\n"
        imacpro("stop", "pro", "--force")


def test_the_largest_machine_boots_suspends_and_resumes(signed_guest):
    """18 cores (36 logical CPUs) and 256 GB, on a host with less memory than that: guest RAM
    is committed only as the guest touches it, and a suspend saves only what it touched. (One
    test for both: a boot of this machine is the longest of the suite's.)"""
    create("max", "--cpu", "18", "--memory", "256")
    resume("max")
    try:
        seen = imacpro("exec", "max", "nproc; grep MemTotal /proc/meminfo",
                       timeout=1800).stdout.splitlines()
        assert seen[0] == "36", seen
        mem_kib = int(re.search(r"(\d+) kB", seen[1]).group(1))
        assert abs(mem_kib * 1024 - 256 * 2**30) / (256 * 2**30) < 0.03
        assert imacpro("exec", "max", COUNTER, timeout=600).returncode == 0
        before = count("max")
        suspend("max")
        resume("max")
        assert count("max") >= before
        assert imacpro("exec", "max", "nproc").stdout == "36\n"
    finally:
        imacpro("stop", "max", "--force")
