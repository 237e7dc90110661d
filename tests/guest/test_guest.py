"""The default guest: the cpio writer, the initramfs, /init, and one real build (network)."""

import base64
import gzip
import json
import lzma
import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest

from imacpro import bundle, guest
from imacpro.cli import main
from imacpro.errors import UserError
from imacpro.guest.build import CONSOLE_SCRIPT, ETC_FILES, EXEC_FUNCTION, collect_modules, kernel_package, modinfo
from imacpro.guest.cpio import CpioWriter
from imacpro.t2.signing import Manifest, sha384, verify

# --- a newc reader of our own, to check the writer against the format ------------------------

def parse_cpio(data: bytes) -> list[dict]:
    """Every entry before the trailer; asserts the format's framing and 4-byte alignment."""
    entries, offset = [], 0
    while True:
        assert offset % 4 == 0
        header = data[offset:offset + 110]
        assert header[:6] == b"070701", header[:6]
        (ino, mode, uid, gid, nlink, mtime, size, _devmajor, _devminor, rdevmajor, rdevminor,
         namesize, check) = (int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13))
        name_end = offset + 110 + namesize
        assert data[name_end - 1] == 0
        name = data[offset + 110:name_end - 1].decode()
        body_start = name_end + (-name_end % 4)
        assert data[name_end:body_start] == b"\0" * (body_start - name_end)
        body = data[body_start:body_start + size]
        assert len(body) == size
        offset = body_start + size
        padding = -offset % 4
        assert data[offset:offset + padding] == b"\0" * padding
        offset += padding
        if name == "TRAILER!!!":
            assert offset == len(data)
            return entries
        entries.append({"name": name, "ino": ino, "mode": mode, "uid": uid, "gid": gid,
                        "nlink": nlink, "mtime": mtime, "data": body,
                        "rdev": (rdevmajor, rdevminor), "check": check})


def by_name(entries):
    return {e["name"]: e for e in entries}


def test_cpio_round_trip():
    w = CpioWriter()
    w.directory("bin")
    contents = {f"data/f{n}": bytes(range(n)) for n in range(7)}   # every padding length
    for name, body in contents.items():
        w.file(name, body, 0o640)
    w.file("bin/tool", b"\x7fELF...", 0o755)
    w.symlink("bin/sh", "tool")
    w.char_device("dev/console", 5, 1)
    w.directory("tmp", 0o1777)
    entries = parse_cpio(w.finish())
    names = [e["name"] for e in entries]
    e = by_name(entries)
    # parents come before their children, added when missing
    assert names.index("data") < names.index("data/f0") and names.index("dev") < \
        names.index("dev/console")
    assert stat.S_ISDIR(e["data"]["mode"]) and stat.S_IMODE(e["data"]["mode"]) == 0o755
    for name, body in contents.items():
        assert e[name]["data"] == body
        assert stat.S_ISREG(e[name]["mode"]) and stat.S_IMODE(e[name]["mode"]) == 0o640
    assert stat.S_IMODE(e["bin/tool"]["mode"]) == 0o755
    assert stat.S_ISLNK(e["bin/sh"]["mode"]) and e["bin/sh"]["data"] == b"tool"
    assert stat.S_ISCHR(e["dev/console"]["mode"]) and e["dev/console"]["rdev"] == (5, 1)
    assert e["tmp"]["mode"] == stat.S_IFDIR | 0o1777
    assert len({x["ino"] for x in entries}) == len(entries)
    assert all(x["uid"] == x["gid"] == x["mtime"] == x["check"] == 0 for x in entries)
    assert all(x["nlink"] == (2 if stat.S_ISDIR(x["mode"]) else 1) for x in entries)


def test_cpio_refuses_duplicates_and_bad_names():
    w = CpioWriter()
    w.file("a", b"")
    for bad in ("a", "", "x/../y"):
        with pytest.raises(ValueError):
            w.file(bad, b"")


def test_gnu_cpio_lists_our_archive(tmp_path):
    assert shutil.which("cpio"), "cpio is needed (Debian package cpio; make installs it)"
    w = CpioWriter()
    w.file("bin/busybox", b"x" * 5, 0o755)
    w.symlink("bin/sh", "busybox")
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=w.finish(), capture_output=True,
                             check=True).stdout.decode().split()
    assert listing == ["bin", "bin/busybox", "bin/sh"]


# --- the initramfs ----------------------------------------------------------------------------

