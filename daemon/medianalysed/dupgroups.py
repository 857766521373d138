"""The duplicates of one batch, all at once: bounded lists, counts and groups in near-linear time.

Asking the index once per image is quadratic when every image resembles every other (blank
scans, product shots on white): each of N images has N matches to verify, read and write. Here
the batch is searched per distinct content instead, and every answer is shared:

- images with the same (sha256, pixel digest, pHash) — a *signature* — have the same matches,
  except themselves; so lists and counts are computed once per signature;
- the near search runs once per distinct set of the five hashes, over the batch's distinct sets
  (multi-indexes of its own, weighted by how many images share each) and once against the
  history, both deciding by the same `NearRule`;
- a record lists at most `listed` matches, taken from per-class "heads" (the first few members
  of each class) so that no list ever walks a whole class.

What the numbers mean (SPEC §4 "Duplicates"; tiers as in `dupindex`: each pair of images has one
tier, the best that applies):

- `duplicate_count`: every image, in this batch and in earlier ones (history), that matches the
  record in some tier — what an unlimited `HistoryIndex.find` would return. Exact, unless one of
  its pHash searches had more candidates than the verification cap (`MAX_BATCH_CANDIDATES`
  distinct hashes in the batch, `duphistory.MAX_HISTORY_CANDIDATES` entries in the history);
  then it counts the verified ones (a lower bound) and the summary's `duplicates_capped` says
  how many records.
- groups are formed within the batch only (history matches are listed and counted, never
  grouped): `exact` groups are images with the same sha256; `same_pixels` groups are images with
  the same pixels in at least two different files; `near` groups are the connected components of
  near matches (A~B and B~C put A, B, C in one group even when A and C are farther apart).
  Same bytes imply same pixels imply the same pHash, so these nest: a record's
  `duplicate_group` is its coarsest group (near, else same_pixels, else exact), named by that
  group's first path; null when nothing in the batch matches it.
- listed matches come best tier first, then by pHash distance, then images from earlier batches
  (oldest first) before this batch's (in path order).

The history's side (what earlier batches hold) is `duphistory`; the groups per tier are formed
by `dupclasses.tier_groups`. Work is done in steps (`steps()` is a generator), so the batch
actor can interleave a stop.
"""

from __future__ import annotations

import functools
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from medianalysed.dupclasses import Heads, hash_columns, roots, tier_groups
from medianalysed.duphistory import NO_MATCHES, ContentMatches, Entry, HistoryMatches
from medianalysed.dupindex import HASH_NAMES, evidence
from medianalysed.dupsearch import (
    INDEXED_HASHES,
    NO_DISTANCE,
    SEARCHABLE,
    TIER_RANK,
    BucketTables,
    Columns,
    IntArray,
    Tier,
    hash_values,
    popcount64,
    rule_candidates,
    rule_verify,
)
from medianalysed.nearrule import NearRule, rule_of
from medianalysed.ports import DuplicateHistory

MAX_BATCH_CANDIDATES = 1 << 13  # distinct-hashes candidates verified per distinct hashes
_VALUES_PER_STEP = 256
_SIGNATURES_PER_STEP = 256

_HASH_COLUMNS = len(HASH_NAMES)


@dataclass(frozen=True, slots=True)
class BatchImage:
    """What the planner needs about one done image of the batch."""

    path: str
    sha256: str
    pixel_digest: str | None
    hashes: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class RecordDuplicates:
    """The duplicates part of one per-image record."""

    matches: list[dict[str, Any]]
    count: int
    group: str | None
    capped: bool


@dataclass(slots=True)
class _Signature:
    sha: int
    pix: int
    value: int  # index into the distinct hash sets, -1 without all five
    entries: list[Entry] = field(default_factory=list)
    count: int = 0
    capped: bool = False


