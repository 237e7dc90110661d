#!/usr/bin/env python3
"""The viewer under work: imacpro's page beside QEMU's VNC server, both seen through the same
noVNC in the same headless Chromium, on the same guest at the same screen size.

imacpro: `imacpro boot NAME --display web` as a user runs it, the page it prints (compat mode
for 3840 × 2160, native for 5120 × 2880). QEMU: `-vnc ...,websocket=...` with its standard VGA
at that size (the bochs DRM driver and fbcon in the guest, as bench/display.py has them) and
a page of this script's that points noVNC (the same files as imacpro's page) at QEMU's
WebSocket. QEMU's VNC server gives at most 2560 × 2048 (VNC_MAX_WIDTH/HEIGHT in its source):
the top-left part of its screen, which is where the keys' characters appear; its figures are
of that smaller picture ("canvas" in the results). Keys go in through Chromium's DevTools input (real key events, as a person's); in
the guest they reach the shell on tty1 (imacpro: the Magic Keyboard over USB; QEMU: its PS/2
keyboard).

  key to pixel   a key pressed in the page until the canvas shows the character the guest
                 echoed (or the one Backspace took away): the median and the 90th percentile
                 of 20, polled every ~4 ms
  fps            distinct pictures on the canvas per second (at most Chromium's 60 frames)
                 while the guest scrolls tty1 without pause (seq to /dev/tty1), over 10 s
  idle CPU       the host CPU the emulator's process spends with the page connected and the
                 guest idle, minus what it spends without it, over 20 s: the viewer's cost

    bench/viewer.py [--runs 3] [--modes 3840x2160 5120x2880] [--only qemu|imacpro]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import qemu  # noqa: E402
from display import build_image  # noqa: E402
from imacpro.viewer.page import PAGE_DIR  # noqa: E402

MODES = {"3840x2160": ("compat", 3840, 2160), "5120x2880": ("native", 5120, 2880)}
SAMPLES = 20
FPS_SECONDS = 10
IDLE_SECONDS = 20
QUIET_TTY1 = ("printf '\\033[2J\\033[H\\033[?25l' > /dev/tty1; "
              "echo 0 > /sys/class/graphics/fbcon/cursor_blink")
SCROLL = "seq 100000000 > /dev/tty1 &"
STOP_SCROLL = "killall seq"
LOAD_BOCHS = ("for m in $(cat /lib/modules/extra/order); do "
              "insmod /lib/modules/extra/$m.ko; done; sleep 3")

# The page of this script's for QEMU: noVNC at QEMU's WebSocket, the canvas where imacpro's
# page has it.
QEMU_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<style>html,body{margin:0;height:100%;background:#000}#screen{width:100%;height:100%}</style>
<script type="module">
import RFB from './vendor/novnc/core/rfb.js';
const rfb = new RFB(document.getElementById('screen'), 'ws://127.0.0.1:WS_PORT');
rfb.scaleViewport = true;
</script></head><body><div id="screen"></div></body></html>"""

# Polls a region of the canvas until it differs from what it was: window.benchChanged.
WATCH = """
const [x, y, w, h] = arguments;
const canvas = document.querySelector('#screen canvas');
const ctx = canvas.getContext('2d');
const before = new Uint32Array(ctx.getImageData(x, y, w, h).data.buffer);
window.benchChanged = null;
window.benchStart = performance.now();
function poll() {
  const now = new Uint32Array(ctx.getImageData(x, y, w, h).data.buffer);
  for (let i = 0; i < now.length; i++) {
    if (now[i] !== before[i]) { window.benchChanged = performance.now(); return; }
  }
  setTimeout(poll, 0);
}
poll();
"""

# Counts distinct pictures of a strip across the canvas's middle, frame by frame.
COUNT_FRAMES = """
const seconds = arguments[0], done = arguments[arguments.length - 1];
const canvas = document.querySelector('#screen canvas');
const ctx = canvas.getContext('2d');
const strip = () => new Uint32Array(
  ctx.getImageData(0, canvas.height >> 1, canvas.width, 16).data.buffer);
let last = strip(), frames = 0;
const end = performance.now() + seconds * 1000;
function tick() {
  const now = strip();
  for (let i = 0; i < now.length; i++) {
    if (now[i] !== last[i]) { frames++; break; }
  }
  last = now;
  if (performance.now() < end) requestAnimationFrame(tick); else done(frames / seconds);
}
requestAnimationFrame(tick);
"""

KEYS = {"x": {"key": "x", "code": "KeyX", "text": "x", "windowsVirtualKeyCode": 88},
        "Backspace": {"key": "Backspace", "code": "Backspace", "windowsVirtualKeyCode": 8}}


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1600,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_script_timeout(FPS_SECONDS + 60)
    return driver


