"""What `report.html` shows, collected in the one pass over the final records (`reporthtml`
renders it).

Bounded whatever the batch: thumbnails are kept only for duplicates and failures, at most
`GROUP_THUMBNAILS` per group (its keeper always among them) and `MAX_THUMBNAILS` in all; the
table of images holds at most `MAX_ROWS` rows and the failures at most `MAX_FAILURES` (the
page says how many it left out: `results.csv` has them all).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from medianalysed.dupactions import KeeperFacts, keeper_facts, keeper_order
from medianalysed.models import ImageStatus

REPORT_FILE: Final = "report.html"
MAX_THUMBNAILS: Final = 2_000  # about 2.3 KB each as base64: 4.6 MB at most
GROUP_THUMBNAILS: Final = 24
MAX_ROWS: Final = 10_000
MAX_FAILURES: Final = 1_000
PALETTE_SIZE: Final = 24
_MONTH = slice(0, 7)  # "2024-05" of an ISO date


@dataclass(frozen=True, slots=True)
class Row:
    """One image in the table (and a group member's caption)."""

    path: str
    status: str
    format: str | None
    size: str | None  # "4000x3000"
    bytes: int | None
    camera: str | None
    date: str | None
    average: str | None  # "#8899aa"
    dominant: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed or skipped image."""

    path: str
    status: str
    code: str
    message: str
    thumbnail: str | None


@dataclass(frozen=True, slots=True)
class Closest:
    """A group member's closest match, as its record lists it first."""

    tier: str
    path: str
    seen_in: str | None
    distances: Mapping[str, int | None]


@dataclass(slots=True)
class _GroupShown:
    thumbnails: dict[str, str] = field(default_factory=dict)
    keeper: KeeperFacts | None = None


@dataclass(slots=True)
class ReportData:
    """Everything the page needs besides the summary."""

    rows: list[Row] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    records: int = 0
    failures_seen: int = 0
    members: dict[str, Row] = field(default_factory=dict)  # group members, by path
    closest: dict[str, Closest] = field(default_factory=dict)
    months: Counter[str] = field(default_factory=Counter)
    palette: dict[str, float] = field(default_factory=dict)  # coarse colour -> summed ratio
    thumbnails_kept: int = 0
    groups: dict[str, _GroupShown] = field(default_factory=dict)

    def thumbnail(self, group_id: str, path: str) -> str | None:
        """The kept thumbnail of a group member."""
        shown = self.groups.get(group_id)
        return None if shown is None else shown.thumbnails.get(path)


def _section(record: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = record.get(name)
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str | None:
    return value.strip(" \0") or None if isinstance(value, str) else None


def row_of(record: Mapping[str, Any]) -> Row:
    """The table row of one final record."""
    image, exif, file, colors = (_section(record, n) for n in ("image", "exif", "file", "colors"))
    width, height = image.get("width"), image.get("height")
    make, model = _text(exif.get("make")), _text(exif.get("model"))
    if make and model and model.casefold().startswith(make.casefold()):
        make = None
    camera = " ".join(part for part in (make, model) if part) or None
    dominant = colors.get("dominant") if isinstance(colors.get("dominant"), list) else []
    size = file.get("size")
    return Row(
        path=str(record["path"]),
        status=str(record.get("status")),
        format=_text(image.get("format")),
        size=f"{width}x{height}" if isinstance(width, int) and isinstance(height, int) else None,
        bytes=size if isinstance(size, int) else None,
        camera=camera,
        date=_text(exif.get("datetime_original")),
        average=_text(colors.get("average")),
        dominant=tuple(str(c["hex"]) for c in dominant or () if isinstance(c, Mapping)),
    )


class ReportCollector:
    """Feed it each final record (with its stored thumbnail), then read `data`."""

    def __init__(self) -> None:
        self.data = ReportData()

    def add(self, record: Mapping[str, Any], thumbnail: str | None) -> None:
        """Count one final record."""
        data = self.data
        data.records += 1
        row = row_of(record)
        if len(data.rows) < MAX_ROWS:
            data.rows.append(row)
        if row.date and len(row.date) >= 7:
            data.months[row.date[_MONTH]] += 1
        for colour in _section(record, "colors").get("dominant") or ():
            if isinstance(colour, Mapping) and isinstance(colour.get("ratio"), int | float):
                key = _coarse(str(colour["hex"]))
                data.palette[key] = data.palette.get(key, 0.0) + float(colour["ratio"])
        if record.get("status") in {ImageStatus.FAILED, ImageStatus.SKIPPED}:
            self._add_failure(record, thumbnail)
        matches = record.get("duplicates")
        if isinstance(matches, list) and matches:
            self._add_member(record, row, matches[0], thumbnail)

    def _add_failure(self, record: Mapping[str, Any], thumbnail: str | None) -> None:
        data = self.data
        data.failures_seen += 1
        if len(data.failures) >= MAX_FAILURES:
            return
        error = _section(record, "error")
        if thumbnail is not None and data.thumbnails_kept < MAX_THUMBNAILS:
            data.thumbnails_kept += 1
        else:
            thumbnail = None
        data.failures.append(
            Failure(
                path=str(record["path"]),
                status=str(record.get("status")),
                code=str(error.get("code") or ""),
                message=str(error.get("message") or ""),
                thumbnail=thumbnail,
            )
        )

    def _add_member(
        self, record: Mapping[str, Any], row: Row, first: Mapping[str, Any], thumbnail: str | None
    ) -> None:
        data = self.data
        group_id = str(record.get("duplicate_group") or row.path)
        data.members[row.path] = row
        data.closest[row.path] = Closest(
            tier=str(first.get("tier")),
            path=str(first.get("path")),
            seen_in=first.get("seen_in"),
            distances=first.get("distances") or {},
        )
        shown = data.groups.setdefault(group_id, _GroupShown())
        facts = keeper_facts(row.path, record)
        better = shown.keeper is None or keeper_order(facts) < keeper_order(shown.keeper)
        if thumbnail is None:
            if better:
                shown.keeper = facts
            return
        if better:
            if shown.keeper is not None and len(shown.thumbnails) >= GROUP_THUMBNAILS:
                self._drop(shown, shown.keeper.path)  # the old keeper was kept beyond the quota
            shown.keeper = facts
            self._keep(shown, row.path, thumbnail)
        elif len(shown.thumbnails) < GROUP_THUMBNAILS:
            self._keep(shown, row.path, thumbnail)

    def _keep(self, shown: _GroupShown, path: str, thumbnail: str) -> None:
        if self.data.thumbnails_kept < MAX_THUMBNAILS:
            shown.thumbnails[path] = thumbnail
            self.data.thumbnails_kept += 1

    def _drop(self, shown: _GroupShown, path: str) -> None:
        if shown.thumbnails.pop(path, None) is not None:
            self.data.thumbnails_kept -= 1


def _coarse(hex_colour: str) -> str:
    """`#a7b3c9` → `#a0b0c0`: near shades add up in the palette."""
    try:
        value = int(hex_colour.lstrip("#"), 16)
    except ValueError:
        return "#000000"
    channels = ((value >> shift) & 0xF0 for shift in (16, 8, 0))
    return "#" + "".join(f"{channel:02x}" for channel in channels)
