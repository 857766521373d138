"""The numpy side of duplicate search: pHash columns and a multi-index over them.

Pure in-memory structures, no locks and no disk: `dupindex.HistoryIndex` keeps the history's
rows in a `Columns` and its search tables in a `BucketTables`; `dupgroups` builds a
`BucketTables` over the distinct pHashes of one batch.

Multi-index hashing: if two 64-bit hashes differ in at most d bits, one of their four 16-bit
chunks differs in at most d // 4 bits (pigeonhole), so probing every bucket within that radius
in every table finds all of them; verification by popcount removes the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

import numpy as np
import numpy.typing as npt

PHASH_HEX_DIGITS = 16
CHUNKS = 4
CHUNK_BITS = 16
BUCKETS = 1 << CHUNK_BITS
MAX_MIH_RADIUS = 2  # beyond this (max_distance >= 12) a linear scan is cheaper than probing

FLAG_ALIVE = 1
FLAG_PHASH = 2
SEARCHABLE = FLAG_ALIVE | FLAG_PHASH

COLUMN_NAMES = ("ids", "phash", "version", "batch", "flags")

Tier = Literal["exact", "same_pixels", "near"]
TIER_RANK: dict[Tier, int] = {"exact": 0, "same_pixels": 1, "near": 2}
NO_DISTANCE = 65  # sorts after every real 64-bit distance

IntArray = npt.NDArray[np.int64]
U64Array = npt.NDArray[np.uint64]
_T = TypeVar("_T", bound=np.generic)


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
    values = np.arange(BUCKETS, dtype=np.int64)
    weights = popcount64(values.astype(np.uint64))
    return values[weights <= radius]


_PROBE_MASKS = [_probe_masks(radius) for radius in range(MAX_MIH_RADIUS + 1)]
_CHUNK_BASES = (np.arange(CHUNKS, dtype=np.int64) * BUCKETS)[:, None]


def phash_value(hashes: Mapping[str, str]) -> int | None:
    """The 64-bit pHash as an int, or None when the image has none.

    Raises:
        ValueError: the pHash is not 64 bits of hex.
    """
    text = hashes.get("phash")
    if text is None:
        return None
    if len(text) != PHASH_HEX_DIGITS:
        raise ValueError(f"phash must be {PHASH_HEX_DIGITS} hex digits (64 bits), got {text!r}")
    return int(text, 16)


def mih_radius(max_distance: int) -> int | None:
    """The probing radius per chunk for `max_distance`, or None when a linear scan is cheaper."""
    radius = max_distance // CHUNKS
    return radius if radius <= MAX_MIH_RADIUS else None


class Columns:
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
        """The filled part of one column, by its name in `COLUMN_NAMES`."""
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
        self.flags[row] = FLAG_ALIVE | (0 if phash is None else FLAG_PHASH)
        self.n = row + 1

    def rows_of(self, ids: Iterable[int]) -> IntArray:
        """Rows of the given ids that are present and alive."""
        wanted = np.fromiter(ids, dtype=np.int64)
        if wanted.size == 0 or self.n == 0:
            return np.zeros(0, dtype=np.int64)
        present = self.ids[: self.n]
        rows = np.minimum(np.searchsorted(present, wanted), self.n - 1)
        found = (present[rows] == wanted) & ((self.flags[rows] & FLAG_ALIVE) != 0)
        alive: IntArray = rows[found].astype(np.int64)
        return alive

    def kill(self, rows: IntArray) -> None:
        """Mark rows as removed (caller holds the memory lock)."""
        self.flags[rows] &= np.uint8(~FLAG_ALIVE & 0xFF)


def _grown(array: npt.NDArray[_T], capacity: int) -> npt.NDArray[_T]:
    """A copy of `array` with room for `capacity` rows."""
    out = np.zeros(max(capacity, len(array)), dtype=array.dtype)
    out[: len(array)] = array
    return out


class BucketTables:
    """Multi-index hashing over the pHash of rows [0, covered): 4 tables of 16-bit chunks."""

    def __init__(self, phash: U64Array, rows: npt.NDArray[np.uint32], covered: int) -> None:
        """Index `rows` (whose hashes are `phash`), built in place to keep temporaries small."""
        self.covered = covered
        size = len(rows)
        self.order = np.empty(CHUNKS * size, dtype=np.uint32)
        self.offsets = np.zeros(CHUNKS * BUCKETS + 1, dtype=np.int64)
        for chunk in range(CHUNKS):
            keys = ((phash >> np.uint64(chunk * CHUNK_BITS)) & np.uint64(0xFFFF)).astype(np.uint16)
            # A stable sort of 16-bit keys is a radix sort in numpy: linear in the row count.
            np.take(rows, np.argsort(keys, kind="stable"), out=self.order[chunk * size :][:size])
            base = chunk * BUCKETS
            self.offsets[base + 1 : base + BUCKETS + 1] = np.bincount(keys, minlength=BUCKETS)
        np.cumsum(self.offsets, out=self.offsets)

    @classmethod
    def empty(cls) -> BucketTables:
        """Tables over nothing."""
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.uint32), 0)

    def candidate_count(self, query: int, radius: int) -> int:
        """How many entries `candidates` would return (cheap: no rows are gathered)."""
        _, lengths = self._ranges(query, radius)
        return int(lengths.sum())

    def candidates(self, query: int, radius: int, *, limit: int | None = None) -> IntArray:
        """Rows sharing at least one chunk within `radius` bits of the query's (with repeats).

        With `limit`, only the first `limit` entries (in table, then bucket, then row order).
        """
        starts, lengths = self._ranges(query, radius)
        if limit is not None and int(lengths.sum()) > limit:
            ends = np.minimum(np.cumsum(lengths), limit)
            lengths = np.diff(ends, prepend=0)
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64)
        # One arange over all ranges, shifted per range: avoids a Python loop over buckets.
        shifts = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        rows: IntArray = self.order[np.arange(total, dtype=np.int64) + shifts].astype(np.int64)
        return rows

    def _ranges(self, query: int, radius: int) -> tuple[IntArray, IntArray]:
        keys = np.array(
            [(query >> (chunk * CHUNK_BITS)) & 0xFFFF for chunk in range(CHUNKS)],
            dtype=np.int64,
        )
        probes = ((keys[:, None] ^ _PROBE_MASKS[radius][None, :]) + _CHUNK_BASES).ravel()
        starts = self.offsets[probes]
        lengths = self.offsets[probes + 1] - starts
        occupied = lengths > 0
        return starts[occupied], lengths[occupied]


def within(
    phash: U64Array, rows: IntArray, query: int, max_distance: int
) -> tuple[IntArray, IntArray]:
    """The distinct rows among `rows` whose hash is within `max_distance` of `query`, sorted,
    with their distances."""
    # Verify before deduplicating: a row found through several chunks shows up repeatedly,
    # and sorting the few survivors is far cheaper than sorting every candidate.
    distances = popcount64(phash[rows] ^ np.uint64(query))
    kept: IntArray = np.unique(rows[distances <= max_distance])
    found: IntArray = popcount64(phash[kept] ^ np.uint64(query)).astype(np.int64)
    return kept, found


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stored image that matches a query, before its record is read."""

    image_id: int
    tier: Tier
    phash_distance: int | None

    def sort_key(self) -> tuple[int, int, int]:
        """Best tier first, then closest, then oldest."""
        distance = NO_DISTANCE if self.phash_distance is None else self.phash_distance
        return (TIER_RANK[self.tier], distance, self.image_id)