def wait(condition, what: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(driver, url: str, guest, pid: int) -> dict:
    """Key-to-pixel latencies, scrolling fps and the viewer's idle CPU, through `url`.
    `guest(command)` runs a shell command in the guest."""
    guest(QUIET_TTY1)
    time.sleep(2)
    before = cpu_seconds(pid)
    time.sleep(IDLE_SECONDS)
    alone = cpu_seconds(pid) - before

    driver.get(url)
    size = wait(lambda: driver.execute_script(
        "const c = document.querySelector('#screen canvas');"
        "return c && c.width > 1600 && [c.width, c.height]"), "the screen on the canvas")
    time.sleep(3)
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    ActionChains(driver).click(driver.find_element(By.CSS_SELECTOR, "#screen canvas")).perform()
    time.sleep(2)
    before = cpu_seconds(pid)
    time.sleep(IDLE_SECONDS)
    watched = cpu_seconds(pid) - before

    latencies = []
    for i in range(SAMPLES):
        key = KEYS["x" if i % 2 == 0 else "Backspace"]
        driver.execute_script(WATCH, 0, 0, 1600, 128)
        driver.execute_cdp_cmd("Input.dispatchKeyEvent", {"type": "keyDown", **key})
        driver.execute_cdp_cmd("Input.dispatchKeyEvent", {"type": "keyUp", **key})
        changed = wait(lambda: driver.execute_script(
            "return window.benchChanged && window.benchChanged - window.benchStart"),
            "the key's character on the canvas", timeout=30)
        latencies.append(changed)
        time.sleep(0.3)

    guest(SCROLL)
    time.sleep(2)
    fps = driver.execute_async_script(COUNT_FRAMES, FPS_SECONDS)
    guest(STOP_SCROLL)
    latencies.sort()
    return {"canvas": f"{size[0]}x{size[1]}", "key_ms_median": statistics.median(latencies),
            "key_ms_p90": latencies[int(len(latencies) * 0.9) - 1],
            "fps": fps, "idle_cpu_pct": (watched - alone) / IDLE_SECONDS * 100}


# --- imacpro ----------------------------------------------------------------------------------

def cli(*args: str, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imacpro", *args], env=env, text=True,
                          capture_output=True, timeout=timeout)


def run_imacpro(driver, work: Path, mode: str) -> dict:
    env = {**os.environ, "IMACPRO_HOME": str(work / f"home-{mode}")}
    for step in (("create", "bench"), ("install", "bench", "--yes"),
                 ("display", "bench", "--mode", mode),
                 ("boot", "bench", "--display", "web", "--detach")):
        done = cli(*step, env=env)
        if done.returncode:
            sys.exit(f"imacpro {' '.join(step)}: {done.stderr.strip()}")
    url = re.search(r"its page: (\S+)", done.stdout).group(1)
    try:
        pid = json.loads(cli("status", "bench", "--json", env=env).stdout)["pid"]

        def guest(command: str) -> None:
            cli("exec", "bench", command, env=env)
        guest("while ! grep -qs 'Magic Keyboard' /proc/bus/input/devices; do sleep 1; done")
        return measure(driver, url, guest, pid)
    finally:
        cli("stop", "bench", "--force", env=env)


# --- QEMU -------------------------------------------------------------------------------------

class QemuGuest:
    """QEMU with its VNC server's WebSocket, COM1 on a pipe for the guest's shell."""

    def __init__(self, image, width: int, height: int, ws_port: int):
        argv = qemu.command(image, 1, image.cmdline, "-vga", "none",
                            "-device", f"VGA,edid=on,xres={width},yres={height},vgamem_mb=64")
        display = next(n for n in range(50, 100) if port_free(5900 + n))
        argv[argv.index("-display"):argv.index("-display") + 2] = \
            ["-vnc", f"127.0.0.1:{display},websocket=127.0.0.1:{ws_port}"]
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL)
        self.output = bytearray()
        threading.Thread(target=self._read, daemon=True).start()
        wait(lambda: b"IMACPRO-READY" in self.output, "QEMU's guest to be ready")
        self.run(LOAD_BOCHS)

    def _read(self) -> None:
        while chunk := self.process.stdout.read1(65536):
            self.output += chunk

    def run(self, command: str) -> None:
        marker = f"DONE-{time.monotonic_ns()}"
        self.process.stdin.write(f"{command}\necho {marker[:5]}''{marker[5:]}\n".encode())
        self.process.stdin.flush()
        wait(lambda: marker.encode() in self.output, f"QEMU's guest to run {command!r}")

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def serve(directory: Path, files: dict[str, bytes]) -> tuple[http.server.HTTPServer, int]:
    """The vendor files and the QEMU page, on a port of 127.0.0.1."""
    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            if self.path.lstrip("/") in files:
                body = files[self.path.lstrip("/")]
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             partial(Handler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_qemu(driver, image, width: int, height: int) -> dict:
    ws_port = free_port()
    page = QEMU_PAGE.replace("WS_PORT", str(ws_port)).encode()
    server, port = serve(PAGE_DIR, {"qemu.html": page})
    guest = QemuGuest(image, width, height, ws_port)
    try:
        return measure(driver, f"http://127.0.0.1:{port}/qemu.html", guest.run,
                       guest.process.pid)
    finally:
        guest.close()
        server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=sorted(MODES))
    parser.add_argument("--only", choices=("qemu", "imacpro"), help="one side alone")
    args = parser.parse_args()
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        sys.exit("Debian's chromium and chromium-driver are needed")
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="imacpro-bench-") as tmp:
        work = Path(tmp)
        image = build_image(work)
        for run in range(args.runs):
            for size in args.modes:
                mode, width, height = MODES[size]
                for who in [args.only] if args.only else ("qemu", "imacpro"):
                    driver = browser()
                    try:
                        result = run_qemu(driver, image, width, height) if who == "qemu" \
                            else run_imacpro(driver, work / f"run{run}", mode)
                    finally:
                        driver.quit()
                    results.setdefault((size, who), []).append(result)
                    print(f"run {run + 1} {size} {who}: "
                          + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in result.items()), flush=True)
    print()
    for size in args.modes:
        for measure_name in ("key_ms_median", "key_ms_p90", "fps", "idle_cpu_pct"):
            row = []
            for who in ("qemu", "imacpro"):
                values = [r[measure_name] for r in results.get((size, who), [])] or [0.0]
                row.append(f"{min(values):.1f}–{max(values):.1f}")
            print(f"| {size} | {measure_name} | {row[0]} | {row[1]} |")


if __name__ == "__main__":
    main()
