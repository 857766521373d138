"""Webhook delivery against a real HTTP server on 127.0.0.1, with a real diskcache queue."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from medianalysed import __version__
from medianalysed.config import WebhookConfig
from medianalysed.lifecycle import BatchPhase
from medianalysed.logs import setup_logging
from medianalysed.models import BatchStatus
from medianalysed.progress import BatchProgress
from medianalysed.state import BatchRecord
from medianalysed.webhooks import (
    EVENTS,
    Delivery,
    WebhookDispatcher,
    event_for_status,
    make_delivery_id,
    read_dead_letters,
    sign,
)
from medianalysed.webhooks.progress import ProgressWebhooks
from tests.e2e.harness import free_port, wait_for

SECRET = "s3cret-webhook-key"
PAYLOAD = {"batch_id": "house-1", "status": "completed", "progress": "3/3", "note": "café"}


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server that records every request and answers scripted statuses."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    requests: list[Recorded] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)  # next answers; 200 when empty
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str = "/hook") -> str:
        return self.base + path

    def recorded(self) -> list[Recorded]:
        with self.lock:
            return list(self.requests)


def start_receiver() -> Receiver:
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            receiver = holder[0]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                receiver.requests.append(Recorded(self.path, dict(self.headers.items()), body))
                status = receiver.statuses.popleft() if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, args=(0.02,), name="test-receiver", daemon=True
    )
    receiver = Receiver(server, thread)
    holder.append(receiver)
    thread.start()
    return receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = start_receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
    receiver.thread.join(5)


class FakeClock:
    def __init__(self, now: float = 1_760_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., WebhookDispatcher]]:
    """Build dispatchers on tmp_path/"webhooks" that record their outcomes; close them all."""
    made: list[WebhookDispatcher] = []

    def build(
        url: str = "",
        *,
        secret: str = SECRET,
        max_attempts: int = 3,
        backoff: tuple[float, ...] = (1, 5),
        allow_private_networks: bool = False,
        outcomes: list[str] | None = None,
        use_clock: bool = True,
    ) -> WebhookDispatcher:
        config = WebhookConfig(
            url=url,
            secret=secret,
            timeout_seconds=5,
            max_attempts=max_attempts,
            backoff_seconds=backoff,
        )
        sink = outcomes if outcomes is not None else []
        dispatcher = WebhookDispatcher(
            config,
            tmp_path / "webhooks",
            allow_private_networks=allow_private_networks,
            on_outcome=sink.append,
            **({"clock": clock} if use_clock else {}),
        )
        made.append(dispatcher)
        return dispatcher

    yield build
    for dispatcher in made:
        dispatcher.close()


# --- signing and ids ------------------------------------------------------------------------


def test_sign_matches_rfc4231_test_case_2() -> None:
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert sign(b"what do ya want for nothing?", "Jefe") == f"sha256={expected}"


def test_delivery_ids_are_stable_and_distinct_per_batch_event_and_url() -> None:
    first = make_delivery_id("house-1", "batch.completed", "https://a.example/hook")
    assert first == make_delivery_id("house-1", "batch.completed", "https://a.example/hook")
    others = {
        make_delivery_id("house-2", "batch.completed", "https://a.example/hook"),
        make_delivery_id("house-1", "batch.partial", "https://a.example/hook"),
        make_delivery_id("house-1", "batch.completed", "https://b.example/hook"),
    }
    assert first not in others
    assert len(others) == 3


def test_event_for_status() -> None:
    assert event_for_status("partial") == "batch.partial"
    assert {event_for_status(s) for s in ("completed", "failed", "cancelled")} <= set(EVENTS)
    with pytest.raises(ValueError, match="processing"):
        event_for_status("processing")


def test_delivery_round_trips_through_json() -> None:
    delivery = Delivery(
        delivery_id="id",
        url="https://a.example/x",
        event="batch.failed",
        body='{"a":"é"}',
        attempts=2,
        next_attempt_at=12.5,
        last_error="answered 503",
        created_at="2025-10-08T15:30:00Z",
        batch_id="b",
        trusted=True,
    )
    assert Delivery.from_json(delivery.to_json()) == delivery
    assert json.loads(delivery.to_json())["schema_version"] == 1


# --- delivering -----------------------------------------------------------------------------


def test_delivered_with_headers_and_a_signature_over_the_exact_body(
    receiver: Receiver, make: Callable[..., WebhookDispatcher]
) -> None:
    outcomes: list[str] = []
    dispatcher = make(receiver.url(), outcomes=outcomes)

    ids = dispatcher.enqueue(batch_id="house-1", event="batch.completed", payload=PAYLOAD)

    assert ids == [make_delivery_id("house-1", "batch.completed", receiver.url())]
    assert dispatcher.deliver_due() == 1
    (request,) = receiver.recorded()
    assert request.path == "/hook"
    assert json.loads(request.body) == PAYLOAD
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"medianalysed/{__version__}"
    assert request.headers["X-Medianalysed-Event"] == "batch.completed"
    assert request.headers["X-Medianalysed-Delivery"] == ids[0]
    digest = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Medianalysed-Signature"] == f"sha256={digest}"
    assert outcomes == ["delivered"]
    assert dispatcher.pending() == []
    assert dispatcher.dead_letters() == []


def test_no_signature_header_without_a_secret(
    receiver: Receiver, make: Callable[..., WebhookDispatcher]
) -> None:
    dispatcher = make(receiver.url(), secret="")
    dispatcher.enqueue(batch_id="b", event="batch.failed", payload=PAYLOAD)

    assert dispatcher.deliver_due() == 1

    (request,) = receiver.recorded()
    assert "X-Medianalysed-Signature" not in request.headers
    assert request.headers["X-Medianalysed-Event"] == "batch.failed"


def test_500_is_retried_after_the_backoff_with_the_same_delivery_id(
    receiver: Receiver, make: Callable[..., WebhookDispatcher], clock: FakeClock
) -> None:
    outcomes: list[str] = []
    dispatcher = make(receiver.url(), backoff=(7, 30), outcomes=outcomes)
    receiver.statuses.extend([500])
    (delivery_id,) = dispatcher.enqueue(batch_id="b", event="batch.partial", payload=PAYLOAD)

    assert dispatcher.deliver_due() == 1
    (waiting,) = dispatcher.pending()
    assert waiting.attempts == 1
    assert waiting.next_attempt_at == clock.now + 7
    assert waiting.last_error is not None
    assert "500" in waiting.last_error
    assert dispatcher.deliver_due() == 0  # not due yet

    clock.now += 7
    assert dispatcher.deliver_due() == 1

    assert outcomes == ["retry", "delivered"]
    assert [r.headers["X-Medianalysed-Delivery"] for r in receiver.recorded()] == [delivery_id] * 2
    assert receiver.recorded()[0].body == receiver.recorded()[1].body
    assert dispatcher.pending() == []


@pytest.mark.parametrize("status", [408, 429, 503])
def test_transient_statuses_are_retried(
    status: int, receiver: Receiver, make: Callable[..., WebhookDispatcher]
) -> None:
    outcomes: list[str] = []
    dispatcher = make(receiver.url(), outcomes=outcomes)
    receiver.statuses.append(status)
    dispatcher.enqueue(batch_id="b", event="batch.completed", payload=PAYLOAD)

    dispatcher.deliver_due()

    assert outcomes == ["retry"]
    assert len(dispatcher.pending()) == 1


@pytest.mark.parametrize(("status", "reason"), [(404, "answered 404"), (301, "redirects")])
def test_a_permanent_status_is_dead_lettered_at_once(
    status: int, reason: str, receiver: Receiver, make: Callable[..., WebhookDispatcher]
) -> None:
    outcomes: list[str] = []
    dispatcher = make(receiver.url(), max_attempts=6, outcomes=outcomes)
    receiver.statuses.append(status)
    (delivery_id,) = dispatcher.enqueue(batch_id="b", event="batch.completed", payload=PAYLOAD)

    assert dispatcher.deliver_due() == 1

    assert outcomes == ["dead"]
    assert dispatcher.pending() == []
    (letter,) = dispatcher.dead_letters()
    assert letter["delivery_id"] == delivery_id
    assert letter["attempts"] == 1
    assert reason in letter["last_error"]
    assert len(receiver.recorded()) == 1


def test_unreachable_target_is_retried_then_dead_lettered(
    tmp_path: Path, make: Callable[..., WebhookDispatcher], clock: FakeClock
) -> None:
    outcomes: list[str] = []
    url = f"http://alice:hunter2@127.0.0.1:{free_port()}/hook"
    dispatcher = make(url, max_attempts=4, backoff=(1, 2), outcomes=outcomes)
    (delivery_id,) = dispatcher.enqueue(batch_id="b", event="batch.failed", payload=PAYLOAD)

    waits = []
    for _ in range(3):
        before = clock.now
        assert dispatcher.deliver_due() == 1
        (waiting,) = dispatcher.pending()
        waits.append(waiting.next_attempt_at - before)
        clock.now = waiting.next_attempt_at
    assert waits == [1, 2, 2]  # backoff[min(n - 1, len - 1)]
    assert dispatcher.deliver_due() == 1

    assert outcomes == ["retry", "retry", "retry", "dead"]
    assert dispatcher.pending() == []
    (letter,) = dispatcher.dead_letters()
    assert letter["delivery_id"] == delivery_id
    assert letter["batch_id"] == "b"
    assert letter["event"] == "batch.failed"
    assert letter["attempts"] == 4
    assert "gave up after 4 attempts" in letter["last_error"]
    # The whole userinfo and the token-like path are masked; host and port stay.
    assert (
        letter["url"]
        == f"http://127.0.0.1:{url.rsplit(':', 1)[1].split('/', maxsplit=1)[0]}/********"
    )
    assert letter["dead_at"].endswith("Z")
    dispatcher.close()
    assert read_dead_letters(tmp_path / "webhooks") == [letter]


def test_read_dead_letters_of_a_missing_queue_is_empty(tmp_path: Path) -> None:
    assert read_dead_letters(tmp_path / "never-created") == []
    assert not (tmp_path / "never-created").exists()


def test_pending_deliveries_survive_a_restart(
    receiver: Receiver, make: Callable[..., WebhookDispatcher]
) -> None:
    first = make(receiver.url())
    (delivery_id,) = first.enqueue(batch_id="b", event="batch.completed", payload=PAYLOAD)
    first.close()

    second = make(receiver.url())
    assert [d.delivery_id for d in second.pending()] == [delivery_id]
    assert second.deliver_due() == 1

    (request,) = receiver.recorded()
    assert request.headers["X-Medianalysed-Delivery"] == delivery_id
    assert json.loads(request.body) == PAYLOAD


def test_enqueue_is_idempotent_per_batch_event_and_url(
    receiver: Receiver, make: Callable[..., WebhookDispatcher]
) -> None:
    dispatcher = make(receiver.url("/config"))
    callback = receiver.url("/callback")

    first = dispatcher.enqueue(
        batch_id="b", event="batch.completed", payload=PAYLOAD, callback_url=callback
    )
    again = dispatcher.enqueue(
        batch_id="b", event="batch.completed", payload={"other": 1}, callback_url=callback
    )

    assert first == again
    assert len(first) == 2
    assert len(dispatcher.pending()) == 2
    # Only the configured url is operator-trusted; 127.0.0.1 callbacks are refused.
    assert dispatcher.deliver_due() == 2
    assert [r.path for r in receiver.recorded()] == ["/config"]
    assert json.loads(receiver.recorded()[0].body) == PAYLOAD

    # A batch that finishes twice (crash-restart) does not deliver twice.
    dispatcher.enqueue(
        batch_id="b", event="batch.completed", payload=PAYLOAD, callback_url=callback
    )
    assert dispatcher.pending() == []
    assert dispatcher.deliver_due() == 0


def test_the_same_url_twice_and_no_url_at_all(
    receiver: Receiver, make: Callable[..., WebhookDispatcher]
) -> None:
    dispatcher = make(receiver.url())
    ids = dispatcher.enqueue(
        batch_id="b", event="batch.completed", payload=PAYLOAD, callback_url=receiver.url()
    )
    assert len(ids) == 1

    nowhere = make("")
    assert nowhere.enqueue(batch_id="c", event="batch.completed", payload=PAYLOAD) == []


def test_unknown_event_and_non_json_payload_are_refused(
    make: Callable[..., WebhookDispatcher],
) -> None:
    dispatcher = make("https://hooks.example.com/x")
    with pytest.raises(ValueError, match="unknown webhook event"):
        dispatcher.enqueue(batch_id="b", event="batch.done", payload=PAYLOAD)
    with pytest.raises(ValueError, match="JSON"):
        dispatcher.enqueue(batch_id="b", event="batch.failed", payload={"x": float("nan")})
    assert dispatcher.pending() == []


def test_private_callback_is_refused_unless_allowed(
    receiver: Receiver, make: Callable[..., WebhookDispatcher]
) -> None:
    outcomes: list[str] = []
    refusing = make("", outcomes=outcomes)
    refusing.enqueue(
        batch_id="b", event="batch.completed", payload=PAYLOAD, callback_url=receiver.url()
    )

    assert refusing.deliver_due() == 1

    assert outcomes == ["dead"]
    assert receiver.recorded() == []
    (letter,) = refusing.dead_letters()
    assert "non-public address 127.0.0.1" in letter["last_error"]
    assert "allow_private_networks" in letter["last_error"]
    refusing.close()

    allowing = make("", allow_private_networks=True)
    allowing.enqueue(
        batch_id="b2", event="batch.completed", payload=PAYLOAD, callback_url=receiver.url()
    )
    assert allowing.deliver_due() == 1
    (request,) = receiver.recorded()
    assert request.headers["X-Medianalysed-Delivery"] == make_delivery_id(
        "b2", "batch.completed", receiver.url()
    )


def test_a_callback_that_is_not_http_is_dead_lettered(
    make: Callable[..., WebhookDispatcher],
) -> None:
    dispatcher = make("", allow_private_networks=True)
    dispatcher.enqueue(
        batch_id="b", event="batch.completed", payload=PAYLOAD, callback_url="ftp://x.example/y"
    )
    dispatcher.deliver_due()
    (letter,) = dispatcher.dead_letters()
    assert "not an http(s) URL" in letter["last_error"]


def test_the_secret_and_signature_never_reach_the_logs(
    receiver: Receiver, make: Callable[..., WebhookDispatcher], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dispatcher = make(receiver.url(), max_attempts=1)
    receiver.statuses.extend([503, 503])
    dispatcher.enqueue(batch_id="b", event="batch.completed", payload=PAYLOAD)
    dispatcher.enqueue(batch_id="b2", event="batch.completed", payload=PAYLOAD)
    dispatcher.deliver_due()

    signatures = {r.headers["X-Medianalysed-Signature"].split("=")[1] for r in receiver.recorded()}
    assert signatures
    assert "dead-lettered" in caplog.text
    assert SECRET not in caplog.text
    assert not any(signature in caplog.text for signature in signatures)


# --- the thread -----------------------------------------------------------------------------


def test_the_thread_delivers_without_deliver_due(
    receiver: Receiver, make: Callable[..., WebhookDispatcher]
) -> None:
    dispatcher = make(receiver.url(), use_clock=False)
    dispatcher.start()
    (delivery_id,) = dispatcher.enqueue(batch_id="b", event="batch.completed", payload=PAYLOAD)

    assert wait_for(lambda: len(receiver.recorded()) == 1)
    assert receiver.recorded()[0].headers["X-Medianalysed-Delivery"] == delivery_id
    assert wait_for(lambda: dispatcher.pending() == [])
    dispatcher.stop()
    assert not any(t.name == "WebhookDispatcher" for t in threading.enumerate())


def test_stop_leaves_waiting_deliveries_persisted(
    receiver: Receiver, make: Callable[..., WebhookDispatcher]
) -> None:
    dispatcher = make(receiver.url(), backoff=(600,), use_clock=False)
    receiver.statuses.append(503)
    dispatcher.start()
    (delivery_id,) = dispatcher.enqueue(batch_id="b", event="batch.completed", payload=PAYLOAD)
    assert wait_for(lambda: [d.attempts for d in dispatcher.pending()] == [1])

    dispatcher.stop()

    assert not any(t.name == "WebhookDispatcher" for t in threading.enumerate())
    assert [d.delivery_id for d in dispatcher.pending()] == [delivery_id]
    assert len(receiver.recorded()) == 1


def test_concurrent_enqueues_while_delivering_send_each_delivery_once(
    receiver: Receiver, make: Callable[..., WebhookDispatcher]
) -> None:
    dispatcher = make(receiver.url(), use_clock=False)
    dispatcher.start()

    def producer(worker: int) -> None:
        for n in range(10):
            for _ in range(2):  # a batch finishing twice
                dispatcher.enqueue(
                    batch_id=f"w{worker}-b{n}", event="batch.completed", payload=PAYLOAD
                )

    producers = [threading.Thread(target=producer, args=(w,)) for w in range(4)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join(10)

    assert wait_for(lambda: len(receiver.recorded()) >= 40 and dispatcher.pending() == [])
    ids = [r.headers["X-Medianalysed-Delivery"] for r in receiver.recorded()]
    assert len(ids) == 40
    assert len(set(ids)) == 40


# --- hostile receivers ----------------------------------------------------------------------


def test_a_slow_receiver_does_not_delay_the_others(tmp_path: Path) -> None:
    from tests.scripted_http import answer, hold, scripted_server

    release = threading.Event()
    config = WebhookConfig(url="", secret=SECRET, timeout_seconds=60, max_attempts=2)
    dispatcher = WebhookDispatcher(config, tmp_path / "webhooks", allow_private_networks=True)
    try:
        with scripted_server({}) as slow, scripted_server({"/hook": answer(200)}) as fast:
            slow.routes["/hook"] = hold(slow, release)
            dispatcher.start()
            dispatcher.enqueue(
                batch_id="a",
                event="batch.completed",
                payload=PAYLOAD,
                callback_url=slow.base + "/hook",
            )
            assert wait_for(lambda: len(slow.recorded()) == 1)
            for n in range(3):
                dispatcher.enqueue(
                    batch_id=f"b{n}",
                    event="batch.completed",
                    payload=PAYLOAD,
                    callback_url=fast.base + "/hook",
                )
            # The slow receiver still holds its answer: the fast one was served meanwhile.
            assert wait_for(lambda: len(fast.recorded()) == 3)
            assert not release.is_set()
            # a request is recorded before it is answered: its delivery is recorded after
            assert wait_for(lambda: [d.batch_id for d in dispatcher.pending()] == ["a"])
            release.set()
            assert wait_for(lambda: dispatcher.pending() == [])
    finally:
        release.set()
        dispatcher.close()


def test_a_receiver_dripping_its_answer_costs_one_timeout(tmp_path: Path) -> None:
    from tests.scripted_http import drip, scripted_server

    outcomes: list[str] = []
    config = WebhookConfig(url="", secret=SECRET, timeout_seconds=1, max_attempts=3)
    dispatcher = WebhookDispatcher(
        config, tmp_path / "webhooks", allow_private_networks=True, on_outcome=outcomes.append
    )
    try:
        with scripted_server({}) as server:
            server.routes["/hook"] = drip(server, 0.05, in_headers=True)
            dispatcher.enqueue(
                batch_id="b",
                event="batch.failed",
                payload=PAYLOAD,
                callback_url=server.base + "/hook",
            )
            assert dispatcher.deliver_due() == 1  # returns: bounded by the 1 s deadline
        (waiting,) = dispatcher.pending()
        assert outcomes == ["retry"]
        assert waiting.last_error is not None
        assert "no answer within 1 s" in waiting.last_error
    finally:
        dispatcher.close()


@pytest.fixture
def daemon_log() -> Iterator[io.StringIO]:
    """The daemon's own logging set-up, at debug level, into a string."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in ("pykka", "PIL", "httpx", "httpcore")}
    stream = io.StringIO()
    setup_logging("debug", "text", stream)
    yield stream
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)


