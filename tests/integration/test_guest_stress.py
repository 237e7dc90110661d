"""Every CPU of the machine busy at once, kernel and user space, with every result checked
(imacpro/guest/stress.py says what runs): the 8-core machine's 16 vCPUs on two host threads
at once (`--host-threads 2`), for two minutes of the guest's time. bench/stress.py
runs the same for as long as it is asked to.
"""

import shutil
from pathlib import Path

import pytest

from imacpro.guest import overlay, stress
from machines import create, imacpro, signed_guest  # noqa: F401 (fixture)

SECONDS = 120


def test_sixteen_cpus_under_stress_lose_nothing_and_never_lock_up(signed_guest, tmp_path):
    if not shutil.which("stress-ng"):
        pytest.fail("stress-ng is not installed (the project's setup installs it)")
    image = overlay.with_programs(signed_guest, [Path(shutil.which("stress-ng"))],
                                  tmp_path / "image", {"bin/stress-check": stress.SCRIPT.encode()})
    create("pro", "--cpu", "8")                 # the W-2140B: 8 cores, 16 threads
    result = imacpro("boot", "pro", "--kernel", str(image.kernel), "--initrd", str(image.initrd),
                     "--append", image.cmdline, "--manifest", str(image.manifest),
                     "--host-threads", "2", "--exec", f"stress-check {SECONDS}",
                     "--timeout", "1500", timeout=1800)
    assert result.returncode == 0, (result.stderr, result.stdout[-3000:])
    assert "stress: 16 cpus" in result.stdout, result.stdout[-3000:]
    outcome = stress.parse(result.stdout)
    assert outcome.problems() == [], result.stdout[-5000:]
    assert len(outcome.workers) == 8 and outcome.rounds > 0
