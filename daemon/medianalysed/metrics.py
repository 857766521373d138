"""Prometheus metrics (SPEC §7) and the HTTP endpoint serving them with /healthz and /readyz.

Every metric lives in an injected `CollectorRegistry`, never prometheus_client's global
`REGISTRY`, so tests and reloads get fresh series. Known label values are created at 0 up
front: a labelled series does not exist until first used, and a missing series breaks
`rate()` and alerts. No label ever carries a batch, file or folder name (cardinality).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

from medianalysed import __version__
from medianalysed.config import split_listen
from medianalysed.dupactions import TIERS
from medianalysed.errors import ErrorCode, StartupError
from medianalysed.executors.base import ExecutorState
from medianalysed.httpd import BoundedHTTPServer, PreReadHandler
from medianalysed.models import BatchStatus, ImageStatus
from medianalysed.outcomes import VIPS_RESULTS

if TYPE_CHECKING:
    from medianalysed.api.http import ApiEndpoint

API_PREFIX: Final = "/v1/"

logger = logging.getLogger(__name__)

IMAGE_STATUSES: Final = (ImageStatus.DONE, ImageStatus.FAILED, ImageStatus.SKIPPED)
BATCH_STATUSES: Final = (
    BatchStatus.COMPLETED,
    BatchStatus.PARTIAL,
    BatchStatus.FAILED,
    BatchStatus.CANCELLED,
)
WEBHOOK_OUTCOMES: Final = ("delivered", "retry", "dead")
WRITE_TARGETS: Final = ("state", "outbox", "archive", "downloads")
PREINITIALISED_ERRNOS: Final = ("ENOSPC", "EROFS", "EIO")
WATCHER_MODES: Final = ("events", "polling")

# 5 ms (a cached thumbnail) .. 120 s (twice the default image timeout).
IMAGE_DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
# settle_seconds defaults to 5; slow uploads of large folders take minutes.
SETTLE_WAIT_BUCKETS: Final = (
    0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
)  # fmt: skip
BATCH_DURATION_BUCKETS: Final = (
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
)  # fmt: skip


class Metrics:
    """Every metric of the daemon, registered in one registry.

    The attributes are plain prometheus_client metrics: callers use `.labels(...).inc()`,
    `.set()`, `.observe()` directly. prometheus_client metrics are thread-safe.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: str = __version__,
        inbox_names: Sequence[str] = (),
    ) -> None:
        self.registry = registry
        r = registry

        # SPEC §7: the contract.
        self.images = Counter(
            "medianalysed_images_total",
            "Images that reached a terminal status.",
            ["inbox", "status"],
            registry=r,
        )
        self.image_errors = Counter(
            "medianalysed_image_errors_total",
            "Failed or skipped images, by error code.",
            ["code"],
            registry=r,
        )
        self.image_duration = Histogram(
            "medianalysed_image_duration_seconds",
            "Time to analyse one image.",
            buckets=IMAGE_DURATION_BUCKETS,
            registry=r,
        )
        self.batches = Counter(
            "medianalysed_batches_total",
            "Batches that reached a terminal status.",
            ["inbox", "status"],
            registry=r,
        )
        self.batches_in_progress = Gauge(
            "medianalysed_batches_in_progress",
            "Batches queued, processing or retrying.",
            registry=r,
        )
        self.images_pending = Gauge(
            "medianalysed_images_pending",
            "Images of running batches not yet in a terminal status.",
            registry=r,
        )
        self.retries = Counter(
            "medianalysed_retries_total", "Retries of retryable image failures.", registry=r
        )
        self.bytes_processed = Counter(
            "medianalysed_bytes_processed_total", "Bytes of image files analysed.", registry=r
        )
        self.webhook_deliveries = Counter(
            "medianalysed_webhook_deliveries_total",
            "Webhook delivery attempts, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.build_info = Gauge(
            "medianalysed_build_info",
            "Always 1; the version label says which build runs.",
            ["version"],
            registry=r,
        )

        # Internals.
        self.queue_depth = Gauge(
            "medianalysed_queue_depth", "Images waiting for a worker.", registry=r
        )
        self.workers_busy = Gauge(
            "medianalysed_workers_busy", "Workers analysing an image now.", registry=r
        )
        self.workers = Gauge("medianalysed_workers", "Configured workers.", registry=r)
        self.executor_available = Gauge(
            "medianalysed_executor_available",
            "1 while the executor takes new images; 0 while its Dask cluster is away.",
            registry=r,
        )
        self.executor_workers = Gauge(
            "medianalysed_executor_workers",
            "Dask workers connected to the scheduler (the dask executor only).",
            registry=r,
        )
        self.executor_blind_workers = Gauge(
            "medianalysed_executor_blind_workers",
            "Dask workers that cannot see an inbox (or the downloads folder).",
            registry=r,
        )
        self.settle_wait = Histogram(
            "medianalysed_settle_wait_seconds",
            "Time from the first sight of a batch folder until it is ready.",
            buckets=SETTLE_WAIT_BUCKETS,
            registry=r,
        )
        self.batch_duration = Histogram(
            "medianalysed_batch_duration_seconds",
            "Time from the start of a batch to its terminal status.",
            buckets=BATCH_DURATION_BUCKETS,
            registry=r,
        )
        self.watcher_mode = Gauge(
            "medianalysed_watcher_mode",
            "1 for the watch mode an inbox actually uses, 0 for the others.",
            ["inbox", "mode"],
            registry=r,
        )
        self.duplicates = Counter(
            "medianalysed_duplicates_total",
            "Duplicate images found, by tier.",
            ["tier"],
            registry=r,
        )
        self.ledger_entries = Gauge(
            "medianalysed_ledger_entries", "Entries in the history index.", registry=r
        )
        self.dead_letters = Gauge(
            "medianalysed_dead_letters",
            "Webhook deliveries that gave up after their last attempt.",
            registry=r,
        )
        self.content_cache_hits = Counter(
            "medianalysed_content_cache_hits_total",
            "Images whose analysis came from the content cache.",
            registry=r,
        )
        self.vips_decodes = Counter(
            "medianalysed_vips_decodes_total",
            "PNG/TIFF decodes libvips did, or failed on and left to Pillow (fallback).",
            ["result"],
            registry=r,
        )
        for result in VIPS_RESULTS:
            self.vips_decodes.labels(result=result)
        self.worker_restarts = Counter(
            "medianalysed_worker_restarts_total", "Worker processes restarted.", registry=r
        )
        self.up = Gauge("medianalysed_up", "1 while the daemon runs.", registry=r)
        self.write_failures = Counter(
            "medianalysed_write_failures_total",
            "Writes the disk refused (each failed attempt), by target and errno; the work "
            "pauses and retries.",
            ["target", "errno"],
            registry=r,
        )

        # Every started batch ends: how often that needed help.
        self.batches_stalled = Counter(
            "medianalysed_batches_stalled_total",
            "Batches that made no progress for [processing] stall_seconds (once per stall).",
            registry=r,
        )
        self.batch_restarts = Counter(
            "medianalysed_batch_restarts_total",
            "Batch actors restarted after a crash.",
            registry=r,
        )
        self.batches_salvaged = Counter(
            "medianalysed_batches_salvaged_total",
            "Batches finalised with their unfinished images as INTERNAL after repeated crashes.",
            registry=r,
        )
        self.crash_loops = Counter(
            "medianalysed_crash_loops_total",
            "Batches the daemon died on twice at the same step, set aside at the next start.",
            registry=r,
        )
        self.batches_set_aside = Counter(
            "medianalysed_batches_set_aside_total",
            "Batches set aside as failed: a crash loop, or they could not be finalised.",
            registry=r,
        )

        self._preinitialise()
        self.build_info.labels(version=version).set(1)
        self.up.set(1)
        for name in inbox_names:
            self.add_inbox(name)

    def count_lifecycle(self, event: str) -> None:
        """Count a lifecycle event of the supervisor (see SupervisorParts.on_lifecycle)."""
        counter = {
            "stalled": self.batches_stalled,
            "restarted": self.batch_restarts,
            "salvaged": self.batches_salvaged,
            "set_aside": self.batches_set_aside,
            "crash_loop": self.crash_loops,
        }.get(event)
        if counter is not None:
            counter.inc()

    @classmethod
    def create(cls, version: str, inbox_names: Sequence[str]) -> Metrics:
        """Create the metrics in a fresh registry of their own, with the process collectors.

        `process_*` (memory, CPU, open fds) and `python_info` are what every exporter serves
        and what standard dashboards and alerts expect. The `_created` twin of every counter
        is switched off: it doubles the series and no query here uses it.
        """
        disable_created_metrics()  # type: ignore[no-untyped-call]
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        return cls(registry, version=version, inbox_names=inbox_names)

    def add_inbox(self, name: str) -> None:
        """Create the series of one inbox at 0 (idempotent; also for inboxes added on reload)."""
        for status in IMAGE_STATUSES:
            self.images.labels(inbox=name, status=status)
        for batch_status in BATCH_STATUSES:
            self.batches.labels(inbox=name, status=batch_status)
        for mode in WATCHER_MODES:
            self.watcher_mode.labels(inbox=name, mode=mode)

    def set_executor_state(self, state: ExecutorState) -> None:
        """The executor's availability and, on Dask, its workers (from its monitor thread)."""
        self.executor_available.set(1 if state.available else 0)
        self.executor_workers.set(state.workers)
        self.executor_blind_workers.set(state.blind)

    def set_watcher_mode(self, inbox: str, mode: str) -> None:
        """Mark `mode` ("events" or "polling") as the one `inbox` uses, the others as 0."""
        for known in {*WATCHER_MODES, mode}:
            self.watcher_mode.labels(inbox=inbox, mode=known).set(1 if known == mode else 0)

    def _preinitialise(self) -> None:
        for code in ErrorCode:
            self.image_errors.labels(code=code)
        for tier in TIERS:
            self.duplicates.labels(tier=tier)
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_deliveries.labels(outcome=outcome)
        for target in WRITE_TARGETS:
            for errno_name in PREINITIALISED_ERRNOS:
                self.write_failures.labels(target=target, errno=errno_name)

    def count_write_failure(self, target: str, errno_name: str) -> None:
        """One write the disk refused (the `FaultBoard`'s hook)."""
        self.write_failures.labels(target=target, errno=errno_name).inc()


