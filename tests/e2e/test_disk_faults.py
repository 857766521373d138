"""End-to-end: the real daemon on real disks that fill up or turn read-only mid-batch.

Each test mounts a small tmpfs (root only: CI runs as root) for the outbox or the state
directory, starts `medianalysed run` on it, fills or remounts it while a batch runs, and
checks from outside: the batch pauses (one log line), `/healthz` says 503 and why, the
write-failure metric counts, nothing is finished early and the input stays in the inbox;
then space comes back and the batch finishes by itself, each image exactly once, and only
then is the input archived.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import pytest

from medianalysed.batchwork.retries import WRITE_RETRY_BACKOFF_S
from tests.e2e.harness import (
    DaemonProcess,
    free_port,
    holds_for,
    slow_photos,
    write_config,
)
from tests.e2e.test_operations import drop, finished, live_counts, metric

pytestmark = pytest.mark.e2e

PHOTOS = 8  # 6 left when the disk breaks: the batch writes again within a second
FILLER = ".filler"

Mount = Callable[[Path, str], Path]


def _is_root() -> bool:
    return os.geteuid() == 0


@pytest.fixture
def tmpfs() -> Iterator[Mount]:
    """Mount a tmpfs of a given size on a directory; unmounted after the test."""
    if not _is_root():
        pytest.skip("mounting a tmpfs needs root (CI runs these tests as root)")
    mounted: list[Path] = []

    def mount(directory: Path, size: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        done = _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory))
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(directory)
        return directory

    yield mount
    for directory in reversed(mounted):
        subprocess.run(["umount", "-l", str(directory)], check=False, capture_output=True)


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


def fill(mount: Path) -> Path:
    """Write a file until the filesystem is full; the file frees the space when removed."""
    filler = mount / FILLER
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    block = b"\0" * 65536
    try:
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(block) == 1:
                    break
                block = block[: len(block) // 2]
    finally:
        os.close(fd)
    return filler


def remount(mount: Path, mode: str) -> None:
    done = _mount("-o", f"remount,{mode}", str(mount))
    assert done.returncode == 0, done.stderr


def health(port: int) -> tuple[int, str]:
    response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    return response.status_code, response.text


def failures_counted(port: int, target: str, errno_name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return metric(text, "medianalysed_write_failures_total", target=target, errno=errno_name) or 0


@pytest.fixture
def daemon_on(tmp_path: Path) -> Iterator[Callable[[Path], DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(config: Path) -> DaemonProcess:
        process = DaemonProcess(tmp_path, config).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop_quietly()


def summary_of(process: DaemonProcess, batch_id: str) -> dict[str, Any]:
    path = process.outbox / batch_id / "summary.json"
    process.until(path.is_file, what=str(path))
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _config(tmp_path: Path, port: int) -> Path:
    return write_config(
        tmp_path,
        listen=f"127.0.0.1:{port}",
        processing={"workers": 1},
        inbox={"settle_seconds": 0.5},
    )


# Each fault: the directory mounted, the tmpfs size, how it breaks, the errno it gives.
FAULTS = {
    "full-outbox": ("outbox", "2m", "full", "ENOSPC"),
    "full-state": ("state", "64m", "full", "ENOSPC"),
    "read-only-outbox": ("outbox", "16m", "read-only", "EROFS"),
}


def _break_and_repair(disk: Path, how: str) -> tuple[Callable[[], None], Callable[[], None]]:
    if how == "read-only":
        return lambda: remount(disk, "ro"), lambda: remount(disk, "rw")
    fillers: list[Path] = []
    return lambda: fillers.append(fill(disk)), lambda: fillers.pop().unlink()


@pytest.mark.parametrize("fault", FAULTS)
def test_a_broken_disk_pauses_the_batch_and_its_repair_resumes_it(
    fault: str,
    tmp_path: Path,
    tmpfs: Mount,
    daemon_on: Callable[[Path], DaemonProcess],
    corpora: Path,
) -> None:
    target, size, how, errno_name = FAULTS[fault]
    port = free_port()
    config = _config(tmp_path, port)
    break_disk, repair_disk = _break_and_repair(tmpfs(tmp_path / target, size), how)
    process = daemon_on(config)
    photos = slow_photos(corpora, PHOTOS)
    drop(process.inbox, "big", photos)
    process.until(lambda: finished(live_counts(process, "big")) >= 2, what="the batch under way")

    break_disk()
    process.until(lambda: "batch big paused" in process.log_text(), what="the batch paused")
    code, body = health(port)
    assert code == 503, body
    assert f"cannot write {target}" in body, body
    assert errno_name in body, body
    failed_writes = failures_counted(port, target, errno_name)
    assert failed_writes > 0

    def paused() -> bool:
        """Not failed: no summary, the input where it was, nothing archived."""
        process.read_notifications()
        return (
            not (process.outbox / "big" / "summary.json").exists()
            and (process.inbox / "big").is_dir()
            and not (process.archive / "big").exists()
        )

    # It stays so past its first retry (WRITE_RETRY_BACKOFF_S), which meets the fault again.
    holds_for(paused, WRITE_RETRY_BACKOFF_S[0] + 0.5, what="the paused batch not finished")
    process.until(
        lambda: failures_counted(port, target, errno_name) > failed_writes,
        what="a retry refused by the broken disk",
    )
    assert paused()

    repair_disk()
    summary = summary_of(process, "big")
    records = process.results("big")
    assert [record["path"] for record in records] == sorted(photos)
    counts = summary["counts"]
    assert counts["total"] == finished(counts) == PHOTOS
    assert counts["done"] == PHOTOS, counts
    process.until((process.archive / "big").is_dir, what="the input archived")
    assert not (process.inbox / "big").exists()
    assert sorted(p.name for p in (process.archive / "big").iterdir()) == sorted(photos)
    process.until(lambda: health(port)[0] == 200, what="healthy again")
    log = process.log_text()
    # One line when it starts failing, one when it recovers; not one per attempt.
    assert log.count("batch big paused") == 1, log
    assert log.count("batch big resumed") == 1, log
    assert "Traceback" not in log.split("batch big paused", 1)[1].split("batch big resumed")[0]
    assert process.terminate() == 0
    assert not list(process.outbox.rglob("*.tmp"))


def test_a_full_state_disk_before_a_batch_starts_keeps_the_folder_waiting(
    tmp_path: Path, tmpfs: Mount, daemon_on: Callable[[Path], DaemonProcess], corpora: Path
) -> None:
    """`create_batch` failing must not kill the supervisor: the folder is retried."""
    port = free_port()
    config = _config(tmp_path, port)
    state = tmpfs(tmp_path / "state", "64m")
    process = daemon_on(config)
    filler = fill(state)
    photos = slow_photos(corpora, 2)
    drop(process.inbox, "later", photos)
    process.until(lambda: "new batches paused" in process.log_text(), what="creation refused")
    code, body = health(port)
    assert code == 503, body
    assert "cannot write state" in body, body
    filler.unlink()
    summary = summary_of(process, "later")
    assert summary["counts"]["done"] == 2
    assert "new batches resumed" in process.log_text()
    assert process.terminate() == 0


class _Photo(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def photo_server(corpora: Path) -> Iterator[str]:
    """One real JPEG served over HTTP on 127.0.0.1."""
    _Photo.body = (corpora / "exif-samples/jpg/gps/DSCN0010.jpg").read_bytes()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Photo)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/photo.jpg"
    server.shutdown()
    server.server_close()


def test_a_full_downloads_folder_pauses_the_batch_without_spending_an_attempt(
    tmp_path: Path,
    tmpfs: Mount,
    daemon_on: Callable[[Path], DaemonProcess],
    photo_server: str,
) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        listen=f"127.0.0.1:{port}",
        processing={"workers": 1, "max_retries": 0},
        inbox={"settle_seconds": 0.5},
        downloads={"allow_private_networks": True},
    )
    downloads = tmpfs(tmp_path / "state" / "downloads", "1m")
    filler = fill(downloads)
    process = daemon_on(config)
    drop(process.inbox, "remote", {"urls.txt": f"{photo_server}\n".encode()})
    process.until(lambda: "batch remote paused" in process.log_text(), what="the batch paused")
    code, body = health(port)
    assert code == 503, body
    assert "cannot write downloads" in body, body
    assert failures_counted(port, "downloads", "ENOSPC") > 0
    assert not (process.outbox / "remote" / "summary.json").exists()

    filler.unlink()
    summary = summary_of(process, "remote")
    assert summary["counts"]["done"] == 1, summary
    (record,) = process.results("remote")
    assert record["status"] == "done"
    assert record["attempts"] == 1  # the refused saves were not attempts (max_retries = 0)
    assert record["file"]["source_url"] == photo_server
    assert "batch remote resumed" in process.log_text()
    assert process.terminate() == 0


def test_a_full_archive_keeps_the_input_in_the_inbox_until_it_can_be_moved_whole(
    tmp_path: Path, tmpfs: Mount, daemon_on: Callable[[Path], DaemonProcess], corpora: Path
) -> None:
    port = free_port()
    config = _config(tmp_path, port)
    archive = tmpfs(tmp_path / "archive", "1m")  # another filesystem: the move is a copy
    filler = fill(archive)
    process = daemon_on(config)
    photos = {name: corpora / "exif-samples/jpg/gps" / name for name in ("DSCN0010.jpg",)}
    photos["DSCN0012.jpg"] = corpora / "exif-samples/jpg/gps/DSCN0012.jpg"
    drop(process.inbox, "kept", photos)
    summary = summary_of(process, "kept")  # the results are durable first
    process.until(lambda: "batch kept paused" in process.log_text(), what="the move paused")
    code, body = health(port)
    assert code == 503, body
    assert "cannot write archive" in body, body
    assert failures_counted(port, "archive", "ENOSPC") > 0
    assert sorted(p.name for p in (process.inbox / "kept").iterdir()) == sorted(photos)
    assert not (archive / "kept").exists()

    filler.unlink()
    process.until((archive / "kept").is_dir, what="the input archived")
    process.until(lambda: not (process.inbox / "kept").exists(), what="the inbox emptied")
    assert sorted(p.name for p in (archive / "kept").iterdir()) == sorted(photos)
    assert sorted(p.name for p in archive.iterdir()) == ["kept"]  # no partial copy left
    assert summary["counts"]["done"] == 2
    process.until(lambda: health(port)[0] == 200, what="healthy again")
    assert process.terminate() == 0
