"""End-to-end: operating the real daemon (signals, systemd notify, metrics, control verbs, logs).

Every test runs `medianalysed run` as a subprocess (or `$MEDIANALYSED_BIN`), sends it real
signals, talks to it through a notify socket the test binds, its HTTP endpoint and the CLI
run as separate processes, and waits on observable effects with deadlines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from medianalysed import __version__
from tests.e2e.harness import (
    DaemonProcess,
    free_port,
    holds_for,
    run_cli,
    slow_photos,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.e2e

GPS = "exif-samples/jpg/gps"
CORRUPT = "imagededup-testdata/mixed_images/ukbench09268_corrupt.jpg"
# The undamaged original of CORRUPT: what an operator puts back before `retry`.
REPAIRED = "imagededup-testdata/mixed_images/ukbench09268.jpg"
SMALL = "imagededup-testdata/mixed_images/ukbench00120_resize.jpg"
GRACE_S = 30.0  # app.SHUTDOWN_GRACE_S
# The contract is "within 2 s" of a control command; the deadline leaves room for a loaded
# CI machine while still failing a daemon that only acts at its next start or rescan.
CONTROL_DEADLINE_S = 15.0

StartDaemon = Callable[..., DaemonProcess]


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    """Start `medianalysed run` on a config under tmp_path; every process is killed after."""
    started: list[DaemonProcess] = []

    def start(config: Path, **env: str) -> DaemonProcess:
        process = DaemonProcess(tmp_path, config, env=dict(env)).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop_quietly()


# -- helpers ---------------------------------------------------------------------------


def drop(inbox: Path, name: str, files: Mapping[str, Path | bytes]) -> Path:
    """Stage a batch beside the inbox, then rename it in (an atomic drop)."""
    staging = inbox.parent / "staging" / name
    staging.mkdir(parents=True)
    for relpath, source in files.items():
        (staging / relpath).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            (staging / relpath).write_bytes(source)
        else:
            shutil.copyfile(source, staging / relpath)
    target = inbox / name
    os.rename(staging, target)
    return target


def mixed_batch(corpora: Path) -> dict[str, Path | bytes]:
    """Two photos, an exact duplicate of one, and a corrupt JPEG: ends `partial`."""
    return {
        "DSCN0010.jpg": corpora / GPS / "DSCN0010.jpg",
        "DSCN0012.jpg": corpora / GPS / "DSCN0012.jpg",
        "copy-of-0010.jpg": corpora / GPS / "DSCN0010.jpg",
        "broken.jpg": corpora / CORRUPT,
    }


def cli(config: Path, *args: str) -> tuple[int, str, str]:
    """Run a CLI verb against `config`; (exit code, stdout, stderr)."""
    done = run_cli(*args, "--config", str(config), cwd=config.parent)
    return done.returncode, done.stdout, done.stderr


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON document, or None while it is absent (atomic writes: never partial)."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


def live_counts(process: DaemonProcess, batch_id: str) -> dict[str, int]:
    document = read_json(process.outbox / batch_id / "status.json") or {"counts": {}}
    return dict(document["counts"])


def finished(counts: dict[str, int]) -> int:
    return counts.get("done", 0) + counts.get("failed", 0) + counts.get("skipped", 0)


def summary_where(
    process: DaemonProcess,
    batch_id: str,
    condition: Callable[[dict[str, Any]], bool] = lambda _summary: True,
    timeout: float = 60.0,
    outbox: Path | None = None,
) -> dict[str, Any]:
    """The batch's summary.json once it exists and satisfies `condition`."""
    path = (outbox or process.outbox) / batch_id / "summary.json"

    def matching() -> dict[str, Any] | None:
        process._check_alive()
        summary = read_json(path)
        return summary if summary is not None and condition(summary) else None

    return wait_for(matching, timeout=timeout, what=f"{path} matching {condition}")


def status_lines(process: DaemonProcess) -> list[str]:
    return [m for m in process.read_notifications() if m.startswith("STATUS=")]


def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample of a Prometheus text exposition, or None if absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def log_since(process: DaemonProcess, offset: int) -> str:
    return process.log_text()[offset:]


def exits_within(process: DaemonProcess, timeout: float) -> int:
    assert process.process is not None
    code = process.process.wait(timeout=timeout)
    process._close()
    return code


