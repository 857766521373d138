"""The real daemon POSTs signed summaries to a webhook and downloads `urls.txt` images."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import DaemonProcess, write_config

pytestmark = pytest.mark.e2e

PHOTO = "imagededup-testdata/mixed_images/ukbench00120.jpg"
SECRET = "s3cret-for-tests"


class Server:
    """A real HTTP server on 127.0.0.1: records POSTs, serves files, answers 404/500."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.posts: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                recorder.posts.put((dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def do_GET(self) -> None:
                if self.path == "/boom":
                    self.send_response(500)
                    self.end_headers()
                    return
                data = files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server(corpora: Path) -> Iterator[Server]:
    running = Server({"/photo.jpg": (corpora / PHOTO).read_bytes(), "/notes.txt": b"text"})
    running.thread.start()
    yield running
    running.httpd.shutdown()
    running.httpd.server_close()


def _terminal_post(server: Server, timeout: float = 30) -> tuple[dict[str, str], bytes]:
    """The first terminal event posted; batch.progress events (SPEC §8) may come before."""
    deadline = time.monotonic() + timeout
    while True:
        headers, body = server.posts.get(timeout=max(0.0, deadline - time.monotonic()))
        events = [v for k, v in headers.items() if k.lower() == "x-medianalysed-event"]
        if events != ["batch.progress"]:
            return headers, body


def test_summary_is_posted_signed_and_urls_are_downloaded(tmp_path, corpora, server):
    config = write_config(
        tmp_path,
        inbox={"settle_seconds": 0.5},
        webhook={"url": f"{server.base}/hook", "secret": SECRET, "backoff_seconds": [0.2]},
        downloads={"allow_private_networks": True, "timeout_seconds": 5},
    )
    process = DaemonProcess(tmp_path, config).start()
    try:
        staged = tmp_path / "staging" / "remote"
        staged.mkdir(parents=True)
        shutil.copy(corpora / PHOTO, staged / "local.jpg")
        (staged / "urls.txt").write_text(
            f"{server.base}/photo.jpg\n{server.base}/missing.jpg\n{server.base}/boom\n"
            "ftp://example.invalid/x.jpg\n",
            encoding="utf-8",
        )
        os.rename(staged, process.inbox / "remote")
        summary = process.summary("remote")
        headers, body = _terminal_post(server)
    finally:
        process.stop_quietly()

    records = {r["path"]: r for r in process.results("remote")}
    assert sorted(records) == [
        "local.jpg",
        "urls.txt#L0001",
        "urls.txt#L0002",
        "urls.txt#L0003",
        "urls.txt#L0004",
    ]
    downloaded = records["urls.txt#L0001"]
    assert downloaded["status"] == "done"
    assert downloaded["file"]["source_url"] == f"{server.base}/photo.jpg"
    assert downloaded["file"]["sha256"] == records["local.jpg"]["file"]["sha256"]
    assert any(d["tier"] == "exact" and d["path"] == "local.jpg" for d in downloaded["duplicates"])
    assert records["urls.txt#L0002"]["error"]["code"] == "BAD_REQUEST"
    assert records["urls.txt#L0003"]["error"]["code"] == "REMOTE_ERROR"
    assert records["urls.txt#L0003"]["attempts"] == 4  # first try + max_retries (3)
    assert records["urls.txt#L0004"]["error"]["code"] == "BAD_REQUEST"

    lower = {k.lower(): v for k, v in headers.items()}
    assert lower["x-medianalysed-event"] == "batch.partial"
    assert lower["x-medianalysed-delivery"]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert lower["x-medianalysed-signature"] == expected
    posted = json.loads(body)
    assert posted["batch_id"] == "remote"
    assert posted["counts"] == summary["counts"]


def test_downloads_from_private_addresses_are_refused_by_default(tmp_path, server):
    config = write_config(tmp_path, inbox={"settle_seconds": 0.5})
    process = DaemonProcess(tmp_path, config).start()
    try:
        staged = tmp_path / "staging" / "ssrf"
        staged.mkdir(parents=True)
        (staged / "urls.txt").write_text(f"{server.base}/photo.jpg\n", encoding="utf-8")
        os.rename(staged, process.inbox / "ssrf")
        process.summary("ssrf")
    finally:
        process.stop_quietly()
    (record,) = process.results("ssrf")
    assert record["error"]["code"] == "REFUSED"
    assert "allow_private_networks" in record["error"]["message"]
