"""A real headless Chromium driven over the DevTools protocol, on a pipe (no websocket library,
no browser download): Debian's `chromium`, which `make deps` installs.

`load(page)` opens a local file, waits for its load event, and returns what a reviewer asks:
the console messages and exceptions, every request the page made, values evaluated in the
page, and a PNG screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)
DEADLINE_S = 60.0


@dataclass
class Loaded:
    """What happened while the page loaded."""

    console: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    screenshot: bytes = b""


class _Pipe:
    """The protocol's framing: JSON messages separated by NUL bytes, fd 3 in, fd 4 out."""

    def __init__(self, to_browser: int, from_browser: int) -> None:
        self._out = to_browser
        self._in = from_browser
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, session: str | None = None, **params: Any) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        wanted = self.send(method, session, **params)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            message = self._read(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_event(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE_S
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            message = self._read(deadline)
            self.events.append(message)
            if message.get("method") == method:
                return message


def _high_pipe() -> tuple[int, int]:
    """A close-on-exec pipe above fd 9, so that dup2 onto 3 and 4 cannot clobber either end."""
    low = os.pipe()
    high = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in low)
    for fd in low:
        os.close(fd)
    return high[0], high[1]


def load(
    page: Path, expressions: dict[str, str], *, width: int = 1200, screenshot: bool = True
) -> Loaded:
    """Open `page` in a fresh profile; evaluate `expressions` (name -> JS) once it has loaded;
    take a full-page screenshot unless told not to (Chromium refuses very long pages)."""
    assert CHROMIUM is not None, "chromium is not installed: make deps"
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        to_read, to_browser = _high_pipe()  # chromium reads commands on its fd 3
        from_browser, to_write = _high_pipe()  # and writes answers on its fd 4

        def as_fds_3_and_4() -> None:
            os.dup2(to_read, 3)
            os.dup2(to_write, 4)

        process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            close_fds=False,  # closing would happen after the dup2s, and take fds 3 and 4
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=as_fds_3_and_4,  # noqa: PLW1509 - two dup2 calls, nothing that locks
        )
        os.close(to_read)
        os.close(to_write)
        pipe = _Pipe(to_browser, from_browser)
        try:
            return _drive(pipe, page, expressions, width, screenshot=screenshot)
        finally:
            try:
                pipe.send("Browser.close")
                process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
            os.close(to_browser)
            os.close(from_browser)


def _drive(
    pipe: _Pipe, page: Path, expressions: dict[str, str], width: int, *, screenshot: bool
) -> Loaded:
    target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
    session = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        pipe.call(f"{domain}.enable", session)
    pipe.call(
        "Emulation.setDeviceMetricsOverride",
        session,
        width=width,
        height=900,
        deviceScaleFactor=1,
        mobile=False,
    )
    pipe.events.clear()
    pipe.call("Page.navigate", session, url=page.resolve().as_uri())
    pipe.wait_event("Page.loadEventFired")
    loaded = Loaded()
    for name, expression in expressions.items():
        answer = pipe.call("Runtime.evaluate", session, expression=expression, returnByValue=True)
        loaded.values[name] = answer["result"].get("value")
    if screenshot:
        shot = pipe.call(
            "Page.captureScreenshot", session, format="png", captureBeyondViewport=True
        )
        loaded.screenshot = base64.b64decode(shot["data"])
    _collect(pipe.events, loaded)
    return loaded


_CONSOLE_EVENTS: Sequence[str] = (
    "Runtime.consoleAPICalled",
    "Runtime.exceptionThrown",
    "Log.entryAdded",
)


def _collect(events: list[dict[str, Any]], loaded: Loaded) -> None:
    for event in events:
        method = event.get("method")
        params = event.get("params", {})
        if method in _CONSOLE_EVENTS:
            loaded.console.append({"method": method, **params})
        elif method == "Network.requestWillBeSent":
            loaded.requests.append(params["request"]["url"])
