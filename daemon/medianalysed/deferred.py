"""What the daemon imports only after its first dispatch (issue 14.1).

The first image needs the actors, the state and the worker pool; not what finalises a batch
(the outbox writer, the duplicate planner, the history index and numpy, the reports, gexf),
nor metrics (prometheus_client). Those modules import where they are first used. So that a
missing one still fails at a predictable moment, `run` imports them all as it starts
(`import_all`), and `analyze` on a thread once a worker has its first image
(`DeferredImports`), whose failure its wait then raises.
"""

from __future__ import annotations

import importlib
import threading
from typing import Final

DEFERRED_MODULES: Final = (
    "medianalysed.actors.outboxwriter",
    "medianalysed.nearrule",
    "medianalysed.dupindex",
    "medianalysed.metrics",
)


def import_all(names: tuple[str, ...] = DEFERRED_MODULES) -> None:
    """Import every deferred module now (an ImportError propagates)."""
    for name in names:
        importlib.import_module(name)


class DeferredImports:
    """`import_all` on a thread of its own; `check` raises what it raised."""

    def __init__(self, names: tuple[str, ...] = DEFERRED_MODULES) -> None:
        self._names = names
        self._failure: Exception | None = None
        self._thread = threading.Thread(
            target=self._run, name="medianalysed-deferred-imports", daemon=True
        )

    @property
    def started(self) -> bool:
        """Whether `start` was called."""
        return self._thread.ident is not None

    def start(self) -> None:
        """Begin importing."""
        self._thread.start()

    def _run(self) -> None:
        try:
            import_all(self._names)
        except Exception as failure:  # handed to the waiting thread by `check`
            self._failure = failure

    def join(self, timeout: float) -> None:
        """Wait at most `timeout` seconds for the imports to end."""
        self._thread.join(timeout)

    def check(self) -> None:
        """Raise the failure of the imports, if they failed."""
        failure = self._failure
        if failure is not None:
            raise failure
