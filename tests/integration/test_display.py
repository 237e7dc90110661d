"""The screen, as a user sees it: Linux's efifb on the Radeon Pro Vega's boot framebuffer in
both modes, the PCI functions with the real IDs, a picture painted through /dev/fb0 read back
exactly by `imacpro screenshot` (the framebuffer's pixels and the panel's), the kernel console
on it, and the picture kept across suspend and resume."""

import io
import subprocess
import zlib
from pathlib import Path

import numpy as np
import png
import pytest
from PIL import ImageCms

from imacpro.guest import overlay
from imacpro.guest.kernel_warnings import WARNINGS_SH, unexpected, warnings_in
from machines import create, imacpro, signed_guest  # noqa: F401 (a fixture)

PROGRAMS = Path(__file__).parent / "programs"
PANEL = (5120, 2880)

PROBE = r"""
dmesg | grep -E 'efifb: (framebuffer|mode|Truecolor)|fb0:'
cat /proc/fb
echo "virtual_size=$(cat /sys/class/graphics/fb0/virtual_size)"
echo "bits_per_pixel=$(cat /sys/class/graphics/fb0/bits_per_pixel)"
for d in /sys/bus/pci/devices/*; do
    echo pci ${d##*/} $(cat $d/vendor $d/device $d/subsystem_vendor $d/subsystem_device $d/class)
done
"""
# No cursor on tty1 (it would blink over the picture), then the picture.
PAINT = r"printf '\033[?25l' > /dev/tty1; echo 0 > /sys/class/graphics/fbcon/cursor_blink; " \
        "fb-pattern"


def expected_picture(width: int, height: int, bits: int) -> np.ndarray:
    """fb_pattern.c's picture, 16 bits per channel (the channels widened as the panel does)."""
    top = 1 << bits
    bars = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 1], [0, 1, 0], [1, 0, 1], [1, 0, 0],
                     [0, 0, 1], [0, 0, 0]], dtype=np.uint32) * (top - 1)
    x = np.arange(width)
    picture = np.empty((height, width, 3), dtype=np.uint32)
    picture[:height // 2] = bars[x * 8 // width][None, :, :]
    picture[height // 2:] = (x * top // width)[None, :, None]
    if bits == 8:
        return (picture * 257).astype(np.uint16)
    return ((picture << 6) | (picture >> 4)).astype(np.uint16)


def read_png(path: Path) -> tuple[np.ndarray, dict]:
    width, height, rows, info = png.Reader(filename=str(path)).read()
    pixels = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    return pixels.reshape(height, width, 3), info


def icc_description(path: Path) -> str:
    chunks = dict(png.Reader(filename=str(path)).chunks())
    name, _, rest = chunks[b"iCCP"].partition(b"\0")
    profile = zlib.decompress(rest[1:])
    return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile))).strip()


def screenshot(tmp_path: Path, name: str, *options: str) -> np.ndarray:
    out = tmp_path / f"{name}.png"
    result = imacpro("screenshot", "pro", "-o", str(out), *options)
    assert result.returncode == 0, result.stderr
    pixels, info = read_png(out)
    assert info["bitdepth"] == 16 and info["planes"] == 3
    assert icc_description(out) == "Display P3"
    return pixels


def exec_ok(command: str) -> str:
    result = imacpro("exec", "pro", command, timeout=600)
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


