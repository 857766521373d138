"""Signals: handlers only enqueue, the main loop acts (STYLE §3.4.8); SIGUSR1's stack dump."""

from __future__ import annotations

import faulthandler
import re
import signal
import tempfile
import threading
from collections import deque
from dataclasses import dataclass, field
from types import FrameType


@dataclass
class SignalQueue:
    """Signal handlers only append here; the main loop does the work (STYLE §3.4.8)."""

    received: deque[int] = field(default_factory=deque)
    wake: threading.Event = field(default_factory=threading.Event)

    def handler(self, signum: int, _frame: FrameType | None) -> None:
        """The installed signal handler."""
        self.received.append(signum)
        self.wake.set()

    def install(self) -> None:
        """Register for SIGTERM, SIGINT, SIGHUP and SIGUSR1 (main thread only)."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(signum, self.handler)
        faulthandler.register(signal.SIGUSR2, all_threads=True)


def thread_stacks() -> str:
    """Every thread's stack as faulthandler prints it, each thread header with its name.

    Written through logging (not straight to stderr) so a JSON log stays one object a line.
    """
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as dump:
        faulthandler.dump_traceback(file=dump, all_threads=True)
        dump.seek(0)
        text = dump.read()
    names = {thread.ident: thread.name for thread in threading.enumerate()}

    def with_name(match: re.Match[str]) -> str:
        name = names.get(int(match[1], 16))
        return f"{match[0]} [{name}]" if name else match[0]

    return _THREAD_HEADER.sub(with_name, text).rstrip("\n")


_THREAD_HEADER = re.compile(r"^(?:Current thread|Thread) (0x[0-9a-f]+)", re.MULTILINE)
