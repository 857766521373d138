"""The durable webhook queue: deliveries, their outcomes and the dead letters, in diskcache.

A delivery is one (batch, event, URL) triple; its id derives from the triple, so it stays
the same across retries and restarts and receivers can deduplicate. Adding a triple that is
pending, or was delivered or dead-lettered in the last `SENT_RETENTION_SECONDS`, does
nothing (a batch restarted by a crash may finish twice).

Storage, JSON text only (never pickles): `pending/<id>` one delivery each, `sent/<id>` an
expiring marker of a finished delivery, `dead_letters` the newest `DEAD_LETTER_LIMIT`
dead letters, oldest first. A dead letter shows its URL masked (`mask_webhook_url`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import diskcache

from medianalysed.errors import StateError
from medianalysed.redaction import mask_webhook_url
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

Outcome = Literal["delivered", "retry", "dead"]

logger = logging.getLogger(__name__)

_SCHEMA_VERSION = 1
_PENDING = "pending/"
_SENT = "sent/"
_DEAD_LETTERS = "dead_letters"
# Fixed forever: changing it would change every delivery id and defeat receivers' dedup.
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:medianalysed:webhook-delivery")


def make_delivery_id(batch_id: str, event: str, url: str) -> str:
    """The stable id of the delivery of `event` of `batch_id` to `url` (a UUID string)."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{batch_id}\x00{event}\x00{url}"))


def batch_key(batch_id: str, run: int) -> str:
    """The webhook key of a batch's run: `<id>`, then `<id>/run-N` for its N-th retry."""
    return batch_id + (f"/run-{run}" if run else "")


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

    @property
    def receiver(self) -> str:
        """Who answers it: deliveries to one receiver are attempted one at a time."""
        return mask_webhook_url(self.url).partition("://")[2].partition("/")[0].lower()

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


class DeliveryQueue:
    """The persisted deliveries of one directory; every method is one transaction."""

    def __init__(self, directory: Path) -> None:
        """Open (or create) the queue.

        Raises:
            StateError: the queue cannot be opened.
        """
        self.directory = directory
        self._cache = _open_cache(directory)

    def close(self) -> None:
        """Release the database."""
        self._cache.close()

    def add(self, deliveries: Iterable[Delivery], *, supersede: bool = False) -> None:
        """Store each delivery unless its id is pending or finished recently.

        `supersede`: first drop the pending deliveries of the same batch, event and URL
        (older progress events; one being attempted is not retried, see `record`).

        Raises:
            StateError: the queue cannot be written.
        """
        deliveries = list(deliveries)
        with self._transaction():
            if supersede:
                self._drop_older(deliveries)
            for delivery in deliveries:
                self._add_unless_known(delivery)

    def _drop_older(self, newer: list[Delivery]) -> None:
        replaced = {(d.batch_id, d.event, d.url) for d in newer}
        fresh = {d.delivery_id for d in newer}
        for pending in list(self._iter_pending()):
            same = (pending.batch_id, pending.event, pending.url) in replaced
            if same and pending.delivery_id not in fresh:
                self._cache.delete(_PENDING + pending.delivery_id)

    def _add_unless_known(self, delivery: Delivery) -> None:
        if _PENDING + delivery.delivery_id in self._cache:
            return
        if _SENT + delivery.delivery_id in self._cache:
            logger.info(
                "webhook %s for %s already delivered or dead-lettered; not sent again",
                delivery.event,
                mask_webhook_url(delivery.url),
                extra={"batch_id": delivery.batch_id},
            )
            return
        self._cache.set(_PENDING + delivery.delivery_id, delivery.to_json())

    def pending(self) -> list[Delivery]:
        """The deliveries not yet delivered nor dead, the next due first."""
        deliveries = list(self._iter_pending())
        return sorted(deliveries, key=lambda d: (d.next_attempt_at, d.created_at, d.delivery_id))

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

    def record(self, updated: Delivery, outcome: Outcome, now: float) -> None:
        """Persist the attempt that made `updated`: still pending, delivered or dead.

        Raises:
            StateError: the queue cannot be written.
        """
        with self._transaction():
            if outcome == "retry":
                if _PENDING + updated.delivery_id not in self._cache:
                    return  # superseded by a newer progress event meanwhile: not retried
                self._cache.set(_PENDING + updated.delivery_id, updated.to_json())
                return
            self._cache.delete(_PENDING + updated.delivery_id)
            self._cache.set(_SENT + updated.delivery_id, outcome, expire=SENT_RETENTION_SECONDS)
            if outcome == "dead":
                letters = _load_dead_letters(self._cache)
                letters.append(_dead_letter(updated, now))
                self._cache.set(_DEAD_LETTERS, json.dumps(letters[-DEAD_LETTER_LIMIT:]))

    def dead_letters(self) -> list[dict[str, Any]]:
        """The dead letters, oldest first (at most `DEAD_LETTER_LIMIT`)."""
        return _load_dead_letters(self._cache)

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


def iso_utc(epoch: float) -> str:
    """An epoch time as "2025-10-08T15:30:00Z"."""
    return (
        datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def _dead_letter(delivery: Delivery, now: float) -> dict[str, Any]:
    return {
        "delivery_id": delivery.delivery_id,
        "batch_id": delivery.batch_id,
        "url": mask_webhook_url(delivery.url),
        "event": delivery.event,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "dead_at": iso_utc(now),
    }


def _load_dead_letters(cache: diskcache.Cache) -> list[dict[str, Any]]:
    text = cache.get(_DEAD_LETTERS)
    if text is None:
        return []
    # Masked again on the way out: letters written before tokens were masked show none.
    return [
        {**letter, "url": mask_webhook_url(str(letter.get("url", "")))}
        for letter in json.loads(text)
    ]


def _open_cache(directory: Path) -> diskcache.Cache:
    # Never evicts; only the expiring "sent" markers are culled.
    return open_durable_cache(directory, what="the webhook queue")
