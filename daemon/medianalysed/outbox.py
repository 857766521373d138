"""The outbox's files in `OUTBOX/<batch_id>/`: their names, and atomic, durable writing (SPEC §4).

What goes into them is written elsewhere: `outboxresults` (results.jsonl, results.csv),
`outboxsummary` (summary.json), `progress` (status.json), `reporthtml` (report.html). Every
file is written to a dot-prefixed temporary file in the same directory, fsync'ed, then renamed
over its final name, and the directory is fsync'ed (STYLE §4.4), so a reader sees either no
file or a whole one. Write `summary.json` last: its presence means the batch is finished.

Any string that cannot be encoded as UTF-8 (a lone surrogate) is written as a `\\udcXX`
escape, which JSON decodes back to the same string.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from medianalysed.diskfaults import DISK_ERRNOS
from medianalysed.errors import OutboxDiskWriteError, OutboxError

STATUS_FILE = "status.json"
RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
SUMMARY_FILE = "summary.json"

_ENCODING = "utf-8"
_ENCODING_ERRORS = "backslashreplace"
# Filesystems that cannot fsync a directory (some FUSE and SMB mounts) say so with these.
_DIR_FSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EBADF})


# --- atomic files ----------------------------------------------------------------------------


def _outbox_error(path: Path, exc: OSError) -> OutboxError:
    reason = exc.strerror or str(exc)
    if exc.errno in DISK_ERRNOS:
        # Full, read-only, failing disk: the batch pauses and retries (diskfaults).
        return OutboxDiskWriteError("outbox", str(path), errno.errorcode[exc.errno], reason)
    return OutboxError(f"cannot write {path}: {reason} ({type(exc).__name__})")


def make_batch_dir(batch_dir: Path) -> None:
    """Create `OUTBOX/<batch_id>/` (and parents) if missing.

    Raises:
        OutboxError: it cannot be created (an `OutboxDiskWriteError` when it is the disk's fault).
    """
    try:
        batch_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _outbox_error(batch_dir, exc) from exc


def _create_temp(path: Path) -> tuple[int, Path]:
    """Create `.name.<random>.tmp` beside `path`, honouring the umask (mkstemp would force 0600)."""
    while True:
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        return fd, temp


def fsync_directory(directory: Path) -> None:
    """Make a directory's entries durable; a filesystem that cannot fsync one is let be."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_binary(path: Path) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces `path` atomically when the block ends without error.

    On any error the temporary file is removed; an OSError becomes an OutboxError.
    """
    try:
        fd, temp = _create_temp(path)
    except OSError as exc:
        raise _outbox_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(exc, OSError):
            raise _outbox_error(path, exc) from exc
        raise
    try:
        fsync_directory(path.parent)
    except OSError as exc:
        raise _outbox_error(path, exc) from exc


@contextlib.contextmanager
def atomic_text(path: Path) -> Iterator[IO[str]]:
    """Like `_atomic_binary`, as UTF-8 text with untranslated newlines.

    Raises:
        OutboxError: the file could not be written; no temporary file is left behind.
    """
    with _atomic_binary(path) as raw:
        text = io.TextIOWrapper(raw, encoding=_ENCODING, errors=_ENCODING_ERRORS, newline="")
        try:
            yield text
        finally:
            # detach() flushes into `raw` and keeps the wrapper from closing it a second time.
            text.detach()


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and durably.

    Raises:
        OutboxError: the file could not be written; no temporary file is left behind.
    """
    with _atomic_binary(path) as handle:
        handle.write(data)


def write_lines_atomic(path: Path, lines: Iterable[str]) -> None:
    """Write the text `lines` to `path` as UTF-8, atomically (nothing is left on an error).

    Raises:
        OutboxError: the file could not be written.
    """
    with atomic_text(path) as handle:
        handle.writelines(lines)


def _json_document(obj: object) -> bytes:
    text = json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    return text.encode(_ENCODING, _ENCODING_ERRORS)


def write_json_atomic(path: Path, obj: object) -> None:
    """Write `obj` as indented UTF-8 JSON with a trailing newline, atomically.

    Raises:
        OutboxError: the file could not be written.
        TypeError: `obj` is not JSON-serialisable (a bug; nothing is written).
    """
    write_atomic(path, _json_document(obj))
