"""End-to-end: the real daemon's HTTP endpoint under a flood of half-sent requests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import DaemonProcess, free_port, wait_for, write_config

pytestmark = pytest.mark.e2e

HALF_SENT = 300


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[DaemonProcess, int]]:
    port = free_port()
    config = write_config(tmp_path, listen=f"127.0.0.1:{port}")
    process = DaemonProcess(tmp_path, config).start()
    try:
        yield process, port
    finally:
        process.stop_quietly()


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


def settled_thread_count(pid: int) -> int:
    """The thread count once start-up has stopped adding threads (unchanged for 1 s)."""
    seen: list[int] = []

    def unchanged() -> bool:
        seen.append(threads_of(pid))
        return len(seen) > 20 and len(set(seen[-20:])) == 1  # polled every 0.05 s

    wait_for(unchanged, what="a steady thread count")
    return seen[-1]


def test_half_sent_requests_neither_add_threads_nor_block_healthz(
    daemon: tuple[DaemonProcess, int],
) -> None:
    process, port = daemon
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        wait_for(lambda: http.get("/readyz").status_code == 200, what="the daemon ready")
        before = settled_thread_count(process.pid)
        sockets = []
        try:
            for _ in range(HALF_SENT):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never the blank line
                sockets.append(sock)

            answer = http.get("/healthz")

            assert (answer.status_code, answer.text) == (200, "ok\n")
            assert threads_of(process.pid) <= before + 5  # the old endpoint: one per connection
        finally:
            for sock in sockets:
                sock.close()
        assert http.get("/metrics").status_code == 200
