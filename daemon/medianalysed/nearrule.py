"""The `near` decision of 0.3.0: which hash distances make two images near duplicates, and why.

A rule is a list of clauses; a clause holds a limit per hash and matches when every one of those
hashes is within its limit. Two images are `near` when some clause matches; the match names the
first clause that does, next to every hash's distance. The default clauses, measured with
`benchmarks/bench_near.py` (91 real photos, 29 planted variants each, 3.9 million pairs of
distinct images):

- `phash`: pHash within `near_duplicate_distance` (6), dHash within 12. The dHash bound drops
  the 0.2.0 rule's only false matches: two dark photos carrying the same white box.
- `combined`: pHash 14, dHash 26, aHash 8, wHash 22, colorhash 7 — crops and brightness changes
  move pHash past 6 while the coarse aHash and the colours stay put.
- `watermark`: pHash 16, dHash 8, aHash 13, wHash 10, colorhash 4 — a pasted box moves pHash's
  low frequencies a lot and dHash's gradients hardly at all.

Together: 95.6 % of the planted pairs, no false match (the 0.2.0 rule: 81.2 %, 3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medianalysed.configschema import NearConfig

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Clause:
    """Every listed hash within its limit (Hamming distance, inclusive)."""

    name: str
    limits: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class NearRule:
    """Clauses tried in order; the first that matches names the match."""

    clauses: tuple[Clause, ...]

    @classmethod
    def default(cls, near_duplicate_distance: int = 6) -> NearRule:
        """The rule with its documented default limits."""
        return cls.from_config(NearConfig(), near_duplicate_distance)

    @classmethod
    def from_config(cls, near: NearConfig, near_duplicate_distance: int) -> NearRule:
        """The rule of a [near] section; a clause whose pHash limit is -1 is off."""
        names = ("phash", "dhash", "ahash", "whash", "colorhash")
        clauses = [Clause("phash", {"phash": near_duplicate_distance, "dhash": near.phash_dhash})]
        for clause in ("combined", "watermark"):
            limits = {name: int(getattr(near, f"{clause}_{name}")) for name in names}
            if limits["phash"] >= 0:
                clauses.append(Clause(clause, limits))
        return cls(tuple(clauses))

    @classmethod
    def phash_only(cls, max_distance: int) -> NearRule:
        """The 0.2.0 rule: pHash within `max_distance`, nothing else."""
        return cls((Clause("phash", {"phash": max_distance}),))

    def probes(self, indexed: Sequence[str], max_radius: int) -> tuple[tuple[str, int], ...] | None:
        """How to find every pair some clause may match by multi-index hashing over 16-bit
        chunks: per clause, its indexed hash with the smallest limit and the radius per chunk
        (limit // 4, pigeonhole), without repeats; None when some clause needs a scan."""
        found: set[tuple[str, int]] = set()
        for clause in self.clauses:
            keyed = [(limit, name) for name, limit in clause.limits.items() if name in indexed]
            if not keyed:
                return None
            limit, name = min(keyed)
            if limit // 4 > max_radius:
                return None
            found.add((name, limit // 4))
        # A smaller radius on the same hash finds a subset of a larger one's candidates.
        widest = {name: max(r for n, r in found if n == name) for name, _ in found}
        return tuple(sorted(widest.items()))

    def bound(self, name: str) -> int | None:
        """The largest limit any clause puts on `name`; None when some clause has none (then
        that hash bounds nothing)."""
        limits = [clause.limits.get(name) for clause in self.clauses]
        if not limits or None in limits:
            return None
        return max(limit for limit in limits if limit is not None)

    @property
    def needs(self) -> tuple[str, ...]:
        """The hashes some clause looks at."""
        return tuple(sorted({name for clause in self.clauses for name in clause.limits}))

    def match(self, distances: Mapping[str, int | None]) -> str | None:
        """The name of the first clause two images' distances satisfy, or None.

        A hash either image lacks (None) satisfies no limit on it.
        """
        for clause in self.clauses:
            if all(
                (found := distances.get(name)) is not None and found <= limit
                for name, limit in clause.limits.items()
            ):
                return clause.name
        return None

    def decide(self, distances: Mapping[str, IntArray]) -> tuple[BoolArray, IntArray]:
        """For pairs given as one distance array per hash: near or not, and the first clause
        that matched each (-1 where none did)."""
        size = len(next(iter(distances.values())))
        which = np.full(size, -1, dtype=np.int64)
        for index, clause in enumerate(self.clauses):
            hit = np.ones(size, dtype=bool)
            for name, limit in clause.limits.items():
                hit &= distances[name] <= limit
            which[hit & (which < 0)] = index
        return which >= 0, which


def rule_of(rule: NearRule | None, max_distance: int | None) -> NearRule:
    """The rule a search follows, given one of a rule and a 0.2.0 pHash distance.

    Raises:
        ValueError: not exactly one is given, or the distance is negative.
    """
    if (rule is None) == (max_distance is None):
        raise ValueError("give exactly one of rule and max_distance")
    if rule is not None:
        return rule
    if max_distance is not None and max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    return NearRule.phash_only(max_distance or 0)
