"""Drive one real daemon with generated batches and check the invariant for each.

Shared by the end-to-end test and `benchmarks/fuzz_daemon.py`. One `FuzzDaemon` owns a test
root (inbox, outbox, archive, state, staging, a folder outside every batch), the local HTTP
server the `urls.txt` lines point at, and the daemon subprocess.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tarfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness import DaemonProcess, free_port, write_config
from tests.generated.invariant import (
    Expected,
    Violation,
    check_outbox,
    expected_inputs,
    scan_text_for_secrets,
)
from tests.generated.materialise import Materialiser, Planted
from tests.generated.remote import RemoteServer
from tests.generated.strategies import BatchSpec

BATCH_DEADLINE_S = 60.0
DISPOSE_DEADLINE_S = 30.0


def fuzz_config(root: Path, port: int, **overrides: Any) -> Path:
    """The daemon config the generated batches run under (limits small, so bad cases are fast)."""
    processing = {
        "workers": 2,
        "max_retries": 1,
        "retry_backoff_seconds": [0.1],
        "image_timeout_seconds": 15,
        "max_file_size": "2MB",
    }
    processing.update(overrides.pop("processing", {}))
    downloads = {"timeout_seconds": 2, "max_bytes": "4MB", "allow_private_networks": True}
    downloads.update(overrides.pop("downloads", {}))
    return write_config(
        root,
        processing=processing,
        downloads=downloads,
        listen=f"127.0.0.1:{port}",
        daemon={"log_level": "info"},
        inbox={"settle_seconds": 1, **overrides.pop("inbox", {})},
        **overrides,
    )


@dataclass
class Dropped:
    """A batch moved into the inbox, with what its outbox must account for."""

    number: int
    name: bytes
    planted: Planted
    expected: Expected
    dropped_at: float = field(default_factory=time.monotonic)
    outbox: Path | None = None

    @property
    def prefix(self) -> str:
        return f"g{self.number:05d}_"


def _pause() -> None:
    # The polling interval, never a synchronisation on its own.
    threading.Event().wait(0.05)


class FuzzDaemon:
    """A real daemon, its test server and the batches dropped into it."""

    def __init__(self, root: Path, **config: Any) -> None:
        self.root = root
        self.server = RemoteServer().start()
        self.port = free_port()
        self.config = fuzz_config(root, self.port, **config)
        self.process = DaemonProcess(root, self.config)
        self.materialiser = Materialiser(root / "staging", root / "outside", self.server)
        self._numbers = iter(range(1, 10**6))
        self._log_offset = 0
        self.restarts = 0
        self.secrets: set[str] = set()  # every credential dropped so far, for the log scan

    def start(self) -> FuzzDaemon:
        self.process.start()
        return self

    def stop(self) -> None:
        self.process.stop_quietly()
        self.server.stop()

    # -- batches --------------------------------------------------------------------------

    def drop(self, spec: BatchSpec) -> Dropped:
        """Build `spec` in staging, read what it must produce, and move it into the inbox."""
        number = next(self._numbers)
        name = f"g{number:05d}_".encode() + spec.suffix
        planted = self.materialiser.build(spec, name)
        expected = expected_inputs(
            planted.path,
            secrets=frozenset(planted.secrets),
            forbidden=frozenset(planted.forbidden_hashes),
        )
        # Known before the batch runs: a log scanned when another batch finishes may hold them.
        self.secrets |= expected.secrets
        os.rename(os.fsencode(planted.path), os.path.join(os.fsencode(self.process.inbox), name))
        return Dropped(number, name, planted, expected)

    def outbox_of(self, dropped: Dropped) -> Path | None:
        if dropped.outbox is None:
            for entry in os.scandir(self.process.outbox):
                if entry.name.startswith(dropped.prefix):
                    dropped.outbox = Path(entry.path)
                    break
        return dropped.outbox

    def wait(self, dropped: Dropped, deadline_s: float = BATCH_DEADLINE_S) -> list[Violation]:
        """Poll until the batch is terminal (summary.json), then check the invariant."""
        while True:
            violations = self.poll(dropped, deadline_s)
            if violations is not None:
                return violations
            _pause()

    def poll(
        self, dropped: Dropped, deadline_s: float = BATCH_DEADLINE_S
    ) -> list[Violation] | None:
        """None while the batch runs; once terminal (or late, or the daemon died) what broke."""
        dead = self.daemon_death()
        if dead:
            return dead
        outbox = self.outbox_of(dropped)
        if outbox is not None and (outbox / "summary.json").is_file():
            return self._finished(dropped, outbox)
        if time.monotonic() > dropped.dropped_at + deadline_s:
            where = outbox.name if outbox else "no outbox folder"
            return [Violation("batch-stalled", f"not terminal after {deadline_s:.0f} s ({where})")]
        return None

    def _finished(self, dropped: Dropped, outbox: Path) -> list[Violation]:
        violations = check_outbox(dropped.expected, outbox)
        violations += self._forbidden_fetches(dropped.planted)
        violations += self._disposed(dropped, deadline=time.monotonic() + DISPOSE_DEADLINE_S)
        violations += self.health()
        violations += scan_text_for_secrets(self._new_log(), frozenset(self.secrets))
        return violations

    def _forbidden_fetches(self, planted: Planted) -> list[Violation]:
        return [
            Violation("outside-read", f"the server was asked for {fragment} (behind a symlink)")
            for fragment in sorted(planted.forbidden_fragments)
            if self.server.requested(fragment)
        ]

    def _disposed(self, dropped: Dropped, deadline: float) -> list[Violation]:
        inbox_entry = os.path.join(os.fsencode(self.process.inbox), dropped.name)
        while os.path.lexists(inbox_entry):
            if time.monotonic() > deadline:
                return [Violation("not-archived", "input still in the inbox after summary.json")]
            _pause()
        return []

    # -- health ---------------------------------------------------------------------------

    def daemon_death(self) -> list[Violation]:
        self.drain_notifications()
        process = self.process.process
        if process is not None and process.poll() is not None:
            return [Violation("daemon-died", f"exit code {process.returncode}")]
        return []

    def drain_notifications(self) -> None:
        """Read the daemon's sd_notify datagrams, as systemd does.

        Undrained, the socket's queue (10 datagrams) fills within seconds and the daemon's
        next notify blocks it.
        """
        if self.process.notify is not None:
            self.process.read_notifications()
            self.process.messages.clear()

    def health(self) -> list[Violation]:
        dead = self.daemon_death()
        if dead:
            return dead
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=10) as r:
                status = r.status
                body = r.read(500)
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read(500)
        except OSError as exc:
            return [Violation("unhealthy", f"/healthz unreachable: {exc}")]
        if status != 200:
            return [Violation("unhealthy", f"/healthz {status}: {body!r}")]
        return []

    def restart(self) -> None:
        """Start a new daemon after a death (the benchmark keeps going and counts it)."""
        self.process.stop_quietly()
        self.process = DaemonProcess(self.root, self.config)
        self.process.start()
        self.restarts += 1

    def _new_log(self) -> bytes:
        path = self.root / "daemon.log"
        try:
            with path.open("rb") as handle:
                handle.seek(self._log_offset)
                text = handle.read()
        except OSError:
            return b""
        self._log_offset += len(text)
        return text

    def log_tail(self, size: int = 40_000) -> str:
        path = self.root / "daemon.log"
        try:
            data = path.read_bytes()
        except OSError:
            return ""
        return data[-size:].decode("utf-8", errors="replace")

    # -- reproducers ----------------------------------------------------------------------

    def save_reproducer(self, dropped: Dropped, violations: list[Violation], folder: Path) -> Path:
        """Keep the batch's input (from the archive or inbox), outbox and findings for later."""
        target = folder / dropped.prefix.rstrip("_")
        target.mkdir(parents=True, exist_ok=True)
        (target / "violations.txt").write_text(
            "\n".join(str(v) for v in violations) + "\n", encoding="utf-8"
        )
        (target / "spec.repr").write_text(repr(dropped.planted.spec), encoding="utf-8")
        with (target / "spec.pickle").open("wb") as handle:  # Materialiser(...).build(spec, name)
            pickle.dump(dropped.planted.spec, handle)
        try:
            with tarfile.open(target / "input.tar", "w") as archive:
                for source in self._input_copies(dropped):
                    archive.add(source, arcname=os.fsdecode(dropped.name))
        except OSError as exc:  # a path past PATH_MAX: spec.repr still rebuilds it exactly
            (target / "input.tar.error").write_text(f"{exc}\n", encoding="utf-8")
        outbox = self.outbox_of(dropped)
        if outbox is not None:
            shutil.copytree(outbox, target / "outbox", dirs_exist_ok=True)
        (target / "daemon.log.tail").write_text(self.log_tail(), encoding="utf-8")
        return target

    def _input_copies(self, dropped: Dropped) -> list[str]:
        found: list[str] = []
        for parent in (self.process.inbox, self.process.archive):
            for dirpath, dirnames, filenames in os.walk(os.fsencode(parent)):
                if dropped.name in dirnames or dropped.name in filenames:
                    found.append(os.fsdecode(os.path.join(dirpath, dropped.name)))
                dirnames[:] = [d for d in dirnames if d != dropped.name]
        return found

    def discard_input(self, dropped: Dropped) -> None:
        """Remove a passing batch's archived input (the benchmark would fill the disk)."""
        for source in self._input_copies(dropped):
            if os.path.isdir(source) and not os.path.islink(source):
                shutil.rmtree(source, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(source)
