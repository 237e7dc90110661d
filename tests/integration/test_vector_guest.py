"""The Xeon W's vector units as Linux and real programs use them, in the default guest.

Programs built on the host (static, gcc) and Debian's own stress-ng go into the guest through
an initramfs overlay (imacpro/guest/overlay.py). The guest must list the real CPU's vector
flags, enable the AVX-512 state, keep each task's registers apart across context switches and
signals, and compute what silicon computes: the same binaries print the same hashes on the
host CPU (when it has AVX-512) and in the guest, and the hashes recorded in
programs/vector_workload.expected (from a run on AVX-512 silicon) hold on every host.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from imacpro.guest import overlay
from machines import create, imacpro, signed_guest  # noqa: F401 (fixture)

PROGRAMS = Path(__file__).with_name("programs")
EXPECTED = PROGRAMS / "vector_workload.expected"
WORKLOADS = {"workload-avx512": ("-O3", "-march=skylake-avx512"),
             "workload-avx2": ("-O3", "-march=haswell"),
             "workload-clones": ("-O2",)}
FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl",
         "xsaveopt", "xsavec", "xgetbv1", "xsaves")

CHECK = """#!/bin/sh
grep -m1 '^flags' /proc/cpuinfo
dmesg | grep 'x86/fpu: Enabled xstate'
for w in workload-avx512 workload-avx2 workload-clones; do
    echo "== $w"; /bin/$w || echo "status=$?"
done
/bin/vector-tasks
stress-ng --cpu 1 --cpu-method all --cpu-ops 1000 --verify --timeout 600 2>&1 | tail -4
echo "stress-ng-status=$?"
"""


def _build(source: str, output: Path, *flags: str) -> Path:
    subprocess.run(["gcc", *flags, "-static", "-o", str(output), str(PROGRAMS / source), "-lm"],
                   check=True, capture_output=True, text=True)
    return output


def _host_has_avx512() -> bool:
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
    return all(f in flags for f in ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"))


def _sections(output: str) -> dict[str, list[str]]:
    sections, current = {}, None
    for line in output.splitlines():
        if line.startswith("== "):
            current = sections.setdefault(line[3:].strip(), [])
        elif current is not None and re.fullmatch(r"[\w-]+\s+[0-9a-f]{16}", line.strip()):
            current.append(line.strip())
    return sections


def test_linux_uses_the_vector_units_and_programs_compute_as_on_silicon(signed_guest, tmp_path):
    if not shutil.which("stress-ng"):
        pytest.fail("stress-ng is not installed (the project's setup installs it)")
    binaries = {name: _build("vector_workload.c", tmp_path / name, *flags)
                for name, flags in WORKLOADS.items()}
    binaries["vector-tasks"] = _build("vector_tasks.c", tmp_path / "vector-tasks", "-O2")
    expected = {}
    for line in EXPECTED.read_text().splitlines():
        name, _, hashes = line.partition(":")
        expected[name] = hashes.split(",")
    if _host_has_avx512():                    # the recorded hashes are silicon's
        for name in WORKLOADS:
            host = subprocess.run([binaries[name]], capture_output=True, text=True, check=True)
            assert [" ".join(l.split()) for l in host.stdout.splitlines()] == expected[name]

    files = {f"bin/{name}": path.read_bytes() for name, path in binaries.items()}
    files["bin/vector-check"] = CHECK.encode()
    image = overlay.with_programs(signed_guest, [Path(shutil.which("stress-ng"))],
                                  tmp_path / "image", files)
    create("pro")
    result = imacpro("boot", "pro", "--kernel", str(image.kernel), "--initrd", str(image.initrd),
                     "--append", image.cmdline, "--manifest", str(image.manifest),
                     "--exec", "vector-check", "--timeout", "1500", timeout=1800)
    out = result.stdout
    assert result.returncode == 0, (result.stderr, out)

    flags_line = next(l for l in out.splitlines() if l.startswith("flags"))
    missing = [f for f in FLAGS if f not in flags_line.split()]
    assert not missing, flags_line
    # XSAVES: the kernel keeps tasks' state in the compacted format (576 + 256 + 64 + 512 +
    # 1024 bytes); signal frames and ptrace still see the standard one.
    assert ("Enabled xstate features 0xe7, context size is 2432 bytes, using 'compacted' format"
            in out), out
    sections = _sections(out)
    for name in WORKLOADS:
        got = [" ".join(l.split()) for l in sections.get(name, [])]
        assert got == expected[name], (name, got)
    assert "vector-tasks OK" in out, out
    assert "stress-ng-status=0" in out and "successful run completed" in out, out
    assert "SIGILL" not in out and "fail" not in out.split("stress-ng-status")[0].lower(), out
