"""The bounded HTTP endpoint over real sockets: slow clients cost no thread, bounds hold."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from medianalysed.httpd import BoundedHTTPServer, PreReadHandler
from medianalysed.metrics import Metrics, MetricsServer
from tests.e2e.harness import wait_for

DEADLINE_S = 30.0  # socket timeouts: a hung server fails the test, never hangs it


def get(address: tuple[str, int], path: str, timeout: float = 10) -> tuple[int, str]:
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def closed_without_answer(sock: socket.socket) -> bool:
    """The server closed `sock` (a reset counts: our unread request was still buffered)."""
    try:
        return read_all(sock) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def metrics_server() -> Iterator[MetricsServer]:
    metrics = Metrics(CollectorRegistry(), version="1.2.3")
    server = MetricsServer("127.0.0.1:0", metrics.registry, health=list, ready=lambda: True)
    server.start()
    yield server
    server.stop()


def half_sent(address: tuple[str, int], count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(address, timeout=10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never the blank line
        sockets.append(sock)
    return sockets


def test_300_half_sent_requests_leave_threads_bounded_and_health_answering(
    metrics_server: MetricsServer,
) -> None:
    baseline = threading.active_count()
    sockets = half_sent(metrics_server.bound_address, 300)
    try:
        assert threading.active_count() == baseline
        assert get(metrics_server.bound_address, "/healthz", timeout=10) == (200, "ok\n")
        assert get(metrics_server.bound_address, "/metrics", timeout=10)[0] == 200
        assert threading.active_count() == baseline
    finally:
        for sock in sockets:
            sock.close()


class _Gate(PreReadHandler):
    """Holds every request until `release` is set (a slow handler)."""

    entered = threading.Semaphore(0)
    release = threading.Event()

    def do_GET(self) -> None:
        type(self).entered.release()
        type(self).release.wait(DEADLINE_S)
        body = b"done\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[PreReadHandler], **bounds: float) -> Iterator[BoundedHTTPServer]:
    server = BoundedHTTPServer(
        ("127.0.0.1", 0),
        socket.AF_INET,
        handler,
        thread_name="test-http",
        **bounds,  # type: ignore[arg-type]
    )
    server.start()
    try:
        yield server
    finally:
        _Gate.release.set()
        server.stop()


def test_a_half_sent_request_is_dropped_after_the_request_timeout() -> None:
    with serving(_Gate, request_timeout_s=0.3) as server:
        with socket.create_connection(server.bound_address, timeout=DEADLINE_S) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n")
            started = time.monotonic()
            reply = read_all(sock)  # returns once the server closes the connection
        assert reply.startswith(b"HTTP/1.0 408 ")
        assert time.monotonic() - started < DEADLINE_S


def test_when_every_handler_is_busy_and_the_queue_full_the_client_gets_503_at_once() -> None:
    _Gate.release.clear()
    with serving(_Gate, handler_threads=1, queue_size=1) as server:
        address = server.bound_address
        holders = [socket.create_connection(address, timeout=DEADLINE_S) for _ in range(2)]
        holders[0].sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert _Gate.entered.acquire(timeout=DEADLINE_S)  # the only handler is held
        holders[1].sendall(b"GET / HTTP/1.0\r\n\r\n")  # waits in the queue
        wait_for(server._requests.full, what="the queue to fill")
        with socket.create_connection(address, timeout=DEADLINE_S) as refused:
            refused.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert read_all(refused).startswith(b"HTTP/1.0 503 ")
        _Gate.release.set()
        for holder in holders:
            assert read_all(holder).startswith(b"HTTP/1.0 200 ")
            holder.close()


def test_an_oversized_request_head_is_refused() -> None:
    with (
        serving(_Gate) as server,
        socket.create_connection(server.bound_address, timeout=DEADLINE_S) as sock,
    ):
        sock.sendall(b"GET / HTTP/1.0\r\nX: " + b"a" * 70_000)
        assert read_all(sock).startswith(b"HTTP/1.0 431 ")


def test_beyond_max_connections_the_oldest_half_sent_one_is_dropped() -> None:
    with serving(_Gate, max_connections=3, request_timeout_s=DEADLINE_S) as server:
        address = server.bound_address
        oldest, *others = half_sent(address, 3)
        wait_for(lambda: len(server._pending) == 3, what="three pending connections")
        newest = half_sent(address, 1)
        assert closed_without_answer(oldest)
        assert len(server._pending) <= 3
        for sock in [oldest, *others, *newest]:
            sock.close()


def test_stop_joins_every_thread_and_closes_pending_connections() -> None:
    before = {thread.name for thread in threading.enumerate()}
    with serving(_Gate) as server:
        sockets = half_sent(server.bound_address, 5)
    after = {thread.name for thread in threading.enumerate()}
    assert not {name for name in after - before if name.startswith("test-http")}
    for sock in sockets:
        assert closed_without_answer(sock)
        sock.close()