def test_tokens_in_webhook_urls_never_reach_logs_or_dead_letters(
    tmp_path: Path, daemon_log: io.StringIO
) -> None:
    from tests.scripted_http import answer, scripted_server

    with scripted_server({"/services/T0KENPATH1": answer(410)}) as server:
        url = f"http://ops:PASSW0RD1@127.0.0.1:{server.port}/services/T0KENPATH1?token=QTOKEN1"
        config = WebhookConfig(url="", secret=SECRET, timeout_seconds=5, max_attempts=1)
        dispatcher = WebhookDispatcher(config, tmp_path / "webhooks", allow_private_networks=True)
        try:
            dispatcher.enqueue(
                batch_id="b", event="batch.completed", payload=PAYLOAD, callback_url=url
            )
            assert dispatcher.deliver_due() == 1
            (request,) = server.recorded()
            (letter,) = dispatcher.dead_letters()
        finally:
            dispatcher.close()
    assert request.path == "/services/T0KENPATH1?token=QTOKEN1"  # the real URL was used
    assert letter["url"] == f"http://127.0.0.1:{server.port}/services/********?token=********"
    assert "dead-lettered" in daemon_log.getvalue()
    shown = (
        daemon_log.getvalue()
        + json.dumps(letter)
        + json.dumps(read_dead_letters(tmp_path / "webhooks"))
    )
    for secret in ("T0KENPATH1", "QTOKEN1", "PASSW0RD1", "ops:"):
        assert secret not in shown


