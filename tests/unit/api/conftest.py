"""A real metrics listener on 127.0.0.1 serving the API from a real state store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from medianalysed.api.auth import Authenticator
from medianalysed.api.events import EventHub
from medianalysed.api.http import ApiEndpoint
from medianalysed.api.routes import ApiLimits, ApiRouter
from medianalysed.api.submit import Submitter
from medianalysed.config import InboxConfig
from medianalysed.lifecycle import BatchPhase
from medianalysed.metrics import Metrics, MetricsServer
from medianalysed.models import BatchStatus, ImageStatus
from medianalysed.state import BatchRecord, ImageRecord, StateStore
from tests.seeding import seed_batch


@dataclass
class Served:
    store: StateStore
    hub: EventHub
    inbox: InboxConfig
    client: httpx.Client
    base: str


def add_batch(
    store: StateStore,
    tmp_path: Path,
    batch_id: str,
    statuses: list[ImageStatus],
    *,
    created_at: str = "2026-12-01T00:00:00Z",
    phase: BatchPhase = BatchPhase.RUNNING,
    status: BatchStatus = BatchStatus.PROCESSING,
) -> BatchRecord:
    """A stored batch whose image i has path `img-<i>.jpg` and status `statuses[i]`."""
    records = [
        ImageRecord(
            path=f"img-{i:06d}.jpg",
            status=image_status,
            attempts=1 if image_status != ImageStatus.PENDING else 0,
            error=(
                {"code": "CORRUPT", "message": "truncated", "retryable": False}
                if image_status == ImageStatus.FAILED
                else None
            ),
        )
        for i, image_status in enumerate(statuses)
    ]
    return seed_batch(
        store, tmp_path, batch_id, records, status=status, phase=phase, created_at=created_at
    )


ServeFactory = Callable[..., Served]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeFactory]:
    """Start a listener; `serve(tokens=[...], submit=True, per_minute=0, ...)`."""
    started: list[tuple[MetricsServer, EventHub, StateStore, httpx.Client]] = []

    def start(
        *,
        tokens: tuple[str, ...] = (),
        submit: bool = False,
        per_minute: int = 0,
        max_upload_bytes: int = 10_000_000,
        max_files: int = 100,
        token: str | None = None,
    ) -> Served:
        store = StateStore(tmp_path / "state")
        inbox = InboxConfig(
            path=tmp_path / "inbox", outbox=tmp_path / "outbox", archive=tmp_path / "archive"
        )
        for folder in (inbox.path, inbox.outbox):
            folder.mkdir(parents=True, exist_ok=True)
        hub = EventHub(heartbeat_s=0.2)
        hub.start()
        router = ApiRouter(
            store,
            Authenticator(tokens, per_minute=per_minute),
            submitter=Submitter([inbox], store),
            limits=ApiLimits(submit=submit, max_upload_bytes=max_upload_bytes, max_files=max_files),
        )
        server = MetricsServer(
            "127.0.0.1:0",
            Metrics.create("test", ["default"]).registry,
            health=list,
            ready=lambda: True,
            api=ApiEndpoint(router, hub),
        )
        server.start()
        host, port = server.bound_address
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=f"http://{host}:{port}", headers=headers, timeout=10)
        started.append((server, hub, store, client))
        return Served(store, hub, inbox, client, f"http://{host}:{port}")

    yield start
    for server, hub, store, client in started:
        client.close()
        server.stop()
        hub.stop()
        store.close()
