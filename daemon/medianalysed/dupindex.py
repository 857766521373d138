"""The duplicate index: every image ever analysed, searchable by content and by perceptual hash.

Matches come in three tiers (SPEC §4 "Duplicates"): `exact` (same sha256), `same_pixels` (same
pixel digest, different sha256) and `near` (pHash Hamming distance within a bound). Each match
carries every hash's distance as evidence.

Durability and memory:

- The source of truth is a diskcache `Cache` (SQLite in WAL mode, never evicting) holding JSON
  text only: one record per image under an integer id, plus `ref:`, `sha:` and `pix:` lookups.
  `add` commits before it returns, so a SIGKILL never loses an acknowledged image.
- For near search, memory holds a few columns per image (id, pHash, version, batch, flags;
  25 bytes) and a multi-index hash over the pHash (4 tables of 16-bit chunks; 16 bytes). Ids
  grow monotonically and rows are appended in id order, so `ids` stays sorted and maps an id
  to its row by binary search.
- Rebuilding the columns from SQLite takes seconds at a million images, so they are also saved
  as a snapshot (`search-snapshot.npz`, written atomically). Opening loads the snapshot, drops
  the ids removed since (a removal log in the cache) and replays the ids added since; a missing,
  foreign or inconsistent snapshot falls back to a full rebuild.

Threads: writers (`add`, `add_many`, `remove_batch`, `close`) take `_write_lock`, commit to
disk, then take `_mem_lock` briefly to publish. `find` takes only `_mem_lock`, for the numpy
part of the search; merging the append buffer into the tables happens outside it. One process
at a time may open a directory: the memory side is not shared between processes.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import uuid
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import numpy as np
import numpy.typing as npt

from medianalysed.errors import StateError
from medianalysed.state import open_durable_cache

logger = logging.getLogger(__name__)

HASH_NAMES = ("phash", "dhash", "ahash", "whash", "colorhash")
SNAPSHOT_NAME = "search-snapshot.npz"
STORE_FORMAT = 1

Tier = Literal["exact", "same_pixels", "near"]
_TIER_RANK: dict[Tier, int] = {"exact": 0, "same_pixels": 1, "near": 2}

_PHASH_HEX_DIGITS = 16
_CHUNKS = 4
_CHUNK_BITS = 16
_BUCKETS = 1 << _CHUNK_BITS
_MAX_MIH_RADIUS = 2  # beyond this (max_distance >= 12) a linear scan is cheaper than probing
_MIN_BUFFER = 2048
_MAX_BUFFER = 32768
_SNAPSHOT_EVERY = 100_000  # rows changed since the last snapshot; bounds replay after a crash
_TX_CHUNK = 2000  # images per SQLite transaction in add_many
_NO_DISTANCE = 65  # sorts after every real 64-bit distance

_FLAG_ALIVE = 1
_FLAG_PHASH = 2
_SEARCHABLE = _FLAG_ALIVE | _FLAG_PHASH

_KEY_FORMAT = "meta:format"
_KEY_UUID = "meta:uuid"
_KEY_LAST_ID = "meta:last_id"
_KEY_REMOVALS = "meta:removals"
_KEY_RM_TRIMMED = "meta:removals_trimmed"

IntArray = npt.NDArray[np.int64]
U64Array = npt.NDArray[np.uint64]
_T = TypeVar("_T", bound=np.generic)


@dataclass(frozen=True, slots=True)
class ImageRef:
    """Where an image was seen: its batch and its posix path inside the batch."""

    batch_id: str
    path: str


@dataclass(frozen=True, slots=True)
class IndexedImage:
    """What the index keeps about one analysed image."""

    ref: ImageRef
    sha256: str
    pixel_digest: str | None
    hashes: Mapping[str, str]
    analysis_version: int


@dataclass(frozen=True, slots=True)
class Match:
    """A stored image that duplicates the queried one, with why."""

    ref: ImageRef
    tier: Tier
    distances: dict[str, int | None]


def hamming(hex_a: str, hex_b: str) -> int:
    """Count the differing bits of two hex hashes of the same length.

    Raises:
        ValueError: the lengths differ (hashes of different sizes are not comparable) or a
            string is not hex.
    """
    if len(hex_a) != len(hex_b):
        raise ValueError(f"hash lengths differ: {len(hex_a)} != {len(hex_b)} hex digits")
    return (int(hex_a, 16) ^ int(hex_b, 16)).bit_count()


def evidence(query: Mapping[str, str], stored: Mapping[str, str]) -> dict[str, int | None]:
    """Every hash's distance between two images; None where either lacks it or sizes differ."""
    names = HASH_NAMES + tuple(sorted(set(query) - set(HASH_NAMES)))
    distances: dict[str, int | None] = {}
    for name in names:
        a, b = query.get(name), stored.get(name)
        try:
            distances[name] = None if a is None or b is None else hamming(a, b)
        except ValueError:
            distances[name] = None
    return distances


