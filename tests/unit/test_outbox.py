"""Outbox: atomic writes, batch directory reservation, results files, summary and status."""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medianalysed import names
from medianalysed.errors import OutboxError
from medianalysed.outbox import RESULTS_CSV, RESULTS_JSONL, write_atomic, write_json_atomic
from medianalysed.outboxresults import CSV_COLUMNS, csv_row, open_results, write_results
from medianalysed.outboxsummary import summarize
from medianalysed.progress import finalizing_note, status_document


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def record(path: str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "path": path,
        "group": path.partition("/")[0] if "/" in path else None,
        "status": "done",
        "error": None,
        "attempts": 1,
        "duration_ms": 1.5,
        "file": None,
        "image": None,
        "exif": None,
        "colors": None,
        "hashes": None,
        "duplicates": [],
        "analysis_version": 1,
    }
    base.update(fields)
    return base


def dup(tier: str, path: str, seen_in: str | None = None) -> dict[str, object]:
    return {"tier": tier, "path": path, "seen_in": seen_in, "distances": {}}


def error(code: str) -> dict[str, object]:
    return {"code": code, "message": "m", "retryable": False}


# --- atomic writes ---------------------------------------------------------------------------


def test_write_atomic_writes_and_replaces_leaving_no_temp(tmp_path):
    target = tmp_path / "status.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert temp_files(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_write_json_atomic_format(tmp_path):
    target = tmp_path / "summary.json"
    write_json_atomic(target, {"z": 1, "a": "café", "n": None})
    assert target.read_text(encoding="utf-8") == '{\n  "z": 1,\n  "a": "café",\n  "n": null\n}\n'


def test_undecodable_file_names_round_trip_through_json(tmp_path):
    name = b"IMG_\xff.jpg".decode("utf-8", "surrogateescape")
    target = tmp_path / "s.json"
    write_json_atomic(target, {"path": name})
    raw = target.read_bytes()
    raw.decode("utf-8")  # the file itself is valid UTF-8
    assert json.loads(raw) == {"path": name}


def test_readers_never_see_a_partial_file(tmp_path):
    target = tmp_path / "summary.json"
    payloads = [
        json.dumps({"round": n, "blob": str(n) * 4_000_000}).encode() + b"\n" for n in range(6)
    ]

    def write_all() -> None:
        for payload in payloads:
            write_atomic(target, payload)

    writer = threading.Thread(target=write_all)
    observed: set[int] = set()
    writer.start()
    try:
        deadline = time.monotonic() + 60
        while writer.is_alive() and time.monotonic() < deadline:
            for entry in tmp_path.iterdir():
                if entry.name == target.name:
                    observed.add(json.loads(entry.read_bytes())["round"])
                else:
                    assert entry.name.startswith(".summary.json.")
                    assert entry.name.endswith(".tmp")
    finally:
        writer.join(timeout=60)
    assert not writer.is_alive()
    assert json.loads(target.read_bytes())["round"] == 5
    assert observed <= set(range(6))
    assert temp_files(tmp_path) == []


def test_write_into_a_missing_directory_raises_outbox_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("file")
    with pytest.raises(OutboxError, match=r"not-a-dir/status\.json.*Not a directory"):
        write_atomic(blocker / "status.json", b"{}")
    assert temp_files(tmp_path) == []


def test_failed_rename_removes_the_temp_file(tmp_path):
    target = tmp_path / "results.jsonl"
    target.mkdir()
    (target / "occupied").write_text("x")  # rename over a non-empty directory fails
    with pytest.raises(OutboxError, match=r"results\.jsonl"):
        write_atomic(target, b"data")
    assert temp_files(tmp_path) == []


def test_non_serialisable_json_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "s.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


# --- results ---------------------------------------------------------------------------------

FULL = record(
    "kitchen/IMG_0001.jpg",
    file={
        "size": 3145728,
        "sha256": "ab" * 32,
        "mtime": "2025-10-08T15:30:00Z",
        "source_url": None,
    },
    image={
        "format": "JPEG",
        "mime": "image/jpeg",
        "width": 4000,
        "height": 3000,
        "mode": "RGB",
        "orientation": 6,
        "frames": 1,
        "animated": False,
        "has_alpha": False,
        "icc_profile": "sRGB IEC61966-2.1",
        "dpi": [72, 72],
    },
    exif={
        "make": "Canon",
        "model": "Canon EOS R5",
        "lens": None,
        "datetime_original": "2025-10-08T15:30:00",
        "exposure_time": "1/125",
        "f_number": 4.0,
        "iso": 200,
        "focal_length_mm": 35.0,
        "gps": {"lat": 48.8566, "lon": -2.3522, "alt_m": None},
        "raw": {"MakerNote": "huge"},
    },
    colors={"dominant": [{"hex": "#aabbcc", "ratio": 0.31}], "average": "#8899aa"},
    hashes={"ahash": "a1", "phash": "p1", "dhash": "d1", "whash": "w1", "colorhash": "c1"},
    duplicates=[dup("near", "kitchen/IMG_0002.jpg")],
)
FAILED = record("z.png", status="failed", error=error("CORRUPT"), attempts=3)


