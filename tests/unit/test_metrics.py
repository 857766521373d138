"""Metrics registry contents and the /metrics, /healthz, /readyz endpoint, over real HTTP."""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterable, Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from medianalysed.errors import ErrorCode, StartupError
from medianalysed.metrics import Metrics, MetricsServer

CONTRACT_SAMPLES = {
    "medianalysed_images_total",
    "medianalysed_image_errors_total",
    "medianalysed_image_duration_seconds_bucket",
    "medianalysed_image_duration_seconds_count",
    "medianalysed_batches_total",
    "medianalysed_batches_in_progress",
    "medianalysed_images_pending",
    "medianalysed_retries_total",
    "medianalysed_bytes_processed_total",
    "medianalysed_webhook_deliveries_total",
    "medianalysed_build_info",
}
INTERNAL_SAMPLES = {
    "medianalysed_queue_depth",
    "medianalysed_workers_busy",
    "medianalysed_workers",
    "medianalysed_settle_wait_seconds_count",
    "medianalysed_batch_duration_seconds_count",
    "medianalysed_watcher_mode",
    "medianalysed_duplicates_total",
    "medianalysed_ledger_entries",
    "medianalysed_dead_letters",
    "medianalysed_content_cache_hits_total",
    "medianalysed_vips_decodes_total",
    "medianalysed_worker_restarts_total",
    "medianalysed_up",
}


def sample_names(registry: CollectorRegistry) -> set[str]:
    return {sample.name for family in registry.collect() for sample in family.samples}


def no_reasons() -> list[str]:
    return []


def always() -> bool:
    return True


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create("1.2.3", ["default", "scans"])


def test_every_metric_of_the_contract_and_the_internals_is_exposed(metrics: Metrics) -> None:
    names = sample_names(metrics.registry)

    assert not CONTRACT_SAMPLES - names
    assert not INTERNAL_SAMPLES - names


def test_known_label_values_exist_at_zero_before_any_use(metrics: Metrics) -> None:
    for inbox in ("default", "scans"):
        for status in ("done", "failed", "skipped"):
            assert value(metrics, "medianalysed_images_total", inbox=inbox, status=status) == 0
        for status in ("completed", "partial", "failed", "cancelled"):
            assert value(metrics, "medianalysed_batches_total", inbox=inbox, status=status) == 0
        for mode in ("events", "polling"):
            assert value(metrics, "medianalysed_watcher_mode", inbox=inbox, mode=mode) == 0
    for code in ErrorCode:
        assert value(metrics, "medianalysed_image_errors_total", code=str(code)) == 0
    for tier in ("exact", "same_pixels", "near"):
        assert value(metrics, "medianalysed_duplicates_total", tier=tier) == 0
    for outcome in ("delivered", "retry", "dead"):
        assert value(metrics, "medianalysed_webhook_deliveries_total", outcome=outcome) == 0
    for result in ("decoded", "fallback"):
        assert value(metrics, "medianalysed_vips_decodes_total", result=result) == 0


def test_build_info_and_up_are_one(metrics: Metrics) -> None:
    assert value(metrics, "medianalysed_build_info", version="1.2.3") == 1
    assert value(metrics, "medianalysed_up") == 1


def test_each_instance_has_its_own_registry() -> None:
    first = Metrics.create("1", ["default"])
    second = Metrics.create("1", ["default"])

    first.images.labels(inbox="default", status="done").inc(3)

    assert value(first, "medianalysed_images_total", inbox="default", status="done") == 3
    assert value(second, "medianalysed_images_total", inbox="default", status="done") == 0


def test_injected_registry_is_the_one_filled() -> None:
    registry = CollectorRegistry()

    Metrics(registry, version="9", inbox_names=["x"])

    assert registry.get_sample_value("medianalysed_build_info", {"version": "9"}) == 1


def test_image_duration_buckets_span_5_ms_to_120_s(metrics: Metrics) -> None:
    metrics.image_duration.observe(0.004)
    metrics.image_duration.observe(119.0)

    name = "medianalysed_image_duration_seconds_bucket"
    assert value(metrics, name, le="0.005") == 1
    assert value(metrics, name, le="60.0") == 1
    assert value(metrics, name, le="120.0") == 2
    assert value(metrics, "medianalysed_image_duration_seconds_count") == 2


def test_watcher_mode_marks_only_the_active_mode(metrics: Metrics) -> None:
    metrics.set_watcher_mode("default", "events")
    metrics.set_watcher_mode("default", "polling")

    assert value(metrics, "medianalysed_watcher_mode", inbox="default", mode="polling") == 1
    assert value(metrics, "medianalysed_watcher_mode", inbox="default", mode="events") == 0
    assert value(metrics, "medianalysed_watcher_mode", inbox="scans", mode="polling") == 0


def test_add_inbox_creates_its_series_and_keeps_existing_counts(metrics: Metrics) -> None:
    metrics.images.labels(inbox="default", status="done").inc()

    metrics.add_inbox("default")
    metrics.add_inbox("late")

    assert value(metrics, "medianalysed_images_total", inbox="default", status="done") == 1
    assert value(metrics, "medianalysed_batches_total", inbox="late", status="partial") == 0


# --- HTTP ---


class Flags:
    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.ready = threading.Event()

    def health(self) -> list[str]:
        return list(self.reasons)


@pytest.fixture
def flags() -> Flags:
    return Flags()


@pytest.fixture
def server(metrics: Metrics, flags: Flags) -> Iterator[MetricsServer]:
    server = MetricsServer(
        "127.0.0.1:0", metrics.registry, health=flags.health, ready=flags.ready.is_set
    )
    server.start()
    yield server
    server.stop()