# -- 1. signals ------------------------------------------------------------------------


def test_sigterm_mid_batch_drains_exits_0_and_the_restart_finishes_exactly_once(
    start_daemon: StartDaemon, tmp_path: Path, corpora: Path
) -> None:
    config = write_config(tmp_path, processing={"workers": 1}, inbox={"settle_seconds": 0.5})
    process = start_daemon(config)
    photos = slow_photos(corpora, 8)  # one worker: seconds of work left at the signal
    drop(process.inbox, "big", photos)
    wait_for(
        lambda: 2 <= finished(live_counts(process, "big")) < len(photos),
        what="the batch partly done",
    )

    process.send(signal.SIGTERM)
    assert exits_within(process, GRACE_S + 15) == 0
    assert "STOPPING=1" in process.messages
    assert "received SIGTERM" in process.log_text()
    assert not list(process.outbox.rglob("*.tmp"))
    assert not (process.outbox / "big" / "summary.json").exists()
    # Input is never moved before its results are durable.
    assert (process.inbox / "big").is_dir()

    restarted = start_daemon(config)
    summary = restarted.summary("big")
    records = restarted.results("big")
    paths = [record["path"] for record in records]
    assert paths == sorted(photos)
    counts = summary["counts"]
    assert finished(counts) == counts["total"] == len(photos)
    assert counts["done"] == sum(record["status"] == "done" for record in records)
    assert sorted(p.name for p in restarted.outbox.iterdir()) == ["big"]
    assert restarted.terminate() == 0
    assert not list(restarted.outbox.rglob("*.tmp"))


def test_sighup_reloads_a_new_inbox_refuses_a_bad_config_and_sigusr1_dumps_stacks(
    start_daemon: StartDaemon, tmp_path: Path, corpora: Path
) -> None:
    config = write_config(tmp_path, inbox={"settle_seconds": 0.5})
    process = start_daemon(config)
    photo = {"a.jpg": corpora / GPS / "DSCN0010.jpg"}
    second = {
        "name": "second",
        "path": "inbox2",
        "outbox": "outbox2",
        "archive": "archive2",
        "settle_seconds": 0.5,
    }

    write_config(tmp_path, inbox={"settle_seconds": 0.5}, extra_inboxes=[second])
    process.send(signal.SIGHUP)
    wait_for(
        lambda: process.read_notifications().count("READY=1") >= 2, what="READY=1 after the reload"
    )
    assert "RELOADING=1" in process.read_notifications()
    assert "watching inbox second" in process.log_text()
    outbox2 = tmp_path / "outbox2"
    drop(tmp_path / "inbox2", "via-reload", photo)
    assert summary_where(process, "via-reload", outbox=outbox2)["status"] == "completed"
    assert not (process.outbox / "via-reload").exists()

    good_config = config.read_text(encoding="utf-8")
    config.write_text(good_config.replace("workers =", "workrs ="), encoding="utf-8")
    process.send(signal.SIGHUP)
    wait_for(
        lambda: process.read_notifications().count("READY=1") >= 3, what="READY=1 after the refusal"
    )
    log = process.log_text()
    assert "new configuration refused" in log
    assert "processing.workrs" in log
    drop(process.inbox, "after-refusal", photo)
    drop(tmp_path / "inbox2", "still-watched", photo)
    assert process.summary("after-refusal")["status"] == "completed"
    summary_where(process, "still-watched", outbox=outbox2)

    # An inbox that keeps its name but moves is watched at its new path.
    moved = dict(second, path="inbox3")
    write_config(tmp_path, inbox={"settle_seconds": 0.5}, extra_inboxes=[moved])
    process.send(signal.SIGHUP)
    wait_for(lambda: process.read_notifications().count("READY=1") >= 4, what="READY=1")
    assert f"watching inbox second at {tmp_path / 'inbox3'}" in process.log_text()
    drop(tmp_path / "inbox3", "moved-inbox", photo)
    summary_where(process, "moved-inbox", outbox=outbox2)

    offset = len(process.log_text())
    process.send(signal.SIGUSR1)
    wait_for(lambda: "Thread 0x" in log_since(process, offset), what="thread stacks")
    stacks = log_since(process, offset)
    assert 'File "' in stacks
    assert "[MainThread]" in stacks
    assert process.terminate() == 0