@pytest.mark.parametrize("mode, size, bits, truecolor", [
    ("compat", (3840, 2160), 8, "size=8:8:8:8, shift=24:16:8:0"),
    ("native", (5120, 2880), 10, "size=2:10:10:10, shift=30:20:10:0"),
])
def test_the_screen_as_linux_and_a_screenshot_see_it(signed_guest, tmp_path, imacpro_home,
                                                      mode, size, bits, truecolor):
    program = tmp_path / "fb-pattern"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(program), str(PROGRAMS / "fb_pattern.c")],
                   check=True, capture_output=True, text=True)
    image = overlay.with_programs(signed_guest, [], tmp_path / "image",
                                  {"bin/fb-pattern": program.read_bytes()})
    create("pro")
    assert imacpro("display", "pro", "--mode", mode).returncode == 0
    off = screenshot(tmp_path, "off")                     # powered off: black, not an error
    assert off.shape == (PANEL[1], PANEL[0], 3) and not off.any()
    booted = imacpro("boot", "pro", "--kernel", str(image.kernel), "--initrd", str(image.initrd),
                     "--append", image.cmdline, "--manifest", str(image.manifest), "--detach")
    assert booted.returncode == 0, booted.stderr
    try:
        probe = exec_ok(PROBE)
        width, height = size
        assert "efifb: framebuffer at 0xc0000000" in probe, probe
        assert f"efifb: mode is {width}x{height}x32, linelength={width * 4}, pages=1" in probe
        assert f"efifb: Truecolor: {truecolor}" in probe
        assert "0 EFI VGA" in probe
        assert f"virtual_size={width},{height}" in probe and "bits_per_pixel=32" in probe
        functions = {line.split()[1]: line.split()[2:] for line in probe.splitlines()
                     if line.startswith("pci ")}
        assert functions["0000:f0:00.0"][:2] == ["0x8086", "0x2030"]
        assert functions["0000:f1:00.0"][:2] == ["0x1002", "0x1470"]
        assert functions["0000:f2:00.0"][:2] == ["0x1002", "0x1471"]
        assert functions["0000:f3:00.0"] == ["0x1002", "0x6867", "0x106b", "0x017b", "0x030000"]
        assert functions["0000:f3:00.1"][:2] + functions["0000:f3:00.1"][4:] == \
            ["0x1002", "0xaaf8", "0x040300"]

        # The kernel console on tty1: a banner darkens nothing but its own line.
        exec_ok(r"printf '\033[2J\033[H\033[?25l' > /dev/tty1; "
                "echo 0 > /sys/class/graphics/fbcon/cursor_blink; "
                "echo 'IMACPRO SCREEN BANNER' > /dev/tty1")
        console = screenshot(tmp_path, "console", "--native-size")
        lit = np.argwhere(console.any(axis=2))
        assert len(lit) > 500, "the banner is not on the screen"
        rows, columns = lit[:, 0], lit[:, 1]
        assert rows.max() < 64 and columns.max() < 21 * 16 + 16   # one line, 21 glyphs

        assert "fb_pattern" in exec_ok(PAINT)
        own = screenshot(tmp_path, "native-size", "--native-size")
        want = expected_picture(width, height, bits)
        assert own.shape == want.shape
        assert np.array_equal(own, want), np.argwhere(own != want)[:5]

        panel = screenshot(tmp_path, "panel")
        assert panel.shape == (PANEL[1], PANEL[0], 3)
        if mode == "native":
            assert np.array_equal(panel, want)
        else:   # scaled by 4/3: each bar's inside keeps its colour exactly
            bar = PANEL[0] // 8
            for i in range(8):
                inside = panel[100:PANEL[1] // 2 - 100, i * bar + 20:(i + 1) * bar - 20]
                assert (inside == want[0, i * (width // 8) + 10]).all(), i
            assert panel[-1, 0].tolist() == [0, 0, 0] and panel[-1, -1].tolist() == [65535] * 3

        if mode == "compat":    # the picture belongs to the machine's saved state
            suspended = imacpro("suspend", "pro", timeout=600)
            assert suspended.returncode == 0, suspended.stderr
            asleep = screenshot(tmp_path, "suspended")
            assert not asleep.any()                         # suspended: black
            resumed = imacpro("boot", "pro", "--detach", timeout=600)
            assert resumed.returncode == 0, resumed.stderr
            again = screenshot(tmp_path, "resumed", "--native-size")
            if not np.array_equal(again, want):      # say what changed, and what the guest said
                pytest.fail(f"the resumed screen differs: {difference(again, want)}; the "
                            f"guest's kernel log ends:\n{exec_ok('dmesg | tail -20')}")
    finally:
        imacpro("stop", "pro", "--force")


def difference(picture, want) -> str:
    """Where two pictures differ: how many pixels, in which rows and columns."""
    rows, columns = np.nonzero((picture != want).any(axis=2))
    return (f"{len(rows)} pixels in rows {rows.min()}-{rows.max()}, "
            f"columns {columns.min()}-{columns.max()}")


def test_screenshot_refuses_what_it_cannot_write(imacpro_home, tmp_path):
    assert imacpro("create", "pro").returncode == 0
    result = imacpro("screenshot", "pro", "-o", str(tmp_path / "no" / "such" / "dir.png"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    result = imacpro("screenshot", "nobody", "-o", str(tmp_path / "x.png"))
    assert result.returncode == 2 and "nobody" in result.stderr


def _kernel_modules(tmp_path: Path, wanted: tuple[str, ...]) -> dict[str, bytes]:
    """Modules of the guest's own kernel package (downloaded with it), in load order."""
    from imacpro.guest.build import DOWNLOADS_DIR, collect_modules, guest_dir
    deb = next((guest_dir() / DOWNLOADS_DIR).glob("linux-image-*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path / "kernel")], check=True)
    root = next((tmp_path / "kernel" / "lib" / "modules").iterdir())
    return collect_modules(root, wanted)


def test_amdgpu_fails_cleanly_and_the_boot_framebuffer_stays(signed_guest, tmp_path,
                                                              imacpro_home):
    """Debian's amdgpu on the emulated Vega: without Debian's firmware package it stops at
    its own check, before it touches the GPU; the screen stays efifb's."""
    modules = _kernel_modules(tmp_path, ("amdgpu",))
    image = overlay.with_programs(signed_guest, [], tmp_path / "image", {
        f"lib/modules/extra/{name}.ko": ko for name, ko in modules.items()})
    load = " ".join(f"insmod /lib/modules/extra/{name}.ko;" for name in modules)
    create("pro")
    booted = imacpro("boot", "pro", "--kernel", str(image.kernel), "--initrd", str(image.initrd),
                     "--append", image.cmdline, "--manifest", str(image.manifest), "--detach")
    assert booted.returncode == 0, booted.stderr
    try:
        out = exec_ok(f"{load} sleep 2; dmesg | grep amdgpu; {WARNINGS_SH}; "
                      "cat /proc/fb; ls /sys/bus/pci/drivers/amdgpu")
        assert "amdgpu kernel modesetting enabled" in out, out
        refusal = ("[drm:amdgpu_pci_probe [amdgpu]] *ERROR* amdgpu requires firmware installed",
                   "amdgpu: See https://wiki.debian.org/Firmware")
        assert refusal[0] in out, out
        assert [w for w in unexpected(warnings_in(out)) if not w.startswith(refusal)] == []
        assert "0 EFI VGA" in out and "0000:f3:00.0" not in out.split("0 EFI VGA")[1]
        exec_ok(r"printf '\033[2J\033[H' > /dev/tty1; echo AFTER AMDGPU > /dev/tty1")
        assert screenshot(tmp_path, "after", "--native-size").any()
    finally:
        imacpro("stop", "pro", "--force")
