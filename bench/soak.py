#!/usr/bin/env python3
"""The soak: power-on → work → reboot → work → power-off cycles, with host faults, until done.

    bench/soak.py --cycles 200 --out soak-results [--configs 8:32,18:256] [--work-s 15]

Each cycle takes the next configuration (cores:GB) and the next interrupt mode of the SSD
(MSI-X, then INTx: the guest unbinds nvme, clears the function's msi_bus and binds it again,
so its completions come through I/O APIC pin 16, level-triggered) and, through the CLI as a
user runs it:
  1. `imacpro boot --detach`; the first exec waits for the guest's shell
  2. check, then work: e2fsck and mount the SSD's ext4 root partition, check the SHA-256 of every file an
     earlier boot synced, then for --work-s seconds at once: SSD writes with fsync (each file's
     checksum appended to the list and synced), timers (sleep loops), serial output (lines on
     the console), IPIs (a process of 8 threads mapping and unmapping memory: TLB shootdowns;
     busy loops on every CPU: reschedules); the guest's uptime is read at the start and at
     the end of the boot's work, against host time
  3. `reboot` in the guest (the exec ends when the new boot is ready), 4. work again,
  5. `imacpro stop` (ACPI power button), until the process is gone.
Host faults, by cycle number: every 3rd cycle, the host under load (two busy processes);
every 4th, the machine's process stopped (SIGSTOP) for 3 s during the work; every 10th, the
process killed (SIGKILL) during the work: the next boot's e2fsck must leave a clean file
system and every file synced before the kill must be intact.

A step that passes its deadline is a hang: its watchdog reports (`imacpro status --json`)
and the console log's tail are kept, the machine is stopped by force, and the soak goes on.
At each boot's end the guest's kernel messages of warning level or worse are collected;
any outside imacpro/guest/kernel_warnings.py's list (docs/LINUX.md says why each is there)
count against the cycle. The machine's own figures since power-on come from status: the
longest an interrupt waited for its CPU, and the longest a busy CPU went without a tick.

Every cycle is a line of OUT/cycles.jsonl (a run resumes where the file ends); OUT/summary.json
and the printed summary add them up. It stops after --cycles cycles (or --hours). While a
file OUT/pause exists the soak waits between cycles: a host about to run something heavy
(a test suite, a build) holds it there rather than load the cycles beyond their own faults.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imacpro.guest.kernel_warnings import WARNINGS_SH, unexpected, warnings_in  # noqa: E402

BOOT_DEADLINE_S = 900     # power-on to a shell (36 vCPUs on a 2-core host take ~2 min)
STEP_SLACK_S = 600        # beyond the work's own length, for any other exec
STOP_DEADLINE_S = 180
SIGSTOP_S = 3
NVME = "0000:02:00.0"

CHECK = r"""
mkdir -p /mnt
if ! grep -q ' /mnt ' /proc/mounts; then
    e2fsck -fy /dev/nvme0n1p2 > /tmp/fsck.log 2>&1; echo "fsck_status=$?"
    mount -t ext4 /dev/nvme0n1p2 /mnt || echo "mount_failed=1"
fi
mkdir -p /mnt/soak && cd /mnt/soak && touch sums
if [ -s sums ]; then
    sha256sum -c sums > /tmp/verify 2>&1; echo "verify_status=$?"
    echo "verified=$(grep -c ': OK$' /tmp/verify)"; grep -v ': OK$' /tmp/verify | head -5
fi
echo "irq_mode=$(grep -m1 nvme /proc/interrupts | grep -o -E 'IO-APIC|PCI-MSIX?')"
"""

WORK = r"""
cycle={cycle}; boot={boot}; seconds={seconds}
cd /mnt/soak
echo "{threads_b64}" | base64 -d | gunzip > /tmp/threads && chmod +x /tmp/threads
/tmp/threads $seconds > /tmp/threads.out 2>&1 &
threads=$!
pids=""
for i in $(seq $(nproc)); do (while :; do :; done) & pids="$pids $!"; done
(while :; do sleep 0.1; done) & pids="$pids $!"
(i=0; while :; do echo "soak-serial $cycle.$boot.$i"; i=$((i+1)); sleep 0.2; done) & pids="$pids $!"
n=0; end=$(( $(date +%s) + seconds ))
while [ $(date +%s) -lt $end ]; do
    f=r{run}c${{cycle}}b${{boot}}n$n
    dd if=/dev/urandom of=$f bs=64k count=4 conv=fsync 2>/dev/null && sha256sum $f >> sums && sync
    n=$((n+1))