def popcount64(values: U64Array) -> npt.NDArray[np.uint8]:
    """Set bits of each 64-bit value."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return cast("npt.NDArray[np.uint8]", np.bitwise_count(values))
    as_bytes = np.ascontiguousarray(values).view(np.uint8).reshape(-1, 8)
    counts: npt.NDArray[np.uint8] = _BYTE_POPCOUNT[as_bytes].sum(axis=1, dtype=np.uint8)
    return counts


_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _probe_masks(radius: int) -> npt.NDArray[np.int64]:
    """All 16-bit XOR masks with at most `radius` bits set."""
    values = np.arange(_BUCKETS, dtype=np.int64)
    weights = popcount64(values.astype(np.uint64))
    return values[weights <= radius]


_PROBE_MASKS = [_probe_masks(radius) for radius in range(_MAX_MIH_RADIUS + 1)]
_CHUNK_BASES = (np.arange(_CHUNKS, dtype=np.int64) * _BUCKETS)[:, None]


def _phash_value(hashes: Mapping[str, str]) -> int | None:
    """The 64-bit pHash as an int, or None when the image has none."""
    text = hashes.get("phash")
    if text is None:
        return None
    if len(text) != _PHASH_HEX_DIGITS:
        raise ValueError(f"phash must be {_PHASH_HEX_DIGITS} hex digits (64 bits), got {text!r}")
    return int(text, 16)


class _Columns:
    """Growable per-row arrays; rows are appended in id order and never move until reopen."""

    def __init__(self, rows: int = 0) -> None:
        """Room for `rows` rows (to be filled by the caller) and some more."""
        self.n = rows
        capacity = rows + rows // 8 + 1024
        self.ids = np.zeros(capacity, dtype=np.int64)
        self.phash = np.zeros(capacity, dtype=np.uint64)
        self.version = np.zeros(capacity, dtype=np.int32)
        self.batch = np.zeros(capacity, dtype=np.uint32)
        self.flags = np.zeros(capacity, dtype=np.uint8)

    def column(self, name: str) -> npt.NDArray[Any]:
        """The filled part of one column, by its name in `_COLUMN_NAMES`."""
        array: npt.NDArray[Any] = getattr(self, name)
        return array[: self.n]

    def append(self, image_id: int, phash: int | None, version: int, batch: int) -> None:
        """Add one row (caller holds the memory lock)."""
        if self.n == len(self.ids):
            capacity = 2 * len(self.ids)
            self.ids = _grown(self.ids, capacity)
            self.phash = _grown(self.phash, capacity)
            self.version = _grown(self.version, capacity)
            self.batch = _grown(self.batch, capacity)
            self.flags = _grown(self.flags, capacity)
        row = self.n
        self.ids[row] = image_id
        self.phash[row] = 0 if phash is None else phash
        self.version[row] = version
        self.batch[row] = batch
        self.flags[row] = _FLAG_ALIVE | (0 if phash is None else _FLAG_PHASH)
        self.n = row + 1

    def rows_of(self, ids: Iterable[int]) -> IntArray:
        """Rows of the given ids that are present and alive."""
        wanted = np.fromiter(ids, dtype=np.int64)
        if wanted.size == 0 or self.n == 0:
            return np.zeros(0, dtype=np.int64)
        present = self.ids[: self.n]
        rows = np.minimum(np.searchsorted(present, wanted), self.n - 1)
        found = (present[rows] == wanted) & ((self.flags[rows] & _FLAG_ALIVE) != 0)
        alive: IntArray = rows[found].astype(np.int64)
        return alive


_COLUMN_NAMES = ("ids", "phash", "version", "batch", "flags")


def _grown(array: npt.NDArray[_T], capacity: int) -> npt.NDArray[_T]:
    """A copy of `array` with room for `capacity` rows."""
    out = np.zeros(max(capacity, len(array)), dtype=array.dtype)
    out[: len(array)] = array
    return out


class _BucketTables:
    """Multi-index hashing over the pHash of rows [0, covered): 4 tables of 16-bit chunks.

    If two hashes differ in at most d bits, one of the 4 chunks differs in at most d // 4
    bits (pigeonhole), so probing every bucket within that radius in every table finds all of
    them; verification by popcount removes the rest.
    """

    def __init__(self, phash: U64Array, rows: npt.NDArray[np.uint32], covered: int) -> None:
        """Index `rows` (whose hashes are `phash`), built in place to keep temporaries small."""
        self.covered = covered
        size = len(rows)
        self.order = np.empty(_CHUNKS * size, dtype=np.uint32)
        self.offsets = np.zeros(_CHUNKS * _BUCKETS + 1, dtype=np.int64)
        for chunk in range(_CHUNKS):
            keys = ((phash >> np.uint64(chunk * _CHUNK_BITS)) & np.uint64(0xFFFF)).astype(np.uint16)
            # A stable sort of 16-bit keys is a radix sort in numpy: linear in the row count.
            np.take(rows, np.argsort(keys, kind="stable"), out=self.order[chunk * size :][:size])
            base = chunk * _BUCKETS
            self.offsets[base + 1 : base + _BUCKETS + 1] = np.bincount(keys, minlength=_BUCKETS)
        np.cumsum(self.offsets, out=self.offsets)

    def candidates(self, query: int, radius: int) -> IntArray:
        """Rows sharing at least one chunk within `radius` bits of the query's (with repeats)."""
        keys = np.array(
            [(query >> (chunk * _CHUNK_BITS)) & 0xFFFF for chunk in range(_CHUNKS)],
            dtype=np.int64,
        )
        probes = ((keys[:, None] ^ _PROBE_MASKS[radius][None, :]) + _CHUNK_BASES).ravel()
        starts = self.offsets[probes]
        lengths = self.offsets[probes + 1] - starts
        occupied = lengths > 0
        starts, lengths = starts[occupied], lengths[occupied]
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64)
        # One arange over all ranges, shifted per range: avoids a Python loop over buckets.
        shifts = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        rows: IntArray = self.order[np.arange(total, dtype=np.int64) + shifts].astype(np.int64)
        return rows