# -- 2. systemd notify -----------------------------------------------------------------


def test_ready_only_once_watching_then_live_status_and_watchdog_pings(
    start_daemon: StartDaemon, tmp_path: Path, corpora: Path
) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        listen=f"127.0.0.1:{port}",
        processing={"workers": 1},
        inbox={"settle_seconds": 0.5},
    )
    process = start_daemon(config, WATCHDOG_USEC="500000")

    # At the moment READY=1 arrives the inbox is watched and /readyz agrees.
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        assert http.get("/readyz").status_code == 200
        assert http.get("/healthz").status_code == 200
    log = process.log_text()
    assert log.index("watching inbox default") < log.index(f"medianalysed {__version__} ready")
    ready_at = process.messages.index("READY=1")
    assert process.messages[ready_at + 1].startswith("STATUS=watching 1 inbox")

    wait_for(lambda: process.read_notifications().count("WATCHDOG=1") >= 3, what="3 pings")

    drop(process.inbox, "live", slow_photos(corpora, 8))
    progress = process.wait_notification(
        lambda m: re.fullmatch(r"STATUS=processing live \d+/8.*workers busy.*", m) is not None,
        what="a STATUS line with the batch's progress",
    )
    process.summary("live")
    seen = len(process.messages)
    wait_for(
        lambda: any(m.startswith("STATUS=idle") for m in process.read_notifications()[seen:]),
        what="STATUS=idle after the batch",
    )
    assert progress in status_lines(process)
    pings_before = process.messages.count("WATCHDOG=1")
    wait_for(
        lambda: process.read_notifications().count("WATCHDOG=1") >= pings_before + 2,
        what="pings keep coming",
    )
    assert process.terminate() == 0


# -- 3. metrics and 5. JSON logs ---------------------------------------------------------


def test_metrics_agree_with_the_summary_and_json_logs_stay_json(
    start_daemon: StartDaemon, tmp_path: Path, corpora: Path
) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        listen=f"127.0.0.1:{port}",
        daemon={"log_format": "json"},
        inbox={"settle_seconds": 0.5},
    )
    process = start_daemon(config)
    files = mixed_batch(corpora)
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n", encoding="utf-8")
    files["notes.txt"] = notes
    drop(process.inbox, "house", files)
    summary = process.summary("house")
    counts = summary["counts"]
    assert summary["status"] == "partial"

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

        def scrape_once_counted() -> str | None:
            # The batch is counted just after its summary is written.
            text = http.get("/metrics").text
            partial = metric(text, "medianalysed_batches_total", inbox="default", status="partial")
            return text if partial == 1 else None

        text = wait_for(scrape_once_counted, what="the batch counted")
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
    for status in ("done", "failed", "skipped"):
        value = metric(text, "medianalysed_images_total", inbox="default", status=status)
        assert value == counts[status], status
    for code, count in summary["failures"].items():
        assert metric(text, "medianalysed_image_errors_total", code=code) == count, code
    assert summary["failures"] == {"CORRUPT": 1, "UNSUPPORTED_FORMAT": 1}
    assert metric(text, "medianalysed_image_errors_total", code="TIMEOUT") == 0
    for status in ("completed", "failed", "cancelled"):
        assert metric(text, "medianalysed_batches_total", inbox="default", status=status) == 0
    assert metric(text, "medianalysed_build_info", version=__version__) == 1
    assert metric(text, "medianalysed_image_duration_seconds_count") == counts["total"]
    bytes_processed = metric(text, "medianalysed_bytes_processed_total")
    assert bytes_processed is not None
    assert bytes_processed > 0

    offset = len(process.log_text())
    process.send(signal.SIGUSR1)
    wait_for(lambda: "Thread 0x" in log_since(process, offset), what="thread stacks")
    assert process.terminate() == 0

    lines = process.log_text().splitlines()
    entries = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    assert all(isinstance(entry, dict) for entry in entries)
    about_batch = [e for e in entries if re.search(r"\bbatch house\b", e["message"])]
    assert len(about_batch) >= 3  # queued, enumerated, finished
    assert all(entry.get("batch_id") == "house" for entry in about_batch)
    assert any("Thread 0x" in entry["message"] for entry in entries)


# -- 4. control verbs ------------------------------------------------------------------