def test_make_initramfs():
    modules = {"nvme-core": b"core", "nvme": b"nvme!"}
    script = guest.init_script(list(modules))
    image = guest.make_initramfs(b"BUSYBOX", modules, script, b"E2FSCK")
    assert image[:2] == b"\x1f\x8b"
    assert guest.make_initramfs(b"BUSYBOX", modules, script, b"E2FSCK") == image  # reproducible
    e = by_name(parse_cpio(gzip.decompress(image)))
    assert e["sbin/e2fsck"]["data"] == b"E2FSCK" and e["sbin/fsck.ext4"]["data"] == b"e2fsck"
    assert e["bin/busybox"]["data"] == b"BUSYBOX"
    assert e["bin/busybox"]["mode"] == stat.S_IFREG | 0o755
    assert stat.S_ISLNK(e["bin/sh"]["mode"]) and e["bin/sh"]["data"] == b"busybox"
    assert e["init"]["mode"] == stat.S_IFREG | 0o755
    assert e["init"]["data"].decode() == script and script.startswith("#!/bin/sh\n")
    assert e["etc/imacpro/console"]["data"].decode() == guest.console_script()
    assert e["etc/imacpro/console"]["mode"] == stat.S_IFREG | 0o755
    assert e["lib/modules/nvme-core.ko"]["data"] == b"core"
    assert e["lib/modules/nvme.ko"]["data"] == b"nvme!"
    for d in ("dev", "proc", "sys", "tmp", "root", "etc", "sbin", "usr/bin", "usr/sbin"):
        assert stat.S_ISDIR(e[d]["mode"]), d
    assert e["dev/console"]["rdev"] == (5, 1) and stat.S_ISCHR(e["dev/console"]["mode"])
    assert e["etc/passwd"]["data"].startswith(b"root:x:0:0:")


def test_init_script():
    script = guest.init_script(["crc64", "nvme-core", "nvme"])
    for text in ("mount -t proc proc /proc", "mount -t sysfs sysfs /sys",
                 "mount -t devtmpfs devtmpfs /dev", "/bin/busybox --install -s",
                 "for module in crc64 nvme-core nvme; do",
                 'insmod /lib/modules/$module.ko $(options "$(echo $module | tr - _)")',
                 'echo "init: could not load $module"',
                 "export PATH=", "\nexec /bin/busybox init\n"):
        assert text in script, text
    assert script.index("insmod") < script.index("exec /bin/busybox init")
    # options() hands a module what the kernel command line gives it, as modprobe does.
    function = script[script.index("options() {"):script.index("for module in")]
    function = function.replace("$(cat /proc/cmdline)", "$CMDLINE")
    got = subprocess.run(["sh", "-c", function + 'options "$1"', "sh", "hid_apple"],
                         capture_output=True, text=True, env={
                             "CMDLINE": "quiet hid_apple.fnmode=2 nvme.x=1 hid_apple.iso=0"})
    assert got.stdout.split() == ["fnmode=2", "iso=0"]
    console = guest.console_script()
    for text in ("\necho IMACPRO-READY\n", 'exec_command "$(cat /proc/cmdline)"', "base64 -d",
                 'sh -c "$command"', 'echo "IMACPRO-EXIT=$?"', "setsid cttyhack sh",
                 "poweroff -f", "\n    poweroff\n"):
        assert text in console, text
    # the order of events: the marker, then the command or the shell
    assert console.index("IMACPRO-READY") < console.index("sh -c")
    # busybox init runs the console script once and unmounts at poweroff/reboot
    inittab = ETC_FILES["etc/inittab"]
    assert f"::once:{CONSOLE_SCRIPT}\n" in inittab
    assert "::shutdown:/bin/umount -a -r 2>/dev/null\n" in inittab
    assert "tty1::respawn:-/bin/sh\n" in inittab            # a shell on the screen too
    assert guest.DEFAULT_CMDLINE == \
        "console=tty0 console=ttyS0,115200 panic=-1 quiet loglevel=4 hid_apple.fnmode=2"


def run_exec_function(cmdline: str, shell: list[str], env=None):
    """exec_command from /init, run by `shell` on the host with a given kernel command line."""
    program = EXEC_FUNCTION + 'exec_command "$1"'
    return subprocess.run(shell + ["-c", program, "sh", cmdline], capture_output=True,
                          env=env, check=False)


TRICKY = "echo \"$HOME\" 'single' * | cut -d' ' -f1\nexit 7 # ünïcode"


def test_exec_option_decodes_in_init():
    assert shutil.which("base64"), "base64 is needed (Debian package coreutils)"
    option = guest.exec_option(TRICKY)
    assert option == "imacpro.exec=" + base64.b64encode(TRICKY.encode()).decode()
    cmdline = f"{guest.DEFAULT_CMDLINE} root=* {option} extra=[x]"
    result = run_exec_function(cmdline, ["sh"])
    assert result.returncode == 0 and result.stdout.decode() == TRICKY
    assert run_exec_function(guest.DEFAULT_CMDLINE, ["sh"]).returncode == 1