def test_csv_row_flattens_nested_fields_and_nulls():
    row = csv_row(FULL)
    assert tuple(row) == CSV_COLUMNS
    assert row["image.width"] == "4000"
    assert row["image.animated"] == "false"
    assert row["image.dpi"] == "[72,72]"
    assert row["exif.gps.lat"] == "48.8566"
    assert row["exif.gps.lon"] == "-2.3522", "numbers are not formula-escaped"
    assert row["exif.gps.alt_m"] == ""
    assert row["exif.lens"] == ""
    assert row["hashes.phash"] == "p1"
    assert row["error.code"] == ""
    assert json.loads(row["colors.dominant"]) == [{"hex": "#aabbcc", "ratio": 0.31}]
    assert json.loads(row["duplicates"])[0]["path"] == "kitchen/IMG_0002.jpg"
    assert not any("MakerNote" in cell or "huge" in cell for cell in row.values())
    assert (row["duplicate_of"], row["duplicate_tier"], row["duplicate_seen_in"]) == ("", "", "")
    chosen = {"duplicate_of": "old/a.jpg", "duplicate_tier": "exact", "duplicate_seen_in": "trip"}
    row = csv_row({**FULL, **chosen})
    assert (row["duplicate_of"], row["duplicate_tier"], row["duplicate_seen_in"]) == (
        "old/a.jpg",
        "exact",
        "trip",
    )

    failed = csv_row(FAILED)
    assert failed["error.code"] == "CORRUPT"
    assert failed["error.retryable"] == "false"
    assert failed["image.width"] == ""
    assert failed["exif.gps.lat"] == ""


def test_csv_row_defuses_spreadsheet_formulas():
    row = csv_row(record("=HYPERLINK(1).jpg", exif={"make": "@SUM(A1)", "model": "-1+1"}))
    assert row["path"] == "'=HYPERLINK(1).jpg"
    assert row["exif.make"] == "'@SUM(A1)"
    assert row["exif.model"] == "'-1+1"


def test_write_results_jsonl_and_csv(tmp_path):
    records = [FULL, record("b.jpg"), FAILED]
    records.sort(key=lambda r: str(r["path"]))
    count = write_results(tmp_path, iter(records))
    assert count == 3
    lines = (tmp_path / RESULTS_JSONL).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records
    assert lines[0] == json.dumps(records[0], ensure_ascii=False, separators=(",", ":"))
    with (tmp_path / RESULTS_CSV).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["path"] for row in rows] == ["b.jpg", "kitchen/IMG_0001.jpg", "z.png"]
    assert rows[1]["exif.model"] == "Canon EOS R5"
    assert rows[2]["error.code"] == "CORRUPT"
    assert temp_files(tmp_path) == []


def test_write_results_orders_by_the_exact_names_and_keeps_path_bytes(tmp_path):
    # Stored order is the keys' order; "\\xff" shown for a byte sorts apart from "]" here.
    keys = sorted(names.from_bytes(raw) for raw in (b"a]", b"a\xff", b"a\\xff"))
    records = [record(**names.path_fields(key)) for key in keys]
    assert write_results(tmp_path, records) == 3
    lines = (tmp_path / RESULTS_JSONL).read_text(encoding="utf-8").splitlines()
    written = [json.loads(line) for line in lines]
    assert [names.key_of_record(r["path"], r.get("path_bytes")) for r in written] == keys
    with (tmp_path / RESULTS_CSV).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["path"], row["path_bytes"]) for row in rows] == [
        ("a\\x5cxff", "YVx4ZmY="),  # the literal backslash-x: written \x5c, never a look-alike
        ("a]", ""),
        ("a\\xff", "Yf8="),
    ]


def test_write_results_of_nothing_writes_headers_only(tmp_path):
    assert write_results(tmp_path, []) == 0
    assert (tmp_path / RESULTS_JSONL).read_bytes() == b""
    assert (tmp_path / RESULTS_CSV).read_text().splitlines() == [",".join(CSV_COLUMNS)]


@pytest.mark.parametrize("paths", [["b.jpg", "a.jpg"], ["a.jpg", "a.jpg"]])
def test_write_results_refuses_unsorted_or_repeated_paths(tmp_path, paths):
    with pytest.raises(ValueError, match="sorted by path"):
        write_results(tmp_path, [record(p) for p in paths])
    assert list(tmp_path.iterdir()) == []


