"""The read API over a real socket: batches, one batch, images (paginated), results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from medianalysed.lifecycle import BatchPhase
from medianalysed.models import BatchStatus, ImageStatus
from medianalysed.progress import BatchProgress
from tests.unit.api.conftest import ServeFactory, add_batch

D, F, P = ImageStatus.DONE, ImageStatus.FAILED, ImageStatus.PENDING


def _all_pages(client: httpx.Client, url: str, key: str, **params: object) -> list[Any]:
    """Every item of a paginated listing, following `next_cursor` to the end."""
    items: list[Any] = []
    cursor = None
    while True:
        page = client.get(url, params=params | ({"cursor": cursor} if cursor else {})).json()
        items += page[key]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_batches_are_listed_newest_first_in_pages_that_follow_the_cursor(serve, tmp_path):
    served = serve()
    for day in range(1, 6):
        add_batch(served.store, tmp_path, f"b{day}", [D], created_at=f"2026-12-0{day}T00:00:00Z")
    seen = [
        batch["batch_id"] for batch in _all_pages(served.client, "/v1/batches", "batches", limit=2)
    ]
    assert seen == ["b5", "b4", "b3", "b2", "b1"]


def test_batches_filter_by_status(serve: ServeFactory, tmp_path: Path) -> None:
    served = serve()
    add_batch(served.store, tmp_path, "run", [P])
    add_batch(served.store, tmp_path, "ok", [D], status=BatchStatus.COMPLETED)
    page = served.client.get("/v1/batches", params={"status": "completed"}).json()
    assert [batch["batch_id"] for batch in page["batches"]] == ["ok"]
    wrong = served.client.get("/v1/batches", params={"status": "nonsense"})
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "BAD_REQUEST"
    assert "status='nonsense'" in wrong.json()["error"]["message"]


def test_one_batch_shows_its_live_progress_from_state(serve: ServeFactory, tmp_path: Path) -> None:
    served = serve()
    record = add_batch(served.store, tmp_path, "live one", [D, F, P])
    counts = {"total": 3, "pending": 1, "processing": 0, "done": 1, "failed": 1, "skipped": 0}
    served.store.put_progress("live one", BatchProgress.running(record, counts).to_json())
    answer = served.client.get("/v1/batches/live%20one")
    assert answer.status_code == 200
    document = answer.json()
    assert document["progress"] == "2/3"
    assert document["counts"]["failed"] == 1
    assert document["links"]["images"] == "/v1/batches/live%20one/images"
    missing = served.client.get("/v1/batches/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"


def test_images_page_through_every_image_once_and_filter_by_status(serve, tmp_path):
    served = serve()
    statuses = [F if i % 7 == 0 else D for i in range(1100)] + [P] * 10
    add_batch(served.store, tmp_path, "big", statuses)
    url = "/v1/batches/big/images"
    paths = [image["path"] for image in _all_pages(served.client, url, "images", limit=400)]
    assert paths == [f"img-{i:06d}.jpg" for i in range(1110)]
    failed = _all_pages(served.client, url, "images", status="failed", limit=50)
    assert len(failed) == len([s for s in statuses if s == F])
    assert failed[0] == {
        "path": "img-000000.jpg",
        "status": "failed",
        "attempts": 1,
        "error": {"code": "CORRUPT", "message": "truncated", "retryable": False},
    }


def test_a_bad_cursor_or_limit_is_a_400_that_says_what_to_do(serve, tmp_path):
    served = serve()
    add_batch(served.store, tmp_path, "b", [D])
    for params in ({"cursor": "!!!"}, {"limit": "0"}, {"limit": "5000"}):
        answer = served.client.get("/v1/batches/b/images", params=params)
        assert answer.status_code == 400, params
        assert answer.json()["error"]["message"]


def test_results_are_served_once_the_batch_is_terminal(serve, tmp_path):
    served = serve()
    add_batch(served.store, tmp_path, "running", [P])
    assert served.client.get("/v1/batches/running/results").status_code == 404
    add_batch(
        served.store, tmp_path, "ended", [D], phase=BatchPhase.DONE, status=BatchStatus.COMPLETED
    )
    lines = b'{"path":"a.jpg","status":"done"}\n' * 3
    (tmp_path / "outbox" / "ended" / "results.jsonl").write_bytes(lines)
    answer = served.client.get("/v1/batches/ended/results")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-ndjson"
    assert answer.content == lines


def test_unknown_routes_are_json_404s_and_the_metrics_still_answer(serve):
    served = serve()
    answer = served.client.get("/v1/nothing")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "NOT_FOUND"
    assert served.client.get("/metrics").status_code == 200
