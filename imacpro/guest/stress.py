"""A stress run in the default guest: every CPU busy with kernel-heavy and user-space work at
once, for a given time, with every result checked (tests/integration/test_guest_stress.py, a
short run; bench/stress.py, runs of minutes).

    image = overlay.with_programs(guest, [stress_ng], directory, {"bin/stress-check": SCRIPT})
    imacpro boot NAME --kernel ... --exec "stress-check SECONDS"

What runs, on a machine of N CPUs, for SECONDS:
- user-space work whose output is checksummed: N/2 shell workers, each over and over
  `seq 1 20000 | sort -r | sort -n | gzip -1 | gunzip | md5sum` (fork and exec, pipes, page
  faults of new processes, the scheduler moving them), every round's sum against the one the
  host computed (`EXPECTED_MD5`): a lost or torn store anywhere on the path is a bad round;
- the kernel's own paths, through Debian's stress-ng, N/4 instances each: `fork` (process
  creation and exit, RCU-freed task structures), `vm` with `--verify` (page faults, and
  memory whose contents are checked), `mmap` (map and unmap: TLB shootdown IPIs), `tlb-shootdown`,
  `pipe`, `switch` (cross-CPU wakeups: reschedule IPIs), `dentry` (the dentry cache, whose
  frees wait for RCU grace periods).
Then the kernel's log: soft and hard lockups, RCU stalls, hung tasks, BUGs and oopses are
counted, and its warning-level lines printed (kernel_warnings.WARNINGS_SH).

`parse` reads the console into a `Result`; `Result.problems` lists what failed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from imacpro.guest.kernel_warnings import WARNINGS_SH, unexpected, warnings_in

SEQ_COUNT = 20_000
EXPECTED_MD5 = hashlib.md5("".join(f"{n}\n" for n in range(1, SEQ_COUNT + 1)).encode()).hexdigest()
STRESSORS = ("fork", "vm", "mmap", "tlb-shootdown", "pipe", "switch", "dentry")
LOCKUP_PATTERN = ("soft lockup|hard LOCKUP|rcu_.*stall|rcu: INFO|self-detected stall|"
                  "blocked for more than|BUG:|Oops|general protection")

SCRIPT = f"""#!/bin/sh
# stress-check SECONDS: imacpro/guest/stress.py says what runs and why.
seconds=$1
cpus=$(grep -c '^processor' /proc/cpuinfo)
users=$(( cpus / 2 > 0 ? cpus / 2 : 1 ))
each=$(( cpus / 4 > 0 ? cpus / 4 : 1 ))
echo "stress: $cpus cpus, $users checksummed workers, $each of each stressor, $seconds s"
rm -f /tmp/stress-stop
for w in $(seq $users); do
    (
        ok=0; bad=0
        while [ ! -e /tmp/stress-stop ]; do
            sum=$(seq 1 {SEQ_COUNT} | sort -r | sort -n | gzip -1 | gunzip | md5sum)
            if [ "$sum" = "{EXPECTED_MD5}  -" ]; then ok=$((ok + 1))
            else bad=$((bad + 1)); echo "stress-bad worker=$w sum=$sum"; fi
        done
        echo "stress-worker $w ok=$ok bad=$bad"
    ) &
done
mkdir -p /tmp/stress-ng
stress-ng --temp-path /tmp/stress-ng {" ".join(f"--{s} $each" for s in STRESSORS)} \\
    --vm-bytes 8M --verify --mmap-bytes 4M --timeout "${{seconds}}s" --metrics-brief \\
    >/tmp/stress-ng.log 2>&1
echo "stress-ng-status=$?"
grep -E 'successful run|unsuccessful|fail|error|dispatching|skipped' /tmp/stress-ng.log
touch /tmp/stress-stop
wait
dmesg | grep -iE '{LOCKUP_PATTERN}' > /tmp/stress-lockups
echo "stress-lockups=$(wc -l < /tmp/stress-lockups)"
head -20 /tmp/stress-lockups | sed 's/^/stress-lockup: /'
{WARNINGS_SH}
echo "stress-done"
"""


@dataclass
class Result:
    workers: dict[int, tuple[int, int]] = field(default_factory=dict)   # worker: (ok, bad)
    stress_ng_status: int | None = None
    stress_ng_completed: bool = False
    lockups: int | None = None
    lockup_lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    done: bool = False

    @property
    def rounds(self) -> int:
        return sum(ok for ok, _ in self.workers.values())

    def problems(self) -> list[str]:
        found = []
        if not self.done:
            found.append("the run did not finish")
        if not self.workers:
            found.append("no checksummed worker reported")
        for worker, (ok, bad) in sorted(self.workers.items()):
            if bad or not ok:
                found.append(f"worker {worker}: {ok} good rounds, {bad} bad")
        if self.stress_ng_status != 0 or not self.stress_ng_completed:
            found.append(f"stress-ng: exit status {self.stress_ng_status}, "
                         f"{'a' if self.stress_ng_completed else 'no'} successful run")
        if self.lockups != 0:
            found.append(f"{self.lockups} lockup lines: {self.lockup_lines}")
        found += [f"kernel warning: {w}" for w in unexpected(self.warnings)]
        return found


def parse(console: str) -> Result:
    result = Result()
    for line in console.splitlines():
        line = line.strip()
        if match := re.match(r"stress-worker (\d+) ok=(\d+) bad=(\d+)$", line):
            result.workers[int(match[1])] = (int(match[2]), int(match[3]))
        elif match := re.match(r"stress-ng-status=(\d+)$", line):
            result.stress_ng_status = int(match[1])
        elif "successful run completed" in line and "unsuccessful" not in line:
            result.stress_ng_completed = True
        elif match := re.match(r"stress-lockups=(\d+)$", line):
            result.lockups = int(match[1])
        elif line.startswith("stress-lockup: "):
            result.lockup_lines.append(line[len("stress-lockup: "):])
        elif line == "stress-done":
            result.done = True
    result.warnings = warnings_in(console)
    return result
