"""sd_notify datagrams received on a real AF_UNIX socket, and the watchdog interval."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from medianalysed.systemd import Notifier, watchdog_interval

RECEIVE_TIMEOUT_S = 5.0


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd, named by $NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    assert len(str(path)) < 100, "AF_UNIX paths are limited to 108 bytes"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(RECEIVE_TIMEOUT_S)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def received(sock: socket.socket) -> dict[str, str]:
    lines = sock.recv(4096).decode().split("\n")
    return dict(line.split("=", 1) for line in lines)


def test_ready_sends_ready_and_status_in_one_datagram(manager: socket.socket) -> None:
    notifier = Notifier()

    assert notifier.ready("watching 2 inboxes")

    assert received(manager) == {"READY": "1", "STATUS": "watching 2 inboxes"}
    notifier.close()


def test_status_stopping_and_watchdog(manager: socket.socket) -> None:
    notifier = Notifier()

    notifier.status("processing 5/30 (2 failed)")
    notifier.watchdog()
    notifier.stopping()

    assert received(manager) == {"STATUS": "processing 5/30 (2 failed)"}
    assert received(manager) == {"WATCHDOG": "1"}
    assert received(manager) == {"STOPPING": "1"}
    notifier.close()


def test_reloading_carries_the_monotonic_clock(manager: socket.socket) -> None:
    notifier = Notifier()
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

    notifier.reloading()

    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    fields = received(manager)
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after
    notifier.close()


def test_notify_keeps_each_value_on_one_line(manager: socket.socket) -> None:
    notifier = Notifier()

    notifier.notify(STATUS="line one\nline two", ERRNO=5)

    assert received(manager) == {"STATUS": "line one line two", "ERRNO": "5"}
    notifier.close()


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"medianalysed-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(RECEIVE_TIMEOUT_S)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        notifier = Notifier()

        assert notifier.watchdog()

        assert received(sock) == {"WATCHDOG": "1"}
        notifier.close()


def test_without_notify_socket_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()

    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.watchdog()
    assert not notifier.stopping()


def test_a_relative_notify_socket_is_ignored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/notify")

    notifier = Notifier()

    assert not notifier.enabled
    assert "ignoring NOTIFY_SOCKET" in caplog.text


def test_a_dead_socket_never_raises_and_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    notifier = Notifier()

    with caplog.at_level(logging.WARNING, logger="medianalysed.systemd"):
        results = [notifier.ready("x"), notifier.watchdog(), notifier.stopping()]

    assert results == [False, False, False]
    warnings = [r for r in caplog.records if r.name == "medianalysed.systemd"]
    assert len(warnings) == 1
    assert "cannot notify the service manager" in warnings[0].getMessage()
    notifier.close()


def test_the_socket_comes_back_after_the_manager_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify"
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    notifier = Notifier()
    assert not notifier.watchdog()

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(RECEIVE_TIMEOUT_S)

        assert notifier.watchdog()
        assert received(sock) == {"WATCHDOG": "1"}
    notifier.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getppid())}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "nope"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


def test_watchdog_interval_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)

    assert watchdog_interval() == 0.5


def test_a_frozen_build_accepts_the_bootloader_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    # PyInstaller sets sys.frozen; systemd's WATCHDOG_PID is then the bootloader, our parent.
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    env = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getppid())}

    assert watchdog_interval(env) == 15.0


def test_a_manager_that_does_not_read_never_blocks_the_sender(manager: socket.socket) -> None:
    notifier = Notifier()
    limit = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text(encoding="ascii"))

    sent = [notifier.status(f"step {i}") for i in range(limit + 20)]  # would block forever

    assert sent[0]
    assert not sent[-1]  # the queue is full: dropped, not waited for
    assert received(manager) == {"STATUS": "step 0"}
    notifier.close()


@pytest.mark.timeout(60)
def test_a_full_queue_delays_a_watchdog_ping_at_most_the_send_timeout(
    manager: socket.socket,
) -> None:
    notifier = Notifier()
    while notifier.status("filler"):  # fill the manager's queue
        pass

    assert notifier.watchdog() is False  # waited SEND_TIMEOUT_S, not for ever
    received(manager)  # the manager reads one: room again
    assert notifier.watchdog() is True
    notifier.close()
