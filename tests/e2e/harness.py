"""Start the real daemon as a subprocess on a temporary inbox, and wait for things.

With `$MEDIANALYSED_BIN` set (the built single binary), the daemon and the CLI helpers run
that executable instead of `python -m medianalysed`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

DEADLINE_S = 60.0
SLOW_PHOTO = "exif-samples/heic/IMG_5195.HEIC"
BIN_ENV = "MEDIANALYSED_BIN"
# Inherited from a test run under systemd, these would change what the daemon does.
_MANAGER_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "MEDIANALYSED_CONFIG")


def cli_command() -> list[str]:
    """The command that runs medianalysed: `$MEDIANALYSED_BIN`, or this Python's module."""
    binary = os.environ.get(BIN_ENV)
    if binary:
        return [binary]
    return [sys.executable, "-m", "medianalysed"]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without service-manager variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in _MANAGER_ENV}
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = DEADLINE_S
) -> subprocess.CompletedProcess[str]:
    """Run `medianalysed ARGS...` as a subprocess; stdout and stderr are captured as text."""
    return subprocess.run(
        [*cli_command(), *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def slow_photos(corpora: Path, count: int) -> dict[str, bytes]:
    """`count` distinct HEIC photos (file name -> bytes) that take a while to analyse.

    A few hundred ms each on 2 cores, so a batch of them with one worker stays running long
    enough to be signalled, killed or cancelled (small JPEGs finish a 40-image batch in well
    under a second). Each copy ends with its own well-formed, unknown (so skipped) ISOBMFF
    box: the bytes, hence the sha256 and the content-cache key, differ; the picture does not.
    """
    original = (corpora / SLOW_PHOTO).read_bytes()
    return {
        f"{index:03d}.heic": original + struct.pack(">I4s8s", 16, b"uniq", b"%08d" % index)
        for index in range(count)
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(
    predicate: Callable[[], T | None], *, timeout: float = DEADLINE_S, what: str = ""
) -> T:
    """Poll `predicate` until it returns something truthy, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        _pause(0.05)


def holds_for(predicate: Callable[[], object], seconds: float, *, what: str = "") -> None:
    """Fail as soon as `predicate` turns falsy within the next `seconds` (a negative check)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            raise AssertionError(f"stopped holding: {what or predicate}")
        _pause(0.05)
    if not predicate():
        raise AssertionError(f"stopped holding: {what or predicate}")


def _pause(seconds: float) -> None:
    # The polling interval of wait_for, never a synchronisation on its own.
    threading.Event().wait(seconds)


def write_config(root: Path, **overrides: Any) -> Path:
    """A config file under `root` with inbox/outbox/archive/state below it.

    Overrides: `inbox`, `processing`, `daemon` (dicts merged into those tables), `webhook`,
    `downloads`, `executor`, `api` (tables written when given), `listen`
    (the metrics address), `extra_inboxes` (more `[[inbox]]` tables, written as given;
    their directories are created).
    """
    inbox = {
        "name": "default",
        "path": "inbox",
        "outbox": "outbox",
        "archive": "archive",
        "settle_seconds": 1,
        "rescan_seconds": 300,
    }
    inbox.update(overrides.pop("inbox", {}))
    processing = {"workers": 2, "retry_backoff_seconds": [0.2, 0.5, 1]}
    processing.update(overrides.pop("processing", {}))
    daemon = {"state_dir": "state", "log_level": "debug"}
    daemon.update(overrides.pop("daemon", {}))
    extra_inboxes: list[dict[str, Any]] = overrides.pop("extra_inboxes", [])
    lines = [
        "[daemon]",
        *(f"{k} = {json.dumps(v)}" for k, v in daemon.items()),
        "[processing]",
        *(f"{k} = {json.dumps(v)}" for k, v in processing.items()),
        "[metrics]",
        f"listen = {json.dumps(overrides.pop('listen', ''))}",
    ]
    for table in ("webhook", "downloads", "executor", "api"):
        values = overrides.pop(table, {})
        if values:
            lines += [f"[{table}]", *(f"{k} = {json.dumps(v)}" for k, v in values.items())]
    lines += [
        "[[inbox]]",
        *(f"{k} = {json.dumps(v)}" for k, v in inbox.items()),
    ]
    for extra in extra_inboxes:
        lines += ["[[inbox]]", *(f"{k} = {json.dumps(v)}" for k, v in extra.items())]
    assert not overrides, overrides
    path = root / "medianalysed.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in ("inbox", "outbox", "archive"):
        (root / name).mkdir(exist_ok=True)
    for extra in extra_inboxes:
        for key in ("path", "outbox", "archive"):
            if key in extra:
                (root / extra[key]).mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class DaemonProcess:
    """One `medianalysed run` subprocess with a notify socket the test owns."""

    root: Path
    config: Path
    command: list[str] = field(default_factory=cli_command)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    notify: socket.socket | None = None
    messages: list[str] = field(default_factory=list)

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    def start(self) -> DaemonProcess:
        socket_path = self.root / f"notify-{time.monotonic_ns()}.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(socket_path))
        self.notify.setblocking(False)
        env = clean_env(NOTIFY_SOCKET=str(socket_path), PYTHONUNBUFFERED="1", **self.env)
        self.log = (self.root / "daemon.log").open("ab")
        self.process = subprocess.Popen(
            [*self.command, "run", "--config", str(self.config)],
            cwd=self.root,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            # Its own process group, like systemd's cgroup: SIGKILL reaches every process of
            # it (the single binary's bootloader would otherwise leave its child running).
            start_new_session=True,
        )
        self.wait_notified("READY=1")
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def send(self, signum: signal.Signals) -> None:
        """Send a real signal to the daemon process."""
        assert self.process is not None
        self.process.send_signal(signum)

    def wait_notification(
        self, predicate: Callable[[str], bool], timeout: float = DEADLINE_S, what: str = ""
    ) -> str:
        """The first notification line (any received so far counts) matching `predicate`."""

        def found() -> str | None:
            self._check_alive()
            return next((m for m in self.read_notifications() if predicate(m)), None)

        return wait_for(found, timeout=timeout, what=what or "a notification")

    def until(
        self, predicate: Callable[[], T | None], *, what: str, timeout: float = 2 * DEADLINE_S
    ) -> T:
        """`wait_for`, draining the notify socket meanwhile (a full one blocks the daemon's
        sd_notify) and failing at once if the daemon exits."""

        def check() -> T | None:
            self.read_notifications()
            self._check_alive()
            return predicate()

        return wait_for(check, timeout=timeout, what=what)

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"daemon exited {self.process.returncode}:\n{self.log_text()}")

    def read_notifications(self) -> list[str]:
        assert self.notify is not None
        while True:
            try:
                data = self.notify.recv(4096)
            except BlockingIOError:
                return self.messages
            self.messages.extend(data.decode().splitlines())

    def wait_notified(self, line: str, timeout: float = DEADLINE_S) -> None:
        def seen() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited {self.process.returncode}:\n{self.log_text()}")
            return line in self.read_notifications()

        wait_for(seen, timeout=timeout, what=line)

    def log_text(self) -> str:
        return (self.root / "daemon.log").read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole daemon: bootloader, Python process, fork server, workers."""
        assert self.process is not None
        self._kill_group()
        self._close()

    def _kill_group(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._close()
        return code

    def _close(self) -> None:
        if self.notify is not None:
            self.read_notifications()
            self.notify.close()
            self.notify = None
        self.log.close()

    def stop_quietly(self) -> None:
        if self.process is not None:
            self._kill_group()
        if self.notify is not None:
            self._close()

    def summary(self, batch_id: str, timeout: float = DEADLINE_S) -> dict[str, Any]:
        path = self.outbox / batch_id / "summary.json"

        def present() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited {self.process.returncode}:\n{self.log_text()}")
            return path.is_file()

        wait_for(present, timeout=timeout, what=str(path))
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def results(self, batch_id: str) -> list[dict[str, Any]]:
        lines = (self.outbox / batch_id / "results.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