done
kill $pids 2>/dev/null; wait $threads; echo "threads_status=$?"; cat /tmp/threads.out
echo "written=$n"
"""

INTX = (f"echo {NVME} > /sys/bus/pci/drivers/nvme/unbind && "
        f"echo 0 > /sys/bus/pci/devices/{NVME}/msi_bus && "
        f"echo {NVME} > /sys/bus/pci/drivers/nvme/bind && sleep 2; "
        "grep -m1 nvme /proc/interrupts")


def run(args: list[str], timeout: float, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imacpro", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def values(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            found[key] = value.strip()
    return found


class Cycle:
    def __init__(self, n: int, name: str, mode: str, faults: list[str], env: dict,
                 bundle: Path, work_s: int, threads_b64: str, run_id: str):
        self.n, self.name, self.mode, self.faults = n, name, mode, faults
        self.run_id = run_id
        self.env, self.bundle, self.work_s, self.threads_b64 = env, bundle, work_s, threads_b64
        self.record = {"cycle": n, "machine": name, "irq_mode": mode, "faults": faults,
                       "boots": [], "hang": None, "data_errors": 0, "unexpected_warnings": [],
                       "watchdog": []}

    def exec(self, command: str, timeout: float) -> subprocess.CompletedProcess:
        return run(["exec", self.name, command], timeout, self.env)

    def status(self) -> dict:
        try:
            done = run(["status", self.name, "--json"], 30, self.env)
            return json.loads(done.stdout) if done.returncode == 0 else {}
        except (subprocess.TimeoutExpired, json.JSONDecodeError):
            return {}

    def hang(self, step: str) -> None:
        status = self.status()
        log = self.bundle / "console.log"
        tail = log.read_bytes()[-4000:].decode(errors="replace") if log.exists() else ""
        self.record["hang"] = {"step": step, "watchdog": status.get("watchdog", []),
                               "console_tail": tail}
        run(["stop", self.name, "--force"], STOP_DEADLINE_S, self.env)

    def go(self) -> dict:
        load = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(2)] if "host-load" in self.faults else []
        loads = [os.getloadavg()[0]]
        try:
            self._cycle()
        except subprocess.TimeoutExpired as exc:
            self.hang(" ".join(str(a) for a in exc.cmd[3:5]))
        finally:
            for process in load:
                process.kill()
                process.wait()
        # The host's 1-minute load average at the cycle's start and end: whether anything but
        # the soak (its machine, and its own host-load processes) was loading the host.
        loads.append(os.getloadavg()[0])
        self.record["host_load"] = [round(x, 2) for x in loads]
        return self.record

    def _cycle(self) -> None:
        started = run(["boot", self.name, "--detach"], 120, self.env)
        if started.returncode != 0:
            self.record["hang"] = {"step": "boot", "error": started.stderr.strip()}
            return
        for boot in (1, 2):
            if not self._boot_work(boot):
                return
            if boot == 1:
                # `reboot` returns at once (init does the rest): the exec ends when the
                # rebooted guest's shell is ready, the sleep never.
                rebooted = self.exec("reboot; sleep 600", BOOT_DEADLINE_S)
                if rebooted.returncode != 0:
                    self.record["hang"] = {"step": "reboot", "error": rebooted.stderr}
                    return
        status = self.status()
        self.record["interrupts"] = status.get("interrupts")
        self.record["watchdog"] = status.get("watchdog", [])
        stopped = run(["stop", self.name], STOP_DEADLINE_S, self.env)
        if stopped.returncode != 0:
            self.hang("stop")

    def _boot_work(self, boot: int) -> bool:
        record = {"boot": boot}
        self.record["boots"].append(record)
        t0 = time.monotonic()
        first = self.exec("cat /proc/uptime", BOOT_DEADLINE_S)     # waits for the shell
        h0 = time.monotonic()
        record["ready_s"] = round(h0 - t0, 1)
        u0 = float(first.stdout.split()[0])
        if self.mode == "intx":
            record["intx"] = self.exec(INTX, STEP_SLACK_S).stdout.strip()
        checked = self.exec(CHECK, STEP_SLACK_S)
        found = values(checked.stdout)
        record.update({k: found.get(k) for k in ("fsck_status", "verify_status", "verified",
                                                  "irq_mode")})
        if found.get("verify_status", "0") != "0" or "mount_failed" in found \
                or found.get("fsck_status", "0") not in ("0", "1"):
            self.record["data_errors"] += 1
            record["check_output"] = checked.stdout[-2000:]
        killer = self._fault_during_work()
        script = WORK.format(cycle=self.n, boot=boot, seconds=self.work_s, run=self.run_id,
                             threads_b64=self.threads_b64)
        work = self.exec(typed_file(script, "/tmp/work.sh") + "\nsh /tmp/work.sh",
                         self.work_s + STEP_SLACK_S)
        if killer is not None:
            killer.join()
        if "sigkill" in self.faults and boot == 1:
            record["killed"] = True
            self._wait_gone()
            self.record["after_kill"] = "next boot checks"
            return False
        found = values(work.stdout)
        record.update({k: found.get(k) for k in ("threads_status", "written")})
        if found.get("threads_status") != "0":
            self.record["data_errors"] += 1
            record["output_tail"] = work.stdout[-2000:]
        last = self.exec(f"cat /proc/uptime; {WARNINGS_SH}", STEP_SLACK_S)
        h1 = time.monotonic()
        u1 = float(last.stdout.split()[0])
        record["guest_s"], record["host_s"] = round(u1 - u0, 2), round(h1 - h0, 2)
        record["uptime_drift"] = round((u1 - u0) / (h1 - h0) - 1, 4)
        self.record["unexpected_warnings"] += unexpected(warnings_in(last.stdout))
        return True

    def _fault_during_work(self) -> threading.Thread | None:
        pid = self.status().get("pid")
        if pid is None:
            return None
        if "sigstop" in self.faults:
            def stop_for_a_while():
                time.sleep(self.work_s / 2)
                os.kill(pid, signal.SIGSTOP)
                time.sleep(SIGSTOP_S)
                os.kill(pid, signal.SIGCONT)
            thread = threading.Thread(target=stop_for_a_while)
        elif "sigkill" in self.faults:
            def kill():
                time.sleep(self.work_s / 2)
                os.kill(pid, signal.SIGKILL)
            thread = threading.Thread(target=kill)
        else:
            return None
        thread.start()
        return thread

    def _wait_gone(self) -> None:
        deadline = time.monotonic() + STOP_DEADLINE_S
        while time.monotonic() < deadline and self.status().get("state") == "running":
            time.sleep(1)


def typed_file(text: str, path: str) -> str:
    """Shell lines that write `text` to `path` in the guest: base64 in lines short enough
    for the guest shell's line editor (busybox ash keeps 1023 characters of a line)."""
    encoded = base64.b64encode(text.encode()).decode()
    lines = [f"rm -f {path}.b64"]
    lines += [f"echo {encoded[at:at + 768]} >> {path}.b64"
              for at in range(0, len(encoded), 768)]
    lines.append(f"base64 -d {path}.b64 > {path}")
    return "\n".join(lines)


