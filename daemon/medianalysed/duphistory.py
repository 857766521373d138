"""What earlier batches hold for one batch's duplicate plan (`dupgroups`).

One `HistoryMatches` per batch asks the history index: images with the same bytes or the same
pixels (`content`), images near a set of hashes (`near`), and a stored image's record
(`record`). This batch's own images are left out of every answer: the index may hold them
already (a rerun, or a finalising resumed after its first history transaction).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from medianalysed.dupindex import ImageRef
from medianalysed.dupsearch import NO_DISTANCE, TIER_RANK, IntArray, Tier, popcount64
from medianalysed.nearrule import NearRule
from medianalysed.ports import DuplicateHistory

MAX_HISTORY_CANDIDATES = 1 << 22  # history index entries verified per distinct hashes
_RECORDS_CACHED = 4096


class Entry(NamedTuple):
    """One listed match; tuples sort as the record lists them (and compare in C)."""

    tier_rank: int
    distance: int  # NO_DISTANCE when unknown
    source: int  # 0: history (ordered by id), 1: this batch (ordered by path index)
    order: int
    tier: Tier


@dataclass(slots=True)
class ContentMatches:
    """What the history holds for one sha256 or pixel digest (this batch left out)."""

    ids: IntArray
    distances: IntArray  # to the signature's pHash; NO_DISTANCE when not comparable

    def entries(self, tier: Tier, keep: int) -> list[Entry]:
        """The first `keep` of them, as listed matches of `tier`."""
        return [
            Entry(TIER_RANK[tier], int(distance), 0, int(image_id), tier)
            for image_id, distance in zip(
                self.ids[:keep].tolist(), self.distances[:keep].tolist(), strict=True
            )
        ]


NO_MATCHES = ContentMatches(np.zeros(0, np.int64), np.zeros(0, np.int64))


@dataclass(frozen=True, slots=True)
class NearMatches:
    """How many history images are near a set of hashes, the first few of them, and whether
    the search stopped at `MAX_HISTORY_CANDIDATES` (then `count` is a lower bound)."""

    count: int
    entries: list[Entry]
    capped: bool


class HistoryMatches:
    """The history's answers for the batch `batch_id`, listing at most `keep` per question."""

    def __init__(
        self, history: DuplicateHistory, *, batch_id: str, rule: NearRule, keep: int
    ) -> None:
        self._history = history
        self._batch_id = batch_id
        self._keep = keep
        self.analysis_version = history.analysis_version

        # Caches of this object only, over closures that do not hold it: an lru_cache on a
        # method lives on the class and kept every finished batch's planner (about 1 MB of
        # tables each) alive; the soak benchmark found RSS climbing by that.
        def near_ids(query: tuple[int, ...]) -> tuple[IntArray, IntArray, bool]:
            return history.near_ids(
                query, rule=rule, limit=MAX_HISTORY_CANDIDATES, exclude_batch=batch_id
            )

        def record(image_id: int) -> tuple[ImageRef, dict[str, str], int] | None:
            return history.records([image_id]).get(image_id)

        self._near_ids = functools.lru_cache(maxsize=4)(near_ids)
        self.record = functools.lru_cache(maxsize=_RECORDS_CACHED)(record)

    def content(self, sha256: str | None, digest: str | None, query: int | None) -> ContentMatches:
        """Images with these bytes (`sha256`) or these pixels (`digest`), nearest pHash first
        (to `query`), then by id; same pixels only among images of this analysis version."""
        own = self._own_ids
        ids = [
            i for i in self._history.content_ids(sha256=sha256, pixel_digest=digest) if i not in own
        ]
        if not ids:  # the usual case: the only copy is this batch's own image
            return NO_MATCHES
        info = self._history.rows_info(np.array(ids, dtype=np.int64))
        keep = np.ones(len(info.ids), dtype=bool)
        code = self._history.batch_code(self._batch_id)
        if code is not None:
            keep &= info.batch != code
        current = info.version == self.analysis_version
        if digest is not None:
            keep &= current
        if not keep.any():
            return NO_MATCHES
        distances = np.full(len(info.ids), NO_DISTANCE, dtype=np.int64)
        if query is not None:
            comparable = info.searchable & current
            distances[comparable] = popcount64(info.phash[comparable] ^ np.uint64(query))
        order = np.lexsort((info.ids[keep], distances[keep]))
        return ContentMatches(info.ids[keep][order], distances[keep][order])

    def near(self, query: tuple[int, ...], exact: IntArray, pixels: IntArray) -> NearMatches:
        """Images near the hash set `query`, apart from those matched already by content."""
        ids, distances, capped = self._near_ids(query)
        skip = np.union1d(exact, pixels) if len(exact) or len(pixels) else exact
        if len(skip) and len(ids):
            keep = ~np.isin(ids, skip)
            ids, distances = ids[keep], distances[keep]
        entries = [
            Entry(TIER_RANK["near"], int(distance), 0, int(image_id), "near")
            for image_id, distance in zip(
                ids[: self._keep].tolist(), distances[: self._keep].tolist(), strict=True
            )
        ]
        return NearMatches(len(ids), entries, capped)

    @functools.cached_property
    def _own_ids(self) -> frozenset[int]:
        """Ids of this batch's images in the history (left out of every answer)."""
        return frozenset(self._history.batch_ids(self._batch_id))
