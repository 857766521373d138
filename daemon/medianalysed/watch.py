"""InboxWatcher: watchdog observers on the inboxes, one non-recursive watch each.

The handler only filters and `tell`s the supervisor (it runs on watchdog's single
dispatcher thread, under the observer lock: STYLE §4.2.5); what happens inside a batch
folder is seen by the supervisor's readiness checks, not by events, so the watch count
stays at one per inbox. Network filesystems get a polling observer, because inotify
does not see changes made by other hosts.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from medianalysed.config import InboxConfig
from medianalysed.errors import StartupError
from medianalysed.messages import PathSeen

logger = logging.getLogger(__name__)

NETWORK_FS_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb",
        "smb2",
        "smb3",
        "smbfs",
        "ncpfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "davfs",
        "sshfs",
        "virtiofs",
    }
)
POLLING_INTERVAL_S = 1.0


class _StopRaceFilter(logging.Filter):
    """Drop watchdog's harmless ERROR when an emitter thread wakes after `stop()`.

    watchdog 7 logs "queue_events() called when the thread is inactive" whenever a pending
    read returns during shutdown; on every clean stop it would look like a failure.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_StopRaceFilter())


def filesystem_type(path: Path, mounts_file: Path = Path("/proc/mounts")) -> str:
    """The filesystem type of the mount that holds `path` (longest mount-point prefix)."""
    target = os.path.realpath(path)
    best, best_type = "", "unknown"
    try:
        lines = mounts_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return best_type
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fields[2]
    return best_type


def choose_watch_mode(inbox: InboxConfig, fs_type: str) -> str:
    """`events` or `polling` for an inbox, from its `watch` setting and filesystem type."""
    if inbox.watch != "auto":
        return inbox.watch
    if fs_type in NETWORK_FS_TYPES or fs_type.startswith("fuse"):
        return "polling"
    return "events"


class InboxEventHandler(FileSystemEventHandler):
    """Turns any event directly inside an inbox into `PathSeen` for the supervisor."""

    def __init__(self, inbox: InboxConfig, supervisor: pykka.ActorRef[Any]) -> None:
        self._inbox = inbox
        self._supervisor = supervisor

    def on_any_event(self, event: FileSystemEvent) -> None:
        """Filter and tell; never raise (an exception would kill the dispatcher thread)."""
        try:
            for raw in (event.src_path, getattr(event, "dest_path", "")):
                path = os.fsdecode(raw) if raw else ""
                if path and Path(path).parent == self._inbox.path:
                    self._supervisor.tell(PathSeen(self._inbox.name, path))
        except Exception:
            logger.exception("inbox event handler failed on %r", event)


@dataclass(frozen=True, slots=True)
class WatchedInbox:
    """One running observer."""

    inbox: InboxConfig
    mode: str
    observer: BaseObserver


class InboxWatcher:
    """Starts and stops one observer per inbox."""

    def __init__(
        self,
        supervisor: pykka.ActorRef[Any],
        *,
        polling_interval_s: float = POLLING_INTERVAL_S,
        on_mode: Callable[[str, str], None] = lambda _inbox, _mode: None,
    ) -> None:
        self._supervisor = supervisor
        self._polling_interval_s = polling_interval_s
        self._on_mode = on_mode
        self._watched: dict[str, WatchedInbox] = {}

    @property
    def watched(self) -> dict[str, WatchedInbox]:
        """The running observers by inbox name."""
        return dict(self._watched)

    def start(self, inboxes: tuple[InboxConfig, ...]) -> None:
        """Watch every inbox; creates missing inbox directories."""
        for inbox in inboxes:
            self.watch(inbox)

    def watch(self, inbox: InboxConfig) -> None:
        """Start watching one inbox (used at start and on reload)."""
        if inbox.name in self._watched:
            return
        try:
            inbox.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create inbox {inbox.path} ({inbox.name}): {exc.strerror}"
            raise StartupError(msg) from exc
        fs_type = filesystem_type(inbox.path)
        mode = choose_watch_mode(inbox, fs_type)
        observer = self._observer_for(mode)
        observer.schedule(InboxEventHandler(inbox, self._supervisor), str(inbox.path))
        try:
            observer.start()
        except OSError as exc:
            raise StartupError(_watch_error(inbox, exc)) from exc
        logger.info(
            "watching inbox %s at %s with %s (%s, filesystem %s)",
            inbox.name,
            inbox.path,
            type(observer).__name__,
            mode,
            fs_type,
        )
        self._watched[inbox.name] = WatchedInbox(inbox, mode, observer)
        self._on_mode(inbox.name, mode)

    def _observer_for(self, mode: str) -> BaseObserver:
        if mode == "polling":
            return PollingObserver(timeout=self._polling_interval_s)
        # Explicitly inotify: watchdog's generic Observer silently falls back to polling.
        from watchdog.observers.inotify import InotifyObserver  # noqa: PLC0415

        return InotifyObserver()

    def unwatch(self, name: str) -> None:
        """Stop watching one inbox."""
        watched = self._watched.pop(name, None)
        if watched is not None:
            watched.observer.stop()
            watched.observer.join(timeout=5)

    def healthy(self) -> bool:
        """Whether every observer thread is alive."""
        return all(w.observer.is_alive() for w in self._watched.values())

    def stop(self) -> None:
        """Stop and join every observer."""
        for name in list(self._watched):
            self.unwatch(name)


def _watch_error(inbox: InboxConfig, exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return (
            f"inotify watch limit reached while watching {inbox.path}; raise "
            'fs.inotify.max_user_watches or set watch = "polling" for this inbox'
        )
    if exc.errno == errno.EMFILE:
        return (
            f"inotify instance limit reached while watching {inbox.path}; raise "
            'fs.inotify.max_user_instances or set watch = "polling"'
        )
    return f"cannot watch {inbox.path}: {exc.strerror}"