def test_a_callback_rebinding_to_loopback_is_never_posted_to(tmp_path: Path) -> None:
    import ipaddress

    from tests.scripted_http import answer, scripted_server

    calls: list[str] = []

    def rebinding(host: str, port: int, timeout: float | None) -> list[Any]:
        calls.append(host)
        first = "2606:4700:4700::1111" if len(calls) == 1 else "127.0.0.1"
        return [ipaddress.ip_address(first)]

    config = WebhookConfig(url="", secret=SECRET, timeout_seconds=1, max_attempts=1)
    dispatcher = WebhookDispatcher(config, tmp_path / "webhooks", resolver=rebinding)
    try:
        with scripted_server({"/hook": answer(200)}) as victim:
            dispatcher.enqueue(
                batch_id="b",
                event="batch.completed",
                payload=PAYLOAD,
                callback_url=f"http://rebind.example:{victim.port}/hook",
            )
            assert dispatcher.deliver_due() == 1
            assert victim.recorded() == []
    finally:
        dispatcher.close()
    assert calls == ["rebind.example"]


# --- batch.progress -------------------------------------------------------------------------


def _progress_record(tmp_path: Path) -> BatchRecord:
    return BatchRecord(
        batch_id="house-1",
        inbox="default",
        source=str(tmp_path / "in"),
        outbox_dir=str(tmp_path / "out"),
        status=BatchStatus.PROCESSING,
    )


