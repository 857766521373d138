"""Health as a list of reasons, answered from memory on any thread.

`HealthBoard` collects why the daemon is unhealthy (an empty list means healthy). Parts of
the daemon contribute in one of two ways:

- a *probe*, `board.add_probe("name", fn)`, is called on every question and returns the
  reasons it sees now; it must only read in-memory state (a flag, `is_alive()`, a
  timestamp) because /healthz and the watchdog ask often;
- a *condition*, `board.set_reason("key", "text")` / `board.clear_reason("key")`, is pushed
  by whoever notices a problem (for example a failed write) and stays until cleared.

`StateProbe` turns "can the state store still be written?" into such a condition with a
background thread, so no health question ever touches SQLite.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Final

logger = logging.getLogger(__name__)

Probe = Callable[[], Sequence[str]]

STATE_PROBE_INTERVAL_S: Final = 5.0
# A probe write that has not returned by then is itself a reason (a hung disk).
STATE_PROBE_STALE_S: Final = 30.0


class HealthBoard:
    """Thread-safe registry of probes and pushed conditions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._probes: dict[str, Probe] = {}
        self._conditions: dict[str, str] = {}

    def add_probe(self, name: str, probe: Probe) -> None:
        """Register (or replace) a probe; it must be cheap and thread-safe."""
        with self._lock:
            self._probes[name] = probe

    def remove_probe(self, name: str) -> None:
        """Unregister a probe; unknown names are fine."""
        with self._lock:
            self._probes.pop(name, None)

    def set_reason(self, key: str, reason: str) -> None:
        """Report a problem under `key` until `clear_reason(key)` (replaces an older text)."""
        with self._lock:
            self._conditions[key] = reason

    def clear_reason(self, key: str) -> None:
        """The problem under `key` is over; unknown keys are fine."""
        with self._lock:
            self._conditions.pop(key, None)

    def reasons(self, *, skip: Collection[str] = ()) -> list[str]:
        """Every current reason, probes first (in registration order), then conditions.

        `skip` names probes and condition keys to leave out.
        """
        with self._lock:
            probes = [(name, probe) for name, probe in self._probes.items() if name not in skip]
            conditions = [text for key, text in self._conditions.items() if key not in skip]
        found: list[str] = []
        for name, probe in probes:
            try:
                found.extend(probe())
            except Exception as exc:
                logger.exception("health probe %s raised", name)
                found.append(f"health probe {name} failed: {type(exc).__name__}")
        return found + conditions


class StateProbe:
    """Write to the state store every few seconds in a thread of its own; report the result.

    `write` returns whether a write succeeded (`StateStore.writable`). The reason is set on
    the board while the last write failed, or while a write has not returned for
    `stale_s` seconds.
    """

    KEY: Final = "state-probe"

    def __init__(
        self,
        board: HealthBoard,
        write: Callable[[], bool],
        where: str,
        *,
        interval_s: float = STATE_PROBE_INTERVAL_S,
        stale_s: float = STATE_PROBE_STALE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._board = board
        self._write = write
        self._where = where
        self._interval_s = interval_s
        self._stale_s = stale_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None  # set while a write runs
        self._lock = threading.Lock()

    def start(self) -> None:
        """Probe once now (so the first answer is real), then every `interval_s` seconds."""
        self.probe_once()
        self._board.add_probe("state-probe-stale", self._stale_reasons)
        self._thread = threading.Thread(target=self._run, name="state-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; a write in progress is waited for at most one interval."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval_s)
            self._thread = None
        self._board.remove_probe("state-probe-stale")

    def probe_once(self) -> bool:
        """One write; updates the board and returns whether it succeeded."""
        with self._lock:
            self._started_at = self._clock()
        try:
            ok = self._write()
        except Exception:
            logger.exception("state write probe raised")
            ok = False
        finally:
            with self._lock:
                self._started_at = None
        if ok:
            self._board.clear_reason(self.KEY)
        else:
            self._board.set_reason(self.KEY, f"state not writable ({self._where})")
        return ok

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.probe_once()

    def _stale_reasons(self) -> list[str]:
        with self._lock:
            started = self._started_at
        if started is None:
            return []
        waited = self._clock() - started
        if waited < self._stale_s:
            return []
        return [f"state write probe has not returned for {waited:.0f} s ({self._where})"]