def test_status_explain_retry_and_reprocess_while_running(
    start_daemon: StartDaemon, tmp_path: Path, corpora: Path
) -> None:
    settling = {
        "name": "slow",
        "path": "slow-inbox",
        "outbox": "slow-outbox",
        "archive": "slow-archive",
        "settle_seconds": 3600,
    }
    config = write_config(
        tmp_path, inbox={"settle_seconds": 0.5}, extra_inboxes=[settling], processing={}
    )
    process = start_daemon(config)
    drop(process.inbox, "mixed", mixed_batch(corpora))
    first = process.summary("mixed")
    assert first["status"] == "partial"
    wait_for((process.archive / "mixed").is_dir, what="input archived")

    code, out, _ = cli(config, "status")
    assert code == 0
    assert "mixed: partial 4/4 (1 failed)" in out
    code, out, _ = cli(config, "status", "--json")
    assert code == 0
    document = json.loads(out)
    assert set(document) == {"batches", "paused", "dead_letters", "set_aside"}
    assert document["paused"] is False
    assert document["dead_letters"] == []
    assert [(b["batch_id"], b["status"], b["progress"]) for b in document["batches"]] == [
        ("mixed", "partial", "4/4")
    ]

    (process.inbox / ".DS_Store").write_bytes(b"junk")
    code, out, _ = cli(config, "explain", str(process.inbox / ".DS_Store"))
    assert code == 0
    assert "ignored" in out
    drop(tmp_path / "slow-inbox", "arriving", {"a.jpg": corpora / SMALL})
    code, out, _ = cli(config, "explain", str(tmp_path / "slow-inbox" / "arriving"))
    assert "waiting to settle" in out
    assert "settle_seconds = 3600" in out
    code, out, _ = cli(config, "explain", str(process.archive / "mixed" / "broken.jpg"))
    assert code == 0
    assert "failed" in out
    assert "CORRUPT" in out
    code, out, _ = cli(config, "explain", str(process.archive / "mixed" / "copy-of-0010.jpg"))
    assert code == 0
    assert "exact duplicate of DSCN0010.jpg" in out

    # retry: put the undamaged file where the archived corrupt one was.
    broken = process.archive / "mixed" / "broken.jpg"
    broken.unlink()
    shutil.copyfile(corpora / REPAIRED, broken)
    code, out, err = cli(config, "retry", "mixed")
    assert code == 0, err
    assert "1 failed" in out
    retried = summary_where(
        process, "mixed", lambda s: s["status"] == "completed", timeout=CONTROL_DEADLINE_S
    )
    assert retried["batch_id"] == "mixed"
    assert retried["counts"]["done"] == 4
    records = {r["path"]: r for r in process.results("mixed")}
    assert len(records) == 4
    assert records["broken.jpg"]["status"] == "done"

    # reprocess --dry-run: prints the plan, changes nothing.
    summary_file = process.outbox / "mixed" / "summary.json"
    before = summary_file.read_bytes()
    status_before = cli(config, "status", "--json")[1]
    code, out, _ = cli(config, "reprocess", "mixed", "--dry-run")
    assert code == 0
    assert "would analyse 4 images" in out
    # A dry run that queued the command anyway would rewrite the summary within a tick or two.
    holds_for(lambda: summary_file.read_bytes() == before, 1.5, what="summary untouched")
    assert cli(config, "status", "--json")[1] == status_before

    code, out, _ = cli(config, "reprocess", "mixed")
    assert code == 0
    assert "will analyse 4 images" in out
    again = summary_where(
        process,
        "mixed",
        lambda s: s["completed_at"] != retried["completed_at"],
        timeout=CONTROL_DEADLINE_S,
    )
    assert again["batch_id"] == "mixed"
    assert again["status"] == "completed"
    assert len(process.results("mixed")) == 4
    assert sorted(p.name for p in process.outbox.iterdir()) == ["mixed"]
    assert process.terminate() == 0


