"""The `medianalysed` command line (SPEC §5).

Exit codes: 0 ok, 1 failure, 2 usage, 78 bad configuration.
Control verbs write to the durable control queue in the state directory, so they work
whether or not the daemon runs: a running daemon picks them up within a tick, a stopped
one at its next start.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from medianalysed import __version__, names
from medianalysed.config import (
    Config,
    InboxConfig,
    find_config_path,
    render_config,
    resolve_config,
)
from medianalysed.errors import ConfigError, ExitCode, MedianalysedError
from medianalysed.executors import available_executors
from medianalysed.lifecycle import BatchPhase
from medianalysed.logs import setup_logging
from medianalysed.progress import (
    BatchProgress,
    add_observer,
    finalizing_note,
    progress_of,
    remove_observer,
)
from medianalysed.state import BatchRecord, StateStore
from medianalysed.wording import plural

logger = logging.getLogger(__name__)

ANALYZE_POLL_S = 0.2
# After a batch published its final progress, its record is done within ~0.2 s: looked for
# this often meanwhile (for at most ANALYZE_ENDING_S), so `analyze` ends when its batch does.
ANALYZE_ENDING_POLL_S = 0.02
ANALYZE_ENDING_S = 1.0
CONFIG_HELP = (
    "configuration file, TOML (default: $MEDIANALYSED_CONFIG, else ./medianalysed.toml, else "
    "/etc/medianalysed/medianalysed.toml, else the built-in defaults)"
)
_JSON_HELP = "machine-readable output (default: text)"


class _VersionAction(argparse.Action):
    """`--version`, looked up only when asked: whether libvips loads costs an import."""

    def __init__(self, option_strings: list[str], dest: str, help: str) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from medianalysed.vipsdecode import libvips_version  # noqa: PLC0415 - pulls in Pillow

        executors = ", ".join(available_executors())
        vips = libvips_version()
        decoders = "pillow" if vips is None else f"pillow, vips {vips}"
        print(f"medianalysed {__version__} (executors: {executors}; decoders: {decoders})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every verb."""
    parser = argparse.ArgumentParser(
        prog="medianalysed",
        description="Analyse folders of images dropped into watched inboxes.",
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="show the version, executors and decoders"
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", type=Path, metavar="FILE", help=CONFIG_HELP)
        return sub

    add("run", "run the daemon in the foreground")
    analyze = add("analyze", "analyse folders or files once, without the daemon")
    analyze.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="folders or files to analyse"
    )
    analyze.add_argument(
        "--out",
        type=Path,
        default=Path("outbox"),
        metavar="DIR",
        help="outbox directory, one folder per batch (default: ./outbox)",
    )
    analyze.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (default: a bar on stderr when it is a terminal)",
    )
    status = add("status", "show batches and their progress, newest first")
    status.add_argument(
        "batch", nargs="?", metavar="BATCH", help="only this batch (default: every batch)"
    )
    status.add_argument(
        "--failed",
        action="store_true",
        help="list BATCH's failed and skipped files with code and message (default: off)",
    )
    status.add_argument("--json", action="store_true", help=_JSON_HELP)
    cancel = add("cancel", "cancel a batch")
    cancel.add_argument("batch", metavar="BATCH", help="the batch id (see `status`)")
    retry = add("retry", "re-run the failed images of a finished batch")
    retry.add_argument("batch", metavar="BATCH", help="the batch id (see `status`)")
    reprocess = add("reprocess", "analyse a finished batch again from its archive")
    reprocess.add_argument("batch", metavar="BATCH", help="the batch id (see `status`)")
    reprocess.add_argument(
        "--force",
        action="store_true",
        help="decode again, ignoring cached analyses (default: cached analyses are reused)",
    )
    reprocess.add_argument(
        "--dry-run", action="store_true", help="say what would run, do nothing (default: off)"
    )
    explain = add("explain", "why a file or folder is where it is")
    explain.add_argument(
        "path",
        type=Path,
        metavar="PATH",
        help="a file or folder in an inbox, an archive or an outbox",
    )
    add("pause", "stop taking new batches")
    add("resume", "take new batches again")
    config = add("config", "check or show the configuration")
    config.add_argument(
        "action",
        choices=["check", "show"],
        help="check: validate and name the file; show: the effective configuration, secrets masked",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.verb is None:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"medianalysed: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    except MedianalysedError as exc:
        print(f"medianalysed: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    except KeyboardInterrupt:
        return ExitCode.FAILURE


def _dispatch(args: argparse.Namespace) -> int:
    verb: str = args.verb
    if verb == "config":
        return _config(args)
    config = resolve_config(args.config)
    if verb == "run":
        from medianalysed.warmup import start_fork_server  # noqa: PLC0415 - pebble: not for --version

        start_fork_server()
        from medianalysed.daemonloop import run  # noqa: PLC0415 - keeps CLI start-up light

        setup_logging(config.daemon.log_level, config.daemon.log_format)
        return run(config, find_config_path(args.config))
    if verb == "analyze":
        return _analyze(config, args.paths, args.out, progress=not args.no_progress)
    if verb == "status" and args.failed:
        return _status_failed(config, args.batch, as_json=args.json)
    if verb == "status":
        return _status(config, args.batch, as_json=args.json)
    if verb in {"pause", "resume"}:
        return _pause(config, paused=verb == "pause")
    if verb == "cancel":
        return _control(config, "cancel", args.batch)
    if verb in {"retry", "reprocess"}:
        return _rerun(config, args)
    if verb == "explain":
        return _explain(config, args.path)
    return ExitCode.USAGE


# -- config ----------------------------------------------------------------------------


def _config(args: argparse.Namespace) -> int:
    path = find_config_path(args.config)
    config = resolve_config(args.config)
    if args.action == "check":
        source = "built-in defaults" if path is None else str(path)
        print(f"configuration ok: {source}")
        return ExitCode.OK
    print(render_config(config, mask_secrets=True), end="")
    return ExitCode.OK


# -- status and control ------------------------------------------------------------------


def _status(config: Config, batch_id: str | None, *, as_json: bool) -> int:
    records: list[BatchRecord] = []
    progress: dict[str, BatchProgress] = {}
    paused = False
    set_aside: list[dict[str, Any]] = []
    if config.daemon.state_dir.is_dir():  # a never-started daemon has no state: nothing to show
        store = StateStore(config.daemon.state_dir)
        try:
            records = list(store.iter_batches(skip_damaged=True))
            progress = {r.batch_id: progress_of(store, r) for r in records}
            paused = store.is_paused()
            set_aside = store.set_aside_entries()
        finally:
            store.close()
    records = [r for r in records if batch_id is None or r.batch_id == batch_id]
    records.sort(key=lambda r: (r.created_at, r.batch_id), reverse=True)  # newest first
    if batch_id is not None and not records:
        print(f"medianalysed: no batch named {batch_id!r}", file=sys.stderr)
        return ExitCode.FAILURE
    documents = [_status_of(record, progress[record.batch_id]) for record in records]
    # httpx, for one file read: only here, not in every command's start-up (`--version`).
    from medianalysed.webhooks import read_dead_letters  # noqa: PLC0415

    dead_letters = read_dead_letters(config.daemon.state_dir / "webhooks")
    if batch_id is not None:
        set_aside = [entry for entry in set_aside if entry.get("batch_id") == batch_id]
    if as_json:
        document = {
            "batches": documents,
            "paused": paused,
            "dead_letters": dead_letters,
            "set_aside": set_aside,
        }
        print(json.dumps(document, indent=2))
        return ExitCode.OK
    if paused:
        print("paused: new batches are not started (medianalysed resume)")
    if not documents:
        print("no batches")
    for document in documents:
        print(_status_text(document))
    for letter in dead_letters:
        print(_dead_letter_text(letter))
    for entry in set_aside:
        print(_set_aside_text(entry))
    return ExitCode.OK


def _status_failed(config: Config, batch_id: str | None, *, as_json: bool) -> int:
    from medianalysed.failures import failed_files, failure_line  # noqa: PLC0415

    if batch_id is None:
        print("medianalysed: status --failed needs a BATCH (see `status`)", file=sys.stderr)
        return ExitCode.USAGE
    record = None
    if config.daemon.state_dir.is_dir():
        store = StateStore(config.daemon.state_dir)
        try:
            record = store.get_batch(batch_id)
            entries = [] if record is None else failed_files(store, record)
        finally:
            store.close()
    if record is None:
        print(f"medianalysed: no batch named {batch_id!r}", file=sys.stderr)
        return ExitCode.FAILURE
    if as_json:
        print(json.dumps({"batch_id": batch_id, "failed": entries}, indent=2))
        return ExitCode.OK
    if not entries:
        print(f"{batch_id}: no failed or skipped files")
    else:
        print(f"{batch_id}: {plural(len(entries), 'failed or skipped file')}")
    for entry in entries:
        print(names.log_text(failure_line(entry)))
    return ExitCode.OK


def _set_aside_text(entry: dict[str, Any]) -> str:
    return (
        f"set aside: {entry.get('batch_id')}: {entry.get('reason')}; its input is left at "
        f"{entry.get('source')}; `medianalysed reprocess {entry.get('batch_id')}` runs it again"
    )


def _dead_letter_text(letter: dict[str, Any]) -> str:
    return (
        f"dead letter: {letter.get('batch_id')} {letter.get('event')} -> {letter.get('url')}: "
        f"gave up after {plural(int(letter.get('attempts') or 0), 'attempt')} at "
        f"{letter.get('dead_at')} "
        f"({letter.get('last_error')})"
    )


def _status_of(record: BatchRecord, progress: BatchProgress) -> dict[str, Any]:
    document = progress.document()
    document["status"] = (
        str(record.status) if record.phase == BatchPhase.DONE else document["status"]
    )
    return document


def _status_text(document: dict[str, Any]) -> str:
    counts = document.get("counts", {})
    failed = counts.get("failed", 0)
    failed_text = f" ({failed} failed)" if failed else ""
    return (
        f"{document['batch_id']}: {document['status']} {document.get('progress', '')}{failed_text}"
        + finalizing_note(document)
    )


def _pause(config: Config, *, paused: bool) -> int:
    store = StateStore(config.daemon.state_dir)
    try:
        store.set_paused(paused)
        store.control.append({"verb": "pause" if paused else "resume"})
    finally:
        store.close()
    print("paused: no new batches start" if paused else "resumed")
    return ExitCode.OK


def _control(config: Config, verb: str, batch_id: str) -> int:
    store = StateStore(config.daemon.state_dir)
    try:
        record = store.get_batch(batch_id)
        if record is None:
            print(f"medianalysed: no batch named {batch_id!r}", file=sys.stderr)
            return ExitCode.FAILURE
        if record.phase == BatchPhase.DONE:
            print(
                f"medianalysed: {verb}: batch {batch_id} already finished ({record.status})",
                file=sys.stderr,
            )
            return ExitCode.FAILURE
        store.control.append({"verb": verb, "batch_id": batch_id})
    finally:
        store.close()
    print(f"{verb}: {batch_id} (takes effect within 2 s while the daemon runs)")
    return ExitCode.OK


def _rerun(config: Config, args: argparse.Namespace) -> int:
    from medianalysed.rerun import RerunError, plan_rerun  # noqa: PLC0415

    only_failed = args.verb == "retry"
    store = StateStore(config.daemon.state_dir)
    try:
        plan = plan_rerun(store, args.batch, only_failed=only_failed)
        inbox_names = {inbox.name for inbox in config.inboxes}
        if plan.inbox not in inbox_names:
            raise RerunError(
                f"batch {args.batch} came from inbox {plan.inbox!r}, which is no longer "
                "configured; add it back to the configuration first"
            )
        if getattr(args, "dry_run", False):
            print(plan.describe())
            return ExitCode.OK
        if only_failed and plan.images == 0:
            print(f"{args.batch}: no failed images to retry")
            return ExitCode.OK
        store.control.append(
            {
                "verb": args.verb,
                "batch_id": args.batch,
                "force": bool(getattr(args, "force", False)),
            }
        )
    except RerunError as exc:
        print(f"medianalysed: {args.verb}: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    finally:
        store.close()
    print(f"{args.verb}: {plan.describe().replace('would analyse', 'will analyse')}")
    return ExitCode.OK


def _explain(config: Config, path: Path) -> int:
    from medianalysed.explain import explain  # noqa: PLC0415

    if not os.path.lexists(path):
        print(f"medianalysed: explain: no such file or directory: {path}", file=sys.stderr)
        return ExitCode.FAILURE

    store = StateStore(config.daemon.state_dir)
    try:
        for line in explain(config, store, path):
            print(names.log_text(line))  # a name never breaks the line or the terminal
    finally:
        store.close()
    return ExitCode.OK


# -- analyze -----------------------------------------------------------------------------


def _analyze(config: Config, paths: Sequence[Path], out: Path, *, progress: bool) -> int:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"medianalysed: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return ExitCode.USAGE
    # warmup imports pebble: only the verbs that analyse pay for it, not `--version` or `status`.
    from medianalysed.warmup import create_state_in_background, start_fork_server  # noqa: PLC0415

    start_fork_server()  # first: it imports the imaging stack while the daemon starts
    setup_logging("warning", config.daemon.log_format)
    out = out.resolve()
    with tempfile.TemporaryDirectory(prefix="medianalysed-analyze-") as state_dir:
        creating = create_state_in_background(Path(state_dir))
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
    from tqdm import tqdm  # noqa: PLC0415

    store: StateStore = daemon.store
    shown = bar_wanted(progress, sys.stderr)
    bar = tqdm(total=0, unit="img", disable=not shown, file=sys.stderr, dynamic_ncols=True)
    ending = BatchEnding()
    add_observer(ending.observe)
    try:
        while True:
            daemon.tick()
            records = list(store.iter_batches())
            total = sum(r.total for r in records)
            finished = sum(_finished(store, r) for r in records)
            if (bar.total, bar.n) != (total, finished):
                bar.total = total
                bar.n = finished
                bar.refresh()
            if len(records) >= expected and all(r.phase == BatchPhase.DONE for r in records):
                return records
            ending.wait()
    finally:
        remove_observer(ending.observe)
        bar.close()


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


def _finished(store: StateStore, record: BatchRecord) -> int:
    if record.phase == BatchPhase.DONE or record.final_counts:
        return BatchProgress.ended(record).finished
    return progress_of(store, record).finished


def _progress(counts: dict[str, int]) -> str:
    finished = counts.get("done", 0) + counts.get("failed", 0) + counts.get("skipped", 0)
    failed = counts.get("failed", 0)
    return f"{finished}/{counts.get('total', 0)}" + (f" ({failed} failed)" if failed else "")
