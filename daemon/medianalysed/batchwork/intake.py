"""A dropped input becoming a batch: its claim, its id, its first record and status.

Used by the supervisor when it starts a batch, and by state repair when it rebuilds the claim
of one: both must encode a claim the same way, or a rebuilt claim is never found.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from medianalysed import names
from medianalysed.batchoptions import BatchOptions, read_batch_options
from medianalysed.config import InboxConfig
from medianalysed.errors import MedianalysedError
from medianalysed.models import utc_now_iso
from medianalysed.ports import StateStorage
from medianalysed.progress import BatchProgress, publish
from medianalysed.state import BatchRecord

logger = logging.getLogger(__name__)


def claim_key(inbox: str, name: str) -> str:
    """The state key of the claim on inbox entry `name`."""
    return f"{inbox}\x00{name}"


def identity(path: Path) -> str:
    """Which file an inbox entry is (device and inode), to tell a new drop of the same name."""
    # The entry itself, never a link's target: a dangling or looping link at the inbox root
    # is an input like any other (its batch of one reports it REFUSED).
    entry = os.lstat(path)
    return f"{entry.st_dev}:{entry.st_ino}"


def is_loose(path: Path) -> bool:
    """Whether an inbox entry is a batch of one: anything but a real directory (links too)."""
    return not stat.S_ISDIR(os.lstat(path).st_mode)


def unique_batch_id(store: StateStorage, inbox: InboxConfig, name: str) -> str:
    """The first free id for a dropped name (a key): printable, and short enough to be a
    folder name with its `-N` suffix (`names.suffixed_names`)."""
    for candidate in names.suffixed_names(name, names.name_max(inbox.outbox)):
        if not store.has_batch(candidate) and not os.path.lexists(inbox.outbox / candidate):
            return candidate
    raise AssertionError  # pragma: no cover - suffixed_names never ends


def new_record(store: StateStorage, inbox: InboxConfig, path: Path) -> BatchRecord:
    """The first record of a batch from inbox entry `path`, with its `batch.toml` options."""
    loose = is_loose(path)
    batch_id = unique_batch_id(store, inbox, names.from_os(path.stem if loose else path.name))
    options = BatchOptions() if loose else read_batch_options(path)
    if options.note:
        logger.warning("batch %s: %s", batch_id, options.note, extra={"batch_id": batch_id})
    return BatchRecord(
        batch_id=batch_id,
        inbox=inbox.name,
        source=str(path),
        outbox_dir=str(inbox.outbox / batch_id),
        loose_file=loose,
        claim_key=claim_key(inbox.name, path.name),
        priority=options.priority,
        tags=options.tags,
        callback_url=options.callback_url,
        keep_input=False,
        created_at=utc_now_iso(),
        note=options.note,
    )


def write_queued_status(store: StateStorage, record: BatchRecord) -> None:
    """The first status.json; failing here is logged, the batch actor writes it again."""
    try:
        Path(record.outbox_dir).mkdir(parents=True, exist_ok=True)
        publish(store, record, BatchProgress.queued(record))
    except (OSError, MedianalysedError) as exc:
        logger.error("batch %s: cannot write its outbox yet: %s", record.batch_id, exc)
