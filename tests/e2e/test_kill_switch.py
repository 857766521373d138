"""A decode that hangs or a worker that dies never harms the daemon (issue: kill switch)."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.e2e.harness import DaemonProcess, wait_for, write_config
from tests.pngs import write_flat_png

pytestmark = pytest.mark.e2e

GOOD = "imagededup-testdata/mixed_images/ukbench00120.jpg"


def _huge_png(path: Path, width: int = 30000) -> None:
    # Hundreds of megapixels of zeros: a small file whose full decode takes most of a second.
    write_flat_png(path, width, 10000)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _descendants(pid: int) -> list[int]:
    result = []
    for child in _children(pid):
        result.append(child)
        result.extend(_descendants(child))
    return result


@pytest.fixture
def started(tmp_path):
    processes: list[DaemonProcess] = []

    def start(**processing: object) -> DaemonProcess:
        config = write_config(
            tmp_path,
            processing={"workers": 1, "max_pixels": 10**9, **processing},
            inbox={"settle_seconds": 0.5},
        )
        process = DaemonProcess(tmp_path, config).start()
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop_quietly()


def test_hung_decode_is_stopped_with_timeout_and_the_batch_goes_on(started, tmp_path, corpora):
    process = started(image_timeout_seconds=0.25, max_retries=1, retry_backoff_seconds=[0.1])
    staged = tmp_path / "staging" / "slow"
    staged.mkdir(parents=True)
    _huge_png(staged / "huge.png", width=60000)
    shutil.copy(corpora / GOOD, staged / "good.jpg")
    os.rename(staged, process.inbox / "slow")
    summary = process.summary("slow")
    records = {r["path"]: r for r in process.results("slow")}
    assert records["huge.png"]["status"] == "failed"
    assert records["huge.png"]["error"]["code"] == "TIMEOUT"
    assert records["huge.png"]["error"]["retryable"] is True
    assert records["huge.png"]["attempts"] == 2  # the first try and one retry
    assert records["good.jpg"]["status"] == "done"
    assert summary["status"] == "partial"
    assert process.terminate() == 0


def test_worker_killed_mid_decode_fails_one_image_and_is_replaced(started, tmp_path, corpora):
    process = started(image_timeout_seconds=120)
    staged = tmp_path / "staging" / "killed"
    staged.mkdir(parents=True)
    for index in range(3):
        _huge_png(staged / f"a-huge-{index}.png", width=30000 - 1000 * index)
    shutil.copy(corpora / GOOD, staged / "b-good.jpg")
    os.rename(staged, process.inbox / "killed")
    assert process.process is not None
    daemon_pid = process.process.pid
    summary_file = process.outbox / "killed" / "summary.json"

    def kill_a_busy_worker() -> bool:
        # The fork server's children are the pool's workers; a busy one is running on a CPU.
        workers = set(_descendants(daemon_pid)) - set(_children(daemon_pid))
        busy = [pid for pid in workers if _state(pid) == "R" and _cpu_ticks(pid) > 10]
        for pid in busy:
            os.kill(pid, signal.SIGKILL)
        return bool(busy) or summary_file.exists()

    wait_for(kill_a_busy_worker, what="a worker decoding a huge image")
    process.summary("killed")
    records = {r["path"]: r for r in process.results("killed")}
    died = [r for r in records.values() if r["error"] and "died" in r["error"]["message"]]
    assert died, records
    assert all(r["error"]["code"] == "INTERNAL" for r in died)
    assert records["b-good.jpg"]["status"] == "done"
    assert process.terminate() == 0


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])
