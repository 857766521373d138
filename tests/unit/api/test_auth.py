"""Who is answered: tokens in constant time, loopback without them, a rate limit per token."""

from __future__ import annotations

import logging

import httpx
import pytest

from medianalysed.api.auth import Authenticator, RateLimiter, is_loopback
from medianalysed.api.replies import ApiError
from medianalysed.logs import RedactingTextFormatter
from tests.unit.api.conftest import ServeFactory

TOKEN = "s3cr3t-token-value-0123456789"


def test_without_a_token_the_answer_is_401_with_a_bearer_challenge(serve: ServeFactory) -> None:
    served = serve(tokens=(TOKEN,))
    answer = served.client.get("/v1/batches")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json()["error"]["code"] == "UNAUTHORIZED"


def test_an_unknown_token_is_403_and_a_known_one_is_answered(serve: ServeFactory) -> None:
    served = serve(tokens=("other", TOKEN))
    wrong = served.client.get("/v1/batches", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    right = served.client.get("/v1/batches", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200
    assert right.json() == {"batches": [], "next_cursor": None}


def test_over_the_rate_limit_the_answer_is_429_with_retry_after(serve: ServeFactory) -> None:
    served = serve(tokens=(TOKEN,), per_minute=3, token=TOKEN)
    codes = [served.client.get("/v1/batches").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = served.client.get("/v1/batches")
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["code"] == "RATE_LIMITED"


def test_the_bucket_refills_with_time() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    assert all(limiter.take("a") == 0.0 for _ in range(60))
    assert limiter.take("a") == pytest.approx(1.0)
    assert limiter.take("b") == 0.0  # per caller
    now[0] = 1.0
    assert limiter.take("a") == 0.0


def test_without_tokens_only_loopback_is_answered() -> None:
    auth = Authenticator(())
    assert auth.caller(None, "127.0.0.1").name == "loopback"
    assert auth.caller(None, "::ffff:127.0.0.1").name == "loopback"
    with pytest.raises(ApiError) as refused:
        auth.caller(None, "192.0.2.7")
    assert refused.value.status == 403
    assert "loopback" in refused.value.message
    assert is_loopback("::1")
    assert not is_loopback("10.0.0.1")


def test_submission_without_tokens_is_refused(serve: ServeFactory) -> None:
    served = serve(submit=True)  # the config refuses this; the router refuses it too
    answer = served.client.post("/v1/batches", json={"urls": ["https://example.org/a.jpg"]})
    assert answer.status_code == 401
    assert not any(served.inbox.path.iterdir())


def test_submission_is_off_unless_enabled(serve: ServeFactory) -> None:
    served = serve(tokens=(TOKEN,), token=TOKEN)
    answer = served.client.post("/v1/batches", json={"urls": ["https://example.org/a.jpg"]})
    assert answer.status_code == 403
    assert "[api] submit" in answer.json()["error"]["message"]


def test_a_token_never_appears_in_a_log_line_or_a_response(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    served = serve(tokens=(TOKEN,), submit=True)
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    answers = [
        served.client.get("/v1/batches", headers=headers),
        served.client.get("/v1/batches", headers={"Authorization": f"Bearer {TOKEN}x"}),
        served.client.get(f"/v1/batches/{TOKEN}", headers=headers),
        served.client.post("/v1/batches", headers=headers, json={"urls": [TOKEN]}),
        served.client.post(
            "/v1/batches", headers=headers, json={"urls": ["https://a.example/x"], "tags": TOKEN}
        ),
    ]
    formatter = RedactingTextFormatter()
    ours = [record for record in caplog.records if record.name.startswith("medianalysed")]
    lines = [formatter.format(record) for record in ours]
    assert lines, "the requests were logged at debug level"
    for line in lines:
        assert TOKEN not in line
    for answer in answers:
        assert TOKEN not in answer.text
        assert all(TOKEN not in value for value in answer.headers.values())


def test_a_wrong_scheme_is_treated_as_no_token(serve: ServeFactory) -> None:
    served = serve(tokens=(TOKEN,))
    answer = served.client.get("/v1/batches", headers={"Authorization": f"Basic {TOKEN}"})
    assert answer.status_code == 401
    assert isinstance(answer, httpx.Response)
