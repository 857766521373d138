"""Disk faults: which errors are the disk's, who is paused by them, and damaged databases.

One mechanism for every write the daemon makes (state, outbox, archive, downloads):

- `write_failure` / `sqlite_fault` classify an `OSError` or `sqlite3.Error`: a full, read-only
  or failing disk (or a quota, or permissions) becomes a `DiskWriteError`, a damaged database a
  `StateCorruptError`; anything else is left alone (a bug stays a bug).
- `GuardedCache` is the diskcache every durable store opens (`state.open_durable_cache`): its
  methods raise those two instead of raw SQLite errors.
- `FaultBoard` remembers, in memory, who is paused by which failure: it logs one line when a
  writer starts failing and one when it recovers, counts every failed attempt (the
  `medianalysed_write_failures_total{target,errno}` metric) and gives `/healthz` its reasons.
- A damaged database found while running is latched (`corruption_seen`) and marked on disk
  (`DAMAGED_MARKER` in its directory), so the main loop exits `STATE_REPAIR` and the next
  start moves it aside and rebuilds it (`staterepair`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import diskcache

from medianalysed.errors import DiskWriteError, StateCorruptError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Errors that say "the storage refused", not "the data is wrong": the work waits for them.
DISK_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT, errno.EACCES, errno.EPERM}
)
# SQLite primary result codes (the low byte of `sqlite_errorcode`) and the errno they mean.
_SQLITE_DISK_CODES = {
    13: "ENOSPC",  # SQLITE_FULL: "database or disk is full"
    10: "EIO",  # SQLITE_IOERR: "disk I/O error"
    8: "EROFS",  # SQLITE_READONLY: "attempt to write a readonly database"
    14: "EACCES",  # SQLITE_CANTOPEN: "unable to open database file"
}
_SQLITE_CORRUPT_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB
# For SQLite builds that do not set `sqlite_errorcode`.
_SQLITE_MESSAGES = {
    "database or disk is full": "ENOSPC",
    "disk i/o error": "EIO",
    "attempt to write a readonly database": "EROFS",
    "unable to open database file": "EACCES",
}
_CORRUPT_MESSAGES = ("malformed", "file is not a database", "database corrupt")

TARGETS = ("state", "outbox", "archive", "downloads")
# Faults of the storage, never of one input: handlers that turn an input's failure into its
# record let these through (a disk fault parks the batch, damage stops the daemon for repair).
STORAGE_FAULTS = (DiskWriteError, StateCorruptError)
DAMAGED_MARKER = ".damaged"


def write_failure(
    exc: OSError, target: str, path: Path | str | None = None
) -> DiskWriteError | None:
    """The `DiskWriteError` an OSError means, or None when it is not the disk's fault."""
    if exc.errno not in DISK_ERRNOS:
        return None
    where = str(path if path is not None else exc.filename or "?")
    return DiskWriteError(target, where, errno.errorcode[exc.errno], exc.strerror or str(exc))


def sqlite_fault(
    exc: sqlite3.Error, target: str, path: Path | str
) -> DiskWriteError | StateCorruptError | None:
    """What a SQLite error means: a disk fault, a damaged database, or neither (None)."""
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc)
    lowered = text.lower()
    primary = None if code is None else code & 0xFF
    if primary in _SQLITE_CORRUPT_CODES or any(m in lowered for m in _CORRUPT_MESSAGES):
        return StateCorruptError(str(path), text)
    errno_name = _SQLITE_DISK_CODES.get(primary) if primary is not None else None
    if errno_name is None:
        errno_name = next((name for m, name in _SQLITE_MESSAGES.items() if m in lowered), None)
    if errno_name is None:
        return None
    return DiskWriteError(target, str(path), errno_name, text)


@contextlib.contextmanager
def classified(target: str, path: Path | str) -> Iterator[None]:
    """Turn disk faults raised inside the block into `DiskWriteError` / `StateCorruptError`.

    A damaged database is also latched for the main loop (see `note_corruption`).
    """
    try:
        yield
    except sqlite3.Error as exc:
        fault = sqlite_fault(exc, target, path)
        if fault is None:
            raise
        if isinstance(fault, StateCorruptError):
            note_corruption(Path(path), str(exc))
        raise fault from exc
    except UnicodeDecodeError as exc:
        if target != "state":
            raise
        # Text SQLite returns (a value, an error message quoting the schema) is not UTF-8:
        # only damaged pages do that, since everything stored was encoded by us.
        note_corruption(Path(path), f"undecodable text: {exc.reason}")
        raise StateCorruptError(str(path), f"undecodable text: {exc.reason}") from exc
    except shutil.Error as exc:
        failure = _copy_failure(exc, target, path)
        if failure is None:
            raise
        raise failure from exc
    except OSError as exc:
        failure = write_failure(exc, target, exc.filename or path)
        if failure is None:
            raise
        raise failure from exc


_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\]")


def _copy_failure(exc: shutil.Error, target: str, path: Path | str) -> DiskWriteError | None:
    """`shutil.copytree` keeps only the text of each file's error: find the errno in it."""
    entries = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    for entry in entries:
        found = _ERRNO_TEXT.search(str(entry[-1])) if entry else None
        if found is not None and int(found[1]) in DISK_ERRNOS:
            number = int(found[1])
            where = str(entry[1]) if len(entry) > 1 else str(path)
            return DiskWriteError(target, where, errno.errorcode[number], os.strerror(number))
    return None


# --- the guarded cache ---------------------------------------------------------------------

