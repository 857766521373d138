"""results.jsonl and results.csv: flattened cells, sorted records, nothing left half-written."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator

import pytest

from medianalysed import names
from medianalysed.errors import OutboxError
from medianalysed.outbox import RESULTS_CSV, RESULTS_JSONL
from medianalysed.outboxresults import CSV_COLUMNS, csv_row, open_results, write_results
from tests.records import dup, error, record

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
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


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
def test_a_cell_with_any_line_break_stays_in_its_row(tmp_path):
    names = ["a\rb.jpg", "c\nd.jpg", "e\r\nf.jpg", "g\u2028h.jpg"]
    records = [record(name) for name in sorted(names)]
    write_results(tmp_path, records)

    with (tmp_path / "results.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))

    assert [row["path"] for row in rows] == sorted(names)
