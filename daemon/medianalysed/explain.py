"""`medianalysed explain PATH`: why a file or folder is where it is.

Read-only: works from the configuration, the state store and the outbox files, whether
or not the daemon runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from medianalysed import names, outbox
from medianalysed.config import Config, InboxConfig
from medianalysed.failures import failed_files, failure_line
from medianalysed.lifecycle import BatchPhase
from medianalysed.readiness import CONTROL_FILES, ignore_rule, snapshot_tree
from medianalysed.state import BatchRecord, StateStore
from medianalysed.wording import plural

FAILURES_SHOWN = 20  # on a batch folder; `status BATCH --failed` lists them all


def explain(config: Config, store: StateStore, path: Path) -> list[str]:
    """Lines of explanation for `path` (absolute or relative to the current directory)."""
    target = Path(path).expanduser().absolute()
    for inbox in config.inboxes:
        if _within(target, inbox.path):
            return _explain_in_inbox(inbox, store, target)
    for record in store.iter_batches():
        for batch_root in (record.archived_to, record.outbox_dir):
            if batch_root and _within(target, Path(batch_root)):
                return _explain_in_batch(record, store, target, Path(batch_root))
    for inbox in config.inboxes:
        for label, root in (
            ("archive", inbox.archive),
            ("failed", inbox.failed),
            ("outbox", inbox.outbox),
        ):
            if root is not None and _within(target, root):
                return [
                    f"{target} is in inbox {inbox.name}'s {label} ({root}), "
                    "but no batch in the state store refers to it"
                ]
    return [f"{target} is not inside any configured inbox, outbox, archive or failed folder"]


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _explain_in_inbox(inbox: InboxConfig, store: StateStore, target: Path) -> list[str]:
    if target == inbox.path:
        return [f"{target} is the inbox {inbox.name!r}: drop folders (batches) or files here"]
    relative = target.relative_to(inbox.path)
    top = inbox.path / relative.parts[0]
    for depth, part in enumerate(relative.parts):
        rule = ignore_rule(part, inbox.ignore, at_top=depth == 0)
        if rule is not None:
            return [f"{target} is ignored: {part!r}: {rule}"]
    record, earlier = _batch_for_source(store, inbox, top)
    if record is None:
        lines = _not_started(inbox, top, target, store)
        if earlier is not None:
            lines.append(
                f"(an earlier {top.name} became batch {earlier.batch_id}: {earlier.status}; "
                f"its input is now in {earlier.archived_to or 'no folder (deleted)'})"
            )
        return lines
    lines = [f"{top.name} is batch {record.batch_id}: {record.status} ({record.phase})"]
    if record.loose_file:
        lines += _image_lines(record, store, top.name)
    elif _is_control_file(top, target):
        lines.append(f"{target.name} holds batch options and is never analysed as an image")
    elif target != top:
        lines += _image_lines(record, store, target.relative_to(top).as_posix())
    return lines


def _not_started(inbox: InboxConfig, top: Path, target: Path, store: StateStore) -> list[str]:
    if not target.exists() and not target.is_symlink():
        return [f"{target} does not exist"]
    if store.is_paused():
        return [f"{top.name} is waiting: the daemon is paused (medianalysed resume)"]
    if _is_control_file(top, target):
        return [f"{target.name} holds batch options and is never analysed as an image"]
    try:
        snapshot = snapshot_tree(top, inbox.ready_marker)
    except FileNotFoundError:
        return [f"{target} does not exist"]
    if snapshot.has_marker:
        return [
            f"{top.name} has its ready marker and will start within seconds (if the daemon runs)"
        ]
    newest = _newest_mtime(top)
    quiet = max(0.0, time.time() - newest) if newest else 0.0
    return [
        f"{top.name} is not started yet: waiting to settle (no ready marker "
        f"{inbox.ready_marker!r}; it starts once the daemon has seen it unchanged for "
        f"settle_seconds = {inbox.settle_seconds:g}; last change {quiet:.0f} s ago)"
    ]


def _is_control_file(top: Path, target: Path) -> bool:
    return target.parent == top and top.is_dir() and target.name in CONTROL_FILES


def _newest_mtime(root: Path) -> float:
    newest = 0.0
    for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
        try:
            newest = max(newest, path.lstat().st_mtime)
        except OSError:
            continue
    return newest


def _batch_for_source(
    store: StateStore, inbox: InboxConfig, top: Path
) -> tuple[BatchRecord | None, BatchRecord | None]:
    """(the batch `top` is now, the latest finished batch that came from that path before).

    A finished batch whose input was archived or deleted left the inbox; whatever has
    that name in the inbox now is a new drop, not that batch.
    """
    current = earlier = None
    for record in store.iter_batches():
        if record.inbox != inbox.name or Path(record.source) != top:
            continue
        left_inbox = record.phase == BatchPhase.DONE and (
            record.archived_to is not None or inbox.on_complete == "delete"
        )
        if left_inbox:
            earlier = record
        else:
            current = record
    return current, earlier


def _explain_in_batch(
    record: BatchRecord, store: StateStore, target: Path, root: Path
) -> list[str]:
    lines = [f"{target} belongs to batch {record.batch_id}: {record.status} ({record.phase})"]
    if root == Path(record.outbox_dir):
        lines.append("it is an outbox file of that batch")
        return lines
    if record.archived_to:
        lines.append(
            f"the batch's input was moved to {record.archived_to} after its results were written"
        )
    if target != root:
        lines += _image_lines(record, store, target.relative_to(root).as_posix())
    elif record.loose_file:
        lines += _image_lines(record, store, Path(record.source).name)
    else:
        lines += _failure_lines(record, store)
    return lines


def _failure_lines(record: BatchRecord, store: StateStore) -> list[str]:
    """The batch's failed and skipped files, as `status BATCH --failed` lists them."""
    entries = failed_files(store, record)
    if not entries:
        return ["no file of it failed or was skipped"]
    lines = [f"{plural(len(entries), 'file')} failed or skipped:"]
    lines += [f"  {failure_line(entry)}" for entry in entries[:FAILURES_SHOWN]]
    if len(entries) > FAILURES_SHOWN:
        lines.append(
            f"  ... {len(entries) - FAILURES_SHOWN} more: medianalysed status {record.batch_id}"
            " --failed"
        )
    return lines


