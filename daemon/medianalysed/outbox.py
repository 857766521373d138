"""The outbox: atomic files and the documents written into `OUTBOX/<batch_id>/` (SPEC §4).

Pure functions, no actors. Every file is written to a dot-prefixed temporary file in the same
directory, fsync'ed, then renamed over its final name, and the directory is fsync'ed (STYLE §4.4),
so a reader sees either no file or a whole one. Write `summary.json` last: its presence means the
batch is finished.

Records name their file with `path` (UTF-8 text, undecodable bytes as `\\xNN`) and, when that
was needed, `path_bytes` (the exact name, base64): `names.path_fields`. Any other string that
cannot be encoded as UTF-8 (a lone surrogate) is written as a `\\udcXX` escape, which JSON
decodes back to the same string.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import secrets
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast

from medianalysed import names
from medianalysed.diskfaults import DISK_ERRNOS
from medianalysed.dupactions import DuplicateGroups, outermost
from medianalysed.errors import OutboxDiskWriteError, OutboxError
from medianalysed.models import BatchStatus, ImageStatus
from medianalysed.readiness import group_of
from medianalysed.runstats import RunStats

STATUS_FILE = "status.json"
RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
SUMMARY_FILE = "summary.json"

DUPLICATE_TIERS: tuple[str, ...] = ("exact", "same_pixels", "near")

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

_ENCODING = "utf-8"
_ENCODING_ERRORS = "backslashreplace"
# Filesystems that cannot fsync a directory (some FUSE and SMB mounts) say so with these.
_DIR_FSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EBADF})


# --- atomic files ----------------------------------------------------------------------------


def _outbox_error(path: Path, exc: OSError) -> OutboxError:
    reason = exc.strerror or str(exc)
    if exc.errno in DISK_ERRNOS:
        # Full, read-only, failing disk: the batch pauses and retries (diskfaults).
        return OutboxDiskWriteError("outbox", str(path), errno.errorcode[exc.errno], reason)
    return OutboxError(f"cannot write {path}: {reason} ({type(exc).__name__})")


def make_batch_dir(batch_dir: Path) -> None:
    """Create `OUTBOX/<batch_id>/` (and parents) if missing.

    Raises:
        OutboxError: it cannot be created (an `OutboxDiskWriteError` when it is the disk's fault).
    """
    try:
        batch_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _outbox_error(batch_dir, exc) from exc


def _create_temp(path: Path) -> tuple[int, Path]:
    """Create `.name.<random>.tmp` beside `path`, honouring the umask (mkstemp would force 0600)."""
    while True:
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        return fd, temp


def fsync_directory(directory: Path) -> None:
    """Make a directory's entries durable; a filesystem that cannot fsync one is let be."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_binary(path: Path) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces `path` atomically when the block ends without error.

    On any error the temporary file is removed; an OSError becomes an OutboxError.
    """
    try:
        fd, temp = _create_temp(path)
    except OSError as exc:
        raise _outbox_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(exc, OSError):
            raise _outbox_error(path, exc) from exc
        raise
    try:
        fsync_directory(path.parent)
    except OSError as exc:
        raise _outbox_error(path, exc) from exc


@contextlib.contextmanager
def _atomic_text(path: Path) -> Iterator[IO[str]]:
    """Like `_atomic_binary`, as UTF-8 text with untranslated newlines."""
    with _atomic_binary(path) as raw:
        text = io.TextIOWrapper(raw, encoding=_ENCODING, errors=_ENCODING_ERRORS, newline="")
        try:
            yield text
        finally:
            # detach() flushes into `raw` and keeps the wrapper from closing it a second time.
            text.detach()


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and durably.

    Raises:
        OutboxError: the file could not be written; no temporary file is left behind.
    """
    with _atomic_binary(path) as handle:
        handle.write(data)


def write_lines_atomic(path: Path, lines: Iterable[str]) -> None:
    """Write the text `lines` to `path` as UTF-8, atomically (nothing is left on an error).

    Raises:
        OutboxError: the file could not be written.
    """
    with _atomic_text(path) as handle:
        handle.writelines(lines)


def _json_document(obj: object) -> bytes:
    text = json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    return text.encode(_ENCODING, _ENCODING_ERRORS)


def write_json_atomic(path: Path, obj: object) -> None:
    """Write `obj` as indented UTF-8 JSON with a trailing newline, atomically.

    Raises:
        OutboxError: the file could not be written.
        TypeError: `obj` is not JSON-serialisable (a bug; nothing is written).
    """
    write_atomic(path, _json_document(obj))


# --- results ---------------------------------------------------------------------------------


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
        _atomic_text(batch_dir / RESULTS_JSONL) as jsonl,
        _atomic_text(batch_dir / RESULTS_CSV) as csv_file,
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


# --- summary and status ----------------------------------------------------------------------


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
        self.duplicates = {tier: _UnionFind() for tier in DUPLICATE_TIERS}
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


_COUNT_KEYS = ("pending", "processing", "done", "failed", "skipped")


def _is_terminal(status: str) -> bool:
    try:
        return BatchStatus(status).terminal
    except ValueError:
        return False


def status_document(
    *,
    batch_id: str,
    status: str,
    counts: Mapping[str, int],
    started_at: str | None,
    updated_at: str,
    phase: str | None = None,
    finalizing: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the `status.json` object.

    `counts.total` defaults to the sum of the other counts. `percentage` is finished/total
    rounded down to one decimal, so it shows 100.0 only when every image is finished; an empty
    batch shows 100.0 once terminal and 0.0 before. `phase` (`running`, `finalizing`, `done`)
    and `finalizing` (`{"stage", "done", "total"}` while the outbox is being written) are added
    when given.
    """
    normalized = {key: int(counts.get(key, 0)) for key in _COUNT_KEYS}
    total = int(counts.get("total", sum(normalized.values())))
    finished = normalized["done"] + normalized["failed"] + normalized["skipped"]
    if total > 0:
        percentage = (finished * 1000 // total) / 10
    else:
        percentage = 100.0 if _is_terminal(status) else 0.0
    document: dict[str, Any] = {
        "batch_id": batch_id,
        "status": str(status),
        "counts": {"total": total, **normalized},
        "progress": f"{finished}/{total}",
        "percentage": percentage,
        "started_at": started_at,
        "updated_at": updated_at,
    }
    if phase is not None:
        document["phase"] = phase
    if finalizing is not None:
        document["finalizing"] = dict(finalizing)
    return document


def finalizing_note(document: Mapping[str, Any]) -> str:
    """`" finalizing: writing 3000/10000"` for a status.json written while finalising, else ""."""
    if document.get("phase") != "finalizing":
        return ""
    stage = document.get("finalizing")
    if not isinstance(stage, Mapping):
        return " finalizing"
    return f" finalizing: {stage.get('stage')} {stage.get('done')}/{stage.get('total')}"
