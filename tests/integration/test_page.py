"""The machine's page as a person uses it, in Debian's headless Chromium driven through its
chromedriver: `imacpro boot --display web` prints the URL; the page shows the guest's console
on its canvas (equal, region for region, to `imacpro screenshot`), the machine's name,
configuration and state, and COM1 in its serial pane; what is typed on the page reaches the
guest's shell on tty1 and on COM1; the screenshot link gives `imacpro screenshot`'s PNG; the
power button shuts the guest down. Requests without the token, from another Host, or of
garbage are refused or dropped while the machine runs on."""

import base64
import http.client
import io
import json
import re
import shutil
import socket
import struct
import time
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from machines import create, imacpro, signed_guest  # noqa: F401 (a fixture)
from test_display import read_png

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (shutil.which(CHROMIUM) and shutil.which(DRIVER)),
    reason="Debian's chromium and chromium-driver are not installed (make test installs them)")


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1600,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def wait_for(condition, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def get(port: int, path: str, host: str | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.putrequest("GET", path, skip_host=True)
    connection.putheader("Host", host or f"127.0.0.1:{port}")
    connection.endheaders()
    response = connection.getresponse()
    return response.status, response.read()


def exec_ok(command: str) -> str:
    result = imacpro("exec", "page", command, timeout=600)
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def canvas_pixels(driver) -> np.ndarray:
    url = driver.execute_script(
        "return document.querySelector('#screen canvas').toDataURL('image/png')")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    return np.asarray(image)


def hostile_websockets(port: int, token: str) -> None:
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{port}/not-the-token/rfb", open_timeout=60)
    assert refused.value.response.status_code == 403
    with connect(f"ws://127.0.0.1:{port}/{token}/rfb", open_timeout=60) as ws:
        assert ws.recv(timeout=60) == b"RFB 003.008\n"
        ws.send(b"RFB 009.999\n")                         # no such version: dropped
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=60)
    with connect(f"ws://127.0.0.1:{port}/{token}/rfb", open_timeout=60) as ws:
        ws.recv(timeout=60)
        ws.send(b"RFB 003.008\n" + b"\x01" + b"\x01")      # security None, shared
        ws.send(struct.pack(">BBHHHH", 3, 0, 0, 0, 3840, 2160))   # the whole screen...
    # ...and gone before it arrived.
    with connect(f"ws://127.0.0.1:{port}/{token}/machine", open_timeout=60,
                 max_size=None) as ws:
        assert "status" in json.loads(ws.recv(timeout=60))
        ws.send("{not json")
        while not isinstance(reply := ws.recv(timeout=60), str) or "status" in reply:
            pass
        assert "error" in json.loads(reply)
        with pytest.raises(ConnectionClosed):
            ws.send(b"x" * (2 << 20))                       # past the 1 MiB a message may be
            while True:
                ws.recv(timeout=60)


def test_the_page_shows_the_screen_types_into_the_guest_and_powers_it_off(  # noqa: F811
        signed_guest, imacpro_home, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    create("page")
    booted = imacpro("boot", "page", "--display", "web", "--detach")
    assert booted.returncode == 0, booted.stderr
    url = re.search(r"its page: (http://127\.0\.0\.1:\d+/[\w-]+/)", booted.stdout).group(1)
    parts = urlsplit(url)
    port, token = parts.port, parts.path.strip("/")
    driver = None
    try:
        # `imacpro view` gives the page already served; `imacpro status` names it.
        viewed = imacpro("view", "page", "--port", "1")
        assert viewed.returncode == 0 and viewed.stdout.strip() == url
        assert url in imacpro("status", "page").stdout

        # Without the token, with a wrong one, or from another Host: refused.
        assert get(port, "/")[0] == 403
        assert get(port, "/wrong-token/")[0] == 403
        assert get(port, f"/{token}/", host=f"attacker.example:{port}")[0] == 403
        assert get(port, f"/{token}/../../etc/passwd")[0] in (403, 404)
        status, page = get(port, f"/{token}/")
        assert status == 200 and b"viewer.js" in page
        junk = socket.create_connection(("127.0.0.1", port), timeout=60)
        junk.sendall(b"\x16\x03\x01\x02\x00" + bytes(range(256)) * 8 + b"\r\n\r\n")
        while junk.recv(4096):                  # whatever it answers, then it hangs up
            pass
        junk.close()

        # tty1 quiet and known, so that the canvas can be compared with a screenshot.
        exec_ok("while ! grep -qs 'Magic Keyboard' /proc/bus/input/devices; do sleep 1; done; "
                "printf '\\033[2J\\033[H\\033[?25l' > /dev/tty1; "
                "echo 0 > /sys/class/graphics/fbcon/cursor_blink; "
                "echo 'PAGE SCREEN' > /dev/tty1")
        driver = browser()
        driver.get(url)
        wait_for(lambda: driver.find_element(By.ID, "state").get_attribute("data-state")
                 == "running", "the page to show the machine running")
        assert driver.find_element(By.ID, "name").text == "page"
        assert "Xeon W-2150B" in driver.find_element(By.ID, "configuration").text
        assert "page — iMac Pro" == driver.title
        wait_for(lambda: driver.execute_script(
            "const c = document.querySelector('#screen canvas'); return [c.width, c.height]"
        ) == [3840, 2160], "the screen at the framebuffer's size")

        # The console's text on the canvas is the screenshot's, pixel for pixel.
        shot = tmp_path / "shot.png"
        assert imacpro("screenshot", "page", "-o", str(shot), "--native-size").returncode == 0
        picture, _ = read_png(shot)
        expected = (picture[:64, :1280] >> 8).astype(np.uint8)
        assert expected.any()
        wait_for(lambda: np.array_equal(canvas_pixels(driver)[:64, :1280], expected),
                 "the canvas to show the console")

        # Typed on the page: the keyboard reaches tty1's shell.
        canvas = driver.find_element(By.CSS_SELECTOR, "#screen canvas")
        ActionChains(driver).click(canvas).send_keys("echo VIEWER-OK > /tmp/v" + Keys.ENTER) \
            .perform()
        exec_ok("while [ ! -s /tmp/v ]; do sleep 1; done")
        assert exec_ok("cat /tmp/v") == "VIEWER-OK\n"

        # The serial pane is COM1: its output is there, and what is typed into it runs.
        wait_for(lambda: "root@imacpro" in driver.find_element(By.ID, "terminal").text,
                 "COM1's prompt in the serial pane")
        terminal = driver.find_element(By.CSS_SELECTOR, "#terminal textarea")
        terminal.send_keys("echo SERIAL-OK > /tmp/s" + Keys.ENTER)
        exec_ok("while [ ! -s /tmp/s ]; do sleep 1; done")
        assert exec_ok("cat /tmp/s") == "SERIAL-OK\n"

        # The screenshot link: `imacpro screenshot`'s PNG, the panel's 5120 × 2880.
        link = driver.find_element(By.ID, "screenshot")
        assert link.get_attribute("download") == "page.png"
        status, png = get(port, f"/{token}/screenshot.png")
        assert status == 200 and png.startswith(b"\x89PNG")
        panel = Image.open(io.BytesIO(png))
        assert panel.size == (5120, 2880)

        # WebSockets that break their protocol, ask too much or leave mid-frame are dropped.
        hostile_websockets(port, token)
        assert imacpro("status", "page").returncode == 0
        assert exec_ok("echo still") == "still\n"

        # The power button: a press, and the guest shuts itself down.
        driver.find_element(By.ID, "power").click()
        wait_for(lambda: "powered off" in imacpro("status", "page").stdout,
                 "the guest to shut down")
        wait_for(lambda: driver.find_element(By.ID, "state").get_attribute("data-state")
                 == "off", "the page to show the machine off")
    finally:
        if driver is not None:
            driver.quit()
        imacpro("stop", "page", "--force")
