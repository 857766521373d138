"""What a batch actor is given from outside: its part of the configuration, and the listener
its events go to (metrics, webhooks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medianalysed.config import InboxConfig, NearConfig, ProcessingConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchSettings:
    """What a batch actor needs from the configuration."""

    inbox: InboxConfig
    processing: ProcessingConfig
    near_duplicate_distance: int
    config_fingerprint: str
    downloads_dir: Path
    max_duplicates_listed: int = 10
    near: NearConfig = field(default_factory=NearConfig)  # the other clauses' limits


class BatchListener:
    """Hooks for metrics and webhooks; the default does nothing.

    Called from the batch actor's thread; implementations must not block.
    """

    def image_finished(self, inbox: str, status: str, error_code: str | None, **info: Any) -> None:
        """An image reached a terminal status (or a retryable failure, `status='retry'`)."""

    def batch_finished(
        self, inbox: str, status: str, summary: dict[str, Any], *, callback_url: str, run: int
    ) -> None:
        """A batch wrote its summary (`run` counts retries and reprocessings)."""
