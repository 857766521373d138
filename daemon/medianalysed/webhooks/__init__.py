"""Webhook delivery (SPEC §8): signed POSTs of batch summaries, persisted and retried.

- `queue`: the durable deliveries, their stable ids and the dead letters.
- `sender`: one attempt (signing, pinned connection, total deadline, the verdict).
- `dispatcher`: `WebhookDispatcher`, which enqueues and runs the sender threads.
"""

from medianalysed.webhooks.dispatcher import IDLE_WAIT_SECONDS, SENDER_THREADS, WebhookDispatcher
from medianalysed.webhooks.queue import (
    DEAD_LETTER_LIMIT,
    EVENTS,
    SENT_RETENTION_SECONDS,
    Delivery,
    batch_key,
    event_for_status,
    make_delivery_id,
    read_dead_letters,
)
from medianalysed.webhooks.sender import USER_AGENT, sign

__all__ = [
    "DEAD_LETTER_LIMIT",
    "EVENTS",
    "IDLE_WAIT_SECONDS",
    "SENDER_THREADS",
    "SENT_RETENTION_SECONDS",
    "USER_AGENT",
    "Delivery",
    "WebhookDispatcher",
    "batch_key",
    "event_for_status",
    "make_delivery_id",
    "read_dead_letters",
    "sign",
]
