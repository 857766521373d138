"""The sd_notify protocol: READY, STATUS, STOPPING, RELOADING and WATCHDOG datagrams.

Keyed on `$NOTIFY_SOCKET` alone, so it works in containers and under test without
/run/systemd/system. Without the variable every call is a no-op. Sending never raises:
losing a status line must not stop the daemon, so the first failure is logged and the
rest are silent.

In a PyInstaller build the Python process is a child of the bootloader, so the unit needs
`NotifyAccess=all` and the watchdog PID check below accepts the parent's PID.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping

logger = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
# A manager that does not read fills its queue (net.unix.max_dgram_qlen, often 10) and
# a blocking send would stop the main loop, its signals and its watchdog pings. STATUS
# lines are dropped at once then; other notifications wait at most this long.
SEND_TIMEOUT_S = 1.0


class Notifier:
    """Sends notifications to the service manager named by `$NOTIFY_SOCKET`.

    Thread-safe; one datagram per call, so the fields of one call arrive together.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get(NOTIFY_SOCKET_ENV, ""))
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        """Whether a notification socket was given."""
        return self._address is not None

    def ready(self, status: str) -> bool:
        """Tell the manager start-up (or a reload) is complete, with a status line."""
        return self.notify(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """Update the one-line status `systemctl status` shows."""
        return self.notify(STATUS=text)

    def stopping(self) -> bool:
        """Tell the manager a graceful shutdown has begun."""
        return self.notify(STOPPING=1)

    def watchdog(self) -> bool:
        """Ping the watchdog; call only from the loop whose health it vouches for."""
        return self.notify(WATCHDOG=1)

    def reloading(self) -> bool:
        """Tell the manager a configuration reload has begun; send `ready()` when done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(RELOADING=1, MONOTONIC_USEC=usec)

    def notify(self, **fields: object) -> bool:
        """Send `KEY=value` lines in one datagram; return whether it was sent.

        Newlines inside a value would start a new field, so they become spaces. Never
        blocks for long: a manager that does not read loses STATUS lines at once and other
        notifications after `SEND_TIMEOUT_S`.
        """
        if self._address is None or not fields:
            return False
        payload = "\n".join(f"{key}={_one_line(value)}" for key, value in fields.items())
        status_only = fields.keys() == {"STATUS"}
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.settimeout(0.0 if status_only else SEND_TIMEOUT_S)
                self._socket.sendto(payload.encode(), self._address)
            except OSError as exc:
                self._warn_once(exc)
                return False
        return True

    def close(self) -> None:
        """Close the socket; a later call opens a new one."""
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    def _warn_once(self, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "cannot notify the service manager at %r: %s (further failures not logged)",
                self._address,
                exc,
            )


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings (half of `$WATCHDOG_USEC`), or None if not asked for.

    `$WATCHDOG_PID` names the process systemd expects pings from. A frozen (PyInstaller)
    build runs as a child of the bootloader, which is the PID systemd knows, so the
    parent's PID also counts there.
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid_text = env.get("WATCHDOG_PID", "")
    if pid_text and not _is_our_pid(pid_text):
        return None
    return usec / 2 / 1_000_000


def _is_our_pid(pid_text: str) -> bool:
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid == os.getpid():
        return True
    return bool(getattr(sys, "frozen", False)) and pid == os.getppid()


def _socket_address(value: str) -> str | None:
    if value.startswith("@"):
        # Abstract namespace: a leading NUL instead of '@'.
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    if value:
        logger.warning("ignoring NOTIFY_SOCKET=%r: not an absolute or abstract socket path", value)
    return None


def _one_line(value: object) -> str:
    return str(value).replace("\r", " ").replace("\n", " ")
