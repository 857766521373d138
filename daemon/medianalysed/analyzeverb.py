"""`medianalysed analyze`: folders or files analysed once by a daemon of its own (SPEC §5).

The daemon runs without watchers or endpoints on a temporary state directory; the command
waits for every batch to be done, prints one line per batch and exits 1 if an image failed.
Its start-up is arranged so the first image reaches a worker early (`warmup`): the fork
server starts first, the state is created while the daemon's modules import.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from medianalysed.config import Config, InboxConfig
from medianalysed.deferred import DeferredImports
from medianalysed.errors import ExitCode
from medianalysed.lifecycle import BatchPhase
from medianalysed.logs import setup_logging
from medianalysed.progress import BatchProgress, add_observer, progress_of, remove_observer
from medianalysed.state import BatchRecord, StateStore
from medianalysed.warmup import create_state_in_background, start_fork_server

if TYPE_CHECKING:
    from tqdm import tqdm

ANALYZE_POLL_S = 0.2
# After a batch published its final progress, its record is done within ~0.2 s: looked for
# this often meanwhile (for at most ANALYZE_ENDING_S), so `analyze` ends when its batch does.
ANALYZE_ENDING_POLL_S = 0.02
ANALYZE_ENDING_S = 1.0


def analyze(config: Config, paths: Sequence[Path], out: Path, *, progress: bool) -> int:
    """Analyse `paths` (each a batch) into `out`; the exit code."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"medianalysed: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return ExitCode.USAGE
    start_fork_server()  # first: it imports the imaging stack while the daemon starts
    setup_logging("warning", config.daemon.log_format)
    out = out.resolve()
    with tempfile.TemporaryDirectory(prefix="medianalysed-analyze-") as state_dir:
        creating = create_state_in_background(Path(state_dir))
        # Only now: the fork server and the state's creation go on while these import.
        from medianalysed.app import Daemon  # noqa: PLC0415
        from medianalysed.messages import SubmitBatch  # noqa: PLC0415

        creating.join()
        inboxes = _analyze_inboxes(paths, out)
        run_config = replace(
            config,
            daemon=replace(config.daemon, state_dir=Path(state_dir)),
            inboxes=tuple(inboxes.values()),
        )
        daemon = Daemon(run_config, watch=False, serve_metrics=False)
        daemon.start()
        try:
            assert daemon.supervisor is not None
            for path in paths:
                resolved = path.resolve()
                inbox = inboxes[str(resolved.parent)]
                daemon.supervisor.tell(SubmitBatch(inbox.name, str(resolved)))
            records = _wait_for_batches(daemon, len(paths), progress=progress)
        finally:
            daemon.stop(grace_s=0)
    failed = 0
    for record in records:
        counts = record.final_counts
        failed += counts.get("failed", 0)
        print(f"{record.batch_id}: {record.status} {_progress(counts)} -> {record.outbox_dir}")
    return ExitCode.FAILURE if failed else ExitCode.OK


def _analyze_inboxes(paths: Sequence[Path], out: Path) -> dict[str, InboxConfig]:
    inboxes: dict[str, InboxConfig] = {}
    for path in paths:
        parent = str(path.resolve().parent)
        if parent not in inboxes:
            inboxes[parent] = InboxConfig(
                name=f"analyze{len(inboxes) + 1}",
                path=Path(parent),
                outbox=out,
                archive=out / ".archive",
                on_complete="keep",
                settle_seconds=0,
                rescan_seconds=10**9,
            )
    return inboxes


def bar_wanted(progress: bool, stream: IO[str]) -> bool:
    """A bar only on a terminal: `analyze ... 2>file` gets the result lines, not bars."""
    try:
        return progress and stream.isatty()
    except ValueError:  # a closed stream
        return False


def _wait_for_batches(daemon: Any, expected: int, *, progress: bool) -> list[BatchRecord]:
    store: StateStore = daemon.store
    bar = _progress_bar() if bar_wanted(progress, sys.stderr) else None
    ending = BatchEnding()
    imports = DeferredImports()  # what finalising needs: once a worker has its first image
    add_observer(ending.observe)
    try:
        while True:
            imports.check()  # a missing module ends the command, not the batch's finalising
            daemon.tick()
            records = list(store.iter_batches())
            total = sum(r.total for r in records)
            finished = sum(_finished(store, r) for r in records)
            if not imports.started and (finished or _worker_busy(daemon)):
                imports.start()
            if bar is not None and (bar.total, bar.n) != (total, finished):
                bar.total = total
                bar.n = finished
                bar.refresh()
            if len(records) >= expected and all(r.phase == BatchPhase.DONE for r in records):
                return records
            ending.wait()
    finally:
        remove_observer(ending.observe)
        if bar is not None:
            bar.close()


def _progress_bar() -> tqdm[Any]:
    # Only here: without a terminal there is no bar, and tqdm's imports (~60 ms) are skipped.
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=0, unit="img", file=sys.stderr, dynamic_ncols=True)


class BatchEnding:
    """Wakes `analyze`'s wait when a batch publishes its final progress (from any thread).

    The record is done a few hundredths of a second after that publish: the loop then looks
    every ANALYZE_ENDING_POLL_S for ANALYZE_ENDING_S instead of every ANALYZE_POLL_S.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ended_at: float | None = None
        self._woken = threading.Event()

    def observe(self, _record: BatchRecord, progress: BatchProgress) -> None:
        """A `progress.add_observer` observer: notes the time and wakes the wait, no more."""
        if progress.phase == BatchPhase.DONE:
            self._ended_at = self._clock()
            self._woken.set()

    def poll_interval(self) -> float:
        """Seconds to the next look: short for a while after a batch ended."""
        ended = self._ended_at
        recent = ended is not None and self._clock() - ended < ANALYZE_ENDING_S
        return ANALYZE_ENDING_POLL_S if recent else ANALYZE_POLL_S

    def wait(self) -> None:
        """Until the next look (earlier when a batch ends meanwhile)."""
        self._woken.wait(self.poll_interval())
        self._woken.clear()


def _worker_busy(daemon: Any) -> bool:
    """Whether a worker holds an image (or the supervisor is gone: none will)."""
    snapshot = daemon.snapshot()
    return snapshot is None or snapshot["workers_busy"] > 0


def _finished(store: StateStore, record: BatchRecord) -> int:
    if record.phase == BatchPhase.DONE or record.final_counts:
        return BatchProgress.ended(record).finished
    return progress_of(store, record).finished


def _progress(counts: dict[str, int]) -> str:
    finished = counts.get("done", 0) + counts.get("failed", 0) + counts.get("skipped", 0)
    failed = counts.get("failed", 0)
    return f"{finished}/{counts.get('total', 0)}" + (f" ({failed} failed)" if failed else "")
