"""The numpy side of duplicate search: hash columns and multi-indexes over them.

Pure in-memory structures, no locks and no disk: `dupindex.HistoryIndex` keeps the history's
rows in a `Columns` and its search tables in one `BucketTables` per indexed hash; `dupgroups`
builds the same over the distinct hashes of one batch. `rule_candidates` and `rule_verify`
answer a `NearRule` with them: candidates from each clause's tightest indexed hash, then every
clause checked on the five columns.

Multi-index hashing: if two 64-bit hashes differ in at most d bits, one of their four 16-bit
chunks differs in at most d // 4 bits (pigeonhole), so probing every bucket within that radius
in every table finds all of them; verification by popcount removes the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

import numpy as np
import numpy.typing as npt

from medianalysed.nearrule import NearRule

PHASH_HEX_DIGITS = 16
HASH_NAMES = ("phash", "dhash", "ahash", "whash", "colorhash")
INDEXED_HASHES = ("phash", "dhash", "ahash")  # 64-bit and spread out; colorhash is neither
CHUNKS = 4
CHUNK_BITS = 16
BUCKETS = 1 << CHUNK_BITS
MAX_MIH_RADIUS = 2  # beyond this (max_distance >= 12) a linear scan is cheaper than probing

FLAG_ALIVE = 1
FLAG_HASHES = 2  # all five hashes, each at most 64 bits: the image takes part in near search
SEARCHABLE = FLAG_ALIVE | FLAG_HASHES

COLUMN_NAMES = ("ids", *HASH_NAMES, "version", "batch", "flags")

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


def hash_values(hashes: Mapping[str, str]) -> tuple[int, ...] | None:
    """The five hashes as ints (in `HASH_NAMES` order), or None when one is missing or wider
    than 64 bits: such an image is not near-searched.

    Raises:
        ValueError: the pHash is not 64 bits of hex.
    """
    if phash_value(hashes) is None:
        return None
    values: list[int] = []
    for name in HASH_NAMES:
        text = hashes.get(name)
        if text is None or not 0 < len(text) <= PHASH_HEX_DIGITS:
            return None
        try:
            values.append(int(text, 16))
        except ValueError:
            return None
    return tuple(values)


class Columns:
    """Growable per-row arrays; rows are appended in id order and never move until reopen."""

    def __init__(self, rows: int = 0) -> None:
        """Room for `rows` rows (to be filled by the caller) and some more."""
        self.n = rows
        capacity = rows + rows // 8 + 1024
        self.ids = np.zeros(capacity, dtype=np.int64)
        self.phash = np.zeros(capacity, dtype=np.uint64)
        self.dhash = np.zeros(capacity, dtype=np.uint64)
        self.ahash = np.zeros(capacity, dtype=np.uint64)
        self.whash = np.zeros(capacity, dtype=np.uint64)
        self.colorhash = np.zeros(capacity, dtype=np.uint64)
        self.version = np.zeros(capacity, dtype=np.int32)
        self.batch = np.zeros(capacity, dtype=np.uint32)
        self.flags = np.zeros(capacity, dtype=np.uint8)

    def column(self, name: str) -> npt.NDArray[Any]:
        """The filled part of one column, by its name in `COLUMN_NAMES`."""
        array: npt.NDArray[Any] = getattr(self, name)
        return array[: self.n]

    def append(self, image_id: int, hashes: Sequence[int] | None, version: int, batch: int) -> None:
        """Add one row (caller holds the memory lock); `hashes` as from `hash_values`."""
        if self.n == len(self.ids):
            capacity = 2 * len(self.ids)
            for name in COLUMN_NAMES:
                setattr(self, name, _grown(getattr(self, name), capacity))
        row = self.n
        self.ids[row] = image_id
        for name, value in zip(HASH_NAMES, hashes or (0,) * len(HASH_NAMES), strict=True):
            getattr(self, name)[row] = value
        self.version[row] = version
        self.batch[row] = batch
        self.flags[row] = FLAG_ALIVE | (0 if hashes is None else FLAG_HASHES)
        self.n = row + 1

    def hashes_at(self, row: int) -> tuple[int, ...]:
        """The five hashes of one row."""
        return tuple(int(getattr(self, name)[row]) for name in HASH_NAMES)

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


def rule_candidates(
    columns: Columns,
    tables: Mapping[str, BucketTables],
    rule: NearRule,
    query: Sequence[int],
    *,
    limit: int | None,
    scan: bool = False,
) -> tuple[IntArray, bool]:
    """Rows that may match `query` (five hashes) under `rule`, with repeats, and whether `limit`
    left some out. Each clause's candidates come from the table of its tightest indexed hash,
    plus the rows appended since the tables were built; `scan` (or a rule no table can
    serve) takes every row instead."""
    probes = None if scan else rule.probes(tuple(tables), MAX_MIH_RADIUS)
    if probes is None:
        every = np.arange(columns.n, dtype=np.int64)
        return every[:limit], limit is not None and columns.n > limit
    parts: list[IntArray] = []
    capped = False
    room = limit
    for name, radius in probes:
        table, value = tables[name], query[HASH_NAMES.index(name)]
        probed = table.candidates(value, radius, limit=room)
        if room is not None:
            capped = capped or table.candidate_count(value, radius) > room
            room -= len(probed)
        parts.append(probed)
    covered = min(table.covered for table in tables.values())
    buffered = np.arange(covered, columns.n, dtype=np.int64)
    if room is not None:
        capped = capped or len(buffered) > room
        buffered = buffered[:room]
    return np.concatenate((*parts, buffered)), capped


def rule_verify(
    columns: Columns, rows: IntArray, query: Sequence[int], rule: NearRule, *, version: int
) -> tuple[IntArray, IntArray]:
    """The distinct searchable rows of `version` among `rows` that `rule` calls near `query`,
    sorted, with their pHash distances."""
    # Verify the pHash before deduplicating: a row found through several chunks or tables
    # shows up repeatedly, and sorting the few survivors is far cheaper than sorting them all.
    bound = rule.bound("phash")
    if bound is not None:
        rows = rows[popcount64(columns.phash[rows] ^ np.uint64(query[0])) <= bound]
    rows = np.unique(rows)
    rows = rows[(columns.flags[rows] == SEARCHABLE) & (columns.version[rows] == version)]
    distances = {
        name: popcount64(columns.column(name)[rows] ^ np.uint64(value)).astype(np.int64)
        for name, value in zip(HASH_NAMES, query, strict=True)
    }
    near, _ = rule.decide(distances)
    kept: IntArray = rows[near]
    return kept, distances["phash"][near]


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
    tables: Mapping[str, BucketTables],
    query: Sequence[int],
    *,
    rule: NearRule,
    version: int,
    skip: set[int | None],
    scan: bool,
) -> list[Candidate]:
    """Rows of `version` near `query` (five hashes) under `rule`; `scan` skips the tables
    (which cover only the current version)."""
    rows, _ = rule_candidates(columns, tables, rule, query, limit=None, scan=scan)
    rows, distances = rule_verify(columns, rows, query, rule, version=version)
    return [
        Candidate(image_id, "near", int(distance))
        for image_id, distance in zip(columns.ids[rows].tolist(), distances.tolist(), strict=True)
        if image_id not in skip
    ]
