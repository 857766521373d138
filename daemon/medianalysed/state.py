"""Durable state: a typed facade over diskcache.

Everything the daemon must not lose across a crash lives here, as JSON text (never
pickled classes, so renames and upgrades cannot break old state). diskcache runs SQLite
in WAL mode: a transaction that returned survives SIGKILL of the process.

Layout under `state_dir`:

- `batches/`: one record per batch, small and iterable (`batch_id` -> JSON), and the
  claims: which input folder became which batch, so no folder is started twice.
- `images/`: per-image records (`<batch_id>\\x00i\\x00<path>`) and the batch's ordered path
  list in chunks (`<batch_id>\\x00p\\x00<chunk>`), so a 100,000-image batch streams.

Paths and claimed names are keys (`names.py`): a key holding undecodable bytes is stored as a
bytes key (SQLite cannot hold its lone surrogates as text), every other key as text, exactly
as earlier versions stored it.
- `content/`: the content cache (analysis by sha256 and settings), written by workers.
- `control/`: commands from the CLI (`retry`, `cancel`, `pause`...), a FIFO deque.
- `history/`: the duplicate index (owned by `dupindex`).
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import diskcache

from medianalysed import names
from medianalysed.diskfaults import GuardedCache, classified
from medianalysed.errors import DiskWriteError, StateError
from medianalysed.lifecycle import RESTARTABLE, BatchPhase, IllegalTransitionError, check_move
from medianalysed.models import STATE_SCHEMA_VERSION, BatchStatus, ImageStatus, Priority

_logger = logging.getLogger(__name__)

PATH_CHUNK_SIZE = 1000
_SEP = "\x00"
_CLAIM_PREFIX = "\x00claim\x00"
_STEP_PREFIX = "step\x00"
_SET_ASIDE_PREFIX = "set_aside\x00"
_PROGRESS_PREFIX = "progress\x00"
_SQL_VARIABLES = 500  # keys per query, well under SQLite's limit on bound parameters
_MODE_RAW = 1  # diskcache.core.MODE_RAW: the value is inline in the row


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchRecord:
    """What the daemon remembers about one batch."""

    batch_id: str
    inbox: str
    source: str
    outbox_dir: str
    loose_file: bool = False  # a single file dropped at the inbox root
    claim_key: str = ""  # the claim on the dropped input (its inbox and name)
    status: BatchStatus = BatchStatus.QUEUED
    phase: BatchPhase = BatchPhase.ENUMERATING
    priority: Priority = Priority.NORMAL
    tags: tuple[str, ...] = ()
    callback_url: str = ""
    keep_input: bool = False
    runs: int = 0  # how many times retry/reprocess put it back to work
    bypass_cache: bool = False  # reprocess --force: decode again even when the content is cached
    total: int = 0
    chunks: int = 0
    created_at: str = ""
    started_at: str | None = None
    completed_at: str | None = None
    final_counts: dict[str, int] = field(default_factory=dict)
    archived_to: str | None = None
    note: str = ""

    def to_json(self) -> str:
        """Serialise for storage."""
        data = {
            "schema_version": STATE_SCHEMA_VERSION,
            "batch_id": self.batch_id,
            "inbox": self.inbox,
            "source": self.source,
            "outbox_dir": self.outbox_dir,
            "loose_file": self.loose_file,
            "claim_key": self.claim_key,
            "status": str(self.status),
            "phase": str(self.phase),
            "priority": str(self.priority),
            "tags": list(self.tags),
            "callback_url": self.callback_url,
            "keep_input": self.keep_input,
            "bypass_cache": self.bypass_cache,
            "runs": self.runs,
            "total": self.total,
            "chunks": self.chunks,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "final_counts": self.final_counts,
            "archived_to": self.archived_to,
            "note": self.note,
        }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> BatchRecord:
        """Parse a stored record."""
        data = json.loads(text)
        return cls(
            batch_id=data["batch_id"],
            inbox=data["inbox"],
            source=data["source"],
            outbox_dir=data["outbox_dir"],
            loose_file=data.get("loose_file", False),
            claim_key=data.get("claim_key", ""),
            status=BatchStatus(data["status"]),
            phase=BatchPhase(data["phase"]),
            priority=Priority(data["priority"]),
            tags=tuple(data["tags"]),
            callback_url=data["callback_url"],
            keep_input=data["keep_input"],
            bypass_cache=data.get("bypass_cache", False),
            runs=data.get("runs", 0),
            total=data["total"],
            chunks=data["chunks"],
            created_at=data["created_at"],
            started_at=data["started_at"],
            completed_at=data["completed_at"],
            final_counts=dict(data["final_counts"]),
            archived_to=data["archived_to"],
            note=data.get("note", ""),
        )

    def evolve(self, **changes: Any) -> BatchRecord:
        """A copy with some fields changed (in memory; a stored batch moves with `advance`)."""
        return replace(self, **changes)

    def noted(self, addition: str) -> str:
        """The note with `addition` appended (`; ` between)."""
        return f"{self.note}; {addition}" if self.note else addition


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRecord:
    """What the daemon remembers about one image of a batch."""

    path: str
    status: ImageStatus = ImageStatus.PENDING
    attempts: int = 0
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None  # file/image/exif/colors/hashes/pixel_digest
    duration_ms: float | None = None
    source_url: str | None = None
    next_attempt_at: float | None = None  # wall-clock epoch seconds of the next retry
    file: dict[str, Any] | None = None  # size/sha256/mtime read before a failure or a skip

    def to_json(self) -> str:
        """Serialise for storage (the path is a key: it may hold undecodable bytes)."""
        data = {
            "path": self.path,
            "status": str(self.status),
            "attempts": self.attempts,
            "error": self.error,
            "result": self.result,
            "duration_ms": self.duration_ms,
            "source_url": self.source_url,
            "next_attempt_at": self.next_attempt_at,
            "file": self.file,
        }
        return names.storable_json(data)

    @classmethod
    def from_json(cls, text: str) -> ImageRecord:
        """Parse a stored record."""
        data = json.loads(text)
        return cls(
            path=data["path"],
            status=ImageStatus(data["status"]),
            attempts=data["attempts"],
            error=data["error"],
            result=data["result"],
            duration_ms=data["duration_ms"],
            source_url=data["source_url"],
            next_attempt_at=data.get("next_attempt_at"),
            file=data.get("file"),
        )


# Every cache `open_durable_cache` returned, for `release_thread_connections`.
_DURABLE_CACHES: weakref.WeakSet[diskcache.Cache] = weakref.WeakSet()


def release_thread_connections() -> None:
    """Close the calling thread's SQLite connection to every durable cache.

    diskcache opens one connection per thread and cache, and a thread that ends does not
    reliably close them: each short-lived thread that used a cache (a batch actor) leaked
    its file descriptors (the soak benchmark found one or two per finished batch). Call
    this last in such a thread; a later use from the same thread simply reopens.
    """
    for cache in list(_DURABLE_CACHES):
        cache.close()  # diskcache closes only the calling thread's connection


def _claim_key(claim_key: str) -> str | bytes:
    """The stored key of a claim (`<inbox>\\x00<name>`: the name may hold undecodable bytes)."""
    return names.storage_key(_CLAIM_PREFIX + claim_key)


def open_durable_cache(directory: Path, *, what: str, cache_pages: int = 256) -> diskcache.Cache:
    """A diskcache that never evicts, tuned for a long-running, many-threaded process.

    Its operations raise `DiskWriteError` when the disk refuses (full, read-only, I/O error) and
    `StateCorruptError` for a damaged database (see `diskfaults.GuardedCache`).

    Raises:
        DiskWriteError: the disk refused while opening it.
        StateCorruptError: the database is damaged.
        StateError: naming `what` and the directory when it cannot be opened otherwise.
    """
    try:
        with classified("state", directory):
            cache = _open_guarded(directory, cache_pages)
    except (DiskWriteError, StateError):
        raise
    except Exception as exc:
        raise StateError(f"cannot open {what} at {directory}: {exc}") from exc
    _DURABLE_CACHES.add(cache)
    return cache


_CONNECT_PROBE = "\0connect"  # a key never stored: reading it opens the connection


def open_durable_caches(*stores: tuple[Path, str, int]) -> list[diskcache.Cache]:
    """`open_durable_cache` of each (directory, what, cache_pages), all at once.

    Creating a store is a dozen fdatasyncs (SQLite's journal, the WAL switch, the directory):
    a second or more on a busy disk when done one after the other, the time of one together
    (SQLite waits without the GIL). Each opening thread's own connection is closed before it
    ends (diskcache reopens one per thread that uses the store). The first failure, in the
    order given, is raised.

    The calling thread then connects to each store itself, as a store opened here always
    did: a thread whose first connection comes later, on a disk that has filled up since,
    can stay inside SQLite (growing the WAL index) instead of failing, where a connection
    made at start-up keeps reading and its writes fail cleanly.
    """
    with ThreadPoolExecutor(max_workers=len(stores), thread_name_prefix="state-open") as pool:
        futures = [pool.submit(_open_released, *store) for store in stores]
        caches = [future.result() for future in futures]
    for cache, (directory, what, _pages) in zip(caches, stores, strict=True):
        _connect_this_thread(cache, directory, what)
    return caches


def _connect_this_thread(cache: diskcache.Cache, directory: Path, what: str) -> None:
    try:
        with classified("state", directory):
            cache.get(_CONNECT_PROBE)
    except (DiskWriteError, StateError):
        raise
    except Exception as exc:
        raise StateError(f"cannot open {what} at {directory}: {exc}") from exc


def _open_released(directory: Path, what: str, cache_pages: int) -> diskcache.Cache:
    cache = open_durable_cache(directory, what=what, cache_pages=cache_pages)
    cache.close()  # this thread's connection only: the thread ends now
    return cache


def _open_guarded(directory: Path, cache_pages: int) -> GuardedCache:
    return GuardedCache(
        str(directory),
        eviction_policy="none",
        size_limit=2**62,
        statistics=False,
        # Every thread gets its own SQLite connection; diskcache's defaults (32 MiB page
        # cache, 64 MiB mmap per connection) make RSS grow with threads and batch size.
        # The OS page cache serves re-reads just as well.
        sqlite_cache_size=cache_pages,
        sqlite_mmap_size=0,
    )


class StateStore:
    """Typed access to the daemon's durable state; safe from several threads and processes."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.incarnation = 0  # set by the daemon (`begin_incarnation`); 0 for the CLI
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create state_dir {state_dir}: {exc.strerror}") from exc
        self._batches, self._images, self._flags, control = open_durable_caches(
            (state_dir / "batches", "the state store", 256),
            (state_dir / "images", "the state store", 256),
            (state_dir / "flags", "the state store", 256),
            (state_dir / "control", "the control queue", 64),
        )
        self._control = control
        self.control = diskcache.Deque.fromcache(control)
        self._check_schema()

    @property
    def content_dir(self) -> Path:
        """Where workers keep the content cache."""
        return self.state_dir / "content"

    @property
    def history_dir(self) -> Path:
        """Where the duplicate index lives."""
        return self.state_dir / "history"

    @property
    def webhooks_dir(self) -> Path:
        """Where webhook deliveries and dead letters are persisted."""
        return self.state_dir / "webhooks"

    def _check_schema(self) -> None:
        stored = self._flags.get("schema_version")
        if stored is None:
            self._flags.set("schema_version", STATE_SCHEMA_VERSION)
        elif stored != STATE_SCHEMA_VERSION:
            msg = (
                f"state in {self.state_dir} has schema version {stored}, this build "
                f"uses {STATE_SCHEMA_VERSION}; move the directory aside to start afresh"
            )
            raise StateError(msg)

    def close(self) -> None:
        """Close every underlying database."""
        for cache in (self._batches, self._images, self._flags, self._control):
            cache.close()

    def writable(self) -> bool:
        """Whether a write succeeds now (for the health check's background probe)."""
        try:
            self._flags.set("heartbeat", 1)
        except Exception:
            return False
        return True

    # -- batches -----------------------------------------------------------------

    def put_batch(self, record: BatchRecord) -> None:
        """Persist a new or rebuilt batch record; a stored batch changes through `advance`."""
        self._batches.set(record.batch_id, record.to_json())

    def advance(self, record: BatchRecord, to: BatchPhase, **changes: Any) -> BatchRecord:
        """Move a batch to phase `to` with `changes`, durably; the record as stored.

        Raises:
            IllegalTransitionError: its life does not lead from `record.phase` to `to`
                (`lifecycle.TRANSITIONS`); nothing is written.
            DiskWriteError: the disk refused; memory and state stay as they were.
        """
        check_move(record.batch_id, record.phase, to)
        moved = record.evolve(phase=to, **changes)
        self._batches.set(moved.batch_id, moved.to_json())
        return moved

    def restart_listing(self, record: BatchRecord) -> BatchRecord:
        """State repair lost the image records: an unfinished batch is listed again, queued.

        Raises:
            IllegalTransitionError: the batch is done or written (nothing to list again).
        """
        if record.phase not in RESTARTABLE:
            raise IllegalTransitionError(record.batch_id, record.phase, BatchPhase.ENUMERATING)
        restarted = record.evolve(
            phase=BatchPhase.ENUMERATING, status=BatchStatus.QUEUED, total=0, chunks=0
        )
        self._batches.set(restarted.batch_id, restarted.to_json())
        return restarted

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        """A batch record, or None."""
        text = self._batches.get(batch_id)
        return None if text is None else BatchRecord.from_json(cast(str, text))

    def has_batch(self, batch_id: str) -> bool:
        """Whether a batch id is taken."""
        return batch_id in self._batches

    def iter_batches(self, *, skip_damaged: bool = False) -> Iterator[BatchRecord]:
        """Every batch record, in insertion order.

        `skip_damaged`: a record that cannot be parsed (a torn write, an older build) is
        logged and skipped instead of raising, so one batch cannot stop the others.
        """
        for key in list(self._batches.iterkeys()):
            # Claims are the other keys: text under _CLAIM_PREFIX, or bytes (names.storage_key).
            if not isinstance(key, str) or key.startswith(_CLAIM_PREFIX):
                continue
            try:
                record = self.get_batch(key)
            except (ValueError, KeyError, TypeError) as exc:
                if not skip_damaged:
                    raise
                _logger.error("batch %s: its record is damaged and is skipped (%r)", key, exc)
                continue
            if record is not None:
                yield record

    def create_batch(self, record: BatchRecord, claim_key: str, identity: str) -> None:
        """Persist a new batch together with the claim on its input, atomically."""
        claim = json.dumps({"batch_id": record.batch_id, "id": identity})
        with self._batches.transact():
            self._batches.set(record.batch_id, record.to_json())
            self._batches.set(_claim_key(claim_key), claim)

    # -- claims --------------------------------------------------------------------

    def claim_for(self, claim_key: str) -> tuple[str, str] | None:
        """(batch_id, identity) of the batch that claimed an input, or None."""
        text = self._batches.get(_claim_key(claim_key))
        if text is None:
            return None
        data = json.loads(cast(str, text))
        return data["batch_id"], data["id"]

    def release_claim(self, claim_key: str) -> None:
        """Forget a claim, so a new folder of that name becomes a new batch."""
        self._batches.delete(_claim_key(claim_key))

    # -- images --------------------------------------------------------------------

    @staticmethod
    def _image_key(batch_id: str, path: str) -> str | bytes:
        return names.storage_key(f"{batch_id}{_SEP}i{_SEP}{path}")

    @staticmethod
    def _chunk_key(batch_id: str, chunk: int) -> str:
        return f"{batch_id}{_SEP}p{_SEP}{chunk:08d}"

    def put_path_chunk(self, batch_id: str, chunk: int, paths: Sequence[str]) -> None:
        """Store one chunk of the batch's ordered path list."""
        self._images.set(self._chunk_key(batch_id, chunk), json.dumps(list(paths)))

    def get_path_chunk(self, batch_id: str, chunk: int) -> list[str]:
        """One chunk of the ordered path list (empty when missing)."""
        text = self._images.get(self._chunk_key(batch_id, chunk))
        return [] if text is None else cast(list[str], json.loads(cast(str, text)))

    def iter_paths(self, batch: BatchRecord) -> Iterator[str]:
        """The batch's paths in order, chunk by chunk."""
        for chunk in range(batch.chunks):
            yield from self.get_path_chunk(batch.batch_id, chunk)

    def put_image(self, batch_id: str, record: ImageRecord) -> None:
        """Persist an image record."""
        self._images.set(self._image_key(batch_id, record.path), record.to_json())

    def put_images(self, batch_id: str, records: Sequence[ImageRecord]) -> None:
        """Persist several image records in one transaction."""
        with self._images.transact():
            for record in records:
                self._images.set(self._image_key(batch_id, record.path), record.to_json())

    def get_image(self, batch_id: str, path: str) -> ImageRecord | None:
        """An image record, or None."""
        text = self._images.get(self._image_key(batch_id, path))
        return None if text is None else ImageRecord.from_json(cast(str, text))

    def image_texts(self, batch_id: str, paths: Sequence[str]) -> list[str | None]:
        """The stored JSON of the records of `paths` (None where there is none).

        One SQLite query for the lot instead of one `get` each (the API lists 100,000-image
        batches): it reads diskcache's table directly, and falls back to `get_image` for any
        value diskcache keeps elsewhere than inline (a value too large for a row).
        """
        keys = [self._image_key(batch_id, path) for path in paths]
        rows: dict[str | bytes, tuple[int, Any]] = {}
        for start in range(0, len(keys), _SQL_VARIABLES):
            part = keys[start : start + _SQL_VARIABLES]
            marks = ",".join("?" * len(part))  # only placeholders are formatted in
            query = f"SELECT key, mode, value FROM Cache WHERE raw = 1 AND key IN ({marks})"  # noqa: S608
            for key, mode, value in self._images._sql(query, part).fetchall():
                rows[bytes(key) if isinstance(key, memoryview) else key] = (mode, value)
        found: list[str | None] = []
        for stored_key in keys:
            row = rows.get(stored_key)
            if row is None or (row[0] == _MODE_RAW and isinstance(row[1], str)):
                found.append(None if row is None else row[1])
            else:
                found.append(cast("str | None", self._images.get(stored_key)))
        return found

    def delete_batch_images(self, batch: BatchRecord) -> None:
        """Drop every image record and path chunk of a batch (for reprocess)."""
        for path in list(self.iter_paths(batch)):
            self._images.delete(self._image_key(batch.batch_id, path))
        for chunk in range(batch.chunks):
            self._images.delete(self._chunk_key(batch.batch_id, chunk))

    # -- flags ---------------------------------------------------------------------

    def is_paused(self) -> bool:
        """Whether new batches are held back."""
        return bool(self._flags.get("paused", default=False))

    def set_paused(self, paused: bool) -> None:
        """Pause or resume taking new batches."""
        self._flags.set("paused", paused)

    # -- progress (progress.BatchProgress, as JSON) ------------------------------------

    def put_progress(self, batch_id: str, text: str) -> None:
        """Store a batch's latest progress (`progress.publish` is the writer)."""
        self._flags.set(_PROGRESS_PREFIX + batch_id, text)

    def get_progress(self, batch_id: str) -> str | None:
        """A batch's latest progress as stored, or None."""
        text = self._flags.get(_PROGRESS_PREFIX + batch_id)
        return None if text is None else cast(str, text)

    # -- crash-loop records (see crashloop.py) ----------------------------------------

    def begin_incarnation(self) -> int:
        """Number this run of the daemon (1, 2, …), durably, and remember it."""
        self.incarnation = int(cast(int, self._flags.get("incarnation", default=0))) + 1
        self._flags.set("incarnation", self.incarnation)
        return self.incarnation

    def end_incarnation(self) -> None:
        """This run stops in order: its unfinished steps were not what killed it."""
        if self.incarnation:
            self._flags.set("clean_exit", self.incarnation)

    def last_clean_exit(self) -> int:
        """The last incarnation that stopped in order (0: none)."""
        return int(cast(int, self._flags.get("clean_exit", default=0)))

    def step_marker(self, batch_id: str) -> dict[str, Any] | None:
        """The risky step a batch is (or was, when the daemon died) in, or None."""
        text = self._flags.get(_STEP_PREFIX + batch_id)
        return None if text is None else cast(dict[str, Any], json.loads(cast(str, text)))

    def put_step_marker(self, batch_id: str, marker: dict[str, Any]) -> None:
        """Record the risky step a batch is in (before the step starts)."""
        self._flags.set(_STEP_PREFIX + batch_id, json.dumps(marker, separators=(",", ":")))

    def clear_step_marker(self, batch_id: str) -> None:
        """The batch came through its risky step."""
        self._flags.delete(_STEP_PREFIX + batch_id)

    def step_markers(self) -> dict[str, dict[str, Any]]:
        """Every recorded risky step, by batch id."""
        found: dict[str, dict[str, Any]] = {}
        for key in list(self._flags.iterkeys()):
            if isinstance(key, str) and key.startswith(_STEP_PREFIX):
                marker = self.step_marker(key[len(_STEP_PREFIX) :])
                if marker is not None:
                    found[key[len(_STEP_PREFIX) :]] = marker
        return found

    def put_set_aside(self, batch_id: str, entry: dict[str, Any]) -> None:
        """Record that a batch was set aside (crash loop, or it could not be finalised)."""
        self._flags.set(_SET_ASIDE_PREFIX + batch_id, json.dumps(entry, separators=(",", ":")))

    def clear_set_aside(self, batch_id: str) -> None:
        """The batch runs again (retry/reprocess): it is no longer set aside."""
        self._flags.delete(_SET_ASIDE_PREFIX + batch_id)

    def set_aside_entries(self) -> list[dict[str, Any]]:
        """Every set-aside batch, oldest first (for `status`)."""
        entries = []
        for key in list(self._flags.iterkeys()):
            if isinstance(key, str) and key.startswith(_SET_ASIDE_PREFIX):
                text = self._flags.get(key)
                if text is not None:
                    entries.append(cast(dict[str, Any], json.loads(cast(str, text))))
        return sorted(entries, key=lambda entry: str(entry.get("at", "")))