def _running(record: BatchRecord, finished: int) -> BatchProgress:
    counts = {"total": 10, "done": finished, "pending": 10 - finished}
    return BatchProgress.running(record, counts)


def test_progress_is_rate_limited_sequenced_and_superseded(
    tmp_path: Path, receiver: Receiver, make: Callable[..., WebhookDispatcher]
) -> None:
    dispatcher = make(receiver.url())
    now = [0.0]
    hooks = ProgressWebhooks(dispatcher.enqueue, 10, clock=lambda: now[0])
    record = _progress_record(tmp_path)
    for at, finished in ((0, 1), (3, 2), (9, 3), (11, 4), (25, 4)):
        now[0] = at
        hooks.observe(record, _running(record, finished))
    # sent at 0 (seq 1) and 11 (seq 4); 3 and 9 coalesced; at 25 no new image finished
    [pending] = dispatcher.pending()  # seq 1 was superseded by seq 4 before it went out
    assert pending.delivery_id == make_delivery_id("house-1#4", "batch.progress", receiver.url())
    assert json.loads(pending.body)["sequence"] == 4
    assert dispatcher.deliver_due() == 1
    (request,) = receiver.recorded()
    assert request.headers["X-Medianalysed-Event"] == "batch.progress"
    body = json.loads(request.body)
    assert body["progress"] == "4/10"
    assert body["batch_id"] == "house-1"


