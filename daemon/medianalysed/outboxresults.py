"""`results.jsonl` and `results.csv`: one record per image, sorted by path (SPEC §4).

Records name their file with `path` (UTF-8 text, undecodable bytes as `\\xNN`) and, when that
was needed, `path_bytes` (the exact name, base64): `names.path_fields`. Both files are written
atomically (`outbox.atomic_text`): they appear once every record is written, or not at all.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, cast

from medianalysed import names
from medianalysed.outbox import RESULTS_CSV, RESULTS_JSONL, atomic_text

CSV_COLUMNS: tuple[str, ...] = (
    "path",
    "path_bytes",
    "group",
    "status",
    "error.code",
    "error.message",
    "error.retryable",
    "attempts",
    "duration_ms",
    "file.size",
    "file.sha256",
    "file.mtime",
    "file.source_url",
    "image.format",
    "image.mime",
    "image.width",
    "image.height",
    "image.mode",
    "image.orientation",
    "image.frames",
    "image.frames_capped",
    "image.animated",
    "image.has_alpha",
    "image.icc_profile",
    "image.dpi",
    "exif.make",
    "exif.model",
    "exif.lens",
    "exif.datetime_original",
    "exif.exposure_time",
    "exif.f_number",
    "exif.iso",
    "exif.focal_length_mm",
    "exif.gps.lat",
    "exif.gps.lon",
    "exif.gps.alt_m",
    "colors.dominant",
    "colors.average",
    "hashes.ahash",
    "hashes.phash",
    "hashes.dhash",
    "hashes.whash",
    "hashes.colorhash",
    "duplicates",
    "duplicate_count",
    "duplicate_group",
    "duplicate_of",
    "duplicate_tier",
    "duplicate_seen_in",
    "analysis_version",
)
# Spreadsheets run a cell starting with one of these as a formula (CSV injection); EXIF strings
# and file names are untrusted, so such text cells get a leading apostrophe.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


# CSV_COLUMNS grouped by their top-level key, so each section of a record is looked up once.
_COLUMN_PLAN: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = tuple(
    (top, tuple(tuple(c.split(".")[1:]) for c in CSV_COLUMNS if c.split(".")[0] == top))
    for top in dict.fromkeys(c.split(".")[0] for c in CSV_COLUMNS)
)


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_PREFIXES) else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return _csv_cell(str(value))


def _is_mapping(value: object) -> bool:
    # The exact-type test first: records are plain dicts, and the ABC check is slow.
    return type(value) is dict or isinstance(value, Mapping)


def _lookup(section: object, keys: tuple[str, ...]) -> object:
    value = section
    for key in keys:
        if not _is_mapping(value):
            return None
        value = cast("Mapping[str, object]", value).get(key)
    return value


def _csv_cells(record: Mapping[str, Any]) -> list[str]:
    cells: list[str] = []
    for top, subkeys in _COLUMN_PLAN:
        section = record.get(top)
        cells.extend(_csv_cell(_lookup(section, keys)) for keys in subkeys)
    return cells


def csv_row(record: Mapping[str, Any]) -> dict[str, str]:
    """Flatten a per-image record into the `CSV_COLUMNS` cells.

    Nested objects become dotted columns, lists are JSON-encoded, null is empty, booleans are
    `true`/`false`; `exif.raw` and fields outside `CSV_COLUMNS` are left out.
    """
    return dict(zip(CSV_COLUMNS, _csv_cells(record), strict=True))


def _json_line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


class ResultsWriter:
    """Appends records to the temporary `results.jsonl` and `results.csv` (see `open_results`)."""

    def __init__(self, jsonl: IO[str], csv_file: IO[str]) -> None:
        self._jsonl = jsonl
        # RFC 4180 line ends: the csv module quotes a cell holding any character of the line
        # terminator, so with "\r\n" a bare "\r" in a name or an EXIF string is quoted too
        # (with "\n" alone it was written bare, and every reader split the row there).
        self._csv = csv.writer(csv_file, lineterminator="\r\n")
        self._csv.writerow(CSV_COLUMNS)
        self._previous: str | None = None
        self.count = 0

    def write(self, record: Mapping[str, Any]) -> None:
        """Add one record; records must come sorted by `path`, each path once.

        The order is that of the key `path` and `path_bytes` stand for (`names.key_of_record`):
        the order of `path` itself whenever no name holds undecodable bytes.

        Raises:
            ValueError: a record out of order or repeated (a bug; nothing will be written).
        """
        path = names.key_of_record(str(record["path"]), record.get("path_bytes"))
        if self._previous is not None and path <= self._previous:
            msg = (
                f"results must be sorted by path without repeats: {path!r} after {self._previous!r}"
            )
            raise ValueError(msg)
        self._previous = path
        self._jsonl.write(_json_line(record))
        self._csv.writerow(_csv_cells(record))
        self.count += 1


@contextlib.contextmanager
def open_results(batch_dir: Path) -> Iterator[ResultsWriter]:
    """A writer whose files replace `results.jsonl` and `results.csv` when the block ends.

    Both files appear only once every record is written; on any error, or when the block is
    left by GeneratorExit (a finalising step abandoned at shutdown), nothing is left behind.

    Raises:
        OutboxError: a file could not be written.
    """
    with (
        atomic_text(batch_dir / RESULTS_JSONL) as jsonl,
        atomic_text(batch_dir / RESULTS_CSV) as csv_file,
    ):
        yield ResultsWriter(jsonl, csv_file)


def write_results(batch_dir: Path, records: Iterable[Mapping[str, Any]]) -> int:
    """Stream `records` into `results.jsonl` and `results.csv`, both atomically; return the count.

    Records must come sorted by the key their `path` and `path_bytes` stand for (which is the
    order of `path` itself whenever no name holds undecodable bytes), each once (SPEC §4); both
    files appear only once every record is written.

    Raises:
        OutboxError: a file could not be written; no temporary file is left behind.
        ValueError: records out of order or repeated (a bug; nothing is written).
    """
    with open_results(batch_dir) as writer:
        for record in records:
            writer.write(record)
    return writer.count