_PLAIN_METHODS = (
    "set",
    "__setitem__",
    "touch",
    "add",
    "incr",
    "decr",
    "get",
    "__getitem__",
    "read",
    "__contains__",
    "pop",
    "__delitem__",
    "delete",
    "push",
    "pull",
    "peek",
    "peekitem",
    "check",
    "evict",
    "expire",
    "cull",
    "clear",
    "__len__",
    "volume",
)
_GENERATOR_METHODS = ("iterkeys", "__iter__", "__reversed__")


class GuardedCache(diskcache.Cache):  # type: ignore[misc]  # diskcache is untyped
    """A diskcache raising `DiskWriteError` / `StateCorruptError` for every disk fault.

    Methods that call each other pass the already classified exception through untouched.
    """

    @contextlib.contextmanager
    def transact(self, retry: bool = False) -> Iterator[None]:
        """diskcache's transaction, with a failed commit classified like any write."""
        with classified("state", self.directory), super().transact(retry):
            yield


def _guard_plain(name: str) -> Callable[..., Any]:
    original = getattr(diskcache.Cache, name)

    def guarded(self: GuardedCache, *args: Any, **kwargs: Any) -> Any:
        with classified("state", self.directory):
            return original(self, *args, **kwargs)

    guarded.__name__ = name
    guarded.__doc__ = original.__doc__
    return guarded


def _guard_generator(name: str) -> Callable[..., Any]:
    original = getattr(diskcache.Cache, name)

    def guarded(self: GuardedCache, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with classified("state", self.directory):
            yield from original(self, *args, **kwargs)

    guarded.__name__ = name
    guarded.__doc__ = original.__doc__
    return guarded


for _name in _PLAIN_METHODS:
    setattr(GuardedCache, _name, _guard_plain(_name))
for _name in _GENERATOR_METHODS:
    setattr(GuardedCache, _name, _guard_generator(_name))


# --- damaged databases found while running ---------------------------------------------------

_corruption_lock = threading.Lock()
_corruption: StateCorruptError | None = None


def note_corruption(database: Path, detail: str) -> None:
    """Remember a damaged database (process-wide) and mark it for repair at the next start.

    `database` is the cache directory (or a file in it). Logged once per process.
    """
    global _corruption  # noqa: PLW0603 - one latch per process: any thread may find damage
    directory = database if database.is_dir() else database.parent
    with _corruption_lock:
        first = _corruption is None
        if first:
            _corruption = StateCorruptError(str(directory), detail)
    with contextlib.suppress(OSError):
        (directory / DAMAGED_MARKER).write_text(detail + "\n", encoding="utf-8")
    if first:
        logger.critical(
            "state database %s is damaged (%s); marked for repair at the next start",
            directory,
            detail,
        )


def corruption_seen() -> StateCorruptError | None:
    """The first damaged database found while running, or None."""
    return _corruption


def reset_corruption() -> None:
    """Forget a latched corruption (tests, and a daemon started again in the same process)."""
    global _corruption  # noqa: PLW0603
    with _corruption_lock:
        _corruption = None


# --- who is paused by what -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Fault:
    failure: DiskWriteError
    since: float


class FaultBoard:
    """In-memory record of the writers paused by a disk fault; safe from any thread.

    A writer is named by a key (`batch <id>`, `supervisor`...). `failed` is called at every
    failed attempt, `recovered` after the next success; only the transitions are logged.
    """

    def __init__(
        self,
        on_failure: Callable[[str, str], None] = lambda _target, _errno: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_failure = on_failure
        self._clock = clock
        self._lock = threading.Lock()
        self._faults: dict[str, _Fault] = {}

    def failed(self, who: str, failure: DiskWriteError, *, retry_in: float) -> bool:
        """Record a failed attempt; True when `who` was not failing before (and it is logged)."""
        self._on_failure(failure.target, failure.errno_name)
        with self._lock:
            previous = self._faults.get(who)
            changed = previous is None or _differs(previous.failure, failure)
            since = self._clock() if previous is None else previous.since
            self._faults[who] = _Fault(failure, since)
        if changed:
            logger.error(
                "%s paused: %s; retrying by itself (next in %.0f s)", who, failure, retry_in
            )
        return previous is None

    def count(self, failure: DiskWriteError) -> None:
        """Count a failed write that pauses nobody (logged by the caller)."""
        self._on_failure(failure.target, failure.errno_name)

    def recovered(self, who: str) -> None:
        """`who` wrote successfully again (a no-op when it was not failing)."""
        with self._lock:
            fault = self._faults.pop(who, None)
        if fault is not None:
            logger.warning(
                "%s resumed: %s at %s is writable again after %.0f s",
                who,
                fault.failure.target,
                fault.failure.path,
                self._clock() - fault.since,
            )

    def failing(self, who: str) -> bool:
        """Whether `who` is paused now."""
        with self._lock:
            return who in self._faults

    def reasons(self) -> list[str]:
        """One line per distinct failure, for `/healthz` (empty when every write succeeds)."""
        with self._lock:
            faults = list(self._faults.items())
        lines: dict[tuple[str, str, str], list[str]] = {}
        for who, fault in faults:
            failure = fault.failure
            lines.setdefault((failure.target, failure.path, failure.errno_name), []).append(who)
        return [
            f"cannot write {target} at {path} ({errno_name}): {', '.join(sorted(whos))} paused"
            for (target, path, errno_name), whos in sorted(lines.items())
        ]


def _differs(old: DiskWriteError, new: DiskWriteError) -> bool:
    # Not the path: a step that fails on another file of the same disk is the same outage.
    return (old.target, old.errno_name) != (new.target, new.errno_name)