def test_a_terminal_event_is_never_dropped_by_progress(
    tmp_path: Path, receiver: Receiver, make: Callable[..., WebhookDispatcher]
) -> None:
    dispatcher = make(receiver.url())
    now = [0.0]
    hooks = ProgressWebhooks(dispatcher.enqueue, 10, clock=lambda: now[0])
    record = _progress_record(tmp_path)
    hooks.observe(record, _running(record, 1))
    terminal_ids = dispatcher.enqueue(batch_id="house-1", event="batch.partial", payload=PAYLOAD)
    ended = record.evolve(status=BatchStatus.PARTIAL, final_counts={"total": 10, "done": 9})
    hooks.observe(ended, BatchProgress.ended(ended, phase=BatchPhase.DONE))  # not a progress
    now[0] = 100
    hooks.observe(record, _running(record, 9))  # a late progress supersedes only progress
    events = sorted(delivery.event for delivery in dispatcher.pending())
    assert events == ["batch.partial", "batch.progress"]
    assert terminal_ids[0] in {delivery.delivery_id for delivery in dispatcher.pending()}


def test_progress_seconds_zero_sends_nothing(
    tmp_path: Path, receiver: Receiver, make: Callable[..., WebhookDispatcher]
) -> None:
    dispatcher = make(receiver.url())
    hooks = ProgressWebhooks(dispatcher.enqueue, 0)
    record = _progress_record(tmp_path)
    hooks.observe(record, _running(record, 1))
    assert dispatcher.pending() == []


def test_a_superseded_progress_in_flight_is_not_retried(
    tmp_path: Path, make: Callable[..., WebhookDispatcher]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"
    dispatcher = make(dead, allow_private_networks=True)
    dispatcher.enqueue(batch_id="b", event="batch.progress", payload={"n": 1}, sequence=1)
    [first] = dispatcher.pending()
    dispatcher.enqueue(batch_id="b", event="batch.progress", payload={"n": 2}, sequence=2)
    dispatcher._attempt(first)
    assert [json.loads(d.body)["n"] for d in dispatcher.pending()] == [2]
