"""Start-up integrity check of the state databases; a damaged one is moved aside and rebuilt.

Every diskcache database under `state_dir` gets `PRAGMA quick_check` before anything opens
it (and the diskcache tables must be there: a truncated-to-nothing file is a valid, empty
SQLite database). A database that fails, or that the running daemon marked damaged
(`diskfaults.DAMAGED_MARKER`), is renamed `<name>.corrupt-<UTC time>` (kept for a post-mortem,
never deleted) and the log says what was lost. Then what is durable elsewhere is put back:

- `batches`: every outbox folder with a `summary.json` is a finished batch; its record is
  recreated as done (or as `written` when its input is still in the inbox, so it is archived,
  not redone), with its claim, so no finished batch runs or notifies again. An outbox folder
  without `summary.json` whose input is still in the inbox becomes that batch again, from the
  start, under the same id.
- `images`: unfinished batches start again from their input folder (their progress is lost,
  not their input; finished batches keep their outbox).
- `flags`, `control`, `content`, `history`, `webhooks`: recreated empty (see `DATABASES`).

What cannot be repaired raises `StateUnusableError` (the daemon exits `ExitCode.STATE_UNUSABLE`,
and systemd does not restart it); a disk that refuses writes raises `DiskWriteError`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medianalysed import names
from medianalysed.batchoptions import read_batch_options
from medianalysed.batchwork import intake
from medianalysed.config import InboxConfig
from medianalysed.diskfaults import DAMAGED_MARKER, sqlite_fault, write_failure
from medianalysed.errors import (
    DiskWriteError,
    MedianalysedError,
    StateCorruptError,
    StateUnusableError,
)
from medianalysed.lifecycle import BatchPhase
from medianalysed.models import BatchStatus, Priority, utc_now_iso
from medianalysed.outbox import SUMMARY_FILE
from medianalysed.state import BatchRecord, StateStore

logger = logging.getLogger(__name__)

DB_FILE = "cache.db"  # diskcache's database file name in each directory
# Every database under state_dir, and what its loss costs once rebuilt.
DATABASES: dict[str, str] = {
    "batches": "batch records and claims (finished batches are recreated from their outbox "
    "summary.json; unfinished ones start again from their input folder)",
    "images": "per-image progress of unfinished batches (they start again from their input; "
    "`retry` of earlier batches has no failed images to retry)",
    "flags": "the pause flag",
    "control": "CLI commands not yet applied",
    "content": "the content cache (images are decoded again)",
    "history": "the duplicate index (earlier batches are no longer matched as seen_in)",
    "webhooks": "pending webhook deliveries and the dead-letter list (deliveries already "
    "made are not sent again: finished batches are not re-queued)",
}
_SUFFIX = re.compile(r"^(?P<name>.+)-(?P<n>[0-9]+)$")


@dataclass(frozen=True, slots=True)
class Damage:
    """One database found damaged and moved aside."""

    name: str
    problem: str
    moved_to: Path


def check_and_repair(state_dir: Path, inboxes: Sequence[InboxConfig]) -> list[Damage]:
    """Check every state database, move the damaged aside, rebuild them; what was repaired.

    Raises:
        StateUnusableError: state_dir is not a usable directory, or a rebuild failed.
        DiskWriteError: the disk refused a write (full, read-only): try again later.
    """
    _check_directory(state_dir)
    damage = [found for name in DATABASES if (found := _check_one(state_dir, name)) is not None]
    if not damage:
        return []
    names = {found.name for found in damage}
    try:
        store = StateStore(state_dir)
    except (DiskWriteError, StateUnusableError):
        raise
    except MedianalysedError as exc:
        raise StateUnusableError(f"rebuilding state in {state_dir} failed: {exc}") from exc
    try:
        if "batches" in names:
            _rebuild_batches(store, inboxes)
        elif "images" in names:
            _restart_unfinished(store)
    except (DiskWriteError, StateUnusableError):
        raise
    except (MedianalysedError, OSError, ValueError, KeyError, TypeError) as exc:
        raise StateUnusableError(f"rebuilding state in {state_dir} failed: {exc}") from exc
    finally:
        store.close()
    return damage


def _check_directory(state_dir: Path) -> None:
    if state_dir.exists() and not state_dir.is_dir():
        raise StateUnusableError(
            f"state_dir {state_dir} is not a directory; point [daemon] state_dir "
            "at a directory or move that file away"
        )
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        os.listdir(state_dir)
    except (PermissionError, NotADirectoryError, FileExistsError) as exc:
        raise StateUnusableError(
            f"state_dir {state_dir} is not usable ({exc.strerror}); give the daemon's user "
            "a directory it can read and write there"
        ) from exc
    except OSError as exc:
        failure = write_failure(exc, "state", state_dir)
        if failure is not None:
            raise failure from exc
        raise StateUnusableError(f"state_dir {state_dir} is not usable: {exc.strerror}") from exc
    if not os.access(state_dir, os.R_OK | os.W_OK | os.X_OK):
        raise StateUnusableError(
            f"state_dir {state_dir} is not readable and writable; give the daemon's user "
            "read and write access to it"
        )


def _check_one(state_dir: Path, name: str) -> Damage | None:
    directory = state_dir / name
    if not directory.exists():
        return None
    problem: str | None = "not a directory"
    if directory.is_dir():
        problem = _marked_damaged(directory) or database_problem(directory / DB_FILE)
    if problem is None:
        return None
    moved_to = _move_aside(directory)
    logger.error(
        "state database %s is damaged (%s): moved to %s; lost: %s",
        name,
        problem,
        moved_to,
        DATABASES[name],
    )
    return Damage(name, problem, moved_to)


def _marked_damaged(directory: Path) -> str | None:
    marker = directory / DAMAGED_MARKER
    try:
        detail = marker.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"marked damaged ({exc.strerror})"
    return f"found damaged while running: {detail or 'malformed'}"


def database_problem(db: Path) -> str | None:
    """What is wrong with a diskcache database file, or None when it passes `quick_check`.

    Raises:
        DiskWriteError: the disk refused (opening a WAL database writes its -shm file).
        StateUnusableError: it cannot be opened for another reason (permissions...).
    """
    try:
        size = db.stat().st_size
    except FileNotFoundError:
        return None  # diskcache creates it
    except OSError as exc:
        raise StateUnusableError(f"cannot read {db}: {exc.strerror}") from exc
    if size == 0:
        return "the database file is empty (truncated)"
    try:
        connection = sqlite3.connect(str(db), timeout=30, isolation_level=None)
    except sqlite3.Error as exc:
        return _open_problem(exc, db)
    # Damaged pages can hold any bytes where SQLite returns UTF-8 text: never fail on them.
    connection.text_factory = lambda raw: raw.decode("utf-8", "replace")
    try:
        rows = connection.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            return "quick_check: " + "; ".join(str(row[0]) for row in rows[:3])
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        if not {"Cache", "Settings"} <= tables:
            return "not a diskcache database (its tables are missing)"
    except sqlite3.Error as exc:
        return _open_problem(exc, db)
    except UnicodeDecodeError as exc:
        # SQLite's error message quoted damaged schema bytes that are not UTF-8.
        return f"unreadable schema ({exc.reason} in SQLite's error message)"
    finally:
        connection.close()
    return None


def _open_problem(exc: sqlite3.Error, db: Path) -> str:
    fault = sqlite_fault(exc, "state", db)
    if isinstance(fault, DiskWriteError):
        raise fault from exc
    if isinstance(fault, StateCorruptError) or isinstance(exc, sqlite3.DatabaseError):
        return str(exc)
    raise StateUnusableError(f"cannot check {db}: {exc}") from exc


def _move_aside(directory: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = next(
        directory.with_name(name)
        for name in names.suffixed_names(f"{directory.name}.corrupt-{stamp}")
        if not directory.with_name(name).exists()
    )
    try:
        directory.rename(target)
    except OSError as exc:
        raise StateUnusableError(
            f"cannot move the damaged {directory} aside: {exc.strerror}; move it away by hand"
        ) from exc
    return target


# --- rebuilding the batch records ------------------------------------------------------------


def _rebuild_batches(store: StateStore, inboxes: Sequence[InboxConfig]) -> None:
    """Batch records from the outboxes: finished ones as done, unfinished ones from scratch."""
    finished = unfinished = 0
    seen_outboxes: set[Path] = set()
    for inbox in inboxes:
        if inbox.outbox in seen_outboxes or not inbox.outbox.is_dir():
            continue
        seen_outboxes.add(inbox.outbox)
        for batch_dir in sorted(inbox.outbox.iterdir()):
            if not batch_dir.is_dir() or batch_dir.name.startswith("."):
                continue
            summary = _read_summary(batch_dir / SUMMARY_FILE)
            if summary is not None:
                _recreate_finished(store, inbox, batch_dir, summary)
                finished += 1
            elif _recreate_unfinished(store, inbox, batch_dir):
                unfinished += 1
    logger.warning(
        "state rebuilt from the outboxes: %d finished batch(es) recorded as done, %d unfinished "
        "batch(es) start again from their input",
        finished,
        unfinished,
    )


def _read_summary(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.error("outbox summary %s unreadable (%s): that batch is not restored", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _recreate_finished(
    store: StateStore, inbox: InboxConfig, batch_dir: Path, summary: dict[str, Any]
) -> None:
    batch_id = batch_dir.name
    counts = summary.get("counts") if isinstance(summary.get("counts"), dict) else {}
    record = BatchRecord(
        batch_id=batch_id,
        inbox=inbox.name,
        source=str(inbox.path / batch_id),
        outbox_dir=str(batch_dir),
        status=_status(summary.get("status")),
        phase=BatchPhase.DONE,
        priority=_priority(summary.get("priority")),
        tags=tuple(str(tag) for tag in summary.get("tags") or ()),
        created_at=str(summary.get("started_at") or utc_now_iso()),
        started_at=summary.get("started_at"),
        completed_at=summary.get("completed_at"),
        final_counts={str(k): int(v) for k, v in dict(counts or {}).items()},
        archived_to=_archived_copy(inbox, batch_id),
        note="restored from the outbox after the state database was damaged",
    )
    entry = _input_of(inbox, batch_id, before=record.completed_at)
    if entry is None:
        store.put_batch(record)
        return
    # Its input is still in the inbox (on_complete = "keep", or a crash before archiving): it
    # is claimed so it never runs again, and `written` makes it archived now if it should be.
    phase = BatchPhase.DONE if inbox.on_complete == "keep" else BatchPhase.WRITTEN
    record = record.evolve(
        source=str(entry),
        loose_file=entry.is_file(),
        claim_key=intake.claim_key(inbox.name, entry.name),
        phase=phase,
    )
    store.create_batch(record, record.claim_key, intake.identity(entry))


def _recreate_unfinished(store: StateStore, inbox: InboxConfig, batch_dir: Path) -> bool:
    batch_id = batch_dir.name
    entry = _input_of(inbox, batch_id, before=None)
    if entry is None:
        return False
    record = BatchRecord(
        batch_id=batch_id,
        inbox=inbox.name,
        source=str(entry),
        outbox_dir=str(batch_dir),
        loose_file=entry.is_file(),
        claim_key=intake.claim_key(inbox.name, entry.name),
        created_at=utc_now_iso(),
        note="restarted from its input after the state database was damaged",
    )
    record = record.evolve(**_options_of(entry))
    store.create_batch(record, record.claim_key, intake.identity(entry))
    return True


def _restart_unfinished(store: StateStore) -> None:
    """The image records are gone: every unfinished batch starts again from its input."""
    restarted = 0
    for record in list(store.iter_batches()):
        if record.phase in {BatchPhase.DONE, BatchPhase.WRITTEN}:
            continue
        summary_present = (Path(record.outbox_dir) / SUMMARY_FILE).is_file()
        if summary_present and record.phase == BatchPhase.FINALIZING:
            store.advance(record, BatchPhase.WRITTEN)
            continue
        store.restart_listing(record)
        restarted += 1
    logger.warning("%d unfinished batch(es) start again from their input", restarted)


def _input_of(inbox: InboxConfig, batch_id: str, *, before: str | None) -> Path | None:
    """The inbox entry batch `batch_id` came from, if it is still there.

    With `before` (the batch's completion time), an entry that arrived later (its ctime: a
    rename sets it) is a new drop of the same name, not this batch's input.
    """
    for entry in _entries_named(inbox, batch_id):
        if before is None or _arrived_before(entry, before):
            return entry
    return None


def _entries_named(inbox: InboxConfig, batch_id: str) -> Iterator[Path]:
    names = [batch_id]
    match = _SUFFIX.match(batch_id)
    if match is not None:
        names.append(match["name"])
    for name in names:
        folder = inbox.path / name
        if folder.is_dir():
            yield folder
        if inbox.path.is_dir():
            yield from sorted(
                child
                for child in inbox.path.iterdir()
                if child.is_file() and child.stem == name and not child.name.startswith(".")
            )


def _arrived_before(entry: Path, moment: str) -> bool:
    try:
        completed = datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()
        return entry.stat().st_ctime <= completed + 1
    except (OSError, ValueError):
        return False


def _archived_copy(inbox: InboxConfig, batch_id: str) -> str | None:
    for root in (inbox.archive, inbox.failed):
        if root is not None and (root / batch_id).exists():
            return str(root / batch_id)
    return None


def _options_of(entry: Path) -> dict[str, Any]:
    if entry.is_file():
        return {}
    options = read_batch_options(entry)
    return {
        "priority": options.priority,
        "tags": options.tags,
        "callback_url": options.callback_url,
        "note": options.note or "restarted from its input after the state database was damaged",
    }


def _status(value: object) -> BatchStatus:
    try:
        return BatchStatus(str(value))
    except ValueError:
        return BatchStatus.COMPLETED


def _priority(value: object) -> Priority:
    try:
        return Priority(str(value))
    except ValueError:
        return Priority.NORMAL
