"""`/v1/events`: every published progress as an SSE event, to the terminal one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx

from medianalysed import progress
from medianalysed.lifecycle import BatchPhase
from medianalysed.models import BatchStatus, ImageStatus
from medianalysed.progress import BatchProgress
from tests.e2e.harness import wait_for
from tests.unit.api.conftest import ServeFactory, add_batch


def _events(lines: Iterator[str]) -> Iterator[tuple[str, str, dict[str, object]]]:
    """(id, event, data) of each event; comments (heartbeats) skipped."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                yield (
                    fields.get("id", ""),
                    fields.get("event", "message"),
                    json.loads(fields["data"]),
                )
            fields = {}
        elif not line.startswith(":"):
            name, _sep, value = line.partition(": ")
            fields[name] = value


def test_progress_and_the_terminal_event_reach_a_subscriber(serve: ServeFactory, tmp_path: Path):
    served = serve()
    record = add_batch(served.store, tmp_path, "b", [ImageStatus.DONE] * 2)
    progress.add_observer(served.hub.observe)
    try:
        with served.client.stream("GET", "/v1/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            wait_for(lambda: served.hub.subscriber_count == 1, timeout=10, what="subscribed")
            counts = {"total": 2, "done": 1}
            progress.publish(served.store, record, BatchProgress.running(record, counts))
            ended = record.evolve(
                status=BatchStatus.COMPLETED, final_counts={"total": 2, "done": 2}
            )
            progress.publish(served.store, ended, BatchProgress.ended(ended, phase=BatchPhase.DONE))
            seen = []
            for event_id, event, data in _events(stream.iter_lines()):
                seen.append((event_id, event, data["progress"]))
                if event != "batch.progress":
                    break
        assert seen == [("1", "batch.progress", "1/2"), ("2", "batch.completed", "2/2")]
    finally:
        progress.remove_observer(served.hub.observe)
    wait_for(lambda: served.hub.subscriber_count == 0, timeout=10, what="the stream freed")


def test_last_event_id_replays_what_was_missed(serve: ServeFactory) -> None:
    served = serve()
    for n in range(1, 4):
        served.hub.publish("batch.progress", {"n": n})
    headers = {"Last-Event-ID": "1"}
    with served.client.stream("GET", "/v1/events", headers=headers) as stream:
        replayed = []
        for event_id, _event, data in _events(stream.iter_lines()):
            replayed.append((event_id, data["n"]))
            if len(replayed) == 2:
                break
    assert replayed == [("2", 2), ("3", 3)]


def test_a_full_hub_answers_503(serve: ServeFactory) -> None:
    served = serve()
    served.hub._max_subscribers = 1
    with served.client.stream("GET", "/v1/events"):
        wait_for(lambda: served.hub.subscriber_count == 1, timeout=10, what="subscribed")
        second = httpx.get(served.base + "/v1/events", timeout=5)
        assert second.status_code == 503
        assert second.json()["error"]["code"] == "UNAVAILABLE"
