"""The `medianalysed` command line (SPEC §5).

Exit codes: 0 ok, 1 failure, 2 usage, 78 bad configuration.
Control verbs write to the durable control queue in the state directory, so they work
whether or not the daemon runs: a running daemon picks them up within a tick, a stopped
one at its next start.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medianalysed import __version__, names
from medianalysed.config import (
    Config,
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
    finalizing_note,
    progress_of,
)
from medianalysed.state import BatchRecord, StateStore
from medianalysed.wording import plural

logger = logging.getLogger(__name__)

CONFIG_HELP = (
    "configuration file, TOML (default: $MEDIANALYSED_CONFIG, else ./medianalysed.toml, else "
    "/etc/medianalysed/medianalysed.toml, else the built-in defaults)"
)
_JSON_HELP = "machine-readable output (default: text)"


class _VersionAction(argparse.Action):
    """`--version`: the version, and the executors and decoders installed (looked up only when
    asked, from package metadata: nothing heavy is imported)."""

    def __init__(self, option_strings: list[str], dest: str, help: str) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        executors = ", ".join(available_executors())
        vips = _installed_libvips()
        decoders = "pillow" if vips is None else f"pillow, vips {vips}"
        print(f"medianalysed {__version__} (executors: {executors}; decoders: {decoders})")
        parser.exit()


def _installed_libvips() -> str | None:
    """The libvips that pyvips-binary installed (its version is libvips'), from the package
    metadata: loading libvips to ask would cost `--version` its start-up budget."""
    try:
        return importlib.metadata.version("pyvips-binary")
    except importlib.metadata.PackageNotFoundError:
        return None


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
        # pebble and the daemon: only the verbs that analyse pay for them, not `--version`
        from medianalysed.analyzeverb import analyze  # noqa: PLC0415

        return analyze(config, args.paths, args.out, progress=not args.no_progress)
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