def test_pause_resume_and_cancel_while_running(
    start_daemon: StartDaemon, tmp_path: Path, corpora: Path
) -> None:
    config = write_config(tmp_path, processing={"workers": 1}, inbox={"settle_seconds": 0.5})
    process = start_daemon(config)

    code, out, _ = cli(config, "pause")
    assert code == 0
    assert json.loads(cli(config, "status", "--json")[1])["paused"] is True
    drop(process.inbox, "held", {"a.jpg": corpora / SMALL})
    process.wait_notification(
        lambda m: m.startswith("STATUS=") and "1 folder(s) waiting" in m and "paused" in m,
        timeout=CONTROL_DEADLINE_S,
        what="the daemon holding the folder while paused",
    )
    holds_for(lambda: not (process.outbox / "held").exists(), 2.0, what="held not started")
    code, out, _ = cli(config, "explain", str(process.inbox / "held"))
    assert "paused" in out

    code, out, _ = cli(config, "resume")
    assert code == 0
    summary_where(process, "held", timeout=CONTROL_DEADLINE_S)

    photos = slow_photos(corpora, 30)
    drop(process.inbox, "big", photos)
    wait_for(lambda: finished(live_counts(process, "big")) >= 1, what="the batch started")
    code, out, err = cli(config, "cancel", "big")
    assert code == 0, err
    summary = summary_where(process, "big", timeout=CONTROL_DEADLINE_S)
    assert summary["status"] == "cancelled"
    records = process.results("big")
    assert [r["path"] for r in records] == sorted(photos)
    pending = [r for r in records if r["status"] == "pending"]
    assert pending
    assert len(pending) == summary["counts"]["pending"]
    code, _, err = cli(config, "cancel", "big")
    assert code == 1
    assert "already finished" in err
    assert process.terminate() == 0


def test_control_verbs_while_stopped_take_effect_at_the_next_start(
    start_daemon: StartDaemon, tmp_path: Path, corpora: Path
) -> None:
    config = write_config(tmp_path, processing={"workers": 1}, inbox={"settle_seconds": 0.5})
    process = start_daemon(config)
    drop(process.inbox, "mixed", mixed_batch(corpora))
    drop(process.inbox, "single", {"a.jpg": corpora / SMALL})
    mixed = process.summary("mixed")
    single = process.summary("single")
    drop(process.inbox, "big", slow_photos(corpora, 30))
    wait_for(lambda: finished(live_counts(process, "big")) >= 1, what="the big batch started")
    assert process.terminate() == 0

    assert cli(config, "pause")[0] == 0
    assert cli(config, "cancel", "big")[0] == 0
    broken = process.archive / "mixed" / "broken.jpg"
    broken.unlink()
    shutil.copyfile(corpora / REPAIRED, broken)
    assert cli(config, "retry", "mixed")[0] == 0
    assert cli(config, "reprocess", "single")[0] == 0
    drop(process.inbox, "held", {"a.jpg": corpora / SMALL})
    assert "paused" in cli(config, "explain", str(process.inbox / "held"))[1]
    # Nothing acts on them while the daemon is stopped.
    assert read_json(process.outbox / "mixed" / "summary.json") == mixed

    second = start_daemon(config)
    big = summary_where(second, "big")
    assert big["status"] == "cancelled"
    assert big["counts"]["pending"] > 0
    summary_where(second, "mixed", lambda s: s["status"] == "completed")
    summary_where(second, "single", lambda s: s["completed_at"] != single["completed_at"])
    second.wait_notification(
        lambda m: m.startswith("STATUS=") and "1 folder(s) waiting" in m and "paused" in m,
        what="held while paused",
    )
    assert not (second.outbox / "held").exists()
    assert second.terminate() == 0

    assert cli(config, "resume")[0] == 0
    third = start_daemon(config)
    assert third.summary("held")["status"] == "completed"
    assert sorted(p.name for p in third.outbox.iterdir()) == ["big", "held", "mixed", "single"]
    assert third.terminate() == 0


def test_cli_exit_codes(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    code, out, _ = cli(config, "status")
    assert (code, out.strip()) == (0, "no batches")
    for verb in ("status", "cancel", "retry", "reprocess"):
        code, _, err = cli(config, verb, "no-such-batch")
        assert code == 1, verb
        assert "no-such-batch" in err

    bad = tmp_path / "bad.toml"
    bad.write_text("[processing]\nworkrs = 2\n", encoding="utf-8")
    code, _, err = cli(bad, "status")
    assert code == 78
    assert "processing.workrs" in err
    assert "workers" in err  # the suggestion

    assert run_cli("frobnicate").returncode == 2
    assert run_cli("cancel").returncode == 2
    version = run_cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith(f"medianalysed {__version__} (executors: local")