def _image_lines(record: BatchRecord, store: StateStore, relpath: str) -> list[str]:
    final = _final_record(record, relpath)
    image = store.get_image(record.batch_id, relpath)
    if final is None and image is None:
        return [f"{relpath}: not an input of this batch (ignored or added after it started)"]
    status = final["status"] if final else str(image.status if image else "pending")
    error = (final or {}).get("error") or (image.error if image else None)
    attempts = f" after {plural(image.attempts, 'attempt')}" if image else ""
    lines = [f"{relpath}: {status}{attempts}"]
    if error:
        lines.append(f"  {error['code']}: {error['message']} (retryable: {error['retryable']})")
    for match in (final or {}).get("duplicates") or []:
        where = f" in batch {match['seen_in']}" if match.get("seen_in") else ""
        distances = ", ".join(f"{k} {v}" for k, v in (match.get("distances") or {}).items())
        lines.append(f"  {match['tier']} duplicate of {match['path']}{where} ({distances})")
    lines.extend(_duplicate_totals(final or {}))
    return lines


def _duplicate_totals(final: dict[str, Any]) -> list[str]:
    """What a bounded list leaves out: how many matches in all, and the group."""
    count = final.get("duplicate_count")
    listed = len(final.get("duplicates") or [])
    lines = []
    if isinstance(count, int) and count > listed:
        lines.append(f"  ... {plural(count - listed, 'more duplicate')}, {count} in all")
    if final.get("duplicate_group") is not None:
        lines.append(f"  in the duplicate group of {final['duplicate_group']} (see summary.json)")
    return lines


def _final_record(record: BatchRecord, relpath: str) -> dict[str, Any] | None:
    results = Path(record.outbox_dir) / outbox.RESULTS_JSONL
    # results.jsonl is compact JSON: a cheap text test skips parsing every other line.
    needle = '"path":' + json.dumps(names.record_path(relpath), ensure_ascii=False)
    try:
        with results.open(encoding="utf-8") as handle:
            for line in handle:
                if needle in line:
                    found: dict[str, Any] = json.loads(line)
                    if names.key_of_record(found["path"], found.get("path_bytes")) == relpath:
                        return found
    except (OSError, ValueError):
        return None
    return None