def test_write_results_failing_midway_leaves_nothing(tmp_path):
    def records() -> Iterator[dict[str, object]]:
        yield record("a.jpg")
        raise OSError(5, "Input/output error")

    with pytest.raises(OutboxError, match="Input/output error"):
        write_results(tmp_path, records())
    assert list(tmp_path.iterdir()) == []


def test_write_results_streams(tmp_path):
    """The JSONL temp file grows while records are still being produced."""
    seen_sizes: list[int] = []

    def records() -> Iterator[dict[str, object]]:
        for n in range(3):
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".results.jsonl.")]
            seen_sizes.append(temps[0].stat().st_size if temps else -1)
            yield record(f"{n:03d}.jpg", exif={"raw": {"pad": "x" * 20_000}})

    write_results(tmp_path, records())
    assert seen_sizes[0] == 0
    assert seen_sizes[2] > 20_000


# --- summary ---------------------------------------------------------------------------------


def test_summarize_aggregates():
    records = [
        record(
            "a.jpg",
            duplicates=[dup("exact", "b.jpg"), dup("near", "old.jpg", seen_in="trip-1")],
            image={"format": "JPEG", "width": 100, "height": 100},
            exif={
                "make": "Canon",
                "model": "Canon EOS R5",
                "datetime_original": "2024-05-01T10:00:00",
            },
        ),
        record("b.jpg", duplicates=[dup("exact", "a.jpg")], image={"format": "JPEG"}),
        record("c.jpg", duplicates=[dup("exact", "d.jpg")]),
        record("d.jpg"),
        record(
            "kitchen/1.jpg",
            file={"size": 1000},
            image={"format": "PNG", "width": 2000, "height": 1500},
            exif={"make": "NIKON CORPORATION", "model": "NIKON D750"},
            duplicates=[dup("near", "kitchen/2.jpg"), dup("same_pixels", "z.heic")],
        ),
        record(
            "kitchen/2.jpg",
            file={"size": 24},
            image={"format": "JPEG", "width": 10, "height": 10},
            exif={"make": "Apple", "model": "", "datetime_original": "2023-01-02T03:04:05"},
            duplicates=[dup("near", "kitchen/3.jpg")],
        ),
        record("kitchen/3.jpg", status="failed", error=error("CORRUPT"), file={"size": 5}),
        record(
            "x.jpg",
            status="skipped",
            error=error("TOO_SMALL"),
            exif={"datetime_original": "0000:00:00 00:00:00"},
        ),
        record("y.jpg", status="failed", error=error("CORRUPT")),
        record("z.heic", duplicates=[dup("near", "elsewhere.jpg", seen_in="old")]),
    ]
    status_fields = {"batch_id": "trip", "status": "partial", "completed_at": "t"}
    summary = summarize(iter(records), status_fields=status_fields, config_fingerprint="cfg1")

    assert list(summary)[:3] == ["batch_id", "status", "completed_at"]
    assert summary["failures"] == {"CORRUPT": 2, "TOO_SMALL": 1}
    # Each group once, under the tier that joins it: z.heic is in the near group of kitchen/1.
    assert summary["duplicates"] == {
        "exact": [["a.jpg", "b.jpg"], ["c.jpg", "d.jpg"]],
        "same_pixels": [],
        "near": [["kitchen/1.jpg", "kitchen/2.jpg", "kitchen/3.jpg", "z.heic"]],
    }
    assert summary["groups"] == {
        "kitchen": {
            "images": 3,
            "bytes": 1029,
            "megapixels": 3.0,
            "formats": {"JPEG": 1, "PNG": 1},
        }
    }
    assert summary["formats"] == {"JPEG": 3, "PNG": 1}
    assert summary["cameras"] == {"Apple": 1, "Canon EOS R5": 1, "NIKON CORPORATION NIKON D750": 1}
    assert summary["date_range"] == {"first": "2023-01-02T03:04:05", "last": "2024-05-01T10:00:00"}
    assert summary["config_fingerprint"] == "cfg1"
    json.dumps(summary)


def test_summarize_of_no_records():
    summary = summarize([], status_fields={"batch_id": "e"}, config_fingerprint="f")
    assert summary == {
        "batch_id": "e",
        "failures": {},
        "duplicates": {"exact": [], "same_pixels": [], "near": []},
        "duplicate_groups": [],
        "groups": {},
        "formats": {},
        "cameras": {},
        "date_range": None,
        "success_rate": None,
        "failed_ratio": "0/0",
        "can_retry": False,
        "retries": 0,
        "duration_ms": None,
        "config_fingerprint": "f",
    }


