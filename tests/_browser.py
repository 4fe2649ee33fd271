"""Open a page in a real browser (Debian's headless chromium) and report what a reader would see.

The browser is driven through the Chrome DevTools Protocol over ``--remote-debugging-pipe``
(the browser reads commands from fd 3 and writes replies to fd 4, NUL-separated JSON), so no
websocket client and no extra package are needed, and no port is opened. The check collects
console errors, uncaught exceptions, failed loads (``Log.entryAdded`` at level error), every
network request, the decoded size of every image, and a full-page screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# As root in a container: no sandbox, no GPU, nothing that talks to the network on its own.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """Path of the chromium binary, or None."""
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


@dataclass
class PageCheck:
    """What loading a page gave."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)  # src (first 40 chars), complete, naturalWidth
    screenshot_png: bytes = b""
    title: str = ""
    text: str = ""


class _Pipe:
    def __init__(self, process, write_fd, read_fd):
        self.process = process
        self.write_fd = write_fd
        self.read_fd = read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, *, session: str | None = None, timeout: float = 20.0) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        for index, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(index)
        while True:
            event = self._read_message(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except TimeoutError:
            pass


def check_page(path, *, chromium: str | None = None, width: int = 1280, timeout: float = 25.0) -> PageCheck:
    """Load the file ``path`` in headless chromium and return what it showed.

    Parameters
    ----------
    path : path
        An HTML file on disk (loaded as a ``file://`` URL).
    chromium : str, optional
        The browser binary (default: :func:`find_chromium`).
    width : int
        Viewport width in CSS pixels; the screenshot covers the whole page.
    timeout : float
        Seconds for the page to load.
    """
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium not found")
    url = Path(path).resolve().as_uri()
    # Hold fds 3 and 4 while the pipes (and subprocess's own error pipe) are made, so none of
    # them is 3 or 4 and the dup2 below clobbers nothing.
    placeholders = []
    while True:
        fd = os.open(os.devnull, os.O_RDONLY)
        if fd > 4:
            os.close(fd)
            break
        placeholders.append(fd)
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()

    def child_fds():  # the browser's fd 3 reads commands, fd 4 writes replies
        a, b = os.dup(to_browser_r), os.dup(from_browser_w)
        os.dup2(a, 3)
        os.dup2(b, 4)

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        process = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},900", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child_fds, pass_fds=(3, 4), close_fds=True,
        )
        for fd in placeholders:
            os.close(fd)
        os.close(to_browser_r)
        os.close(from_browser_w)
        pipe = _Pipe(process, to_browser_w, from_browser_r)
        try:
            return _run_checks(pipe, url, width, timeout)
        finally:
            try:
                pipe.send("Browser.close", timeout=5)
            except Exception:
                pass
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            os.close(to_browser_w)
            os.close(from_browser_r)


def _run_checks(pipe: _Pipe, url: str, width: int, timeout: float) -> PageCheck:
    target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        pipe.send(f"{domain}.enable", session=session)
    pipe.send("Emulation.setDeviceMetricsOverride",
              {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
    pipe.events.clear()
    pipe.send("Page.navigate", {"url": url}, session=session)
    pipe.wait_for("Page.loadEventFired", timeout=timeout)
    pipe.drain(0.3)  # late console messages
    result = PageCheck()
    for event in pipe.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            result.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            result.console_errors.append(details.get("text", "") + " " + str(details.get("exception", {}).get("description", "")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            result.console_errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")
        elif method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            result.requests.append(url[:60] if url.startswith("data:") else url)
    script = (
        "JSON.stringify({title: document.title, text: document.body ? document.body.innerText : '',"
        " images: Array.from(document.images).map(i => ({src: i.src.slice(0, 40), complete: i.complete,"
        " naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight}))})"
    )
    value = pipe.send("Runtime.evaluate", {"expression": script, "returnByValue": True}, session=session)
    data = json.loads(value["result"]["value"])
    result.title, result.text, result.images = data["title"], data["text"], data["images"]
    shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session, timeout=timeout)
    result.screenshot_png = base64.b64decode(shot["data"])
    return result


def is_blank(png: bytes) -> bool:
    """True when every pixel of the PNG has the same colour."""
    import io

    import numpy as np
    from matplotlib import image as mpimg

    pixels = mpimg.imread(io.BytesIO(png), format="png")
    flat = pixels.reshape(-1, pixels.shape[-1]) if pixels.ndim == 3 else pixels.reshape(-1, 1)
    return bool(np.all(flat == flat[0]))
