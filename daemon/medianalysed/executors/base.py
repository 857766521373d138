"""The executor seam: what an image actor needs from whatever runs its analyses."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pebble

from medianalysed.errors import ErrorCode
from medianalysed.outcomes import error_json

if TYPE_CHECKING:
    from medianalysed.config import InboxConfig
    from medianalysed.worker import WorkerJob

# Outcome keys added beside the worker's own ("result", "error", "file", "cached", "elapsed_ms",
# "vips").
REPLACED = "replaced"  # the process running it was killed or died, and was replaced
LOST_RUNS = "lost_runs"  # runs lost with a Dask worker before this outcome: each an attempt


@dataclass(frozen=True, slots=True)
class ExecutorState:
    """What the daemon shows of a cluster executor (metrics)."""

    available: bool
    workers: int
    blind: int


class Executor(Protocol):
    """Runs `worker.run_job` somewhere; every method is safe to call from any thread."""

    kind: str

    def submit(self, job: WorkerJob) -> Future[dict[str, Any]]:
        """Start one `WorkerJob`; the future resolves to its outcome (see `settle`).

        Raises:
            RuntimeError: the executor is closing (the daemon is shutting down).
        """

    def held(self, future: Future[dict[str, Any]]) -> bool:
        """Whether the job is still waiting in the executor, running nowhere yet."""

    def broken(self) -> str | None:
        """Why the executor can never run anything again (the daemon exits), or None."""

    def unavailable(self) -> str | None:
        """Why new work waits for now (readiness fails until it returns), or None."""

    def check_inboxes(self, inboxes: Sequence[InboxConfig]) -> None:
        """Have the workers check that they see each inbox, without waiting; logs the blind ones."""

    def notes(self) -> list[str]:
        """Short remarks for the status line (workers that cannot see an inbox...)."""

    def close(self) -> None:
        """Stop; futures still pending are cancelled."""


def settle(future: Future[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
    """The outcome dict of a finished analysis future, failures of the executor included.

    Raises:
        CancelledError: the job was cancelled (shutdown): it is no attempt.
    """
    try:
        return future.result(timeout=0)
    except CancelledError:
        raise
    except TimeoutError:
        return {
            "error": error_json(
                ErrorCode.TIMEOUT,
                f"analysis took longer than image_timeout_seconds ({timeout_s:g} s); "
                "the worker was stopped",
            ),
            REPLACED: True,
        }
    except pebble.ProcessExpired as exc:
        return {
            "error": error_json(
                ErrorCode.INTERNAL,
                f"ProcessExpired: the analysis process died (exit code {exc.exitcode})",
            ),
            REPLACED: True,
        }
    except Exception as exc:
        return {"error": error_json(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")}
