"""SIGKILL between any two steps of disposing input and of a rerun; crash-loop quarantine.

The daemon is killed exactly at a named point by the test-only hook
`MEDIANALYSED_CRASH_AT` (crashpoints.py: `os._exit`, as abrupt as SIGKILL), restarted
without it, and the outcome checked: one record per input, the input archived exactly
once (never half, never twice), and `retry`/`reprocess` still find it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from medianalysed.crashpoints import CRASH_ENV, CRASH_EXIT_CODE
from tests.e2e.harness import DaemonProcess, free_port, run_cli, wait_for, write_config
from tests.scripted_http import answer, hold, scripted_server

pytestmark = pytest.mark.e2e

GOOD = (
    "imagededup-testdata/mixed_images/ukbench00120.jpg",
    "exif-samples/jpg/gps/DSCN0010.jpg",
)
BROKEN = "imagededup-testdata/mixed_images/ukbench09268_corrupt.jpg"
REPAIRED = "imagededup-testdata/mixed_images/ukbench09268.jpg"
INPUTS = ("a.jpg", "b.jpg", "sub/broken.jpg")


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Any]:
    started: list[DaemonProcess] = []

    def start(config: Path, crash_at: str = "") -> DaemonProcess:
        env = {CRASH_ENV: crash_at} if crash_at else {}
        process = DaemonProcess(tmp_path, config, env=env).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop_quietly()


def _drop(inbox: Path, corpora: Path, name: str = "b1") -> None:
    staging = inbox.parent / "staging" / name
    (staging / "sub").mkdir(parents=True)
    shutil.copy(corpora / GOOD[0], staging / "a.jpg")
    shutil.copy(corpora / GOOD[1], staging / "b.jpg")
    shutil.copy(corpora / BROKEN, staging / "sub" / "broken.jpg")
    os.rename(staging, inbox / name)


def _died_at_crash_point(process: DaemonProcess) -> None:
    assert process.process is not None
    wait_for(lambda: process.process.poll() is not None, what="the daemon to die")  # type: ignore[union-attr]
    assert process.process.returncode == CRASH_EXIT_CODE, process.log_text()[-3000:]
    process.kill()  # the orphaned worker processes of its group


def _record(config: Path, batch_id: str) -> dict[str, Any]:
    done = run_cli("status", batch_id, "--json", "--config", str(config), cwd=config.parent)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    return next(b for b in document["batches"] if b["batch_id"] == batch_id)


def _results(process: DaemonProcess, batch_id: str = "b1") -> dict[str, dict[str, Any]]:
    records = process.results(batch_id)
    paths = [r["path"] for r in records]
    assert len(paths) == len(set(paths)), f"a path twice: {paths}"
    return {r["path"]: r for r in records}


def _archive_holds_the_batch_once(archive: Path) -> None:
    assert sorted(p.name for p in archive.iterdir()) == ["b1"], list(archive.iterdir())
    files = sorted(str(p.relative_to(archive / "b1")) for p in (archive / "b1").rglob("*.jpg"))
    assert files == sorted(INPUTS)


def _dry_run_finds_the_archive(config: Path, archive: Path) -> None:
    done = run_cli("reprocess", "b1", "--dry-run", "--config", str(config), cwd=config.parent)
    assert done.returncode == 0, done.stderr
    assert str(archive / "b1") in done.stdout


@contextlib.contextmanager
def _other_filesystem(path: Path) -> Iterator[None]:
    """`path` as a tmpfs mount of its own, so a move into it crosses filesystems."""
    path.mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (root needed): {mounted.stderr!r}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize(
    ("point", "cross_fs"),
    [
        ("dispose:intent", False),
        ("dispose:moved", False),
        ("dispose:intent", True),
        ("archive:copied", True),
        ("archive:renamed", True),
        ("dispose:moved", True),
    ],
)
def test_a_kill_at_any_step_of_archiving_finishes_it_exactly_once(
    daemons, tmp_path: Path, corpora: Path, point: str, cross_fs: bool
) -> None:
    config = write_config(tmp_path, inbox={"settle_seconds": 0.5})
    archive = tmp_path / "archive"
    with _other_filesystem(archive) if cross_fs else contextlib.nullcontext():
        process = daemons(config, crash_at=point)
        _drop(process.inbox, corpora)
        _died_at_crash_point(process)

        restarted = daemons(config)
        wait_for(lambda: _record(config, "b1")["status"] == "partial", what="b1 finished")
        wait_for(lambda: not (restarted.inbox / "b1").exists(), what="the input moved")
        summary = restarted.summary("b1")
        assert summary["counts"]["total"] == 3
        records = _results(restarted)
        assert sorted(records) == sorted(INPUTS)
        assert records["sub/broken.jpg"]["error"]["code"] == "CORRUPT"
        _archive_holds_the_batch_once(archive)
        assert not list(archive.glob(".*partial*"))
        _dry_run_finds_the_archive(config, archive)
        assert restarted.terminate() == 0


@pytest.mark.parametrize(
    ("verb", "point"), [("retry", "rerun:intent"), ("reprocess", "rerun:reset")]
)
def test_a_kill_during_retry_or_reprocess_resumes_the_rerun(
    daemons, tmp_path: Path, corpora: Path, verb: str, point: str
) -> None:
    config = write_config(tmp_path, inbox={"settle_seconds": 0.5})
    process = daemons(config, crash_at=point)
    _drop(process.inbox, corpora)
    first = process.summary("b1")
    assert first["status"] == "partial"
    wait_for(lambda: _record(config, "b1")["status"] == "partial", what="b1 done")
    # The corrupt image is replaced by a good one, so a completed rerun is visible.
    broken = tmp_path / "archive" / "b1" / "sub" / "broken.jpg"
    wait_for(broken.is_file, what="b1 archived")
    broken.unlink()
    shutil.copy(corpora / REPAIRED, broken)
    done = run_cli(verb, "b1", "--config", str(config), cwd=config.parent)
    assert done.returncode == 0, done.stderr
    _died_at_crash_point(process)

    restarted = daemons(config)
    # (A kill right after the intent leaves the old summary.json until the rerun resumes.)
    summary_file = tmp_path / "outbox" / "b1" / "summary.json"
    wait_for(
        lambda: (
            summary_file.is_file()
            and json.loads(summary_file.read_text())["completed_at"] != first["completed_at"]
        ),
        what="the rerun's summary",
    )
    summary = restarted.summary("b1")
    assert summary["status"] == "completed", summary
    records = _results(restarted)
    assert sorted(records) == sorted(INPUTS)
    assert {r["status"] for r in records.values()} == {"done"}
    assert records["a.jpg"]["image"] is not None  # results kept or recomputed, never wiped
    _archive_holds_the_batch_once(tmp_path / "archive")
    assert restarted.terminate() == 0


def _start_and_die(root: Path, config: Path, crash_at: str) -> None:
    """Start the daemon on a poison input: it must die at the crash point."""
    process = DaemonProcess(root, config, env={CRASH_ENV: crash_at})
    with contextlib.suppress(AssertionError):  # it may die before it says READY=1
        process.start()
    try:
        _died_at_crash_point(process)
    finally:
        process.stop_quietly()


def test_a_batch_that_kills_the_daemon_twice_is_set_aside_and_the_rest_finishes(
    tmp_path: Path, corpora: Path
) -> None:
    port = free_port()
    config = write_config(tmp_path, inbox={"settle_seconds": 0.5}, listen=f"127.0.0.1:{port}")
    inbox = tmp_path / "inbox"
    # A poison input: listing it kills the daemon process outright, every time.
    poison = "enumerate:poison"
    _drop(inbox, corpora, "poison")
    _start_and_die(tmp_path, config, poison)
    _drop(inbox, corpora, "good1")
    _drop(inbox, corpora, "good2")
    _start_and_die(tmp_path, config, poison)

    # Third start, the input still poison: it is set aside, everything else proceeds.
    third = DaemonProcess(tmp_path, config, env={CRASH_ENV: poison}).start()
    try:
        for batch_id in ("good1", "good2"):
            assert third.summary(batch_id)["status"] == "partial"
            assert sorted(_results(third, batch_id)) == sorted(INPUTS)
        summary = third.summary("poison")
        assert summary["status"] == "failed"
        assert "died 2 times while enumerating" in summary["set_aside"]["reason"]
        assert (inbox / "poison").is_dir()  # left for the operator, not archived

        done = run_cli("status", "--json", "--config", str(config), cwd=tmp_path)
        document = json.loads(done.stdout)
        assert [e["batch_id"] for e in document["set_aside"]] == ["poison"]
        statuses = {b["batch_id"]: b["status"] for b in document["batches"]}
        assert statuses == {"poison": "failed", "good1": "partial", "good2": "partial"}
        text = run_cli("status", "--config", str(config), cwd=tmp_path).stdout
        assert "set aside: poison: the daemon died 2 times while enumerating" in text

        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert "medianalysed_crash_loops_total 1.0" in metrics
        assert "medianalysed_batches_set_aside_total 1.0" in metrics
        assert third.terminate() == 0
    finally:
        third.stop_quietly()

    # Fixed (here: no longer poison), `reprocess` runs it again, listing it this time.
    fourth = DaemonProcess(tmp_path, config).start()
    try:
        done = run_cli("reprocess", "poison", "--config", str(config), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: _record(config, "poison")["status"] == "partial", what="poison rerun")
        assert sorted(_results(fourth, "poison")) == sorted(INPUTS)
        document = json.loads(run_cli("status", "--json", "--config", str(config)).stdout)
        assert document["set_aside"] == []
        assert fourth.terminate() == 0
    finally:
        fourth.stop_quietly()


def test_a_batch_without_progress_turns_health_red_until_it_moves_again(
    tmp_path: Path, corpora: Path
) -> None:
    release = threading.Event()
    photo = (corpora / GOOD[0]).read_bytes()
    with scripted_server({}) as web:
        # A remote image whose server holds the answer: the batch's only image is out,
        # and nothing comes back, until the test lets it.
        web.routes["/held.jpg"] = hold(web, release, then=answer(200, photo))
        port = free_port()
        config = write_config(
            tmp_path,
            inbox={"settle_seconds": 0.5},
            listen=f"127.0.0.1:{port}",
            processing={"workers": 1, "stall_seconds": 1},
            downloads={"allow_private_networks": True, "timeout_seconds": 120},
        )
        process = DaemonProcess(tmp_path, config).start()
        try:
            staging = tmp_path / "staging" / "held"
            staging.mkdir(parents=True)
            (staging / "urls.txt").write_text(f"{web.base}/held.jpg\n", encoding="utf-8")
            os.rename(staging, process.inbox / "held")

            def health() -> httpx.Response:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)

            red = wait_for(lambda: (r := health()).status_code == 503 and r, what="/healthz 503")
            assert "batch held made no progress for over 1 s" in red.text
            assert "batch held stalled" in process.log_text()
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            assert "medianalysed_batches_stalled_total 1.0" in metrics
            release.set()
            assert process.summary("held")["status"] == "completed"
            wait_for(lambda: health().status_code == 200, what="/healthz 200 again")
            assert process.terminate() == 0
        finally:
            release.set()
            process.stop_quietly()
