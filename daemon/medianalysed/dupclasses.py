"""Pure helpers of `dupgroups`: heads of classes, ranks within runs, union-find roots, the
hashes of one image as 64-bit columns, and the batch's groups per tier. Numpy over arrays of
member indices; no index, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from medianalysed.dupindex import HASH_NAMES
from medianalysed.dupsearch import TIER_RANK, IntArray, Tier

_MAX_COLUMN_HEX = 16  # a hash wider than 64 bits is compared as text


class Heads:
    """For each class, its first members (in member order), at most `per_key` of each key.

    With `cap >= 2 * per_key`, the first `per_key` members whose key differs from any one key
    are among them: at most `per_key` of them have that key.
    """

    def __init__(
        self,
        classes: IntArray,
        keys: IntArray | None,
        members: IntArray,
        *,
        per_key: int,
        cap: int,
    ) -> None:
        if keys is not None:
            order = np.lexsort((members, keys, classes))
            order = order[rank_in_runs(classes[order], keys[order]) < per_key]
        else:
            order = np.arange(len(members))
        order = order[np.lexsort((members[order], classes[order]))]
        order = order[rank_in_runs(classes[order]) < cap]
        self._members = members[order]
        size = int(classes.max()) + 1 if len(classes) else 0
        self._offsets = np.searchsorted(classes[order], np.arange(size + 1))

    def members(self, cls: int) -> list[int]:
        """The head of one class."""
        head: list[int] = self._members[self._offsets[cls] : self._offsets[cls + 1]].tolist()
        return head

    def first(self, classes: IntArray) -> IntArray:
        """The first member of each class (every class has one)."""
        first: IntArray = self._members[self._offsets[classes]]
        return first


def rank_in_runs(*sorted_keys: IntArray) -> IntArray:
    """Position of each element within its run of equal keys (keys sorted together)."""
    n = len(sorted_keys[0])
    starts_here = np.zeros(n, dtype=bool)
    if n:
        starts_here[0] = True
    for keys in sorted_keys:
        starts_here[1:] |= keys[1:] != keys[:-1]
    positions = np.arange(n, dtype=np.int64)
    starts = np.where(starts_here, positions, 0)
    np.maximum.accumulate(starts, out=starts)
    ranks: IntArray = positions - starts
    return ranks


def roots(parent: IntArray, items: IntArray) -> IntArray:
    """Union-find roots of `items`, compressing the paths it walks."""
    roots = parent[items]
    while True:
        above = parent[roots]
        if np.array_equal(above, roots):
            break
        roots = above
    parent[items] = roots
    return roots


def hash_columns(hashes: Mapping[str, str]) -> tuple[list[int], list[int]]:
    """The hashes as 64-bit ints with their hex lengths (0: absent, -1: not representable)."""
    row: list[int] = []
    lengths: list[int] = []
    for name in HASH_NAMES:
        text = hashes.get(name)
        if text is None:
            row.append(0)
            lengths.append(0)
            continue
        try:
            value = int(text, 16) if 0 < len(text) <= _MAX_COLUMN_HEX else -1
        except ValueError:
            value = -1
        row.append(max(value, 0))
        lengths.append(len(text) if value >= 0 else -1)
    return row, lengths


def tier_groups(
    paths: Sequence[str], sha: IntArray, pix: IntArray, value: IntArray, parent: IntArray
) -> tuple[IntArray, dict[Tier, list[list[str]]]]:
    """The batch's groups per tier, and each image's coarsest group (its first path's index).

    `sha`, `pix` and `value` are each image's sha256 class, pixel class and distinct hash set
    (-1: none); `parent` is the union-find forest over the hash sets (their near components).
    An image in no group has -1. Groups come in order of their first path.
    """
    n = len(paths)
    group_of = np.full(n, -1, dtype=np.int64)
    group_paths: dict[Tier, list[list[str]]] = {tier: [] for tier in TIER_RANK}

    def add(tier: Tier, keys: IntArray, members: npt.NDArray[np.bool_]) -> None:
        # Coarser tiers come later and overwrite: a record's group is its coarsest.
        for group in _groups_by_key(keys, members):
            group_of[group] = int(group[0])
            group_paths[tier].append([paths[i] for i in group.tolist()])

    add("exact", sha, np.bincount(sha)[sha] >= 2)
    pix_shas = np.bincount(np.unique(np.stack((pix, sha), axis=1), axis=0)[:, 0])
    add("same_pixels", pix, pix_shas[pix] >= 2)
    component = np.full(n, -1, dtype=np.int64)
    has_value = value >= 0
    root_of = roots(parent, np.arange(len(parent), dtype=np.int64))
    component[has_value] = root_of[value[has_value]]
    spans = np.unique(np.stack((component[has_value], pix[has_value]), axis=1), axis=0)
    near = np.zeros(n, dtype=bool)
    if len(spans):
        classes = np.bincount(spans[:, 0], minlength=len(parent))
        near[has_value] = classes[component[has_value]] >= 2
    add("near", component, near)
    return group_of, group_paths


def _groups_by_key(keys: IntArray, members: npt.NDArray[np.bool_]) -> list[IntArray]:
    """The images in `members` grouped by `keys`, each group in image order, by first image."""
    chosen = np.flatnonzero(members)
    if len(chosen) == 0:
        return []
    order = chosen[np.lexsort((chosen, keys[chosen]))]
    starts = np.flatnonzero(np.diff(keys[order], prepend=-2))
    groups = np.split(order, starts[1:])
    groups.sort(key=lambda group: int(group[0]))
    return groups
