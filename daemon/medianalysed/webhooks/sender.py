"""One webhook attempt: sign, POST over a pinned connection within a total deadline, judge.

Outcomes of an attempt:

- 2xx: delivered.
- 408, 429, 5xx, a network error or a timeout: to be retried.
- any other status (3xx: redirects are not followed; other 4xx): the receiver will not change
  its answer, so the delivery is dead at once, with the status in the reason.
- a `callback_url` that is not a valid http(s) URL, or whose host resolves to a loopback,
  private or link-local address (unless `[downloads] allow_private_networks`): dead. The
  configured `[webhook] url` is the operator's own and its address is not checked.

The attempt, connection and every read and write included, gets `[webhook]
timeout_seconds` in total, so a receiver that drips its answer costs at most that.
Reasons never show the URL's token (`mask_webhook_url`) nor its userinfo.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

import httpx

from medianalysed import __version__
from medianalysed.config import WebhookConfig
from medianalysed.errors import AnalysisError
from medianalysed.pinning import (
    AddressRefusedError,
    LazyClient,
    Resolver,
    pinned_client,
    system_resolver,
    total_deadline,
)
from medianalysed.redaction import mask_webhook_url, strip_userinfo
from medianalysed.urllist import parse_url
from medianalysed.webhooks.queue import Delivery, Outcome

USER_AGENT: Final = f"medianalysed/{__version__}"

_RETRYABLE_STATUSES = frozenset({408, 429})


def sign(body: bytes, secret: str) -> str:
    """The `X-Medianalysed-Signature` value: "sha256=" and the hex HMAC-SHA256 of `body`."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt came to, before the attempt budget is applied."""

    outcome: Outcome
    reason: str | None = None


class Sender:
    """Sends deliveries; safe to use from several threads at once."""

    def __init__(
        self,
        config: WebhookConfig,
        *,
        allow_private_networks: bool,
        resolver: Resolver = system_resolver,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`transport` replaces the pinned transport (`pinning.pinned_client`): tests only."""
        self._config = config

        def client(allow_private: bool) -> httpx.Client:
            return pinned_client(
                timeout_s=config.timeout_seconds,
                allow_private=allow_private,
                user_agent=USER_AGENT,
                resolver=resolver,
                transport=transport,
            )

        self._trusted = LazyClient(lambda: client(allow_private=True))
        self._untrusted = LazyClient(lambda: client(allow_private=allow_private_networks))

    def close(self) -> None:
        """Release both connection pools."""
        self._trusted.close()
        self._untrusted.close()

    def send(self, delivery: Delivery) -> AttemptResult:
        """POST `delivery` once; never raises for anything the receiver or the network does."""
        try:
            parse_url(delivery.url)
        except AnalysisError as exc:
            return AttemptResult("dead", f"invalid URL: {exc.message}")
        body = delivery.body.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "X-Medianalysed-Event": delivery.event,
            "X-Medianalysed-Delivery": delivery.delivery_id,
        }
        if self._config.secret:
            headers["X-Medianalysed-Signature"] = sign(body, self._config.secret)
        client = (self._trusted if delivery.trusted else self._untrusted).get()
        timeout = self._config.timeout_seconds
        try:
            with (
                total_deadline(timeout),
                # Streamed so the response body, which we ignore, is never read.
                client.stream("POST", delivery.url, content=body, headers=headers) as response,
            ):
                status = response.status_code
        except AddressRefusedError as exc:
            return AttemptResult("dead", f"refused: {exc}")
        except httpx.TimeoutException as exc:
            return AttemptResult("retry", f"no answer within {timeout:g} s ({type(exc).__name__})")
        except httpx.InvalidURL as exc:
            return AttemptResult("dead", f"invalid URL: {_shown(exc, delivery)}")
        except httpx.HTTPError as exc:
            return AttemptResult("retry", f"{type(exc).__name__}: {_shown(exc, delivery)}")
        return classify_status(status)


def classify_status(status: int) -> AttemptResult:
    """The result of an answer with HTTP status `status`."""
    if 200 <= status < 300:
        return AttemptResult("delivered")
    if status in _RETRYABLE_STATUSES or status >= 500:
        return AttemptResult("retry", f"answered {status}")
    if 300 <= status < 400:
        return AttemptResult("dead", f"answered {status}; redirects are not followed")
    return AttemptResult("dead", f"answered {status}; not retried")


def _shown(exc: Exception, delivery: Delivery) -> str:
    return strip_userinfo(str(exc).replace(delivery.url, mask_webhook_url(delivery.url)))
