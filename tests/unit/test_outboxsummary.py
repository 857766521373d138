"""summary.json: what one pass over a batch's records aggregates."""

from __future__ import annotations

import json

from medianalysed.outboxsummary import summarize
from tests.records import dup, error, record


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