def test_image_version():
    assert guest.image_version("6.1.192-2") == 61192002
    assert guest.image_version("6.1.76-1") == 61076001
    assert guest.image_version("6.1.158-1~deb12u1") == 61158001
    versions = ["6.1.76-1", "6.1.76-2", "6.1.158-1", "6.1.192-2"]
    assert sorted(versions, key=guest.image_version) == versions
    for bad in ("6.12.1-1", "6.1", "banana"):
        with pytest.raises(UserError):
            guest.image_version(bad)


def test_kernel_package_from_the_metapackage():
    fields = {"Depends": "linux-image-6.1.0-56-amd64 (= 6.1.192-2)"}
    assert kernel_package(fields) == "linux-image-6.1.0-56-amd64"
    with pytest.raises(UserError):
        kernel_package({"Depends": "kmod"})


# --- kernel modules ---------------------------------------------------------------------------

def fake_ko(name: str, depends: str) -> bytes:
    """A minimal ELF64 with a .modinfo section, as modules have."""
    shstrtab = b"\0.shstrtab\0.modinfo\0"
    info = f"license=GPL\0depends={depends}\0name={name.replace('-', '_')}\0".encode()
    body = shstrtab + info
    body += b"\0" * (-len(body) % 8)
    shoff = 64 + len(body)
    header = (b"\x7fELF\x02\x01\x01" + b"\0" * 9 + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0,
              0, shoff, 0, 64, 0, 0, 64, 3, 1))
    sections = b"\0" * 64
    sections += struct.pack("<IIQQQQIIQQ", 1, 3, 0, 0, 64, len(shstrtab), 0, 0, 1, 0)
    sections += struct.pack("<IIQQQQIIQQ", 11, 1, 0, 0, 64 + len(shstrtab), len(info), 0, 0,
                            1, 0)
    return header + body + sections


def test_modinfo():
    info = modinfo(fake_ko("nvme-core", "t10-pi"))
    assert info["depends"] == "t10-pi" and info["name"] == "nvme_core"
    with pytest.raises(ValueError):
        modinfo(b"not an ELF" * 10)


def test_collect_modules_in_load_order(tmp_path):
    root = tmp_path / "6.1.0-1-amd64"
    tree = {"drivers/nvme/host/nvme.ko": fake_ko("nvme", "nvme-core"),
            "drivers/nvme/host/nvme-core.ko": fake_ko("nvme-core", "t10-pi,crc64"),
            "block/t10-pi.ko": fake_ko("t10-pi", "crc64,crc_builtin"),
            "lib/crc64.ko.xz": lzma.compress(fake_ko("crc64", "")),
            "lib/unused.ko": fake_ko("unused", "")}
    for path, data in tree.items():
        (root / "kernel" / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "kernel" / path).write_bytes(data)
    (root / "modules.builtin").write_text("kernel/lib/crc_builtin.ko\n")
    modules = collect_modules(root, ("nvme",))
    assert list(modules) == ["crc64", "t10-pi", "nvme-core", "nvme"]
    assert modules["crc64"] == fake_ko("crc64", "")      # decompressed
    with pytest.raises(UserError):
        collect_modules(root, ("absent",))


# --- the cache, load() and the CLI without a guest --------------------------------------------