def faults_of(n: int) -> list[str]:
    faults = []
    if n % 3 == 2:
        faults.append("host-load")
    if n % 10 == 9:
        faults.append("sigkill")
    elif n % 4 == 3:
        faults.append("sigstop")
    return faults


def threads_program() -> str:
    """bench/soak_threads.c, built here, gzip'd and base64'd for the guest's shell."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "threads"
        subprocess.run(["cc", "-static", "-nostdlib", "-O2", "-fno-stack-protector", "-s",
                        "-Wl,-n", "-Wl,--build-id=none", "-o", str(out),
                        str(ROOT / "bench" / "soak_threads.c")], check=True,
                       capture_output=True)
        return base64.b64encode(gzip.compress(out.read_bytes(), mtime=0)).decode()


OWN_LOAD = 1.5          # the machine's run loop and the CLI around it
LOAD_FAULT = 2.0        # the host-load fault's two busy processes


def quiet(cycle: dict) -> bool:
    """Whether only the soak loaded the host during the cycle (as far as the 1-minute load
    average shows): the figures of the issue's idle development machine."""
    own = OWN_LOAD + (LOAD_FAULT if "host-load" in cycle["faults"] else 0)
    return "host_load" in cycle and max(cycle["host_load"]) <= own + 0.5


def summarize(cycles: list[dict]) -> dict:
    figures = _figures(cycles)
    quiet_cycles = [c for c in cycles if quiet(c)]
    figures["quiet"] = {"cycles": len(quiet_cycles), **{k: v for k, v in _figures(
        quiet_cycles).items() if k.startswith(("max_", "uptime"))}}
    return figures


