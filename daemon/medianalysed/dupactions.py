"""Duplicates a person can act on: one group per file, one tier per file, a suggested keeper.

The planner (`dupgroups`) finds groups per tier, and they nest (same bytes imply same pixels
imply a near pHash), so one file can sit in an `exact` and a `near` group at once. Here:

- `outermost` keeps each group once, under the tier that joins it (its weakest link): the
  summary's `duplicates` then lists every file at most once;
- a file's own tier is its strongest match (the first listed: records list matches best tier
  first), kept in the record as `duplicate_tier`;
- a group's keeper is the member with the most pixels, then the earliest
  `exif.datetime_original` (files without one come after), then the shortest path, then the
  path itself (`keeper_order`), among this batch's files; another member's `duplicate_of` is
  the keeper, unless its strongest match is an image of an earlier batch, which it then names
  (with `duplicate_seen_in`): that image is already there;
- a file that only matches images of earlier batches is a group of its own with those images
  as members (`seen_in` names their batch).

`DuplicateGroups` then collects, from the final records, the summary's `duplicate_groups` and
the graph `duplicates.gexf` draws (`gexf.py`): nodes are the batch's files and the earlier
images they match, edges the listed matches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TIERS: tuple[str, ...] = ("exact", "same_pixels", "near")  # strongest first
_RANK = {tier: rank for rank, tier in enumerate(TIERS)}
_NO_DATE = "\uffff"  # sorts after every ISO date

Node = tuple[str | None, str]  # (seen_in, path): seen_in None for this batch's files


def strongest(tiers: Iterable[str]) -> str | None:
    """The strongest of `tiers` (unknown tiers count as weakest), or None when empty."""
    return min(tiers, key=lambda tier: _RANK.get(tier, len(TIERS)), default=None)


def outermost(groups: Mapping[str, Sequence[Sequence[str]]]) -> dict[str, list[list[str]]]:
    """Each connected group once, under the weakest tier that takes part in joining it.

    `groups` holds per tier groups of paths that may overlap across tiers (nested or not); the
    result partitions the same paths: per tier, groups sorted by first path, each sorted.
    """
    parent: dict[str, str] = {}

    def find(item: str) -> str:
        root = parent.setdefault(item, item)
        while root != parent[root]:
            root = parent[root]
        parent[item] = root
        return root

    weakest: dict[str, int] = {}
    for tier, found in groups.items():
        for group in found:
            roots = {find(path) for path in group}
            top = min(roots)
            rank = max(
                [_RANK.get(tier, len(TIERS) - 1), *(weakest.pop(r, 0) for r in roots - {top})]
            )
            for other in roots - {top}:
                parent[other] = top
            weakest[top] = max(weakest.get(top, 0), rank)
    members: dict[str, list[str]] = {}
    for item in parent:
        members.setdefault(find(item), []).append(item)
    result: dict[str, list[list[str]]] = {tier: [] for tier in TIERS}
    for root, paths in members.items():
        if len(paths) > 1:
            result[TIERS[weakest.get(root, 0)]].append(sorted(paths))
    for found in result.values():
        found.sort()
    return result


@dataclass(frozen=True, slots=True)
class KeeperFacts:
    """What choosing a keeper compares."""

    path: str
    pixels: int
    date: str | None


def keeper_order(facts: KeeperFacts) -> tuple[int, str, int, str]:
    """Sort key: most pixels, earliest date (none last), shortest path, then the path."""
    return (-facts.pixels, facts.date or _NO_DATE, len(facts.path), facts.path)


def keeper_facts(path: str, result: Mapping[str, Any] | None) -> KeeperFacts:
    """The facts of a stored result or a final record (missing sizes count as 0 pixels)."""
    result = result or {}
    image = result.get("image") or {}
    exif = result.get("exif") or {}
    width, height = image.get("width"), image.get("height")
    pixels = width * height if isinstance(width, int) and isinstance(height, int) else 0
    date = exif.get("datetime_original")
    return KeeperFacts(path, pixels, date if isinstance(date, str) else None)


def choose_keeper(members: Iterable[KeeperFacts]) -> str:
    """The path of the member to keep (see `keeper_order`)."""
    return min(members, key=keeper_order).path


def duplicate_fields(
    matches: Sequence[Mapping[str, Any]] | None, keeper: str | None
) -> dict[str, Any]:
    """`duplicate_of`, `duplicate_tier`, `duplicate_seen_in` of one record.

    `keeper` is the record's group keeper when it is another file of this batch (record form),
    else None. The file a record duplicates is its strongest match when that one was seen in an
    earlier batch (the image is already there), else its keeper, else (a keeper) the closest
    image of an earlier batch it matches, if any.
    """
    if not matches:
        return {"duplicate_of": None, "duplicate_tier": None, "duplicate_seen_in": None}
    tier = str(matches[0]["tier"])
    if keeper is not None and matches[0].get("seen_in") is None:
        return {"duplicate_of": keeper, "duplicate_tier": tier, "duplicate_seen_in": None}
    earlier = next((m for m in matches if m.get("seen_in") is not None), None)
    return {
        "duplicate_of": None if earlier is None else earlier["path"],
        "duplicate_tier": tier,
        "duplicate_seen_in": None if earlier is None else earlier["seen_in"],
    }


@dataclass(slots=True)
class _Group:
    keeper: KeeperFacts | None = None
    members: dict[Node, str] = field(default_factory=dict)  # node -> its strongest tier


@dataclass(frozen=True, slots=True)
class Edge:
    """One match between two nodes (each pair once)."""

    source: Node
    target: Node
    tier: str
    distances: Mapping[str, int | None]


class DuplicateGroups:
    """The summary's `duplicate_groups` and the duplicate graph, from the final records."""

    def __init__(self) -> None:
        self._groups: dict[str, _Group] = {}
        self._edges: dict[frozenset[Node], Edge] = {}

    def add(self, record: Mapping[str, Any]) -> None:
        """Count one final record (those without matches are left out)."""
        matches = record.get("duplicates")
        if not isinstance(matches, list) or not matches:
            return
        path = str(record["path"])
        group_id = str(record.get("duplicate_group") or path)
        group = self._groups.setdefault(group_id, _Group())
        own: Node = (None, path)
        group.members[own] = str(record.get("duplicate_tier") or matches[0]["tier"])
        facts = keeper_facts(path, record)
        if group.keeper is None or keeper_order(facts) < keeper_order(group.keeper):
            group.keeper = facts
        for match in matches:
            other: Node = (match.get("seen_in"), str(match["path"]))
            tier = str(match["tier"])
            if other[0] is not None:
                group.members[other] = strongest([tier, group.members.get(other, tier)]) or tier
            pair = frozenset((own, other))
            if pair not in self._edges:
                self._edges[pair] = Edge(own, other, tier, match.get("distances") or {})

    def groups_json(self) -> list[dict[str, Any]]:
        """Per group: `id`, `keeper`, `size` and `members` (keeper first, then this batch's
        files, then earlier batches' images), each member with `path`, `tier`, `seen_in`."""
        shown = []
        for group_id in sorted(self._groups):
            group = self._groups[group_id]
            keeper = group.keeper.path if group.keeper else ""
            ordered = sorted(
                group.members.items(),
                key=lambda item: (item[0] != (None, keeper), item[0][0] is not None, item[0]),
            )
            shown.append(
                {
                    "id": group_id,
                    "keeper": keeper,
                    "size": len(ordered),
                    "members": [
                        {"path": path, "tier": tier, "seen_in": seen_in}
                        for (seen_in, path), tier in ordered
                    ],
                }
            )
        return shown

    def nodes(self) -> list[Node]:
        """Every node of the graph: this batch's files first, each set sorted."""
        found = {node for group in self._groups.values() for node in group.members}
        found.update(node for edge in self._edges.values() for node in (edge.source, edge.target))
        return sorted(found, key=lambda node: (node[0] is not None, node[0] or "", node[1]))

    def edges(self) -> list[Edge]:
        """Every listed match, each pair of nodes once."""
        return list(self._edges.values())