def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("IMACPRO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert guest.cache_dir() == tmp_path / "xdg" / "imacpro"
    monkeypatch.setenv("IMACPRO_CACHE", str(tmp_path / "c"))
    assert guest.cache_dir() == tmp_path / "c" and guest.guest_dir() == tmp_path / "c" / "guest"


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_no_guest(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("IMACPRO_CACHE", str(tmp_path / "empty"))
    assert guest.load() is None
    code, out, _ = run_cli(capsys, "guest", "info")
    assert code == 0 and "not built" in out and "imacpro guest fetch" in out
    code, out, _ = run_cli(capsys, "guest", "info", "--json")
    assert json.loads(out) == {"built": False, "directory": str(tmp_path / "empty" / "guest")}


# --- the real thing ---------------------------------------------------------------------------

def cache_for_tests() -> Path:
    """A cache of the tests' own, kept between runs outside the repository: the guest built
    there is signed again by each test's throwaway key, which must not happen to the user's."""
    if os.environ.get("IMACPRO_TEST_CACHE"):
        return Path(os.environ["IMACPRO_TEST_CACHE"])
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "imacpro-tests"


@pytest.mark.network
@pytest.mark.skipif(not all(shutil.which(tool) for tool in ("apt-get", "apt-cache", "dpkg-deb")),
                    reason="building the default guest needs apt and dpkg-deb (a Debian host)")
def test_build_the_default_guest(capsys, tmp_path, monkeypatch):
    """Downloads ~72 MB from Debian's archive the first time, then reuses the cache."""
    monkeypatch.setenv("IMACPRO_CACHE", str(cache_for_tests()))
    lines = []
    built = guest.build(progress=lines.append)
    assert built.directory == cache_for_tests() / "guest"
    kernel = built.kernel.read_bytes()
    assert kernel[0x202:0x206] == b"HdrS"                       # a bzImage
    initrd = built.initrd.read_bytes()
    entries = by_name(parse_cpio(gzip.decompress(initrd)))
    busybox = entries["bin/busybox"]["data"]
    assert busybox[:4] == b"\x7fELF" and entries["bin/busybox"]["mode"] == stat.S_IFREG | 0o755
    assert entries["init"]["mode"] == stat.S_IFREG | 0o755
    assert b"exec /bin/busybox init" in entries["init"]["data"]
    assert b"IMACPRO-READY" in entries["etc/imacpro/console"]["data"]
    assert b"::once:/etc/imacpro/console\n" in entries["etc/inittab"]["data"]
    assert entries["etc/acpi/PWRF/00000080"]["data"].endswith(b"poweroff\n")
    assert entries["lib/modules/nvme.ko"]["data"][:4] == b"\x7fELF"
    assert entries["lib/modules/nvme-core.ko"]["data"][:4] == b"\x7fELF"
    for module in ("ext4", "jbd2", "mbcache", "crc16", "crc32c_generic"):
        assert entries[f"lib/modules/{module}.ko"]["data"][:4] == b"\x7fELF", module
    init = entries["init"]["data"].decode()
    assert init.index(" jbd2 ") < init.index(" ext4")           # dependencies first
    assert entries["sbin/e2fsck"]["data"][:4] == b"\x7fELF"
    assert entries["sbin/fsck.ext2"]["data"] == b"e2fsck"
    assert built.cmdline == guest.DEFAULT_CMDLINE
    assert built.kernel_version.endswith("-amd64") and built.kernel_version.startswith("6.1.")
    assert built.version == guest.image_version(built.package_version)

    # Signed by this installation's signing server (each test has its own key: a guest cached
    # by an earlier run is signed again, without a download).
    manifest = Manifest.load(built.manifest)
    server = bundle.signing_server()
    assert manifest.signer == server.fingerprint
    assert verify(server.public_key, manifest.signature, manifest.payload())
    assert (manifest.kernel_sha384, manifest.initrd_sha384, manifest.cmdline_sha384,
            manifest.version) == (sha384(kernel), sha384(initrd),
                                  sha384(built.cmdline.encode()), built.version)

    # Built and intact: building again does nothing.
    lines.clear()
    assert guest.build(progress=lines.append) == built and lines == []
    assert guest.load() == built

    # /init's command decoding with the guest's own busybox (sh and base64 applets).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "busybox").write_bytes(busybox)
    (bin_dir / "busybox").chmod(0o755)
    for applet in ("sh", "base64", "printf"):
        (bin_dir / applet).symlink_to("busybox")
    result = run_exec_function(f"{built.cmdline} {guest.exec_option(TRICKY)}",
                               [str(bin_dir / "sh")], env={"PATH": str(bin_dir)})
    assert result.returncode == 0 and result.stdout.decode() == TRICKY

    # The CLI shows it.
    code, out, _ = run_cli(capsys, "guest", "info", "--json")
    report = json.loads(out)
    assert code == 0 and report["built"] and report["signed_by_this_installation"]
    assert report["kernel_release"] == built.kernel_version and report["version"] == built.version
    assert report["sizes"]["vmlinuz"] == len(kernel)
    code, out, _ = run_cli(capsys, "guest", "fetch")
    assert code == 0 and "Default guest in" in out and built.kernel_version in out

    # A copy elsewhere loads; a damaged file makes it not intact.
    copy = tmp_path / "cache"
    shutil.copytree(built.directory, copy / "guest",
                    ignore=shutil.ignore_patterns("downloads", ".lock"))
    monkeypatch.setenv("IMACPRO_CACHE", str(copy))
    assert guest.load().kernel == copy / "guest" / "vmlinuz"
    damaged = bytearray((copy / "guest" / "initrd.img").read_bytes())
    damaged[100] ^= 1
    (copy / "guest" / "initrd.img").write_bytes(bytes(damaged))
    assert guest.load() is None
    shutil.copy(built.initrd, copy / "guest" / "initrd.img")
    assert guest.load() is not None
    (copy / "guest" / "cmdline").write_text("console=ttyS0 init=/bin/sh\n")
    assert guest.load() is None
