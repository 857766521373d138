"""Latency of every `/v1` read endpoint with 100,000 images in one batch's state.

    nice -n 19 .venv/bin/python benchmarks/bench_api.py --images 100000 --requests 200

Builds a real state store (one batch of N images, 1 % failed, listed in 1000-path chunks like
the enumerator does, plus 200 small batches), writes an N-line results.jsonl, then serves the
API on 127.0.0.1 with the daemon's own listener (`MetricsServer` + `ApiEndpoint`) and asks
each endpoint `--requests` times with one httpx client (keep-alive off: the server is
HTTP/1.0). Prints p50/p95/max per endpoint in milliseconds, and the same as JSON with
`--json`. `/v1/events` is timed from `publish` to the event read by a subscriber.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from medianalysed.api.auth import Authenticator
from medianalysed.api.events import EventHub
from medianalysed.api.http import ApiEndpoint
from medianalysed.api.routes import ApiLimits, ApiRouter
from medianalysed.lifecycle import BatchPhase
from medianalysed.metrics import Metrics, MetricsServer
from medianalysed.models import BatchStatus, ImageStatus
from medianalysed.progress import BatchProgress
from medianalysed.state import BatchRecord, ImageRecord, StateStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.seeding import seed_batch

BIG = "big"
SMALL_BATCHES = 200


def build_state(root: Path, images: int) -> StateStore:
    """A store holding one batch of `images` images and SMALL_BATCHES small ones."""
    store = StateStore(root / "state")
    paths = [f"album-{i // 1000:03d}/IMG_{i:06d}.jpg" for i in range(images)]
    record = seed_batch(
        store,
        root,
        BIG,
        (_image(i, path) for i, path in enumerate(paths)),
        status=BatchStatus.PARTIAL,
        phase=BatchPhase.DONE,
        created_at="2026-12-02T00:00:00Z",
    )
    outbox = Path(record.outbox_dir)
    counts = {"total": images, "done": images - images // 100, "failed": images // 100}
    store.put_progress(BIG, BatchProgress.running(record, counts).to_json())
    with (outbox / "results.jsonl").open("w", encoding="utf-8") as results:
        for path in paths:
            results.write(json.dumps({"path": path, "status": "done", "size": 123456}) + "\n")
    for n in range(SMALL_BATCHES):
        store.put_batch(
            BatchRecord(
                batch_id=f"small-{n:03d}",
                inbox="default",
                source="/nowhere",
                outbox_dir=str(root / "outbox"),
                created_at=f"2026-12-01T00:{n // 60:02d}:{n % 60:02d}Z",
            )
        )
    return store


def _image(index: int, path: str) -> ImageRecord:
    if index % 100 == 99:
        error = {"code": "CORRUPT", "message": "truncated", "retryable": False}
        return ImageRecord(path=path, status=ImageStatus.FAILED, attempts=1, error=error)
    return ImageRecord(path=path, status=ImageStatus.DONE, attempts=1, duration_ms=42.0)


def figures_of(samples: list[float]) -> dict[str, float]:
    """p50/p95/max of samples in ms."""
    samples = sorted(samples)
    return {
        "p50": round(statistics.median(samples), 2),
        "p95": round(samples[int(0.95 * (len(samples) - 1))], 2),
        "max": round(samples[-1], 2),
    }


def timed(call: Callable[[], object], requests: int) -> dict[str, float]:
    """p50/p95/max of `requests` calls, in ms."""
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return figures_of(samples)


def _get(client: httpx.Client, url: str, **params: object) -> Callable[[], object]:
    def call() -> object:
        answer = client.get(url, params=params)
        answer.raise_for_status()
        return answer.content

    return call


def event_latency(base: str, hub: EventHub, requests: int) -> dict[str, float]:
    """publish → the subscriber has read the event, in ms."""
    samples: list[float] = []
    arrived = threading.Event()
    with httpx.stream("GET", f"{base}/v1/events", timeout=30) as stream:
        lines = stream.iter_lines()

        def reader() -> None:
            try:
                for line in lines:
                    if line.startswith("data: "):
                        arrived.set()
            except httpx.HTTPError:
                return  # the stream closed at the end of the measurement

        threading.Thread(target=reader, daemon=True).start()
        while hub.subscriber_count == 0:
            time.sleep(0.01)
        for n in range(requests):
            arrived.clear()
            started = time.perf_counter()
            hub.publish("batch.progress", {"n": n})
            arrived.wait(10)
            samples.append((time.perf_counter() - started) * 1000)
    return figures_of(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000, help="images in the big batch")
    parser.add_argument("--requests", type=int, default=200, help="requests per endpoint")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        started = time.perf_counter()
        store = build_state(Path(tmp), args.images)
        built_s = time.perf_counter() - started
        hub = EventHub()
        hub.start()
        router = ApiRouter(store, Authenticator(()), limits=ApiLimits())
        server = MetricsServer(
            "127.0.0.1:0",
            Metrics.create("bench", ["default"]).registry,
            health=list,
            ready=lambda: True,
            api=ApiEndpoint(router, hub),
        )
        server.start()
        host, port = server.bound_address
        base = f"http://{host}:{port}"
        middle = httpx.get(f"{base}/v1/batches/{BIG}/images", params={"limit": 100}).json()
        cursor = middle["next_cursor"]
        figures: dict[str, dict[str, float]] = {}
        with httpx.Client(base_url=base, timeout=30) as client:
            endpoints = {
                "GET /v1/batches (limit 100 of 201)": _get(client, "/v1/batches", limit=100),
                "GET /v1/batches/{id}": _get(client, f"/v1/batches/{BIG}"),
                "GET …/images (first 100)": _get(client, f"/v1/batches/{BIG}/images", limit=100),
                "GET …/images (page 2, cursor)": _get(
                    client, f"/v1/batches/{BIG}/images", limit=100, cursor=cursor
                ),
                "GET …/images?status=failed (100)": _get(
                    client, f"/v1/batches/{BIG}/images", status="failed", limit=100
                ),
                "GET …/images (limit 1000)": _get(client, f"/v1/batches/{BIG}/images", limit=1000),
                "GET …/results (whole file)": _get(client, f"/v1/batches/{BIG}/results"),
            }
            for name, call in endpoints.items():
                requests = max(10, args.requests // 10) if "results" in name else args.requests
                figures[name] = timed(call, requests)
        figures["GET /v1/events (publish → read)"] = event_latency(base, hub, args.requests)
        server.stop()
        hub.stop()
        store.close()
    if args.json:
        print(json.dumps({"images": args.images, "build_s": round(built_s, 1), **figures}))
        return
    print(f"{args.images} images in state (built in {built_s:.1f} s); ms per request")
    print(f"{'endpoint':42} {'p50':>8} {'p95':>8} {'max':>8}")
    for name, figure in figures.items():
        print(f"{name:42} {figure['p50']:8.2f} {figure['p95']:8.2f} {figure['max']:8.2f}")


if __name__ == "__main__":
    main()