def get(
    server: MetricsServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, str, str]:
    host, port = server.bound_address
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


def test_port_zero_binds_an_ephemeral_port(server: MetricsServer) -> None:
    host, port = server.bound_address

    assert host == "127.0.0.1"
    assert port > 0


def test_metrics_endpoint_serves_the_registry_as_prometheus_text(
    server: MetricsServer, metrics: Metrics
) -> None:
    metrics.images.labels(inbox="default", status="failed").inc(2)

    status, content_type, body = get(server, "/metrics")

    assert status == 200
    assert content_type.startswith("text/plain")
    assert 'medianalysed_build_info{version="1.2.3"} 1.0' in body
    assert 'medianalysed_images_total{inbox="default",status="failed"} 2.0' in body
    assert 'medianalysed_image_errors_total{code="DECOMPRESSION_BOMB"} 0.0' in body


def test_process_collectors_are_served_and_counters_have_no_created_twin(
    server: MetricsServer,
) -> None:
    _status, _content_type, body = get(server, "/metrics")

    for name in ("process_resident_memory_bytes", "process_open_fds", "python_info"):
        assert f"\n{name}" in body, name
    assert "_created" not in body


def test_a_real_scrape_passes_promtool_check_metrics(
    server: MetricsServer, metrics: Metrics
) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make deps` installs Debian's prometheus package"
    metrics.images.labels(inbox="default", status="done").inc()
    metrics.image_duration.observe(0.2)
    _status, _content_type, body = get(server, "/metrics")

    checked = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, check=False
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "", checked.stdout  # lint findings are printed, not fatal


def test_metrics_endpoint_speaks_openmetrics_when_asked(server: MetricsServer) -> None:
    status, content_type, body = get(
        server, "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}
    )

    assert status == 200
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")


def test_healthz_follows_the_health_callback(server: MetricsServer, flags: Flags) -> None:
    assert get(server, "/healthz")[::2] == (200, "ok\n")

    flags.reasons = ["batch X stalled", "state not writable:\nENOSPC on /var/lib/x"]

    assert get(server, "/healthz")[::2] == (
        503,
        "unhealthy\n- batch X stalled\n- state not writable: ENOSPC on /var/lib/x\n",
    )


def test_a_health_callback_that_raises_means_unhealthy(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> bool:
        raise RuntimeError("actor registry gone")

    def broken_reasons() -> list[str]:
        raise RuntimeError("actor registry gone")

    server = MetricsServer("127.0.0.1:0", metrics.registry, health=broken_reasons, ready=broken)
    server.start()
    try:
        assert get(server, "/healthz")[0] == 503
        assert get(server, "/readyz")[0] == 503
    finally:
        server.stop()
    assert "actor registry gone" in caplog.text


def test_a_failing_collector_is_a_500_and_the_server_keeps_serving(
    server: MetricsServer, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Collector):
        def collect(self) -> Iterable[Metric]:
            raise RuntimeError("state store closed")

    metrics.registry.register(Broken())

    assert get(server, "/metrics")[0] == 500
    assert "state store closed" in caplog.text
    assert get(server, "/healthz")[0] == 200


def test_readyz_turns_200_once_ready(server: MetricsServer, flags: Flags) -> None:
    assert get(server, "/readyz")[0] == 503

    flags.ready.set()

    assert get(server, "/readyz")[::2] == (200, "ready\n")


@pytest.mark.parametrize("path", ["/", "/metric", "/healthz/x", "/favicon.ico"])
def test_other_paths_are_404(server: MetricsServer, path: str) -> None:
    assert get(server, path)[0] == 404


def test_query_strings_are_ignored(server: MetricsServer) -> None:
    assert get(server, "/healthz?verbose=1")[0] == 200


def test_port_in_use_is_a_startup_error_that_says_what_to_do(metrics: Metrics) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = MetricsServer(
            f"127.0.0.1:{port}", metrics.registry, health=no_reasons, ready=always
        )

        with pytest.raises(StartupError) as caught:
            server.start()

    assert str(caught.value) == (
        f"cannot listen on 127.0.0.1:{port} ([metrics] listen): address already in use; "
        'choose another port or set listen = "" to disable'
    )


def test_malformed_listen_is_a_startup_error(metrics: Metrics) -> None:
    server = MetricsServer("9464", metrics.registry, health=no_reasons, ready=always)

    with pytest.raises(StartupError, match=r"cannot listen on 9464 \(\[metrics\] listen\)"):
        server.start()


def test_stop_releases_the_port_and_is_idempotent(metrics: Metrics) -> None:
    first = MetricsServer("127.0.0.1:0", metrics.registry, health=no_reasons, ready=always)
    first.start()
    port = first.bound_address[1]

    first.stop()
    first.stop()
    second = MetricsServer(f"127.0.0.1:{port}", metrics.registry, health=no_reasons, ready=always)
    second.start()
    try:
        assert second.bound_address == ("127.0.0.1", port)
    finally:
        second.stop()
    assert not [t for t in threading.enumerate() if t.name == "metrics-http"]


def ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback on this machine")
def test_ipv6_listen_in_brackets(metrics: Metrics) -> None:
    server = MetricsServer("[::1]:0", metrics.registry, health=no_reasons, ready=always)
    server.start()
    try:
        assert server.bound_address[0] == "::1"
        assert get(server, "/healthz")[0] == 200
    finally:
        server.stop()
