"""Batch events into metrics and webhooks: the daemon's `BatchListener`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medianalysed.batchwork.settings import BatchListener
from medianalysed.outcomes import VIPS_RESULTS
from medianalysed.webhooks import WebhookDispatcher, batch_key, event_for_status

if TYPE_CHECKING:
    from medianalysed.metrics import Metrics  # `analyze` has none: prometheus is not imported


class DaemonListener(BatchListener):
    """Feeds batch events into metrics and webhooks (called from batch actor threads)."""

    def __init__(self, metrics: Metrics | None, webhooks: WebhookDispatcher | None) -> None:
        self._metrics = metrics
        self._webhooks = webhooks

    def image_finished(self, inbox: str, status: str, error_code: str | None, **info: Any) -> None:
        """Count one image outcome."""
        metrics = self._metrics
        if metrics is None:
            return
        if status == "retry":
            metrics.retries.inc()
            return
        metrics.images.labels(inbox=inbox, status=status).inc()
        if error_code is not None:
            metrics.image_errors.labels(code=error_code).inc()
        if "duration_s" in info:
            metrics.image_duration.observe(float(info["duration_s"]))
        metrics.bytes_processed.inc(int(info.get("size", 0)))
        if info.get("cached"):
            metrics.content_cache_hits.inc()
        if info.get("vips") in VIPS_RESULTS:
            metrics.vips_decodes.labels(result=info["vips"]).inc()

    def batch_finished(
        self, inbox: str, status: str, summary: dict[str, Any], *, callback_url: str, run: int
    ) -> None:
        """Count one finished batch and queue its webhooks (persisted before this returns)."""
        if self._webhooks is not None:
            self._webhooks.enqueue(
                batch_id=batch_key(str(summary["batch_id"]), run),
                event=event_for_status(status),
                payload=summary,
                callback_url=callback_url,
            )
        metrics = self._metrics
        if metrics is None:
            return
        metrics.batches.labels(inbox=inbox, status=status).inc()
        duration = summary.get("duration_seconds")
        if isinstance(duration, int | float):
            metrics.batch_duration.observe(float(duration))
        for tier, groups in (summary.get("duplicates") or {}).items():
            metrics.duplicates.labels(tier=tier).inc(len(groups))
