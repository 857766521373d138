"""The real daemon takes a hostile batch.toml and urls.txt: one record per line, and stays up."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.harness import DaemonProcess, wait_for, write_config
from tests.scripted_http import answer, broken_gzip, drip, scripted_server

pytestmark = pytest.mark.e2e

PHOTO = "imagededup-testdata/mixed_images/ukbench00120.jpg"
PASSWORDS = ("S3CRETPW1", "S3CRETPW2")
HOOK_TOKEN = "T0KENHOOKPATH"


def test_a_hostile_batch_finishes_with_one_record_per_line_and_the_daemon_stays_up(
    tmp_path: Path, corpora: Path
) -> None:
    photo = (corpora / PHOTO).read_bytes()
    with scripted_server({"/photo.jpg": answer(200, photo), "/gz.jpg": broken_gzip(photo)}) as web:
        web.routes["/drip.jpg"] = drip(web, 0.2)
        web.routes[f"/hook/{HOOK_TOKEN}"] = answer(200)
        base, port = web.base, web.port
        config = write_config(
            tmp_path,
            inbox={"settle_seconds": 0.5},
            processing={"max_retries": 1, "retry_backoff_seconds": [0.1]},
            webhook={"url": f"{base}/hook/{HOOK_TOKEN}?key={HOOK_TOKEN}", "secret": "x" * 16},
            downloads={"allow_private_networks": True, "timeout_seconds": 2},
        )
        process = DaemonProcess(tmp_path, config).start()
        try:
            staged = tmp_path / "staging" / "hostile"
            staged.mkdir(parents=True)
            shutil.copy(corpora / PHOTO, staged / "local.jpg")
            shutil.copy(corpora / PHOTO, staged / "urls.txt#L0001")  # a local file, that name
            (staged / "batch.toml").write_bytes(b"tags = " + b"[" * 2000 + b"]" * 2000 + b"\n")
            lines = [
                f"{base}/photo.jpg".encode(),
                b"http://[::1/x.jpg",
                b"http://a..b/x.jpg",
                b"http://h:99999/",
                f"{base}/gz.jpg".encode(),
                f"{base}/drip.jpg".encode(),
                f"http://carol:{PASSWORDS[0]}@127.0.0.1:{port}/photo.jpg".encode(),
                b"# a comment",
                b"\xff\xfe not utf-8",
                f"http://dave:{PASSWORDS[1]}@[::1/bad".encode(),
            ]
            (staged / "urls.txt").write_bytes(b"\n".join(lines) + b"\n")
            os.rename(staged, process.inbox / "hostile")
            summary = process.summary("hostile")

            # The daemon is still up and still takes batches.
            after = tmp_path / "staging" / "after"
            after.mkdir()
            shutil.copy(corpora / PHOTO, after / "again.jpg")
            os.rename(after, process.inbox / "after")
            assert process.summary("after")["status"] == "completed"
            assert process.process is not None
            assert process.process.poll() is None
            wait_for(lambda: web.recorded_paths_include(f"/hook/{HOOK_TOKEN}"), what="webhook")
        finally:
            process.stop_quietly()

    assert summary["status"] == "partial"
    assert "nested 2000 deep" in summary["note"]
    records = {r["path"]: r for r in process.results("hostile")}
    codes = {path: (r["error"] or {}).get("code") for path, r in records.items()}
    assert codes == {
        "local.jpg": None,
        "urls.txt#L0001": None,
        "urls.txt#L0001/": None,
        "urls.txt#L0002": "BAD_REQUEST",
        "urls.txt#L0003": "BAD_REQUEST",
        "urls.txt#L0004": "BAD_REQUEST",
        "urls.txt#L0005": "REMOTE_ERROR",
        "urls.txt#L0006": "TIMEOUT",
        "urls.txt#L0007": None,
        "urls.txt#L0009": "BAD_REQUEST",
        "urls.txt#L0010": "BAD_REQUEST",
    }
    assert records["urls.txt#L0001"]["file"]["source_url"] is None  # the local file
    assert records["urls.txt#L0001/"]["file"]["source_url"] == f"{base}/photo.jpg"
    assert records["urls.txt#L0007"]["status"] == "done"
    assert records["urls.txt#L0007"]["file"]["source_url"] == f"http://127.0.0.1:{port}/photo.jpg"
    assert summary["counts"]["total"] == len(records) == 11

    written = [
        process.outbox / "hostile" / name
        for name in ("results.jsonl", "results.csv", "summary.json", "report.html")
    ]
    shown = "".join(p.read_text(encoding="utf-8") for p in written if p.exists())
    shown += process.log_text()
    for secret in (*PASSWORDS, "carol:", "dave:"):
        assert secret not in shown, secret
    assert HOOK_TOKEN not in process.log_text()
    assert "crashed" not in process.log_text()
    assert not (tmp_path / "state" / "downloads" / "hostile").exists()
