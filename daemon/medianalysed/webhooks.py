"""Webhook delivery (SPEC §8): signed POSTs of batch summaries, persisted and retried.

A delivery is one (batch, event, URL) triple. `enqueue` writes it to a diskcache under the
dispatcher's directory before returning, so a crash never loses one; one daemon thread (or a
caller of `deliver_due`) then attempts due deliveries one at a time. Outcomes of an attempt:

- 2xx: delivered.
- 408, 429, 5xx, a network error or a timeout: retried `backoff_seconds[n - 1]` seconds after
  attempt n (the last value repeats) until `max_attempts` attempts were made, then
  dead-lettered.
- any other status (3xx: redirects are not followed; other 4xx): the receiver will not change
  its answer, so the delivery is dead-lettered at once with the status in the reason.
- a `callback_url` resolving to a loopback, private or link-local address: dead-lettered as
  refused, unless `[downloads] allow_private_networks`; the configured `[webhook] url` is
  the operator's own and is not checked.

Delivery ids derive from (batch_id, event, url), so they stay the same across retries and
restarts and receivers can deduplicate. Enqueuing a triple that is pending, or was delivered
or dead-lettered in the last `SENT_RETENTION_SECONDS`, does nothing (a batch restarted by a
crash may finish twice).

Storage, JSON text only (never pickles): `pending/<id>` one delivery each, `sent/<id>` an
expiring marker of a finished delivery, `dead_letters` the newest `DEAD_LETTER_LIMIT`
dead letters, oldest first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import diskcache
import httpx

from medianalysed import __version__
from medianalysed.config import WebhookConfig, mask_url
from medianalysed.downloads import resolve_host
from medianalysed.errors import AnalysisError, StateError, clip_message
from medianalysed.logs import redact, register_secret
from medianalysed.state import open_durable_cache

EVENTS: Final = (
    "batch.completed",
    "batch.partial",
    "batch.failed",
    "batch.cancelled",
    "batch.progress",
)
DEAD_LETTER_LIMIT: Final = 1000
SENT_RETENTION_SECONDS: Final = 7 * 24 * 3600
IDLE_WAIT_SECONDS: Final = 5.0  # the longest the thread sleeps; enqueue wakes it sooner
USER_AGENT: Final = f"medianalysed/{__version__}"

Outcome = Literal["delivered", "retry", "dead"]

logger = logging.getLogger(__name__)

_SCHEMA_VERSION = 1
_PENDING = "pending/"
_SENT = "sent/"
_DEAD_LETTERS = "dead_letters"
_MIN_WAIT_SECONDS = 0.05
_RETRYABLE_STATUSES = frozenset({408, 429})
# Fixed forever: changing it would change every delivery id and defeat receivers' dedup.
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:medianalysed:webhook-delivery")


def sign(body: bytes, secret: str) -> str:
    """The `X-Medianalysed-Signature` value: "sha256=" and the hex HMAC-SHA256 of `body`."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def make_delivery_id(batch_id: str, event: str, url: str) -> str:
    """The stable id of the delivery of `event` of `batch_id` to `url` (a UUID string)."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{batch_id}\x00{event}\x00{url}"))


def event_for_status(status: str) -> str:
    """The event name for a terminal batch status ("partial" -> "batch.partial").

    Raises:
        ValueError: no event for that status.
    """
    event = f"batch.{status}"
    if event not in EVENTS:
        raise ValueError(f"no webhook event for batch status {status!r}")
    return event


@dataclass(frozen=True, slots=True)
class Delivery:
    """One pending delivery, as persisted; `body` is the exact JSON text that is sent."""

    delivery_id: str
    url: str
    event: str
    body: str
    attempts: int
    next_attempt_at: float  # wall-clock epoch seconds
    last_error: str | None
    created_at: str
    batch_id: str = ""
    trusted: bool = False  # the configured [webhook] url: its address is not checked

    def to_json(self) -> str:
        """Serialise for storage."""
        return json.dumps(
            {"schema_version": _SCHEMA_VERSION, **asdict(self)},
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Delivery:
        """Parse a stored delivery.

        Raises:
            ValueError: not a stored delivery.
        """
        try:
            data = json.loads(text)
            return cls(
                delivery_id=str(data["delivery_id"]),
                url=str(data["url"]),
                event=str(data["event"]),
                body=str(data["body"]),
                attempts=int(data["attempts"]),
                next_attempt_at=float(data["next_attempt_at"]),
                last_error=data["last_error"],
                created_at=str(data["created_at"]),
                batch_id=str(data.get("batch_id", "")),
                trusted=bool(data.get("trusted", False)),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a stored webhook delivery: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class _Result:
    """What one attempt came to, before the attempt budget is applied."""

    outcome: Outcome
    reason: str | None = None


def _ignore_outcome(outcome: str) -> None:
    """The default `on_outcome`: nothing to count."""


class WebhookDispatcher:
    """Persists, signs, sends and retries webhook deliveries.

    `enqueue` may be called from any thread; deliveries are attempted by the thread `start`
    runs, or by whoever calls `deliver_due`, one at a time.
    """

    def __init__(
        self,
        config: WebhookConfig,
        directory: Path,
        *,
        allow_private_networks: bool = False,
        on_outcome: Callable[[str], None] = _ignore_outcome,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open (or create) the queue in `directory`.

        Args:
            config: the `[webhook]` section.
            directory: where the queue lives, a local filesystem.
            allow_private_networks: let `callback_url`s reach non-public addresses.
            on_outcome: called with "delivered", "retry" or "dead" after each attempt is
                recorded, from the delivering thread (for the deliveries counter).
            clock: wall-clock epoch seconds, for scheduling.

        Raises:
            StateError: the queue cannot be opened.
        """
        self.directory = directory
        self._config = config
        self._allow_private_networks = allow_private_networks
        self._on_outcome = on_outcome
        self._clock = clock
        register_secret(config.secret)
        self._cache = _open_cache(directory)
        self._client = httpx.Client(
            timeout=httpx.Timeout(config.timeout_seconds),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        self._deliver_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def __enter__(self) -> WebhookDispatcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- enqueue --------------------------------------------------------------------------

    def enqueue(
        self,
        *,
        batch_id: str,
        event: str,
        payload: Mapping[str, Any],
        callback_url: str = "",
    ) -> list[str]:
        """Persist one delivery of `payload` per target URL and return their ids.

        Targets are the configured url and `callback_url`, empty ones skipped, the same URL
        once. Idempotent per (batch_id, event, url). Everything is durable when this returns.

        Raises:
            ValueError: unknown event, or a payload that is not JSON (NaN included).
            TypeError: a payload value JSON cannot encode.
            StateError: the queue cannot be written.
        """
        if event not in EVENTS:
            raise ValueError(f"unknown webhook event {event!r}; expected one of {EVENTS}")
        body = json.dumps(dict(payload), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        now = self._clock()
        deliveries = [
            Delivery(
                delivery_id=make_delivery_id(batch_id, event, url),
                url=url,
                event=event,
                body=body,
                attempts=0,
                next_attempt_at=now,
                last_error=None,
                created_at=_iso_utc(now),
                batch_id=batch_id,
                trusted=trusted,
            )
            for url, trusted in self._targets(callback_url)
        ]
        if not deliveries:
            return []
        with self._transaction():
            for delivery in deliveries:
                self._add_unless_known(delivery)
        self._wake.set()
        return [delivery.delivery_id for delivery in deliveries]

    def _targets(self, callback_url: str) -> list[tuple[str, bool]]:
        targets: list[tuple[str, bool]] = []
        configured = self._config.url.strip()
        if configured:
            targets.append((configured, True))
        callback = callback_url.strip()
        if callback and callback != configured:
            targets.append((callback, False))
        return targets

    def _add_unless_known(self, delivery: Delivery) -> None:
        """Store a new delivery (inside a transaction) unless it is pending or finished."""
        if _PENDING + delivery.delivery_id in self._cache:
            return
        if _SENT + delivery.delivery_id in self._cache:
            logger.info(
                "webhook %s for %s already delivered or dead-lettered; not sent again",
                delivery.event,
                mask_url(delivery.url),
                extra={"batch_id": delivery.batch_id},
            )
            return
        self._cache.set(_PENDING + delivery.delivery_id, delivery.to_json())

    # --- queries --------------------------------------------------------------------------

    def pending(self) -> list[Delivery]:
        """The deliveries not yet delivered nor dead, the next due first."""
        deliveries = list(self._iter_pending())
        return sorted(deliveries, key=lambda d: (d.next_attempt_at, d.created_at, d.delivery_id))

    def dead_letters(self) -> list[dict[str, Any]]:
        """The dead letters, oldest first (at most `DEAD_LETTER_LIMIT`)."""
        return _load_dead_letters(self._cache)

    def _iter_pending(self) -> Iterator[Delivery]:
        # diskcache iterates keys in sorted order: "dead_letters" < "pending/…" < "sent/…",
        # so the scan stops at the first key past the pending ones instead of reading every
        # sent marker.
        for key in self._cache.iterkeys():
            if not key.startswith(_PENDING):
                if key > _PENDING:
                    return
                continue
            text = self._cache.get(key)
            if text is None:
                continue  # delivered between the key scan and this read
            try:
                yield Delivery.from_json(text)
            except ValueError:
                logger.exception("dropping unreadable webhook delivery record %s", key)
                self._cache.delete(key)

    # --- delivering -----------------------------------------------------------------------

    def deliver_due(self) -> int:
        """Attempt every delivery that is due, one at a time; return how many were attempted.

        A refused target counts as an attempt. Stops early once `stop` was called.
        """
        with self._deliver_lock:
            now = self._clock()
            attempted = 0
            for delivery in self.pending():
                if delivery.next_attempt_at > now or self._stopping.is_set():
                    break
                self._attempt(delivery)
                attempted += 1
            return attempted

    def _attempt(self, delivery: Delivery) -> None:
        try:
            result = self._send(delivery)
        except Exception as exc:  # a bug must not kill the dispatcher; the budget caps it
            logger.exception("webhook delivery %s failed unexpectedly", delivery.delivery_id)
            result = _Result("retry", f"internal error: {type(exc).__name__}")
        outcome, updated = self._record(delivery, result)
        self._log(outcome, updated)
        try:
            self._on_outcome(outcome)
        except Exception:
            logger.exception("webhook on_outcome callback failed")

    def _send(self, delivery: Delivery) -> _Result:
        refusal = self._check_target(delivery)
        if refusal is not None:
            return refusal
        body = delivery.body.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "X-Medianalysed-Event": delivery.event,
            "X-Medianalysed-Delivery": delivery.delivery_id,
        }
        if self._config.secret:
            headers["X-Medianalysed-Signature"] = sign(body, self._config.secret)
        try:
            # Streamed so the response body, which we ignore, is never read.
            with self._client.stream("POST", delivery.url, content=body, headers=headers) as resp:
                status = resp.status_code
        except httpx.TimeoutException as exc:
            return _Result("retry", f"timed out ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return _Result("retry", f"{type(exc).__name__}: {exc}")
        except httpx.InvalidURL as exc:
            return _Result("dead", f"invalid URL: {exc}")
        return _classify_status(status)

    def _check_target(self, delivery: Delivery) -> _Result | None:
        """A dead or retry result if the URL must not be posted to now, else None."""
        try:
            parts = urlsplit(delivery.url)
            host = parts.hostname
        except ValueError as exc:
            return _Result("dead", f"invalid URL: {exc}")
        if parts.scheme not in {"http", "https"} or not host:
            return _Result("dead", "not an http(s) URL with a host")
        if delivery.trusted or self._allow_private_networks:
            return None
        try:
            addresses = resolve_host(host)
        except AnalysisError as exc:
            return _Result("retry", exc.message)
        for address in addresses:
            if not address.is_global:
                return _Result(
                    "dead",
                    f"refused: {host} resolves to non-public address {address}; "
                    "set [downloads] allow_private_networks = true to allow it",
                )
        return None

    def _record(self, delivery: Delivery, result: _Result) -> tuple[Outcome, Delivery]:
        """Persist the result of an attempt; return the final outcome and the updated delivery."""
        now = self._clock()
        attempts = delivery.attempts + 1
        outcome = result.outcome
        reason = clip_message(redact(result.reason)) if result.reason else None
        if outcome == "retry" and attempts >= self._config.max_attempts:
            outcome = "dead"
            plural = "s" if attempts != 1 else ""
            reason = clip_message(f"gave up after {attempts} attempt{plural}: {reason}")
        next_attempt_at = now + self._backoff(attempts) if outcome == "retry" else now
        updated = replace(
            delivery, attempts=attempts, next_attempt_at=next_attempt_at, last_error=reason
        )
        with self._transaction():
            if outcome == "retry":
                self._cache.set(_PENDING + delivery.delivery_id, updated.to_json())
                return outcome, updated
            self._cache.delete(_PENDING + delivery.delivery_id)
            self._cache.set(_SENT + delivery.delivery_id, outcome, expire=SENT_RETENTION_SECONDS)
            if outcome == "dead":
                self._append_dead_letter(_dead_letter(updated, now))
        return outcome, updated

    def _backoff(self, attempts: int) -> float:
        backoff = self._config.backoff_seconds
        return float(backoff[min(attempts - 1, len(backoff) - 1)]) if backoff else 0.0

    def _append_dead_letter(self, letter: dict[str, Any]) -> None:
        letters = _load_dead_letters(self._cache)
        letters.append(letter)
        self._cache.set(_DEAD_LETTERS, json.dumps(letters[-DEAD_LETTER_LIMIT:]))

    def _log(self, outcome: Outcome, delivery: Delivery) -> None:
        url = mask_url(delivery.url)
        extra = {"batch_id": delivery.batch_id, "attempt": delivery.attempts}
        if outcome == "delivered":
            logger.info(
                "webhook %s delivered to %s (delivery %s, attempt %d)",
                delivery.event,
                url,
                delivery.delivery_id,
                delivery.attempts,
                extra=extra,
            )
        elif outcome == "retry":
            logger.warning(
                "webhook %s to %s failed: %s; attempt %d of %d, next in %.0f s",
                delivery.event,
                url,
                delivery.last_error,
                delivery.attempts,
                self._config.max_attempts,
                delivery.next_attempt_at - self._clock(),
                extra=extra,
            )
        else:
            logger.error(
                "webhook %s to %s dead-lettered (delivery %s): %s",
                delivery.event,
                url,
                delivery.delivery_id,
                delivery.last_error,
                extra=extra,
            )

    # --- the thread -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the delivering daemon thread (no-op if it runs)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="WebhookDispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        """Wake the thread and wait up to `timeout` s for it to end; pending deliveries stay."""
        thread = self._thread
        if thread is None:
            return
        # Order matters: _run clears the wake event before checking the stop flag.
        self._stopping.set()
        self._wake.set()
        thread.join(timeout)
        if thread.is_alive():
            logger.warning(
                "webhook dispatcher still busy after %.1f s (a delivery in flight); "
                "its pending deliveries stay queued",
                timeout,
            )
            return
        self._thread = None

    def _run(self) -> None:
        while True:
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.deliver_due()
                wait = self._seconds_until_due()
            except Exception:
                logger.exception(
                    "webhook delivery pass failed; retrying in %s s", IDLE_WAIT_SECONDS
                )
                wait = IDLE_WAIT_SECONDS
            self._wake.wait(wait)

    def _seconds_until_due(self) -> float:
        pending = self.pending()
        if not pending:
            return IDLE_WAIT_SECONDS
        until = pending[0].next_attempt_at - self._clock()
        return min(max(until, _MIN_WAIT_SECONDS), IDLE_WAIT_SECONDS)

    def close(self) -> None:
        """Stop the thread and release the HTTP client and the queue (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        self._client.close()
        self._cache.close()

    # --- storage --------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            with self._cache.transact():
                yield
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"cannot write the webhook queue in {self.directory}: {exc}") from exc


def read_dead_letters(directory: Path) -> list[dict[str, Any]]:
    """The dead letters stored in `directory`, oldest first, without a dispatcher (for the CLI).

    Raises:
        StateError: the queue exists but cannot be read.
    """
    if not (directory / diskcache.core.DBNAME).is_file():
        return []
    cache = _open_cache(directory)
    try:
        return _load_dead_letters(cache)
    finally:
        cache.close()


def _classify_status(status: int) -> _Result:
    if 200 <= status < 300:
        return _Result("delivered")
    if status in _RETRYABLE_STATUSES or status >= 500:
        return _Result("retry", f"answered {status}")
    if 300 <= status < 400:
        return _Result("dead", f"answered {status}; redirects are not followed")
    return _Result("dead", f"answered {status}; not retried")


def _dead_letter(delivery: Delivery, now: float) -> dict[str, Any]:
    return {
        "delivery_id": delivery.delivery_id,
        "batch_id": delivery.batch_id,
        "url": mask_url(delivery.url),
        "event": delivery.event,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "dead_at": _iso_utc(now),
    }


def _load_dead_letters(cache: diskcache.Cache) -> list[dict[str, Any]]:
    text = cache.get(_DEAD_LETTERS)
    if text is None:
        return []
    letters = json.loads(text)
    return [dict(letter) for letter in letters]


def _open_cache(directory: Path) -> diskcache.Cache:
    # Never evicts; only the expiring "sent" markers are culled.
    return open_durable_cache(directory, what="the webhook queue")


def _iso_utc(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )
