"""End-to-end: batches whose images all resemble each other (issue 15), on the real daemon.

Blank scans and product shots on white: every image is a near duplicate of every other. The
outbox must stay proportional to the batch (bounded lists, each group once in the summary),
and finalising must report progress and give way to SIGTERM, resuming exactly once.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps

from tests.conftest import CORPORA
from tests.e2e.harness import wait_for, write_config
from tests.e2e.test_operations import (
    GRACE_S,
    StartDaemon,
    drop,
    exits_within,
    read_json,
    start_daemon,  # noqa: F401 - the fixture
    summary_where,
)
from tests.lookalikes import BATCH_ID, BLANK_PHASH, seed_finalising_batch, solid_png
from tests.unit.test_nearrule import _box, _crop, _jpeg

pytestmark = pytest.mark.e2e

LOOK_ALIKES = 60  # ten listed of 59: a record of all 59 (~9 KB) would be twice the bound
LISTED = 10


def test_a_batch_of_look_alikes_lists_ten_counts_all_and_forms_one_group(
    start_daemon: StartDaemon,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, inbox={"settle_seconds": 0.5})
    process = start_daemon(config)
    files: dict[str, Path | bytes] = {f"{i:04d}.png": solid_png(i) for i in range(LOOK_ALIKES)}
    drop(process.inbox, "blank", files)

    summary = summary_where(process, "blank", timeout=240)

    records = process.results("blank")
    paths = sorted(files)
    assert [r["path"] for r in records] == paths
    assert all(r["status"] == "done" for r in records)
    phash = {r["path"]: int(r["hashes"]["phash"], 16) for r in records}
    assert len(set(phash.values())) <= 2  # black's pHash is 0, every other colour's 1 bit away
    for record in records:
        path = record["path"]
        assert record["duplicate_count"] == LOOK_ALIKES - 1, path
        assert record["duplicate_group"] == paths[0]
        # Closest first (pHash distance), then path order; ten of them.
        closest = sorted(
            (p for p in paths if p != path), key=lambda p: (phash[p] ^ phash[path]).bit_count()
        )
        assert [d["path"] for d in record["duplicates"]] == closest[:LISTED]
        assert {d["tier"] for d in record["duplicates"]} == {"near"}
    assert summary["duplicates"] == {"exact": [], "same_pixels": [], "near": [paths]}
    assert summary["duplicates_capped"] == 0
    assert summary["phase"] == "done"
    # Proportional: a record with ten matches, not 239 (each match is ~150 bytes).
    size = (process.outbox / "blank" / "results.jsonl").stat().st_size
    assert size < LOOK_ALIKES * (1500 + LISTED * 250)
    status = read_json(process.outbox / "blank" / "status.json")
    assert status is not None
    assert status["status"] == "completed"
    assert status["phase"] == "done"
    assert process.terminate() == 0


def test_sigterm_during_finalising_exits_0_promptly_and_the_restart_finishes_exactly_once(
    start_daemon: StartDaemon,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Three path chunks and several history transactions (the stop lands after the first):
    # finalising takes seconds, a hundred times the signal's way; 10,000 proved nothing more.
    count = 2_500
    config = write_config(tmp_path)
    seed_finalising_batch(tmp_path, [BLANK_PHASH] * count)
    process = start_daemon(config)
    status_file = process.outbox / BATCH_ID / "status.json"

    def finalising() -> dict[str, Any] | None:
        process._check_alive()
        document = read_json(status_file)
        return document if document is not None and document.get("phase") == "finalizing" else None

    live = wait_for(finalising, what="status.json showing the finalising")
    assert live["progress"] == f"{count}/{count}"
    assert live["status"] == "processing"  # not terminal before summary.json

    process.send(signal.SIGTERM)
    assert exits_within(process, GRACE_S) == 0
    assert "finalising interrupted" in process.log_text()
    assert sorted(p.name for p in (process.outbox / BATCH_ID).iterdir()) == ["status.json"]

    restarted = start_daemon(config)
    summary = summary_where(restarted, BATCH_ID, timeout=300)
    records = restarted.results(BATCH_ID)
    assert len(records) == len({r["path"] for r in records}) == count
    assert {r["duplicate_count"] for r in records} == {count - 1}
    assert {len(r["duplicates"]) for r in records} == {LISTED}
    assert summary["duplicates"]["near"] == [[r["path"] for r in records]]
    assert summary["counts"]["done"] == count
    assert restarted.terminate() == 0


def _corpus_photo(relative: str) -> Image.Image:
    with Image.open(CORPORA / relative) as opened:
        return ImageOps.exif_transpose(opened).convert("RGB")


def test_a_cropped_and_a_watermarked_copy_are_near_in_the_batch_and_against_history(
    start_daemon: StartDaemon,  # noqa: F811
    tmp_path: Path,
) -> None:
    # DSCN0021's 4 % crop and boxed copy are 10 and 8 pHash bits away: only 0.3.0's rule links
    # them. DSCN0010 and DSCN0038 are other photos of the same town.
    photo = _corpus_photo("exif-samples/jpg/gps/DSCN0021.jpg")
    files: dict[str, Path | bytes] = {
        "original.jpg": _jpeg(photo, 95),
        "crop.jpg": _jpeg(_crop(photo, 0.04)),
        "box.jpg": _jpeg(_box(photo)),
        "other1.jpg": _jpeg(_corpus_photo("exif-samples/jpg/gps/DSCN0010.jpg")),
        "other2.jpg": _jpeg(_corpus_photo("exif-samples/jpg/gps/DSCN0038.jpg")),
    }
    process = start_daemon(write_config(tmp_path, inbox={"settle_seconds": 0.5}))
    drop(process.inbox, "fresh", files)

    summary = summary_where(process, "fresh")

    assert summary["duplicates"]["near"] == [["box.jpg", "crop.jpg", "original.jpg"]]
    records = {r["path"]: r for r in process.results("fresh")}
    for copy in ("crop.jpg", "box.jpg"):
        [to_original] = [d for d in records[copy]["duplicates"] if d["path"] == "original.jpg"]
        assert to_original["tier"] == "near"
        assert to_original["distances"]["phash"] > 6  # past 0.2.0's rule
        assert to_original["rule"] in {"combined", "watermark"}
    assert records["other1.jpg"]["duplicates"] == []
    assert records["other2.jpg"]["duplicates"] == []

    drop(process.inbox, "later", {"again.jpg": _jpeg(_crop(photo, 0.04), 80)})
    summary_where(process, "later")

    [again] = process.results("later")
    earlier = {d["path"]: d for d in again["duplicates"] if d["seen_in"] == "fresh"}
    assert set(earlier) == {"box.jpg", "crop.jpg", "original.jpg"}
    assert {d["tier"] for d in earlier.values()} == {"near"}
    assert earlier["original.jpg"]["rule"] in {"combined", "watermark"}
    assert process.terminate() == 0