HealthCheck = Callable[[], bool]
HealthReasons = Callable[[], Sequence[str]]


class _Server(BoundedHTTPServer):
    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        registry: CollectorRegistry,
        health: HealthReasons,
        ready: HealthCheck,
        *,
        api: ApiEndpoint | None,
    ) -> None:
        self.registry = registry
        self.health = health
        self.ready = ready
        self.api = api
        super().__init__(address, family, _Handler, thread_name="metrics-http")

    def handle_error(self, request: object, client_address: object) -> None:
        """Log a failed request through logging instead of printing to stderr."""
        # Called inside the handler thread's `except Exception:` block.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            logger.debug("metrics client %s went away", client_address)
        else:
            logger.error("metrics request from %s failed", client_address, exc_info=error)


class _Handler(PreReadHandler):
    server: _Server
    server_version = "medianalysed"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        path = self.path.split("?", 1)[0]
        if path.startswith(API_PREFIX) and self.server.api is not None:
            self.server.api.handle(self, "GET")
        elif path == "/metrics":
            self._reply_metrics()
        elif path == "/healthz":
            self._reply_health()
        elif path == "/readyz":
            self._reply_ready()
        else:
            self._reply(404, b"not found\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        if self.path.startswith(API_PREFIX) and self.server.api is not None:
            self.server.api.handle(self, "POST")
        else:
            self._reply(404, b"not found\n", "text/plain; charset=utf-8")

    def _reply_metrics(self) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        try:
            body = encoder(self.server.registry)
        except Exception:
            logger.exception("collecting metrics failed")
            self._reply(500, b"collecting metrics failed\n", "text/plain; charset=utf-8")
            return
        self._reply(200, body, content_type)

    def _reply_health(self) -> None:
        try:
            reasons = list(self.server.health())
        except Exception as exc:
            logger.exception("health check for %s raised", self.path)
            reasons = [f"health check failed: {type(exc).__name__}"]
        body = health_body(reasons).encode()
        self._reply(503 if reasons else 200, body, "text/plain; charset=utf-8")

    def _reply_ready(self) -> None:
        try:
            passed = self.server.ready()
        except Exception:
            logger.exception("readiness check for %s raised", self.path)
            passed = False
        body = b"ready\n" if passed else b"not ready\n"
        self._reply(200 if passed else 503, body, "text/plain; charset=utf-8")

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s", self.address_string(), format % args)


def health_body(reasons: Sequence[str]) -> str:
    """`ok`, or `unhealthy` followed by one reason a line (each made one line)."""
    if not reasons:
        return "ok\n"
    lines = ("- " + " ".join(reason.split()) for reason in reasons)
    return "unhealthy\n" + "".join(f"{line}\n" for line in lines)


class MetricsServer:
    """The HTTP endpoint: /metrics, /healthz and /readyz, on a bounded set of threads.

    `health` returns the reasons the daemon is unhealthy (empty: healthy) and `ready`
    whether it is ready; both are called on a handler thread for every probe and must be
    cheap and thread-safe (reading memory, never the disk). Slow clients are bounded by
    `httpd.BoundedHTTPServer`.
    """

    def __init__(
        self,
        listen: str,
        registry: CollectorRegistry,
        *,
        health: HealthReasons,
        ready: HealthCheck,
        api: ApiEndpoint | None = None,
    ) -> None:
        self._listen = listen
        self._registry = registry
        self._health = health
        self._ready = ready
        self._api = api
        self._server: _Server | None = None

    def start(self) -> None:
        """Bind and serve in a background thread.

        Raises:
            StartupError: the address is malformed or cannot be bound.
        """
        if self._server is not None:
            return
        try:
            host, port = split_listen(self._listen)
        except ValueError as exc:
            raise self._startup_error(str(exc)) from exc
        try:
            server = _Server(
                (host, port),
                _family_of(host),
                self._registry,
                self._health,
                self._ready,
                api=self._api,
            )
        except OSError as exc:
            raise self._startup_error(_describe_os_error(exc)) from exc
        self._server = server
        server.start()
        logger.info("metrics on http://%s/metrics", self._format_bound())

    @property
    def bound_address(self) -> tuple[str, int]:
        """The host and port actually bound (the real port when 0 was asked for)."""
        if self._server is None:
            raise RuntimeError("the metrics server is not started")
        return self._server.bound_address

    def stop(self) -> None:
        """Stop serving, close the sockets and join the threads (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def _format_bound(self) -> str:
        host, port = self.bound_address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _startup_error(self, reason: str) -> StartupError:
        return StartupError(
            f"cannot listen on {self._listen} ([metrics] listen): {reason}; "
            'choose another port or set listen = "" to disable'
        )


def _family_of(host: str) -> socket.AddressFamily:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        return infos[0][0]
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


def _describe_os_error(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    return (exc.strerror or str(exc)).lower()
