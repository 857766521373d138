"""End-to-end: the real daemon in a subprocess, real folders dropped into its inbox."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import DaemonProcess, free_port, slow_photos, wait_for, write_config

pytestmark = pytest.mark.e2e

PHOTOS = [
    "exif-samples/jpg/gps/DSCN0010.jpg",
    "exif-samples/jpg/gps/DSCN0012.jpg",
    "exif-samples/jpg/orientation/landscape_6.jpg",
    "imagededup-testdata/mixed_images/ukbench00120.jpg",
    "imagededup-testdata/mixed_images/ukbench00120_resize.jpg",
]
BROKEN = "imagededup-testdata/mixed_images/ukbench09268_corrupt.jpg"


@pytest.fixture
def daemon(tmp_path: Path):
    processes: list[DaemonProcess] = []

    def start(**overrides: object) -> DaemonProcess:
        config = tmp_path / "medianalysed.toml"
        if not config.exists() or overrides:
            config = write_config(tmp_path, **overrides)
        process = DaemonProcess(tmp_path, config).start()
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop_quietly()


def _stage_batch(staging: Path, corpora: Path, name: str) -> Path:
    batch = staging / name
    (batch / "kitchen").mkdir(parents=True)
    for relative in PHOTOS[:3]:
        shutil.copy(corpora / relative, batch / Path(relative).name)
    for relative in PHOTOS[3:]:
        shutil.copy(corpora / relative, batch / "kitchen" / Path(relative).name)
    shutil.copy(corpora / PHOTOS[0], batch / "kitchen" / "copy-of-DSCN0010.jpg")
    shutil.copy(corpora / BROKEN, batch / "broken.jpg")
    (batch / "notes.txt").write_text("not an image\n", encoding="utf-8")
    (batch / ".DS_Store").write_bytes(b"junk")
    (batch / "Thumbs.db").write_bytes(b"junk")
    (batch / "@eaDir").mkdir()
    (batch / "@eaDir" / "thumb.jpg").write_bytes(b"junk")
    return batch


def test_folder_renamed_into_inbox_is_analysed_once_and_archived(daemon, tmp_path, corpora):
    process = daemon()
    staging = tmp_path / "staging"
    batch = _stage_batch(staging, corpora, "house")
    os.rename(batch, process.inbox / "house")

    summary = process.summary("house")
    records = process.results("house")

    paths = [record["path"] for record in records]
    assert paths == sorted(paths)
    assert len(paths) == len(set(paths)) == 8
    assert not any("DS_Store" in p or "Thumbs" in p or "@eaDir" in p for p in paths)
    by_path = {record["path"]: record for record in records}
    assert by_path["broken.jpg"]["status"] == "failed"
    assert by_path["broken.jpg"]["error"]["code"] == "CORRUPT"
    assert by_path["notes.txt"]["error"]["code"] == "UNSUPPORTED_FORMAT"
    assert by_path["notes.txt"]["status"] == "skipped"  # SPEC §3: not an image is skipped
    assert by_path["kitchen/ukbench00120.jpg"]["group"] == "kitchen"
    gps = by_path["DSCN0010.jpg"]["exif"]["gps"]
    assert gps["lat"] == pytest.approx(43.4674, abs=1e-3)
    duplicates = by_path["DSCN0010.jpg"]["duplicates"]
    assert any(
        d["path"] == "kitchen/copy-of-DSCN0010.jpg" and d["tier"] == "exact" for d in duplicates
    )
    assert summary["status"] == "partial"
    assert summary["counts"]["total"] == 8
    assert summary["counts"]["failed"] == 1
    assert summary["counts"]["skipped"] == 1
    assert summary["failures"] == {"CORRUPT": 1, "UNSUPPORTED_FORMAT": 1}
    assert ["DSCN0010.jpg", "kitchen/copy-of-DSCN0010.jpg"] in summary["duplicates"]["exact"]
    assert summary["groups"]["kitchen"]["images"] == 3
    assert (process.outbox / "house" / "results.csv").is_file()
    _check_report_and_graph(process.outbox / "house", summary)
    wait_for(lambda: not (process.inbox / "house").exists(), what="input archived")
    assert (process.archive / "house" / "DSCN0010.jpg").is_file()
    assert process.terminate() == 0
    assert not list(process.outbox.rglob("*.tmp"))


def _check_report_and_graph(outbox_dir: Path, summary: dict[str, Any]) -> None:
    """report.html shows every group with a thumbnail per file; duplicates.gexf draws them."""
    import networkx as nx

    graph = nx.read_gexf(outbox_dir / "duplicates.gexf")
    labels = {data["label"]: node for node, data in graph.nodes(data=True)}
    pair = labels["DSCN0010.jpg"], labels["kitchen/copy-of-DSCN0010.jpg"]
    assert graph.edges[pair]["tier"] == "exact"
    page = (outbox_dir / "report.html").read_text(encoding="utf-8")
    groups = page.split('<div class="group" ')[1:]
    assert len(groups) == len(summary["duplicate_groups"]) >= 1
    for shown, group in zip(groups, summary["duplicate_groups"], strict=True):
        assert shown.count("<img ") == group["size"], group  # thumbnails from the one decode
    assert "broken.jpg" in page.split('id="failures"')[1]


def test_folder_copied_slowly_is_not_started_early(daemon, corpora):
    process = daemon(inbox={"settle_seconds": 2})
    batch = process.inbox / "slow"
    batch.mkdir()
    stop_copying = threading.Event()
    names = []
    for index, relative in enumerate(PHOTOS):
        name = f"{index:02d}-{Path(relative).name}"
        shutil.copy(corpora / relative, batch / name)
        names.append(name)
        # The producer's pace (a slow network copy), not a synchronisation.
        stop_copying.wait(0.6)
    summary = process.summary("slow")
    assert summary["counts"]["total"] == len(PHOTOS)
    assert sorted(r["path"] for r in process.results("slow")) == sorted(names)


def test_ready_marker_starts_a_batch_without_waiting_to_settle(daemon, corpora):
    process = daemon(inbox={"settle_seconds": 3600})
    batch = process.inbox / "marked"
    batch.mkdir()
    shutil.copy(corpora / PHOTOS[0], batch / "a.jpg")
    (batch / ".ready").write_text("", encoding="utf-8")
    summary = process.summary("marked")
    assert summary["status"] == "completed"
    assert [r["path"] for r in process.results("marked")] == ["a.jpg"]


def test_loose_file_is_a_batch_of_one_and_names_never_collide(daemon, corpora):
    process = daemon(inbox={"settle_seconds": 0.5})
    shutil.copy(corpora / PHOTOS[1], process.inbox / ".photo.jpg.part")
    os.rename(process.inbox / ".photo.jpg.part", process.inbox / "photo.jpg")
    assert process.summary("photo")["counts"]["total"] == 1
    wait_for(lambda: not (process.inbox / "photo.jpg").exists(), what="loose file archived")
    shutil.copy(corpora / PHOTOS[2], process.inbox / ".photo.jpg.part")
    os.rename(process.inbox / ".photo.jpg.part", process.inbox / "photo.jpg")
    second = process.summary("photo-2")
    assert second["batch_id"] == "photo-2"
    assert process.results("photo-2")[0]["path"] == "photo.jpg"


def test_any_link_dropped_at_the_inbox_root_is_a_batch_of_one_refused(daemon, tmp_path):
    """Dangling, looping, outward and folder links are inputs too: one REFUSED record each."""
    process = daemon(inbox={"settle_seconds": 0.5})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"not to be read")
    targets = {
        "loop": "loop",
        "dangling": str(tmp_path / "nowhere"),
        "outward": str(outside / "secret.jpg"),
        "folder": str(outside),
    }
    for name, target in targets.items():
        os.symlink(target, process.inbox / name)

    for name in targets:
        summary = process.summary(name)
        [record] = process.results(name)
        assert summary["counts"]["total"] == 1, name
        assert record["status"] == "failed", name
        assert record["error"]["code"] == "REFUSED", name
    for name in targets:  # then archived like any input: the links themselves, not followed
        wait_for(lambda n=name: not os.path.lexists(process.inbox / n), what=f"{name} archived")
        assert (process.archive / name / name).is_symlink(), name
    assert (outside / "secret.jpg").read_bytes() == b"not to be read"
    assert "Traceback" not in process.log_text()
    assert process.terminate() == 0


def test_sigkill_mid_batch_then_restart_gives_exactly_once_results(daemon, tmp_path, corpora):
    process = daemon(processing={"workers": 1})
    sources = slow_photos(corpora, 10)  # one worker: seconds of work left at the kill
    staging = tmp_path / "staging" / "big"
    staging.mkdir(parents=True)
    for name, data in sources.items():
        (staging / name).write_bytes(data)
    os.rename(staging, process.inbox / "big")
    status_file = process.outbox / "big" / "status.json"
    wait_for(lambda: 3 <= _finished(status_file) < len(sources), what="the batch part done")
    process.kill()
    assert not (process.outbox / "big" / "summary.json").exists()

    restarted = daemon()
    summary = restarted.summary("big")
    records = restarted.results("big")
    paths = [r["path"] for r in records]
    assert len(paths) == len(set(paths)) == len(sources)
    counts = summary["counts"]
    assert counts["done"] + counts["failed"] + counts["skipped"] == len(sources)
    assert counts["done"] == sum(r["status"] == "done" for r in records)
    assert sorted(p.name for p in restarted.outbox.iterdir()) == ["big"]
    assert restarted.terminate() == 0


def _finished(status_file: Path) -> int:
    """done + failed + skipped from a live status.json (0 while it is not there yet)."""
    try:
        counts = json.loads(status_file.read_text(encoding="utf-8"))["counts"]
    except (OSError, ValueError, KeyError):
        return 0
    return int(counts["done"] + counts["failed"] + counts["skipped"])


def test_redropped_batch_is_served_from_the_content_cache_and_matches_history(
    daemon, tmp_path, corpora
):
    import httpx

    port = free_port()
    process = daemon(listen=f"127.0.0.1:{port}")
    for name in ("first", "again"):
        staged = tmp_path / "staging" / name
        staged.mkdir(parents=True)
        for relative in PHOTOS:
            shutil.copy(corpora / relative, staged / Path(relative).name)
        os.rename(staged, process.inbox / name)
        summary = process.summary(name)
    # The summary lists the matches against history too, with their batch.
    seen_before = {
        member["path"]
        for group in summary["duplicate_groups"]
        for member in group["members"]
        if member["seen_in"] == "first"
    }
    assert seen_before == {Path(relative).name for relative in PHOTOS}
    again = {r["path"]: r for r in process.results("again")}
    first = {r["path"]: r for r in process.results("first")}
    assert again.keys() == first.keys()
    for path, record in again.items():
        assert record["hashes"] == first[path]["hashes"]
        assert {"tier": "exact", "path": path, "seen_in": "first"}.items() <= next(
            d for d in record["duplicates"] if d["seen_in"] == "first" and d["path"] == path
        ).items()
        assert (record["duplicate_of"], record["duplicate_seen_in"]) == (path, "first")
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    hits = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("medianalysed_content_cache_hits_total ")
    ]
    assert hits == [len(PHOTOS)]


def test_folder_vanishing_mid_batch_is_reported_not_crashed_on(daemon, tmp_path, corpora):
    process = daemon(processing={"workers": 1})
    large = sorted(
        p for p in (corpora / "exif-samples" / "jpg").rglob("*.jpg") if p.stat().st_size > 1_000_000
    )
    sources = [large[index % len(large)] for index in range(60)]
    staging = tmp_path / "staging" / "gone"
    staging.mkdir(parents=True)
    for index, source in enumerate(sources):
        # Bytes after the JPEG end marker: same picture, distinct file (no cache hit).
        data = source.read_bytes() + index.to_bytes(4, "big")
        (staging / f"{index:03d}-{source.name}").write_bytes(data)
    os.rename(staging, process.inbox / "gone")
    status_file = process.outbox / "gone" / "status.json"
    wait_for(lambda: _finished(status_file) >= 2, what="two images done")
    shutil.rmtree(process.inbox / "gone")
    summary = process.summary("gone")
    assert summary["counts"]["total"] == len(sources)
    assert summary["failures"].get("IO_ERROR", 0) >= 1
    records = process.results("gone")
    assert len(records) == len(sources)
    vanished = [r for r in records if r["error"] and r["error"]["code"] == "IO_ERROR"]
    # No retry once the folder is gone (one may have started while rmtree was under way).
    assert all(r["attempts"] <= 2 for r in vanished)
    assert process.terminate() == 0