@dataclass(frozen=True, slots=True)
class _Candidate:
    image_id: int
    tier: Tier
    phash_distance: int | None

    def sort_key(self) -> tuple[int, int, int]:
        distance = _NO_DISTANCE if self.phash_distance is None else self.phash_distance
        return (_TIER_RANK[self.tier], distance, self.image_id)


class HistoryIndex:
    """Every image seen, on disk and searchable in memory; shared by the batch actors' threads."""

    def __init__(self, directory: Path, *, analysis_version: int) -> None:
        """Open or create the index under `directory` and load its search structures.

        Raises:
            StateError: the store cannot be opened or was written by an incompatible format.
        """
        self.directory = Path(directory)
        self.analysis_version = analysis_version
        self._write_lock = threading.Lock()
        self._mem_lock = threading.Lock()
        self._closed = False
        self._batch_names: list[str] = []
        self._batch_codes: dict[str, int] = {}
        self._changes_since_snapshot = 0
        self._columns = _Columns()
        self._tables = _BucketTables(np.zeros(0, np.uint64), np.zeros(0, np.uint32), 0)
        self._alive = 0
        try:
            # diskcache's defaults (32 MiB page cache per thread's connection, 64 MiB mmap) cost
            # ~70 MiB of RSS at 1M images; the OS page cache serves these lookups just as well.
            self._cache = open_durable_cache(
                self.directory, what="the duplicate index", cache_pages=1024
            )
        except sqlite3.Error as exc:
            raise StateError(f"duplicate index at {self.directory} unusable: {exc}") from exc
        try:
            self._uuid = self._init_meta()
            self._load()
        except sqlite3.Error as exc:
            self._cache.close()
            raise StateError(f"duplicate index at {self.directory} unusable: {exc}") from exc
        except BaseException:
            self._cache.close()
            raise

    # ----------------------------------------------------------------- public API

    def add(self, image: IndexedImage) -> None:
        """Store one image durably; re-adding a ref replaces its entry (a no-op if unchanged).

        Raises:
            ValueError: the pHash is not 64 bits of hex.
            StateError: the store cannot be written (disk full, closed index).
        """
        self.add_many((image,))

    def add_many(self, images: Iterable[IndexedImage]) -> None:
        """Store many images, committing every few thousand (same guarantees as `add`)."""
        latest: dict[ImageRef, IndexedImage] = {}
        for image in images:
            _phash_value(image.hashes)
            latest[image.ref] = image
        pending = list(latest.values())
        with self._write_lock:
            self._check_open()
            for start in range(0, len(pending), _TX_CHUNK):
                self._add_chunk(pending[start : start + _TX_CHUNK])
            self._maintain()

    def find(self, image: IndexedImage, *, max_distance: int, limit: int = 50) -> list[Match]:
        """Stored images that duplicate `image` (never its own ref), best tier first.

        Within a tier, matches come by pHash distance, then oldest first. `exact` compares
        sha256 across all versions; `same_pixels` and `near` only compare images of
        `image.analysis_version`.

        Raises:
            ValueError: `max_distance` is negative.
        """
        if max_distance < 0:
            raise ValueError(f"max_distance must be >= 0, got {max_distance}")
        self._check_open()
        if limit <= 0:
            return []
        self_id = self._cache.get(_ref_key(image.ref))
        exact_ids = set(self._id_list(_sha_key(image.sha256)))
        pixel_ids = set()
        if image.pixel_digest is not None:
            pixel_ids = set(self._id_list(_pix_key(image.pixel_digest))) - exact_ids
        exact_ids.discard(self_id)
        pixel_ids.discard(self_id)
        query = _phash_value(image.hashes)
        with self._mem_lock:
            found = self._exact_candidates(exact_ids, query, image.analysis_version)
            found += self._pixel_candidates(pixel_ids, query, image.analysis_version)
            if query is not None:
                skip = exact_ids | pixel_ids | {self_id}
                found += self._near_candidates(query, image.analysis_version, max_distance, skip)
        found.sort(key=_Candidate.sort_key)
        return self._matches(image, found, limit)

    def remove_batch(self, batch_id: str) -> int:
        """Forget every image of a batch (for `reprocess --force`); returns how many.

        Raises:
            StateError: the store cannot be written.
        """
        with self._write_lock:
            self._check_open()
            code = self._batch_codes.get(batch_id)
            if code is None:
                return 0
            columns = self._columns
            n = columns.n
            rows = np.flatnonzero(
                (columns.batch[:n] == code) & ((columns.flags[:n] & _FLAG_ALIVE) != 0)
            )
            ids = [int(i) for i in columns.ids[rows]]
            with self._transaction():
                for image_id in ids:
                    self._delete_record(image_id)
                self._log_removals(ids)
            with self._mem_lock:
                columns.flags[rows] &= np.uint8(~_FLAG_ALIVE & 0xFF)
                self._alive -= len(ids)
            self._changes_since_snapshot += len(ids)
            self._maintain()
            return len(ids)

    def __len__(self) -> int:
        """How many images are stored."""
        return self._alive

    def close(self) -> None:
        """Save the search snapshot and close the store; further use raises StateError."""
        with self._write_lock:
            if self._closed:
                return
            try:
                if self._changes_since_snapshot:
                    self._write_snapshot()
            finally:
                self._closed = True
                self._cache.close()

    # ----------------------------------------------------------------- disk layout

    def _init_meta(self) -> str:
        with self._cache.transact():
            stored_format = self._cache.get(_KEY_FORMAT)
            if stored_format is None:
                self._cache.set(_KEY_FORMAT, STORE_FORMAT)
                self._cache.set(_KEY_UUID, uuid.uuid4().hex)
                self._cache.set(_KEY_LAST_ID, 0)
                self._cache.set(_KEY_REMOVALS, 0)
                self._cache.set(_KEY_RM_TRIMMED, 0)
            elif stored_format != STORE_FORMAT:
                raise StateError(
                    f"duplicate index at {self.directory} has format {stored_format}, "
                    f"this version reads {STORE_FORMAT}"
                )
            return str(self._cache.get(_KEY_UUID))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            with self._cache.transact():
                yield
        except sqlite3.Error as exc:
            raise StateError(f"duplicate index at {self.directory} not writable: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise StateError(f"duplicate index at {self.directory} is closed")

    def _id_list(self, key: str) -> list[int]:
        raw = self._cache.get(key)
        return [] if raw is None else cast("list[int]", json.loads(raw))

    def _list_add(self, key: str, image_id: int) -> None:
        ids = self._id_list(key)
        ids.append(image_id)
        self._cache.set(key, json.dumps(ids))

    def _list_remove(self, key: str, image_id: int) -> None:
        ids = [i for i in self._id_list(key) if i != image_id]
        if ids:
            self._cache.set(key, json.dumps(ids))
        else:
            self._cache.delete(key)

    def _record(self, image_id: int) -> dict[str, Any] | None:
        raw = self._cache.get(image_id)
        return None if raw is None else cast("dict[str, Any]", json.loads(raw))

    def _delete_record(self, image_id: int) -> None:
        """Remove an image and its lookups (inside a transaction)."""
        record = self._record(image_id)
        if record is None:
            return
        self._cache.delete(image_id)
        ref_key = _ref_key(ImageRef(record["batch_id"], record["path"]))
        if self._cache.get(ref_key) == image_id:
            self._cache.delete(ref_key)
        self._list_remove(_sha_key(record["sha256"]), image_id)
        if record["pixel_digest"] is not None:
            self._list_remove(_pix_key(record["pixel_digest"]), image_id)

    def _log_removals(self, ids: list[int]) -> None:
        """Note removed ids so that an older snapshot can be brought up to date."""
        if not ids:
            return
        sequence = int(self._cache.incr(_KEY_REMOVALS))
        self._cache.set(f"rm:{sequence}", json.dumps(ids))

    # ----------------------------------------------------------------- writing

    def _add_chunk(self, images: list[IndexedImage]) -> None:
        """Commit one transaction of adds, then publish the rows (caller holds the write lock)."""
        added: list[tuple[int, IndexedImage]] = []
        replaced: list[int] = []
        with self._transaction():
            last_id = int(self._cache.get(_KEY_LAST_ID))
            for image in images:
                text = _record_json(image)
                ref_key = _ref_key(image.ref)
                old_id = self._cache.get(ref_key)
                if old_id is not None:
                    if self._cache.get(old_id) == text:
                        continue
                    self._delete_record(old_id)
                    replaced.append(old_id)
                last_id += 1
                self._cache.set(last_id, text)
                self._cache.set(ref_key, last_id)
                self._list_add(_sha_key(image.sha256), last_id)
                if image.pixel_digest is not None:
                    self._list_add(_pix_key(image.pixel_digest), last_id)
                added.append((last_id, image))
            self._cache.set(_KEY_LAST_ID, last_id)
            self._log_removals(replaced)
        with self._mem_lock:
            columns = self._columns
            dead = columns.rows_of(replaced)
            columns.flags[dead] &= np.uint8(~_FLAG_ALIVE & 0xFF)
            for image_id, image in added:
                batch = self._batch_code(image.ref.batch_id)
                columns.append(image_id, _phash_value(image.hashes), image.analysis_version, batch)
            self._alive += len(added) - len(dead)
        self._changes_since_snapshot += len(added) + len(dead)

    def _batch_code(self, batch_id: str) -> int:
        code = self._batch_codes.get(batch_id)
        if code is None:
            code = len(self._batch_names)
            self._batch_codes[batch_id] = code
            self._batch_names.append(batch_id)
        return code

    def _maintain(self) -> None:
        """Merge the append buffer and save a snapshot when due (caller holds the write lock)."""
        columns = self._columns
        covered = self._tables.covered
        if columns.n - covered >= min(_MAX_BUFFER, max(_MIN_BUFFER, covered // 32)):
            tables = self._build_tables(columns.n)
            with self._mem_lock:
                self._tables = tables
        if self._changes_since_snapshot >= _SNAPSHOT_EVERY:
            self._write_snapshot()

    def _build_tables(self, covered: int) -> _BucketTables:
        """Tables over rows [0, covered) of the current version (no lock needed: rows are final)."""
        columns = self._columns
        rows = np.flatnonzero(
            (columns.flags[:covered] == _SEARCHABLE)
            & (columns.version[:covered] == self.analysis_version)
        ).astype(np.uint32)
        return _BucketTables(columns.phash[rows], rows, covered)

    # ----------------------------------------------------------------- searching

    def _exact_candidates(self, ids: set[int], query: int | None, version: int) -> list[_Candidate]:
        rows = self._columns.rows_of(ids)
        return [self._candidate(int(row), "exact", query, version) for row in rows]

    def _pixel_candidates(self, ids: set[int], query: int | None, version: int) -> list[_Candidate]:
        rows = self._columns.rows_of(ids)
        rows = rows[self._columns.version[rows] == version]
        return [self._candidate(int(row), "same_pixels", query, version) for row in rows]

    def _candidate(self, row: int, tier: Tier, query: int | None, version: int) -> _Candidate:
        columns = self._columns
        image_id = int(columns.ids[row])
        if query is None or columns.flags[row] != _SEARCHABLE or columns.version[row] != version:
            return _Candidate(image_id, tier, None)
        return _Candidate(image_id, tier, (int(columns.phash[row]) ^ query).bit_count())

    def _near_candidates(
        self, query: int, version: int, max_distance: int, skip: set[int | None]
    ) -> list[_Candidate]:
        columns = self._columns
        tables = self._tables
        radius = max_distance // _CHUNKS
        if version == self.analysis_version and radius <= _MAX_MIH_RADIUS:
            probed = tables.candidates(query, radius)
            buffered = np.arange(tables.covered, columns.n, dtype=np.int64)
            rows = np.concatenate((probed, buffered))
        else:
            rows = np.arange(columns.n, dtype=np.int64)
        # Verify before deduplicating: a row found through several chunks shows up repeatedly,
        # and sorting the few survivors is far cheaper than sorting every candidate.
        distances = popcount64(columns.phash[rows] ^ np.uint64(query))
        rows = np.unique(rows[distances <= max_distance])
        distances = popcount64(columns.phash[rows] ^ np.uint64(query))
        keep = (columns.flags[rows] == _SEARCHABLE) & (columns.version[rows] == version)
        return [
            _Candidate(image_id, "near", int(distance))
            for image_id, distance in zip(
                columns.ids[rows[keep]].tolist(), distances[keep].tolist(), strict=True
            )
            if image_id not in skip
        ]

    def _matches(self, image: IndexedImage, found: list[_Candidate], limit: int) -> list[Match]:
        """Read the records of the best candidates (outside the memory lock)."""
        matches: list[Match] = []
        for candidate in found:
            record = self._record(candidate.image_id)
            if record is None:  # removed since the search
                continue
            comparable = record["analysis_version"] == image.analysis_version
            distances = (
                evidence(image.hashes, record["hashes"])
                if comparable
                else dict.fromkeys(evidence(image.hashes, {}))
            )
            ref = ImageRef(record["batch_id"], record["path"])
            matches.append(Match(ref=ref, tier=candidate.tier, distances=distances))
            if len(matches) == limit:
                break
        return matches

    # ----------------------------------------------------------------- opening

    def _load(self) -> None:
        last_id = int(self._cache.get(_KEY_LAST_ID))
        removals = int(self._cache.get(_KEY_REMOVALS))
        columns = self._load_snapshot(last_id, removals)
        if columns is None:
            logger.info("rebuilding duplicate index from %s (%d ids)", self.directory, last_id)
            columns = self._replay(_Columns(), 0, last_id)
            self._changes_since_snapshot = max(columns.n, 1)
        self._columns = columns
        self._alive = int(np.count_nonzero(columns.flags[: columns.n] & _FLAG_ALIVE))
        self._tables = self._build_tables(columns.n)
        if self._changes_since_snapshot:
            self._write_snapshot()

    def _load_snapshot(self, last_id: int, removals: int) -> _Columns | None:
        """Columns from the snapshot brought up to date, or None when it cannot be used."""
        try:
            with np.load(self.directory / SNAPSHOT_NAME, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]))
                names: list[str] = json.loads(bytes(data["batch_names"]))
                columns = _Columns(len(data["flags"]))
                for name in _COLUMN_NAMES:  # one at a time: a single column's worth of temporaries
                    columns.column(name)[:] = data[name]
        except FileNotFoundError:
            return None
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            logger.warning("ignoring unreadable duplicate index snapshot: %s", exc)
            return None
        trimmed = int(self._cache.get(_KEY_RM_TRIMMED))
        ids = columns.column("ids")
        usable = (
            bool(np.all(ids[1:] > ids[:-1]))
            and meta.get("format") == STORE_FORMAT
            and meta.get("uuid") == self._uuid
            and meta["last_id"] <= last_id
            and trimmed <= meta["removals"] <= removals
        )
        if not usable:
            logger.warning("duplicate index snapshot does not match the store; rebuilding")
            return None
        removed: list[int] = []
        for sequence in range(meta["removals"] + 1, removals + 1):
            logged = self._cache.get(f"rm:{sequence}")
            if logged is None:
                logger.warning("duplicate index removal log %d missing; rebuilding", sequence)
                return None
            removed.extend(json.loads(logged))
        self._batch_names = names
        self._batch_codes = {name: code for code, name in enumerate(names)}
        dead = columns.rows_of(removed)
        columns.flags[dead] &= np.uint8(~_FLAG_ALIVE & 0xFF)
        replayed = self._replay(columns, meta["last_id"], last_id)
        self._changes_since_snapshot = len(dead) + (last_id - meta["last_id"])
        return replayed

    def _replay(self, columns: _Columns, after_id: int, last_id: int) -> _Columns:
        """Append the records with ids in (after_id, last_id] that still exist."""
        with self._cache.transact():  # one read transaction: several times faster than 1 per get
            for image_id in range(after_id + 1, last_id + 1):
                record = self._record(image_id)
                if record is None:
                    continue
                phash = _phash_value(record["hashes"])
                batch = self._batch_code(record["batch_id"])
                columns.append(image_id, phash, record["analysis_version"], batch)
        return columns

    def _write_snapshot(self) -> None:
        """Save the alive rows atomically, then trim the removal log it covers (write lock held)."""
        columns = self._columns
        n = columns.n
        alive = np.flatnonzero(columns.flags[:n] & _FLAG_ALIVE)
        used_codes, batch = np.unique(columns.batch[alive], return_inverse=True)
        names = [self._batch_names[int(code)] for code in used_codes]
        last_id = int(self._cache.get(_KEY_LAST_ID))
        removals = int(self._cache.get(_KEY_REMOVALS))
        meta = {
            "format": STORE_FORMAT,
            "uuid": self._uuid,
            "last_id": last_id,
            "removals": removals,
        }
        final = self.directory / SNAPSHOT_NAME
        temporary = self.directory / f".{SNAPSHOT_NAME}.tmp"
        with temporary.open("wb") as handle:
            np.savez(
                handle,
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                batch_names=np.frombuffer(json.dumps(names).encode(), dtype=np.uint8),
                ids=columns.ids[alive],
                phash=columns.phash[alive],
                version=columns.version[alive],
                batch=batch.astype(np.uint32),
                flags=columns.flags[alive],
            )
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(final)
        _fsync_directory(self.directory)
        self._changes_since_snapshot = 0
        self._trim_removal_log(removals)

    def _trim_removal_log(self, upto: int) -> None:
        with self._transaction():
            trimmed = int(self._cache.get(_KEY_RM_TRIMMED))
            for sequence in range(trimmed + 1, upto + 1):
                self._cache.delete(f"rm:{sequence}")
            self._cache.set(_KEY_RM_TRIMMED, max(trimmed, upto))


def _record_json(image: IndexedImage) -> str:
    record = {
        "batch_id": image.ref.batch_id,
        "path": image.ref.path,
        "sha256": image.sha256,
        "pixel_digest": image.pixel_digest,
        "hashes": dict(image.hashes),
        "analysis_version": image.analysis_version,
    }
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _ref_key(ref: ImageRef) -> str:
    return "ref:" + json.dumps([ref.batch_id, ref.path], separators=(",", ":"))


def _sha_key(sha256: str) -> str:
    return f"sha:{sha256}"


def _pix_key(digest: str) -> str:
    return f"pix:{digest}"


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