def test_duplicate_groups_merge_transitively_in_any_order():
    records = [
        record("d.jpg", duplicates=[dup("near", "c.jpg")]),
        record("a.jpg", duplicates=[dup("near", "b.jpg")]),
        record("c.jpg", duplicates=[dup("near", "b.jpg")]),
        record("e.jpg", duplicates=[dup("near", "f.jpg")]),
    ]
    summary = summarize(records, status_fields={}, config_fingerprint="")
    assert summary["duplicates"]["near"] == [
        ["a.jpg", "b.jpg", "c.jpg", "d.jpg"],
        ["e.jpg", "f.jpg"],
    ]


def test_planner_groups_replace_the_groups_of_listed_matches():
    # A bounded list cannot show every member: the planner's groups are the truth.
    records = [record("a.jpg", duplicates=[dup("near", "b.jpg")]), record("b.jpg")]
    groups = {"near": [["a.jpg", "b.jpg", "c.jpg"]], "exact": [["c.jpg", "d.jpg"]]}

    summary = summarize(
        records,
        status_fields={},
        config_fingerprint="",
        duplicate_groups=groups,
        duplicates_capped=0,
    )

    assert summary["duplicates"] == {
        "exact": [],
        "same_pixels": [],
        "near": [["a.jpg", "b.jpg", "c.jpg", "d.jpg"]],
    }
    assert summary["duplicates_capped"] == 0


def test_results_abandoned_midway_leave_no_file(tmp_path):
    def writing() -> Iterator[int]:
        with open_results(tmp_path) as results:
            for index in range(10):
                results.write(record(f"{index:02d}.jpg"))
                yield index

    steps = writing()
    assert next(steps) == 0
    assert next(steps) == 1
    steps.close()  # what BatchActor.on_stop does with an unfinished outbox

    assert list(tmp_path.iterdir()) == []


# --- status ----------------------------------------------------------------------------------


def test_status_while_finalizing_says_how_far_it_got():
    doc = status_document(
        batch_id="b",
        status="processing",
        counts={"total": 10, "done": 10},
        started_at=None,
        updated_at="2025-01-01T00:00:05.000Z",
        phase="finalizing",
        finalizing={"stage": "writing", "done": 4, "total": 10},
    )

    assert doc["phase"] == "finalizing"
    assert doc["finalizing"] == {"stage": "writing", "done": 4, "total": 10}
    assert doc["progress"] == "10/10"
    assert finalizing_note(doc) == " finalizing: writing 4/10"
    assert finalizing_note({**doc, "phase": "done"}) == ""


def test_status_document_progress_and_percentage():
    doc = status_document(
        batch_id="trip",
        status="processing",
        counts={"total": 30, "pending": 20, "processing": 5, "done": 3, "failed": 1, "skipped": 1},
        started_at="2025-01-01T00:00:00.000Z",
        updated_at="2025-01-01T00:00:05.000Z",
    )
    assert doc == {
        "batch_id": "trip",
        "status": "processing",
        "counts": {
            "total": 30,
            "pending": 20,
            "processing": 5,
            "done": 3,
            "failed": 1,
            "skipped": 1,
        },
        "progress": "5/30",
        "percentage": 16.6,
        "started_at": "2025-01-01T00:00:00.000Z",
        "updated_at": "2025-01-01T00:00:05.000Z",
    }


def test_percentage_reaches_100_only_when_everything_is_finished():
    almost = status_document(
        batch_id="b",
        status="processing",
        counts={"total": 2000, "done": 1999, "processing": 1},
        started_at=None,
        updated_at="t",
    )
    assert almost["percentage"] == 99.9
    assert almost["progress"] == "1999/2000"
    done = status_document(
        batch_id="b",
        status="completed",
        counts={"done": 2000},
        started_at=None,
        updated_at="t",
    )
    assert done["counts"]["total"] == 2000
    assert done["percentage"] == 100.0


@pytest.mark.parametrize(("status", "expected"), [("queued", 0.0), ("completed", 100.0)])
def test_percentage_of_an_empty_batch(status, expected):
    doc = status_document(batch_id="e", status=status, counts={}, started_at=None, updated_at="t")
    assert doc["progress"] == "0/0"
    assert doc["percentage"] == expected


def test_a_cell_with_any_line_break_stays_in_its_row(tmp_path):
    names = ["a\rb.jpg", "c\nd.jpg", "e\r\nf.jpg", "g\u2028h.jpg"]
    records = [record(name) for name in sorted(names)]
    write_results(tmp_path, records)

    with (tmp_path / "results.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))

    assert [row["path"] for row in rows] == sorted(names)
