"""Our HTTP code against `httpx.MockTransport`: downloads and webhook attempts, no server.

The real-server tests (test_downloads.py, test_webhooks.py, the e2e suite) keep the address
checks and the sockets honest; these pin down what our code does with each kind of answer.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from medianalysed.config import DownloadsConfig, WebhookConfig
from medianalysed.downloads import Downloader
from medianalysed.errors import AnalysisError, ErrorCode
from medianalysed.webhooks.queue import Delivery
from medianalysed.webhooks.sender import Sender, sign

# A `content=` body arrives already read; `stream=` ones stream like a server's.
Handler = Callable[[httpx.Request], httpx.Response]
URL = "https://images.example/photo.jpg"


def downloader(handler: Handler, **config: object) -> Downloader:
    settings = DownloadsConfig(**{"timeout_seconds": 5.0, **config})  # type: ignore[arg-type]
    return Downloader(settings, threads=1, transport=httpx.MockTransport(handler))


def fetch_error(handler: Handler, tmp_path: Path, **config: object) -> AnalysisError:
    made = downloader(handler, **config)
    try:
        with pytest.raises(AnalysisError) as caught:
            made.fetch(URL, tmp_path / "out.jpg")
    finally:
        made.close()
    assert not (tmp_path / "out.jpg").exists()
    assert not (tmp_path / "out.jpg.part").exists()
    return caught.value


def test_a_download_follows_redirects_and_saves_the_decoded_body(tmp_path: Path) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path == "/photo.jpg":
            return httpx.Response(302, headers={"location": "/moved/photo.jpg"})
        body = httpx.ByteStream(gzip.compress(b"jpeg bytes"))
        return httpx.Response(200, stream=body, headers={"content-encoding": "gzip"})

    made = downloader(handler)
    try:
        made.fetch(URL, tmp_path / "out.jpg")
    finally:
        made.close()

    assert seen == [URL, "https://images.example/moved/photo.jpg"]
    assert (tmp_path / "out.jpg").read_bytes() == b"jpeg bytes"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, ErrorCode.BAD_REQUEST),
        (429, ErrorCode.RATE_LIMITED),
        (503, ErrorCode.REMOTE_ERROR),
    ],
)
def test_an_error_status_becomes_its_error_code(
    tmp_path: Path, status: int, code: ErrorCode
) -> None:
    error = fetch_error(lambda _request: httpx.Response(status), tmp_path)

    assert error.code == code
    assert str(status) in error.message


def test_a_declared_length_over_max_bytes_is_refused_before_reading(tmp_path: Path) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * 20, headers={"content-length": "5000"})

    error = fetch_error(handler, tmp_path, max_bytes=1000)

    assert error.code == ErrorCode.TOO_LARGE
    assert "5000" in error.message


def test_a_body_over_max_bytes_is_stopped_while_streaming(tmp_path: Path) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"x" * 600, b"x" * 600]))

    error = fetch_error(handler, tmp_path, max_bytes=1000)

    assert error.code == ErrorCode.TOO_LARGE


def test_too_many_redirects_is_a_bad_request(tmp_path: Path) -> None:
    error = fetch_error(
        lambda _request: httpx.Response(302, headers={"location": "/again"}), tmp_path
    )

    assert error.code == ErrorCode.BAD_REQUEST
    assert "redirects" in error.message


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (httpx.ReadTimeout("slow"), ErrorCode.TIMEOUT),
        (httpx.ConnectError("refused"), ErrorCode.NETWORK_ERROR),
        (httpx.RemoteProtocolError("garbled"), ErrorCode.NETWORK_ERROR),
    ],
)
def test_transport_failures_become_their_error_codes(
    tmp_path: Path, raised: httpx.HTTPError, code: ErrorCode
) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        raise raised

    assert fetch_error(handler, tmp_path).code == code


def test_a_body_with_a_broken_encoding_is_a_remote_error(tmp_path: Path) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        body = httpx.ByteStream(b"not gzip")
        return httpx.Response(200, stream=body, headers={"content-encoding": "gzip"})

    assert fetch_error(handler, tmp_path).code == ErrorCode.REMOTE_ERROR


# --- webhook attempts -----------------------------------------------------------------------------


def delivery(url: str = "https://hooks.example/h") -> Delivery:
    return Delivery(
        delivery_id="d-1",
        url=url,
        event="batch.completed",
        body=json.dumps({"batch_id": "b"}),
        attempts=0,
        next_attempt_at=0.0,
        last_error=None,
        created_at="2026-12-02T00:00:00Z",
        trusted=True,
    )


def attempt(handler: Handler, secret: str = "") -> tuple[str, str | None]:
    sender = Sender(
        WebhookConfig(url="https://hooks.example/h", secret=secret, timeout_seconds=5),
        allow_private_networks=False,
        transport=httpx.MockTransport(handler),
    )
    try:
        result = sender.send(delivery())
    finally:
        sender.close()
    return result.outcome, result.reason


def test_a_webhook_is_posted_signed_with_its_headers() -> None:
    received: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(204)

    assert attempt(handler, secret="s3cret") == ("delivered", None)
    (request,) = received
    assert request.method == "POST"
    assert request.headers["X-Medianalysed-Event"] == "batch.completed"
    assert request.headers["X-Medianalysed-Delivery"] == "d-1"
    assert request.headers["X-Medianalysed-Signature"] == sign(request.content, "s3cret")
    assert json.loads(request.content) == {"batch_id": "b"}


def test_an_unsigned_webhook_carries_no_signature() -> None:
    received: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200)

    attempt(handler)

    assert "X-Medianalysed-Signature" not in received[0].headers


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "delivered"),
        (408, "retry"),
        (429, "retry"),
        (502, "retry"),
        (302, "dead"),
        (410, "dead"),
    ],
)
def test_each_answer_is_delivered_retried_or_dead(status: int, outcome: str) -> None:
    assert attempt(lambda _request: httpx.Response(status))[0] == outcome


@pytest.mark.parametrize(
    ("raised", "words"),
    [(httpx.ConnectTimeout("slow"), "no answer within 5 s"), (httpx.ConnectError("down"), "down")],
)
def test_network_failures_are_retried_with_a_reason(raised: httpx.HTTPError, words: str) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        raise raised

    outcome, reason = attempt(handler)

    assert outcome == "retry"
    assert reason is not None
    assert words in reason