def _figures(cycles: list[dict]) -> dict:
    boots = [b for c in cycles for b in c["boots"] if "uptime_drift" in b]
    interrupts = [c["interrupts"] for c in cycles if c.get("interrupts")]
    quiet_ = [c["interrupts"] for c in cycles
              if c.get("interrupts") and "sigstop" not in c["faults"]]
    return {
        "cycles": len(cycles),
        "boots": sum(len(c["boots"]) for c in cycles),
        "hangs": sum(1 for c in cycles if c["hang"]),
        "data_errors": sum(c["data_errors"] for c in cycles),
        "unexpected_warnings": sorted({w for c in cycles for w in c["unexpected_warnings"]}),
        "watchdog_reports": sum(len(c["watchdog"]) for c in cycles),
        "files_verified": sum(int(b.get("verified") or 0) for c in cycles for b in c["boots"]),
        "uptime_drift": [min((b["uptime_drift"] for b in boots), default=None),
                         max((b["uptime_drift"] for b in boots), default=None)],
        "max_interrupt_latency_ms": max((i["max_latency_ms"] for i in interrupts),
                                        default=None),
        "max_busy_tick_gap_ms": max((i["max_busy_tick_gap_ms"] for i in quiet_), default=None),
        "max_busy_tick_gap_ms_with_sigstop": max((i["max_busy_tick_gap_ms"]
                                                  for i in interrupts), default=None),
        "max_slice_overrun_ms": max((i.get("max_slice_overrun_ms", 0) for i in quiet_),
                                    default=None),
    }


def main() -> None:
    # Stopped with SIGTERM (kill, pkill), the soak unwinds as on Ctrl-C: a cycle's host-load
    # processes are stopped by its `finally`, not left running for ever.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("soak: stopped"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--hours", type=float, default=None)
    parser.add_argument("--out", type=Path, default=Path("soak-results"))
    parser.add_argument("--configs", default="8:32,18:256")
    parser.add_argument("--work-s", type=int, default=15)
    parser.add_argument("--faults", default=None,
                        help="the same faults in every cycle (host-load,sigstop,sigkill) "
                             "instead of the schedule by cycle number")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = os.environ.copy()
    env["IMACPRO_HOME"] = str((args.out / "home").resolve())
    configs = [tuple(int(x) for x in c.split(":")) for c in args.configs.split(",")]
    names = []
    for cores, gb in configs:
        name = f"soak-{cores}-{gb}"
        names.append(name)
        if not (args.out / "home" / "machines" / name).exists():
            for step in (["create", name, "--cpu", str(cores), "--memory", str(gb)],
                         ["install", name, "--yes"]):
                done = run(step, 600, env)
                if done.returncode != 0:
                    # Not left half made: the next start would boot an empty SSD.
                    run(["delete", name, "--yes"], 60, env)
                    sys.exit(f"soak: {' '.join(step)}: {done.stderr.strip()}")
    threads_b64 = threads_program()
    # Files are named by run, attempt, cycle, boot and number: a disk that served another run
    # keeps its files (and their checksums, still checked) without a name written twice. The
    # attempt (new each time the soak starts) matters when a resumed run repeats the cycle
    # that was interrupted: that cycle's first files and checksums may already be on disk.
    run_id_path = args.out / "run-id"
    if not run_id_path.exists():
        run_id_path.write_text(os.urandom(4).hex() + "\n")
    run_id = f"{run_id_path.read_text().strip()}-{os.urandom(2).hex()}"
    log_path = args.out / "cycles.jsonl"
    # A run can go on across sessions (and new code): each cycle says which code it ran.
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    cycles = [json.loads(line) for line in log_path.read_text().splitlines()] \
        if log_path.exists() else []
    end = None if args.hours is None else time.monotonic() + args.hours * 3600
    while len(cycles) < args.cycles and (end is None or time.monotonic() < end):
        if (args.out / "pause").exists():
            time.sleep(5)
            continue
        n = len(cycles)
        name = names[n % len(names)]
        mode = ("msi", "intx")[(n // len(names)) % 2]
        began = time.monotonic()
        faults = faults_of(n) if args.faults is None else \
            [f for f in args.faults.split(",") if f]
        record = Cycle(n, name, mode, faults, env, args.out / "home" / "machines" / name,
                       args.work_s, threads_b64, run_id).go()
        record["seconds"] = round(time.monotonic() - began, 1)
        record["commit"] = commit
        cycles.append(record)
        with open(log_path, "a") as log:
            log.write(json.dumps(record) + "\n")
        print(f"cycle {n}: {name} {mode} {','.join(record['faults']) or '-'}: "
              f"{'HANG ' + record['hang'].get('step', '') if record['hang'] else 'ok'}"
              f"{', data errors' if record['data_errors'] else ''}"
              f"{', warnings' if record['unexpected_warnings'] else ''} "
              f"({record['seconds']} s)", flush=True)
    summary = summarize(cycles)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
