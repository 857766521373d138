"""The HTTP API against the real daemon, with httpx as the client.

A URL list and an upload are submitted, their `Location` followed to the terminal status,
their images and results read, and the SSE stream followed to both terminal events.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.e2e.harness import DaemonProcess, free_port, wait_for, write_config
from tests.scripted_http import answer, scripted_server

TOKEN = "e2e-api-token-0123456789abcdef"
TERMINAL = {"batch.completed", "batch.partial", "batch.failed", "batch.cancelled"}


def _png(colour: tuple[int, int, int], size: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, format="PNG")
    return out.getvalue()


def _follow_events(base: str, until: set[str], seen: list[dict[str, Any]]) -> None:
    """Read /v1/events until a terminal event arrived for each batch id in `until`."""
    # Last-Event-ID 0 replays the run's events so far: a batch that ended first is not missed.
    headers = {"Authorization": f"Bearer {TOKEN}", "Last-Event-ID": "0"}
    timeout = httpx.Timeout(10, read=60)
    with httpx.stream("GET", f"{base}/v1/events", headers=headers, timeout=timeout) as stream:
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                seen.append({"event": event, **data})
                if event in TERMINAL:
                    until.discard(data["batch_id"])
            if not until:
                return


def _events_thread(base: str, ids: set[str], seen: list[dict[str, Any]]) -> threading.Thread:
    thread = threading.Thread(target=_follow_events, args=(base, ids, seen), daemon=True)
    thread.start()
    return thread


def _terminal(client: httpx.Client, location: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        document: dict[str, Any] = client.get(location).json()
        return document if document.get("results_ready") else None

    return wait_for(ended, what=f"{location} terminal")


def _pages(client: httpx.Client, url: str) -> Iterator[dict[str, Any]]:
    cursor = None
    while True:
        page = client.get(url, params={"limit": 1} | ({"cursor": cursor} if cursor else {}))
        yield from page.json()["images"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return


def test_submit_follow_read_and_stream_to_the_terminal_event(tmp_path: Path) -> None:
    port = free_port()
    routes = {"/red.png": answer(200, _png((255, 0, 0)), {"Content-Type": "image/png"})}
    with scripted_server(routes) as remote:
        config = write_config(
            tmp_path,
            listen=f"127.0.0.1:{port}",
            api={"submit": True, "tokens": [TOKEN]},
            downloads={"allow_private_networks": True, "timeout_seconds": 5},
        )
        process = DaemonProcess(tmp_path, config).start()
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        try:
            assert httpx.get(f"{base}/v1/batches", timeout=10).status_code == 401
            remaining: set[str] = set()
            seen: list[dict[str, Any]] = []
            urls = client.post(
                "/v1/batches",
                json={"name": "remote", "urls": [f"{remote.base}/red.png", f"{remote.base}/no"]},
            )
            assert urls.status_code == 202, urls.text
            files = [
                ("files", ("blue.png", _png((0, 0, 255)), "image/png")),
                ("files", ("room/green.png", _png((0, 255, 0)), "image/png")),
            ]
            upload = client.post("/v1/batches", data={"name": "upload"}, files=files)
            assert upload.status_code == 202, upload.text
            ids = {urls.json()["batch_id"], upload.json()["batch_id"]}
            remaining |= ids
            events = _events_thread(base, remaining, seen)

            remote_batch = _terminal(client, urls.headers["location"])
            uploaded = _terminal(client, upload.headers["location"])
            assert remote_batch["status"] == "partial"
            assert uploaded["status"] == "completed"
            assert uploaded["progress"] == "2/2"

            images = {
                image["path"]: image for image in _pages(client, remote_batch["links"]["images"])
            }
            assert len(images) == 2
            failed = client.get(remote_batch["links"]["images"], params={"status": "failed"})
            [gone] = failed.json()["images"]
            assert gone["error"]["code"] == "BAD_REQUEST"
            assert gone["attempts"] >= 1

            results = client.get(uploaded["links"]["results"])
            assert results.status_code == 200
            paths = sorted(json.loads(line)["path"] for line in results.text.splitlines())
            assert paths == ["blue.png", "room/green.png"]

            listed = client.get("/v1/batches").json()["batches"]
            assert ids <= {batch["batch_id"] for batch in listed}
            events.join(timeout=60)
            assert not events.is_alive(), f"terminal events missing for {remaining}"
        finally:
            client.close()
            process.stop_quietly()
    terminal = {event["batch_id"]: event["event"] for event in seen if event["event"] in TERMINAL}
    assert terminal == {
        urls.json()["batch_id"]: "batch.partial",
        upload.json()["batch_id"]: "batch.completed",
    }
    assert TOKEN not in (tmp_path / "daemon.log").read_text(encoding="utf-8", errors="replace")
