"""Submissions: JSON URL lists and uploads become ready folders in the inbox, or nothing."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path

from medianalysed.lifecycle import BatchPhase
from medianalysed.models import BatchStatus, ImageStatus
from tests.e2e.harness import wait_for
from tests.unit.api.conftest import Served, ServeFactory, add_batch

TOKEN = "submit-token-abcdef"


def _serve(serve: ServeFactory, **limits: int) -> Served:
    return serve(tokens=(TOKEN,), submit=True, token=TOKEN, **limits)


def _visible(inbox: Path) -> list[str]:
    return sorted(entry.name for entry in inbox.iterdir())


def test_a_url_list_becomes_a_ready_folder_with_its_options(serve: ServeFactory) -> None:
    served = _serve(serve)
    body = {
        "name": "holiday/2026",
        "urls": ["https://img.example/a.jpg", "http://img.example/b.png"],
        "priority": "high",
        "tags": ["api", "été"],
        "callback_url": "https://hooks.example/done",
    }
    answer = served.client.post("/v1/batches", json=body)
    assert answer.status_code == 202
    batch_id = answer.json()["batch_id"]
    assert batch_id.startswith("holiday_2026-")
    assert answer.headers["location"] == f"/v1/batches/{batch_id}"
    folder = served.inbox.path / batch_id
    assert _visible(served.inbox.path) == [batch_id]
    assert (folder / ".ready").exists()
    assert (
        folder / "urls.txt"
    ).read_text() == "https://img.example/a.jpg\nhttp://img.example/b.png\n"
    options = tomllib.loads((folder / "batch.toml").read_text(encoding="utf-8"))
    assert options == {
        "priority": "high",
        "tags": ["api", "été"],
        "callback_url": "https://hooks.example/done",
    }


def test_bad_submissions_are_400s_naming_the_field_and_leave_nothing(serve: ServeFactory) -> None:
    served = _serve(serve)
    cases = [
        ({"urls": []}, "urls"),
        ({"urls": ["ftp://x/a.jpg"]}, "urls[0]"),
        ({"urls": ["https://x/a.jpg"], "priority": "urgent"}, "priority"),
        ({"urls": ["https://x/a.jpg"], "inbox": "elsewhere"}, "inbox"),
        ({"urls": ["https://x/a.jpg"], "colour": "red"}, "colour"),
        ({"urls": ["https://x/a.jpg"], "tags": ["t"] * 101}, "tags"),
    ]
    for body, named in cases:
        answer = served.client.post("/v1/batches", json=body)
        assert answer.status_code == 400, body
        assert named in answer.json()["error"]["message"], body
    assert _visible(served.inbox.path) == []


def test_an_upload_becomes_a_folder_with_its_files_and_groups(serve: ServeFactory) -> None:
    served = _serve(serve)
    files = [
        ("files", ("a.jpg", b"\xff\xd8first", "image/jpeg")),
        ("files", ("kitchen/b c.png", b"\x89PNGsecond", "image/png")),
    ]
    answer = served.client.post(
        "/v1/batches", data={"name": "upload", "tags": ["x", "y"]}, files=files
    )
    assert answer.status_code == 202, answer.text
    folder = served.inbox.path / answer.json()["batch_id"]
    assert (folder / "a.jpg").read_bytes() == b"\xff\xd8first"
    assert (folder / "kitchen" / "b c.png").read_bytes() == b"\x89PNGsecond"
    assert tomllib.loads((folder / "batch.toml").read_text())["tags"] == ["x", "y"]


def test_upload_names_follow_the_rules_of_dropped_files(serve: ServeFactory) -> None:
    served = _serve(serve)
    for name in ("../escape.jpg", "/abs.jpg", ".hidden.jpg", "a//b.jpg"):
        answer = served.client.post("/v1/batches", files=[("files", (name, b"x", "image/jpeg"))])
        assert answer.status_code == 400, name
    duplicate = [("files", ("a.jpg", b"1", "image/jpeg")), ("files", ("a.jpg", b"2", "image/jpeg"))]
    assert served.client.post("/v1/batches", files=duplicate).status_code == 400
    assert _visible(served.inbox.path) == []


def test_limits_on_size_and_file_count_are_413s(serve: ServeFactory) -> None:
    served = _serve(serve, max_upload_bytes=2000, max_files=2)
    big = served.client.post("/v1/batches", files=[("files", ("a.jpg", b"x" * 5000, "image/jpeg"))])
    assert big.status_code == 413
    assert "max_upload_bytes" in big.json()["error"]["message"]
    many = [("files", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(3)]
    counted = served.client.post("/v1/batches", files=many)
    assert counted.status_code == 413
    assert "max_files" in counted.json()["error"]["message"]
    assert _visible(served.inbox.path) == []


def test_an_interrupted_upload_leaves_nothing_in_the_inbox(serve: ServeFactory) -> None:
    served = _serve(serve)
    host, port = served.base.removeprefix("http://").split(":")
    boundary = "XyZ"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + b"x" * 10_000
    head = (
        f"POST /v1/batches HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        "Content-Length: 1000000\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head + part)
        wait_for(
            lambda: list(served.inbox.path.glob(".api-*/a.jpg")),
            timeout=10,
            what="the upload's file in its hidden folder",
        )
    wait_for(
        lambda: _visible(served.inbox.path) == [], timeout=10, what="the hidden folder removed"
    )


def test_cancel_and_retry_go_through_the_control_queue(serve: ServeFactory, tmp_path: Path):
    served = _serve(serve)
    add_batch(served.store, tmp_path, "running", [ImageStatus.PENDING])
    cancelled = served.client.post("/v1/batches/running/cancel")
    assert cancelled.status_code == 202
    assert cancelled.headers["location"] == "/v1/batches/running"
    assert list(served.store.control) == [{"verb": "cancel", "batch_id": "running"}]
    add_batch(
        served.store,
        tmp_path,
        "ended",
        [ImageStatus.DONE],
        phase=BatchPhase.DONE,
        status=BatchStatus.COMPLETED,
    )
    again = served.client.post("/v1/batches/ended/cancel")
    assert again.status_code == 400
    assert "already finished" in again.json()["error"]["message"]
    nothing = served.client.post("/v1/batches/ended/retry")
    assert nothing.status_code == 400
    assert served.client.post("/v1/batches/nope/retry").status_code == 404
    assert len(served.store.control) == 1


def test_cancel_needs_submission_on(serve: ServeFactory, tmp_path: Path) -> None:
    served = serve(tokens=(TOKEN,), token=TOKEN)
    add_batch(served.store, tmp_path, "running", [ImageStatus.PENDING])
    assert served.client.post("/v1/batches/running/cancel").status_code == 403
    assert len(served.store.control) == 0