class DuplicatePlanner:
    """Collects a batch's done images (in path order), then computes every record's duplicates.

    Use: `add` each image, run `steps()` to the end, then `duplicates(i)` for the i-th image
    added and `groups()` for summary.json.
    """

    def __init__(
        self,
        history: DuplicateHistory,
        *,
        batch_id: str,
        listed: int,
        rule: NearRule | None = None,
        max_distance: int | None = None,
    ) -> None:
        """Plan against `history` (which already holds this batch's images, or not); `near`
        follows `rule`, or with `max_distance` instead the 0.2.0 rule (pHash alone)."""
        near_rule = rule_of(rule, max_distance)
        self._rule = near_rule
        self._listed = listed
        self._keep = listed + 1  # one more: a signature's list may hold the record itself
        self.paths: list[str] = []
        self._sha_codes: dict[str, int] = {}
        self._pix_codes: dict[str, int] = {}
        self._pix_digests: list[str | None] = []
        self._shas: list[str] = []
        # Compact while collecting: 100,000 images must not cost 100,000 Python lists.
        self._sha_of = array("q")
        self._pix_of = array("q")
        self._has_hashes = array("b")
        self._columns = array("Q")
        self._lengths = array("b")
        self._odd_hashes: dict[int, dict[str, str]] = {}
        self._signatures: list[_Signature] = []
        self._signature_of: IntArray = np.zeros(0, dtype=np.int64)
        self._group_of: IntArray = np.zeros(0, dtype=np.int64)
        self._group_paths: dict[Tier, list[list[str]]] = {tier: [] for tier in TIER_RANK}
        self._ready = False
        self._history = HistoryMatches(history, batch_id=batch_id, rule=near_rule, keep=self._keep)

    # -- collecting ----------------------------------------------------------------------

    def add(self, image: BatchImage) -> None:
        """One done image; images must come in path order.

        Raises:
            ValueError: the pHash is not 64 bits of hex.
        """
        index = len(self.paths)
        self.paths.append(image.path)
        sha = self._sha_codes.setdefault(image.sha256, len(self._sha_codes))
        if sha == len(self._shas):
            self._shas.append(image.sha256)
        # Without a pixel digest an image has no same_pixels match: its class is its bytes.
        key = image.pixel_digest if image.pixel_digest is not None else "\0" + image.sha256
        pix = self._pix_codes.setdefault(key, len(self._pix_codes))
        if pix == len(self._pix_digests):
            self._pix_digests.append(image.pixel_digest)
        self._sha_of.append(sha)
        self._pix_of.append(pix)
        self._has_hashes.append(int(hash_values(image.hashes) is not None))
        row, lengths = hash_columns(image.hashes)
        self._columns.extend(row)
        self._lengths.extend(lengths)
        if lengths.count(-1) or set(image.hashes) - set(HASH_NAMES):
            self._odd_hashes[index] = dict(image.hashes)

    # -- computing -----------------------------------------------------------------------

    def steps(self) -> Iterator[tuple[str, int, int]]:
        """Do the work in short steps; yields (stage, done, total) after each."""
        if not self.paths:
            self._ready = True
            return
        self._prepare()
        yield ("grouping", 0, len(self._values))
        for start in range(0, len(self._values), _VALUES_PER_STEP):
            self._search_values(start, min(start + _VALUES_PER_STEP, len(self._values)))
            yield ("grouping", min(start + _VALUES_PER_STEP, len(self._values)), len(self._values))
        # Grouped by hashes, so that each distinct set is searched in the history once.
        signatures = sorted(self._signatures, key=lambda signature: signature.value)
        for start in range(0, len(signatures), _SIGNATURES_PER_STEP):
            for signature in signatures[start : start + _SIGNATURES_PER_STEP]:
                self._plan_signature(signature)
            done = min(start + _SIGNATURES_PER_STEP, len(signatures))
            yield ("matching", done, len(signatures))
        self._group_of, self._group_paths = tier_groups(
            self.paths, self._sha, self._pix, self._value, self._parent
        )
        self._ready = True

    def _prepare(self) -> None:
        n = len(self.paths)
        self._sha = np.frombuffer(self._sha_of, dtype=np.int64).copy()
        self._pix = np.frombuffer(self._pix_of, dtype=np.int64).copy()
        self._sha_list: list[int] = self._sha.tolist()  # indexed per member: lists are faster
        self._pix_list: list[int] = self._pix.tolist()
        has_phash = np.frombuffer(self._has_hashes, dtype=np.int8).astype(bool)
        self._ev = np.frombuffer(self._columns, dtype=np.uint64).reshape(n, _HASH_COLUMNS).copy()
        self._ev_len = np.frombuffer(self._lengths, dtype=np.int8).reshape(n, _HASH_COLUMNS).copy()
        del self._sha_of, self._pix_of, self._has_hashes
        del self._columns, self._lengths
        distinct, inverse, counts = np.unique(
            self._ev[has_phash], axis=0, return_inverse=True, return_counts=True
        )
        values = distinct[:, 0] if len(distinct) else np.zeros(0, dtype=np.uint64)
        self._values: npt.NDArray[np.uint64] = values  # the pHash of each distinct set
        self._value_weight: IntArray = counts.astype(np.int64)
        self._value = np.full(n, -1, dtype=np.int64)
        self._value[has_phash] = inverse.reshape(-1)
        self._sha_size = np.bincount(self._sha, minlength=len(self._shas))
        self._pix_size = np.bincount(self._pix, minlength=len(self._pix_digests))
        members = np.arange(n, dtype=np.int64)
        self._sha_head = Heads(self._sha, None, members, per_key=self._keep, cap=self._keep)
        self._pix_head = Heads(
            self._pix, self._sha, members, per_key=self._keep, cap=2 * self._keep
        )
        with_phash = members[has_phash]
        self._value_head = Heads(
            self._value[with_phash],
            self._pix[with_phash],
            with_phash,
            per_key=self._keep,
            cap=2 * self._keep,
        )
        self._value_first = Heads(
            self._value[with_phash], None, with_phash, per_key=self._keep, cap=self._keep
        )
        self._signatures = self._collect_signatures()
        # Per distinct pHash: how many batch images lie within the distance (itself included),
        # the nearest images of other pHashes, whether the search was capped, its component.
        count = len(values)
        self._within = np.zeros(count, dtype=np.int64)
        self._far: list[list[tuple[int, int]]] = [[] for _ in range(count)]
        self._value_capped = np.zeros(count, dtype=bool)
        self._parent = np.arange(count, dtype=np.int64)
        self._sets = _distinct_columns(distinct)
        every = np.arange(count, dtype=np.uint32)
        self._tables = {
            name: BucketTables(self._sets.column(name), every, count) for name in INDEXED_HASHES
        }

    def _collect_signatures(self) -> list[_Signature]:
        keys = np.stack((self._sha, self._pix, self._value), axis=1)
        unique, inverse = np.unique(keys, axis=0, return_inverse=True)
        self._signature_of = inverse.reshape(-1)
        return [_Signature(int(s), int(p), int(v)) for s, p, v in unique.tolist()]

    def _search_values(self, start: int, stop: int) -> None:
        """Near search of distinct hash sets [start, stop) among the batch's distinct sets."""
        sets, tables, rule = self._sets, self._tables, self._rule
        for value in range(start, stop):
            query = sets.hashes_at(value)
            rows, capped = rule_candidates(sets, tables, rule, query, limit=MAX_BATCH_CANDIDATES)
            self._value_capped[value] = capped
            rows, distances = rule_verify(sets, rows, query, rule, version=0)
            self._within[value] = int(self._value_weight[rows].sum())
            self._union(np.append(rows, value))
            self._far[value] = self._nearest_others(value, rows, distances)

    def _union(self, values: IntArray) -> None:
        found = roots(self._parent, values)
        lowest = found.min()
        if (found != lowest).any():
            self._parent[found] = lowest

    def _nearest_others(
        self, value: int, rows: IntArray, distances: IntArray
    ) -> list[tuple[int, int]]:
        """The first `keep` images of other pHashes by (distance, path), as (distance, index)."""
        other = rows != value
        rows, distances = rows[other], distances[other]
        if len(rows) == 0:
            return []
        # An image of a pHash ranked past `keep` by its first member cannot be in the top `keep`.
        rank = distances * (len(self.paths) + 1) + self._value_first.first(rows)
        if len(rank) > self._keep:
            chosen = np.argpartition(rank, self._keep)[: self._keep]
        else:
            chosen = np.arange(len(rank))
        entries = [
            (int(distances[pick]), member)
            for pick in chosen.tolist()
            for member in self._value_first.members(int(rows[pick]))
        ]
        entries.sort()
        return entries[: self._keep]

    def _plan_signature(self, signature: _Signature) -> None:
        sha, pix, value = signature.sha, signature.pix, signature.value
        query = None if value < 0 else int(self._values[value])
        entries = self._batch_entries(signature)
        exact = self._history.content(self._shas[sha], None, query)
        pixels = NO_MATCHES
        digest = self._pix_digests[pix]
        if digest is not None:
            pixels = self._history.content(None, digest, query)
            if len(pixels.ids) and len(exact.ids):
                unlike = ~np.isin(pixels.ids, exact.ids)
                pixels = ContentMatches(pixels.ids[unlike], pixels.distances[unlike])
        count = int(self._sha_size[sha]) - 1 + len(exact.ids) + len(pixels.ids)
        entries += exact.entries("exact", self._keep)
        entries += pixels.entries("same_pixels", self._keep)
        same_pixels = int(self._pix_size[pix])
        count += same_pixels - self._same_pair_size(sha, pix)
        capped = False
        if query is not None:
            count += int(self._within[value]) - same_pixels - int(self._sha_size[sha])
            count += self._same_pair_size(sha, pix)
            capped = bool(self._value_capped[value])
            hashes = self._sets.hashes_at(value)
            near = self._history.near(hashes, exact.ids, pixels.ids)
            count += near.count
            capped = capped or near.capped
            entries += near.entries
        entries.sort()
        signature.entries = entries[: self._keep]
        signature.count = count
        signature.capped = capped

    def _same_pair_size(self, sha: int, pix: int) -> int:
        """How many batch images have this sha256 and this pixel class (normally: the sha's)."""
        return int(self._pair_sizes.get((sha, pix), 0))

    @functools.cached_property
    def _pair_sizes(self) -> dict[tuple[int, int], int]:
        pairs, counts = np.unique(
            np.stack((self._sha, self._pix), axis=1), axis=0, return_counts=True
        )
        return {
            (int(s), int(p)): int(c)
            for (s, p), c in zip(pairs.tolist(), counts.tolist(), strict=True)
        }

    def _batch_entries(self, signature: _Signature) -> list[Entry]:
        keep = self._keep
        value = signature.value
        entries: list[Entry] = []
        zero = 0 if value >= 0 else NO_DISTANCE
        for member in self._sha_head.members(signature.sha):
            # Same bytes, same pHash: distance 0 (unknown without a pHash).
            entries.append(Entry(TIER_RANK["exact"], zero, 1, member, "exact"))
        sha_of, pix_of = self._sha_list, self._pix_list
        pixel_members = [
            member
            for member in self._pix_head.members(signature.pix)
            if sha_of[member] != signature.sha
        ][:keep]
        entries.extend(
            Entry(TIER_RANK["same_pixels"], zero, 1, member, "same_pixels")
            for member in pixel_members
        )
        if value >= 0:
            same_value = [
                member
                for member in self._value_head.members(value)
                if pix_of[member] != signature.pix and sha_of[member] != signature.sha
            ][:keep]
            entries.extend(Entry(TIER_RANK["near"], 0, 1, m, "near") for m in same_value)
            entries.extend(
                Entry(TIER_RANK["near"], distance, 1, member, "near")
                for distance, member in self._far[value]
            )
        return entries

    # -- results ---------------------------------------------------------------------------

    def groups(self) -> dict[str, list[list[str]]]:
        """Per tier, the groups of paths (each sorted, groups by first path)."""
        self._check_ready()
        return {tier: list(groups) for tier, groups in self._group_paths.items()}

    @property
    def capped(self) -> int:
        """How many records have a `duplicate_count` that is a lower bound."""
        self._check_ready()
        return sum(
            int(count)
            for signature, count in zip(
                self._signatures,
                np.bincount(self._signature_of, minlength=len(self._signatures)).tolist(),
                strict=True,
            )
            if signature.capped
        )

    def duplicates(self, index: int) -> RecordDuplicates:
        """The duplicates of the `index`-th image added."""
        self._check_ready()
        signature = self._signatures[int(self._signature_of[index])]
        entries = [e for e in signature.entries if not (e.source == 1 and e.order == index)]
        matches = [self._render(index, entry) for entry in entries[: self._listed]]
        group = int(self._group_of[index])
        return RecordDuplicates(
            matches=[match for match in matches if match is not None],
            count=signature.count,
            group=None if group < 0 else self.paths[group],
            capped=signature.capped,
        )

    def _render(self, index: int, entry: Entry) -> dict[str, Any] | None:
        if entry.source == 1:
            distances = self._evidence(index, entry.order)
            return {
                "tier": entry.tier,
                "path": self.paths[entry.order],
                "seen_in": None,
                "distances": distances,
                "rule": self._rule.match(distances) if entry.tier == "near" else None,
            }
        stored = self._history.record(entry.order)
        if stored is None:  # removed since the search
            return None
        ref, hashes, version = stored
        query = self._hashes_of(index)
        distances = (
            evidence(query, hashes)
            if version == self._history.analysis_version
            else dict.fromkeys(evidence(query, {}))
        )
        return {
            "tier": entry.tier,
            "path": ref.path,
            "seen_in": ref.batch_id,
            "distances": distances,
            "rule": self._rule.match(distances) if entry.tier == "near" else None,
        }

    def _evidence(self, left: int, right: int) -> dict[str, int | None]:
        if left in self._odd_hashes or right in self._odd_hashes:
            return evidence(self._hashes_of(left), self._hashes_of(right))
        lengths = self._ev_len[left]
        comparable = (lengths > 0) & (lengths == self._ev_len[right])
        bits = popcount64(self._ev[left] ^ self._ev[right]).tolist()
        return {
            name: int(bits[column]) if comparable[column] else None
            for column, name in enumerate(HASH_NAMES)
        }

    def _hashes_of(self, index: int) -> dict[str, str]:
        odd = self._odd_hashes.get(index)
        if odd is not None:
            return odd
        return {
            name: f"{int(self._ev[index, column]):0{int(self._ev_len[index, column])}x}"
            for column, name in enumerate(HASH_NAMES)
            if self._ev_len[index, column] > 0
        }

    def _check_ready(self) -> None:
        if not self._ready:
            raise RuntimeError("run steps() to the end first")


def _distinct_columns(distinct: npt.NDArray[np.uint64]) -> Columns:
    """The batch's distinct hash sets as searchable rows (id = row)."""
    sets = Columns(len(distinct))
    sets.column("ids")[:] = np.arange(len(distinct))
    for column, name in enumerate(HASH_NAMES):
        sets.column(name)[:] = distinct[:, column]
    sets.column("flags")[:] = SEARCHABLE
    return sets
