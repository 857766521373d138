"""The duplicate index's search snapshot: its columns saved to one `.npz` file, atomically.

Rebuilding the columns from SQLite takes seconds at a million images; loading the snapshot and
replaying what changed since takes a fraction of that. The file holds the alive rows, the batch
names their codes refer to, and a `meta` object (store format, store uuid, last id and removal
sequence covered) that `dupindex` checks before trusting it.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medianalysed.dupsearch import COLUMN_NAMES, FLAG_ALIVE, Columns

logger = logging.getLogger(__name__)

SNAPSHOT_NAME = "search-snapshot.npz"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a snapshot file holds."""

    meta: dict[str, Any]
    batch_names: list[str]
    columns: Columns


def read_snapshot(directory: Path) -> Snapshot | None:
    """The snapshot in `directory`, or None when there is none or it cannot be read."""
    try:
        with np.load(directory / SNAPSHOT_NAME, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]))
            names: list[str] = json.loads(bytes(data["batch_names"]))
            columns = Columns(len(data["flags"]))
            for name in COLUMN_NAMES:  # one at a time: a single column's worth of temporaries
                columns.column(name)[:] = data[name]
    except FileNotFoundError:
        return None
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        logger.warning("ignoring unreadable duplicate index snapshot: %s", exc)
        return None
    if not isinstance(meta, dict):
        logger.warning("ignoring duplicate index snapshot without metadata")
        return None
    return Snapshot(meta=meta, batch_names=names, columns=columns)


def write_snapshot(
    directory: Path, columns: Columns, batch_names: Sequence[str], meta: dict[str, Any]
) -> None:
    """Save the alive rows of `columns` atomically (temporary file, fsync, rename, dir fsync)."""
    n = columns.n
    alive = np.flatnonzero(columns.flags[:n] & FLAG_ALIVE)
    used_codes, batch = np.unique(columns.batch[alive], return_inverse=True)
    names = [batch_names[int(code)] for code in used_codes]
    final = directory / SNAPSHOT_NAME
    temporary = directory / f".{SNAPSHOT_NAME}.tmp"
    arrays: dict[str, npt.NDArray[Any]] = {
        "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        "batch_names": np.frombuffer(json.dumps(names).encode(), dtype=np.uint8),
        **{name: columns.column(name)[alive] for name in COLUMN_NAMES},
        "batch": batch.astype(np.uint32),
    }
    with temporary.open("wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds badly
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(final)
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
