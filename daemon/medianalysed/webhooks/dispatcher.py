"""The webhook dispatcher: enqueue durably, then attempt due deliveries on sender threads.

`enqueue` writes a delivery to the queue before returning, so a crash never loses one. The
dispatcher thread hands due deliveries to a pool of `SENDER_THREADS` threads, at most one
attempt per receiver (scheme, host and port) at a time: a slow receiver holds one thread
for at most `[webhook] timeout_seconds` per attempt (the sender's total deadline), and the
others are served meanwhile by the other threads. Deliveries to one receiver keep their
order. A retried attempt waits `backoff_seconds[n - 1]` after attempt n (the last value
repeats) until `max_attempts` attempts were made; then the delivery is dead-lettered.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import httpx

from medianalysed.config import WebhookConfig
from medianalysed.errors import clip_message
from medianalysed.logs import redact, register_secret
from medianalysed.pinning import Resolver, system_resolver
from medianalysed.redaction import mask_webhook_url
from medianalysed.webhooks.queue import (
    EVENTS,
    Delivery,
    DeliveryQueue,
    Outcome,
    iso_utc,
    make_delivery_id,
)
from medianalysed.webhooks.sender import AttemptResult, Sender

IDLE_WAIT_SECONDS: Final = 5.0  # the longest the thread sleeps; enqueue wakes it sooner
SENDER_THREADS: Final = 4

logger = logging.getLogger(__name__)

_MIN_WAIT_SECONDS = 0.05


def _ignore_outcome(outcome: str) -> None:
    """The default `on_outcome`: nothing to count."""


class WebhookDispatcher:
    """Persists, signs, sends and retries webhook deliveries.

    `enqueue` may be called from any thread. Deliveries are attempted by the threads `start`
    runs, or by whoever calls `deliver_due`; never two attempts of one delivery at once.
    """

    def __init__(
        self,
        config: WebhookConfig,
        directory: Path,
        *,
        allow_private_networks: bool = False,
        on_outcome: Callable[[str], None] = _ignore_outcome,
        clock: Callable[[], float] = time.time,
        resolver: Resolver = system_resolver,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Open (or create) the queue in `directory`.

        Args:
            config: the `[webhook]` section.
            directory: where the queue lives, a local filesystem.
            allow_private_networks: let `callback_url`s reach non-public addresses.
            on_outcome: called with "delivered", "retry" or "dead" after each attempt is
                recorded, from the delivering thread (for the deliveries counter).
            clock: wall-clock epoch seconds, for scheduling.
            resolver: host name resolution (tests inject one).
            transport: replaces the pinned HTTP transport (unit tests: httpx.MockTransport).

        Raises:
            StateError: the queue cannot be opened.
        """
        self.directory = directory
        self._config = config
        self._on_outcome = on_outcome
        self._clock = clock
        register_secret(config.secret)
        register_secret(config.url.strip())  # the whole URL, wherever a message quotes it
        self._queue = DeliveryQueue(directory)
        self._sender = Sender(
            config,
            allow_private_networks=allow_private_networks,
            resolver=resolver,
            transport=transport,
        )
        self._claims = threading.Condition()  # guards the two below; notified on release
        self._in_flight: set[str] = set()  # delivery ids being attempted
        self._busy_receivers: Counter[str] = Counter()  # attempts in flight per receiver
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._senders: ThreadPoolExecutor | None = None
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
        sequence: int | None = None,
    ) -> list[str]:
        """Persist one delivery of `payload` per target URL and return their ids.

        Targets are the configured url and `callback_url`, empty ones skipped, the same URL
        once. Idempotent per (batch_id, event, url), and per `sequence` when one is given (a
        progress event): then the batch's older pending deliveries of that event are dropped,
        so a progress event is not retried past the next one. Everything is durable when
        this returns.

        Raises:
            ValueError: unknown event, or a payload that is not JSON (NaN included).
            TypeError: a payload value JSON cannot encode.
            StateError: the queue cannot be written.
        """
        if event not in EVENTS:
            raise ValueError(f"unknown webhook event {event!r}; expected one of {EVENTS}")
        body = json.dumps(dict(payload), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        now = self._clock()
        id_key = batch_id if sequence is None else f"{batch_id}#{sequence}"
        deliveries = [
            Delivery(
                delivery_id=make_delivery_id(id_key, event, url),
                url=url,
                event=event,
                body=body,
                attempts=0,
                next_attempt_at=now,
                last_error=None,
                created_at=iso_utc(now),
                batch_id=batch_id,
                trusted=trusted,
            )
            for url, trusted in self._targets(callback_url)
        ]
        if not deliveries:
            return []
        self._queue.add(deliveries, supersede=sequence is not None)
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

    # --- queries --------------------------------------------------------------------------

    def pending(self) -> list[Delivery]:
        """The deliveries not yet delivered nor dead, the next due first."""
        return self._queue.pending()

    def dead_letters(self) -> list[dict[str, Any]]:
        """The dead letters, oldest first, their URLs masked."""
        return self._queue.dead_letters()

    # --- delivering -----------------------------------------------------------------------

    def deliver_due(self) -> int:
        """Attempt every due delivery in this thread, one at a time; return how many.

        A refused target counts as an attempt. Stops early once `stop` was called.
        """
        attempted = 0
        for delivery in self._claim_due(limit=None):
            if self._stopping.is_set():
                self._release(delivery)
                continue
            self._attempt_and_release(delivery)
            attempted += 1
        return attempted

    def _claim_due(self, limit: int | None) -> list[Delivery]:
        """Due deliveries, marked in flight, at most one per receiver not already busy.

        With `limit` None (deliver_due, sequential), every due delivery is claimed.
        """
        now = self._clock()
        claimed: list[Delivery] = []
        with self._claims:
            for delivery in self._queue.pending():
                if delivery.next_attempt_at > now or (limit is not None and len(claimed) >= limit):
                    break
                if delivery.delivery_id in self._in_flight:
                    continue
                if limit is not None and self._busy_receivers[delivery.receiver]:
                    continue
                self._in_flight.add(delivery.delivery_id)
                self._busy_receivers[delivery.receiver] += 1
                claimed.append(delivery)
        return claimed

    def _release(self, delivery: Delivery) -> None:
        with self._claims:
            self._in_flight.discard(delivery.delivery_id)
            self._busy_receivers[delivery.receiver] -= 1
            if self._busy_receivers[delivery.receiver] <= 0:
                del self._busy_receivers[delivery.receiver]
            self._claims.notify_all()
        self._wake.set()

    def _attempt_and_release(self, delivery: Delivery) -> None:
        try:
            self._attempt(delivery)
        except Exception:  # the queue could not be written: the delivery stays pending
            logger.exception("webhook delivery %s not recorded", delivery.delivery_id)
        finally:
            self._release(delivery)

    def _attempt(self, delivery: Delivery) -> None:
        try:
            result = self._sender.send(delivery)
        except Exception as exc:  # a bug must not kill the dispatcher; the budget caps it
            logger.exception("webhook delivery %s failed unexpectedly", delivery.delivery_id)
            result = AttemptResult("retry", f"internal error: {type(exc).__name__}")
        outcome, updated = self._record(delivery, result)
        self._log(outcome, updated)
        try:
            self._on_outcome(outcome)
        except Exception:
            logger.exception("webhook on_outcome callback failed")

    def _record(self, delivery: Delivery, result: AttemptResult) -> tuple[Outcome, Delivery]:
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
        self._queue.record(updated, outcome, now)
        return outcome, updated

    def _backoff(self, attempts: int) -> float:
        backoff = self._config.backoff_seconds
        return float(backoff[min(attempts - 1, len(backoff) - 1)]) if backoff else 0.0

    def _log(self, outcome: Outcome, delivery: Delivery) -> None:
        url = mask_webhook_url(delivery.url)
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

    # --- the threads ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the dispatching daemon thread and its senders (no-op if it runs)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._senders = ThreadPoolExecutor(SENDER_THREADS, thread_name_prefix="WebhookSender")
        self._thread = threading.Thread(target=self._run, name="WebhookDispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        """Wake the threads and wait up to `timeout` s for them; pending deliveries stay."""
        thread = self._thread
        if thread is None:
            return
        # Order matters: _run clears the wake event before checking the stop flag.
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        thread.join(timeout)
        senders = self._senders
        if senders is not None:
            senders.shutdown(wait=False, cancel_futures=True)
        with self._claims:  # attempts in flight end within their own deadline
            self._claims.wait_for(
                lambda: not self._in_flight, timeout=max(0.0, deadline - time.monotonic())
            )
            busy = bool(self._in_flight)
        if thread.is_alive() or busy:
            logger.warning(
                "webhook dispatcher still busy after %.1f s; its pending deliveries stay queued",
                timeout,
            )
            return
        self._thread = None
        self._senders = None

    def _run(self) -> None:
        while True:
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self._dispatch_due()
                wait = self._seconds_until_due()
            except Exception:
                logger.exception(
                    "webhook delivery pass failed; retrying in %s s", IDLE_WAIT_SECONDS
                )
                wait = IDLE_WAIT_SECONDS
            self._wake.wait(wait)

    def _dispatch_due(self) -> None:
        senders = self._senders
        assert senders is not None
        with self._claims:
            free = SENDER_THREADS - len(self._in_flight)
        if free <= 0:
            return
        for delivery in self._claim_due(limit=free):
            try:
                future = senders.submit(self._attempt_and_release, delivery)
            except RuntimeError:  # stopping
                self._release(delivery)
                continue
            future.add_done_callback(partial(self._release_if_cancelled, delivery))

    def _release_if_cancelled(self, delivery: Delivery, future: Future[None]) -> None:
        if future.cancelled():  # `stop` dropped it before a sender took it
            self._release(delivery)

    def _seconds_until_due(self) -> float:
        with self._claims:
            in_flight = set(self._in_flight)
            busy = set(self._busy_receivers)
        waiting = [
            d
            for d in self._queue.pending()
            if d.delivery_id not in in_flight and d.receiver not in busy
        ]
        if not waiting:
            return IDLE_WAIT_SECONDS  # a finishing attempt wakes the thread
        until = waiting[0].next_attempt_at - self._clock()
        return min(max(until, _MIN_WAIT_SECONDS), IDLE_WAIT_SECONDS)

    def close(self) -> None:
        """Stop the threads and release the HTTP clients and the queue (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        self._sender.close()
        self._queue.close()