def content_candidates(
    columns: Columns, ids: set[int], tier: Tier, query: int | None, version: int
) -> list[Candidate]:
    """The alive rows among `ids` as `tier` matches (`same_pixels` only within `version`)."""
    rows = columns.rows_of(ids)
    if tier != "exact":
        rows = rows[columns.version[rows] == version]
    found: list[Candidate] = []
    for row in rows.tolist():
        image_id = int(columns.ids[row])
        if query is None or columns.flags[row] != SEARCHABLE or columns.version[row] != version:
            found.append(Candidate(image_id, tier, None))
        else:
            found.append(Candidate(image_id, tier, (int(columns.phash[row]) ^ query).bit_count()))
    return found


def near_candidates(
    columns: Columns,
    tables: BucketTables,
    query: int,
    *,
    version: int,
    max_distance: int,
    skip: set[int | None],
    scan: bool,
) -> list[Candidate]:
    """Rows of `version` within `max_distance` of `query`; `scan` skips the tables (which
    cover only the current version)."""
    radius = mih_radius(max_distance)
    if not scan and radius is not None:
        probed = tables.candidates(query, radius)
        buffered = np.arange(tables.covered, columns.n, dtype=np.int64)
        rows = np.concatenate((probed, buffered))
    else:
        rows = np.arange(columns.n, dtype=np.int64)
    rows, distances = within(columns.phash, rows, query, max_distance)
    keep = (columns.flags[rows] == SEARCHABLE) & (columns.version[rows] == version)
    return [
        Candidate(image_id, "near", int(distance))
        for image_id, distance in zip(
            columns.ids[rows[keep]].tolist(), distances[keep].tolist(), strict=True
        )
        if image_id not in skip
    ]
