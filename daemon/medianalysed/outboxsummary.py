"""`summary.json`: what a finished batch aggregates, in one streaming pass over its records."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from medianalysed.dupactions import TIERS, DuplicateGroups, outermost
from medianalysed.models import ImageStatus
from medianalysed.readiness import group_of
from medianalysed.runstats import RunStats


class _UnionFind:
    """Connected groups of paths; holds only the paths that take part in a duplicate pair."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def _find(self, item: str) -> str:
        parent = self._parent.setdefault(item, item)
        while parent != item:
            grandparent = self._parent[parent]
            self._parent[item] = grandparent  # path halving
            item, parent = parent, grandparent
        return item

    def union(self, left: str, right: str) -> None:
        left_root, right_root = self._find(left), self._find(right)
        if left_root != right_root:
            self._parent[max(left_root, right_root)] = min(left_root, right_root)

    def groups(self) -> list[list[str]]:
        members: dict[str, list[str]] = {}
        for item in self._parent:
            members.setdefault(self._find(item), []).append(item)
        return sorted(sorted(group) for group in members.values() if len(group) > 1)


def _section(record: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = record.get(name)
    return value if isinstance(value, Mapping) else {}


def _camera(exif: Mapping[str, Any]) -> str | None:
    make = str(exif.get("make") or "").strip(" \0")
    model = str(exif.get("model") or "").strip(" \0")
    if model.casefold().startswith(make.casefold()):
        make = ""  # "Canon" + "Canon EOS R5" -> "Canon EOS R5"
    return " ".join(part for part in (make, model) if part) or None


def _iso_datetime(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return None
    return value


class _GroupStats:
    __slots__ = ("bytes", "formats", "images", "pixels")

    def __init__(self) -> None:
        self.images = 0
        self.bytes = 0
        self.pixels = 0
        self.formats: Counter[str] = Counter()

    def add(self, size: object, width: object, height: object, fmt: object) -> None:
        self.images += 1
        if isinstance(size, int):
            self.bytes += size
        if isinstance(width, int) and isinstance(height, int):
            self.pixels += width * height
        if isinstance(fmt, str):
            self.formats[fmt] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "bytes": self.bytes,
            "megapixels": round(self.pixels / 1_000_000, 2),
            "formats": dict(sorted(self.formats.items())),
        }


class SummaryBuilder:
    """Everything `summary.json` aggregates, in one pass over the records (see `summarize`)."""

    def __init__(self) -> None:
        self.failures: Counter[str] = Counter()
        self.run = RunStats()
        self.duplicates = {tier: _UnionFind() for tier in TIERS}
        self.duplicate_groups = DuplicateGroups()
        self.groups: dict[str, _GroupStats] = {}
        self.formats: Counter[str] = Counter()
        self.cameras: Counter[str] = Counter()
        self.first_date: str | None = None
        self.last_date: str | None = None

    def add(self, record: Mapping[str, Any]) -> None:
        path = str(record["path"])
        self.run.add(record)
        self._add_failure(record)
        self._add_duplicates(path, record.get("duplicates"))
        self.duplicate_groups.add(record)
        image, exif, file = (_section(record, name) for name in ("image", "exif", "file"))
        fmt = image.get("format")
        if isinstance(fmt, str):
            self.formats[fmt] += 1
        group = record["group"] if "group" in record else group_of(path)
        if isinstance(group, str):
            stats = self.groups.setdefault(group, _GroupStats())
            stats.add(file.get("size"), image.get("width"), image.get("height"), fmt)
        camera = _camera(exif)
        if camera:
            self.cameras[camera] += 1
        self._add_date(_iso_datetime(exif.get("datetime_original")))

    def _add_failure(self, record: Mapping[str, Any]) -> None:
        if record.get("status") not in {ImageStatus.FAILED, ImageStatus.SKIPPED}:
            return
        code = _section(record, "error").get("code")
        if code is not None:
            self.failures[str(code)] += 1

    def _add_duplicates(self, path: str, matches: object) -> None:
        if not isinstance(matches, list):
            return
        for match in matches:
            if not isinstance(match, Mapping) or match.get("seen_in") is not None:
                continue  # matches in earlier batches are not groups of this batch
            tier = str(match.get("tier"))
            forest = self.duplicates.setdefault(tier, _UnionFind())
            forest.union(path, str(match["path"]))

    def _add_date(self, value: str | None) -> None:
        if value is None:
            return
        if self.first_date is None or value < self.first_date:
            self.first_date = value
        if self.last_date is None or value > self.last_date:
            self.last_date = value

    def build(
        self,
        *,
        status_fields: Mapping[str, Any],
        config_fingerprint: str,
        duplicate_groups: Mapping[str, list[list[str]]] | None = None,
        duplicates_capped: int | None = None,
    ) -> dict[str, Any]:
        """The summary document; `duplicate_groups`, when given, replaces the groups found by
        joining the records' listed matches (which a bounded list cannot give in full)."""
        aggregated = self._to_json()
        if duplicate_groups is not None:
            aggregated["duplicates"] = outermost(duplicate_groups)
        if duplicates_capped is not None:
            aggregated["duplicates_capped"] = duplicates_capped
        return {
            **status_fields,
            **aggregated,
            **self.run.to_json(),
            "config_fingerprint": config_fingerprint,
        }

    def _to_json(self) -> dict[str, Any]:
        date_range = None
        if self.first_date is not None:
            date_range = {"first": self.first_date, "last": self.last_date}
        return {
            "failures": dict(sorted(self.failures.items())),
            "duplicates": outermost(
                {tier: forest.groups() for tier, forest in self.duplicates.items()}
            ),
            "duplicate_groups": self.duplicate_groups.groups_json(),
            "groups": {name: self.groups[name].to_json() for name in sorted(self.groups)},
            "formats": dict(sorted(self.formats.items())),
            "cameras": dict(sorted(self.cameras.items())),
            "date_range": date_range,
        }


def summarize(
    records: Iterable[Mapping[str, Any]],
    *,
    status_fields: Mapping[str, Any],
    config_fingerprint: str,
    duplicate_groups: Mapping[str, list[list[str]]] | None = None,
    duplicates_capped: int | None = None,
) -> dict[str, Any]:
    """Build `summary.json` from the final status fields and one streaming pass over the records.

    Adds `failures` (per error code, over failed and skipped images), `duplicates` (per tier,
    the groups of paths within this batch, each listed once under the tier that joins it
    (`dupactions.outermost`): `duplicate_groups` from `dupgroups` when given, else the
    connected groups of the records' listed matches; matches with a non-null `seen_in` are left
    out), `duplicate_groups` (every group with its keeper and each member's tier, earlier
    batches' images included: `dupactions.DuplicateGroups`), `groups` (per sub-directory),
    `formats`, `cameras`, `date_range` (null when no image has an ISO `exif.datetime_original`),
    `duplicates_capped` (when given: records whose `duplicate_count` is a lower bound), the run's
    figures (`runstats.RunStats`: `success_rate`, `failed_ratio`, `can_retry`, `retries`,
    `duration_ms`) and `config_fingerprint`.
    """
    builder = SummaryBuilder()
    for record in records:
        builder.add(record)
    return builder.build(
        status_fields=status_fields,
        config_fingerprint=config_fingerprint,
        duplicate_groups=duplicate_groups,
        duplicates_capped=duplicates_capped,
    )
