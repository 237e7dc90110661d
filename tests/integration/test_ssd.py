"""The SSD as Linux sees it: Apple's NVMe controller over the T2's encrypted store.

Each test creates machines with the default guest installed on the SSD, boots them with
`imacpro boot --exec` and looks at the bundle's files from the host.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time

from machines import create, imacpro, signed_guest  # noqa: F401 (a fixture)

LINE = "imacpro known plaintext 0123456789abcdef"
DATA_BYTES = 16 * 2**20                # many NVMe commands of every size Linux sends
FS_BLOCKS = 65536                      # a 256 MiB file system at the start of the root partition
# with 4096-byte blocks (the SSD's sectors are 4096 bytes): busybox's mke2fs (Debian's busybox
# has it under that name only) zeroes every inode table, 15 GB on the whole 1 TB partition.


def known_data() -> bytes:
    line = (LINE + "\n").encode()
    return (line * (DATA_BYTES // len(line) + 1))[:DATA_BYTES]


def ssd_dir(home, name):
    return home / "machines" / name / "t2"


def data_extents(path):
    """(offset, length) of each data extent of a sparse file (SEEK_DATA / SEEK_HOLE)."""
    with open(path, "rb") as f:
        fd, end, offset = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while offset < end:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:
                return
            stop = os.lseek(fd, start, os.SEEK_HOLE)
            yield start, stop - start
            offset = stop


def contains(path, needle: bytes) -> bool:
    with open(path, "rb") as f:
        for start, length in data_extents(path):
            f.seek(start)
            tail = b""
            for _ in range(0, length, 1 << 22):
                chunk = tail + f.read(min(1 << 22, start + length - f.tell()))
                if needle in chunk:
                    return True
                tail = chunk[-len(needle):]
    return False


def boot_with_files(guest, name, command):
    """Boot the signed default guest from its files (not from the SSD)."""
    return imacpro("boot", name, "--kernel", str(guest.kernel), "--initrd", str(guest.initrd),
                   "--append", guest.cmdline, "--manifest", str(guest.manifest),
                   "--exec", command, "--timeout", "600")


def test_data_written_by_linux_survives_encrypted_paired_and_erasable(signed_guest,
                                                                      imacpro_home):
    create("pro")
    write = imacpro(
        "boot", "pro", "--timeout", "600", "--exec",
        "cat /sys/block/nvme0n1/device/model /sys/block/nvme0n1/size; "
        f"mke2fs -q -b 4096 /dev/nvme0n1p2 {FS_BLOCKS} >/dev/null && mkdir -p /mnt && "
        f"mount /dev/nvme0n1p2 /mnt && yes '{LINE}' | head -c {DATA_BYTES} > /mnt/data && "
        "sync && sha256sum /mnt/data")
    assert write.returncode == 0, write.stderr
    lines = write.stdout.splitlines()
    assert lines[0].strip() == "APPLE SSD AP1024M"
    assert int(lines[1]) * 512 == 10**12 // 4096 * 4096        # 512-byte units, as Linux counts
    expected = hashlib.sha256(known_data()).hexdigest()
    assert lines[-1].split()[0] == expected

    read = imacpro("boot", "pro", "--timeout", "600", "--exec",
                   "e2fsck -fn /dev/nvme0n1p2 >/dev/null 2>&1 && mkdir -p /mnt && "
                   "mount -o ro /dev/nvme0n1p2 /mnt && sha256sum /mnt/data")
    assert read.returncode == 0, read.stderr
    assert read.stdout.splitlines()[-1].split()[0] == expected

    # The bundle's SSD holds ciphertext only.
    image = ssd_dir(imacpro_home, "pro") / "ssd.img"
    assert not contains(image, LINE.encode())

    # Moved into another machine's bundle: that machine's T2 cannot unwrap the media key; the
    # CLI says so and the guest has no disk to read.
    create("other")
    for name in ("ssd.img", "ssd.meta"):                      # sparse: 1 TB, mostly holes
        subprocess.run(["cp", "--sparse=always", ssd_dir(imacpro_home, "pro") / name,
                        ssd_dir(imacpro_home, "other") / name], check=True)
    moved = boot_with_files(signed_guest, "other", "cat /proc/partitions; ls /dev")
    assert moved.returncode == 0, moved.stderr
    assert "paired with the T2 of ECID" in moved.stderr
    assert "nvme" not in moved.stdout
    no_boot = imacpro("boot", "other", "--exec", "true")
    assert no_boot.returncode != 0 and "paired with the T2" in no_boot.stderr

    # Erase All Content and Settings: the data is gone, the SSD reads as zeros.
    assert imacpro("erase", "pro", "--yes").returncode == 0
    assert not list(data_extents(image))
    erased = boot_with_files(signed_guest, "pro",
                             "cat /proc/partitions; dd if=/dev/nvme0n1 bs=1M count=16 "
                             "2>/dev/null | sha256sum")
    assert erased.returncode == 0, erased.stderr
    assert "nvme0n1p" not in erased.stdout
    assert hashlib.sha256(bytes(16 * 2**20)).hexdigest() in erased.stdout


def test_kill_9_while_the_guest_writes_loses_nothing_that_was_synced(signed_guest,
                                                                     imacpro_home, tmp_path):
    """The root partition is ext4 (journalled); files synced before the kill are intact and
    the file system checks clean once the journal is replayed."""
    create("pro")
    log = tmp_path / "serial.log"
    writer = subprocess.Popen(
        [sys.executable, "-m", "imacpro", "boot", "pro", "--timeout", "900",
         "--serial-log", str(log), "--exec",
         "mkdir -p /mnt && mount /dev/nvme0n1p2 /mnt && "
         "for i in 1 2 3 4; do dd if=/dev/urandom of=/mnt/synced$i bs=1M count=8 2>/dev/null; "
         "done && sync && sha256sum /mnt/synced* && echo ALL-SYNCED && "
         "i=0; while true; do i=$((i+1)); dd if=/dev/urandom of=/mnt/unsynced$i bs=1M count=4 "
         "2>/dev/null; done"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 600
        while b"ALL-SYNCED\r\n" not in (log.read_bytes() if log.exists() else b""):
            assert writer.poll() is None and time.monotonic() < deadline, "never synced"
            time.sleep(0.5)
        time.sleep(5)                     # it goes on writing
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
    sums = dict(reversed(line.split()) for line in log.read_text(errors="replace").splitlines()
                if line.rstrip().endswith(tuple(f"/mnt/synced{i}" for i in range(1, 5)))
                and len(line.split()) == 2)
    assert len(sums) == 4

    check = imacpro(
        "boot", "pro", "--timeout", "600", "--exec",
        "e2fsck -p /dev/nvme0n1p2; echo preen=$?; e2fsck -fn /dev/nvme0n1p2 >/dev/null 2>&1; "
        "echo check=$?; mkdir -p /mnt && mount /dev/nvme0n1p2 /mnt && sha256sum /mnt/synced*")
    assert check.returncode == 0, check.stderr
    out = check.stdout
    preen = int(out.split("preen=")[1].split()[0])
    assert preen in (0, 1), out                  # clean, or the journal replayed
    assert "check=0" in out, out
    for path, digest in sums.items():
        assert f"{digest}  {path}" in out, (path, out)
    assert writer.returncode == -signal.SIGKILL


def test_without_msi_linux_uses_the_ssd_through_its_pci_interrupt_pin(signed_guest):
    """`pci=nomsi`: the nvme driver falls back to INTA#, routed by the DSDT's _PRT to I/O APIC
    pin 16 (level, active low). No Security, since the command line is not the signed one."""
    create("pro")
    assert imacpro("security", "pro", "--policy", "none").returncode == 0
    result = imacpro("boot", "pro", "--kernel", str(signed_guest.kernel), "--initrd",
                     str(signed_guest.initrd), "--append", signed_guest.cmdline + " pci=nomsi",
                     "--exec", "dd if=/dev/nvme0n1 of=/dev/null bs=1M count=16 iflag=direct "
                     "2>/dev/null; grep nvme0q /proc/interrupts", "--timeout", "600")
    assert result.returncode == 0, result.stderr
    line = result.stdout.splitlines()[-1]
    assert "IO-APIC" in line and "16-fasteoi" in line
    assert sum(int(n) for n in line.split()[1:] if n.isdigit()) >= 16   # at least one per read
