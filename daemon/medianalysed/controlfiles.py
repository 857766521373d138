"""Reading a batch's control files (`batch.toml`, `urls.txt`) without trusting them.

A dropper controls these files, so reading one must never hang or exhaust anything: it is
opened without following a symbolic link and without blocking (a FIFO would otherwise wait
for a writer forever), must be a regular file, and is read up to a size cap.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path


class ControlFileError(Exception):
    """The control file exists but cannot be used; the message says why, for a person."""


@dataclass(frozen=True, slots=True)
class CappedRead:
    """The first `limit` bytes of a file, and whether there was more."""

    data: bytes
    truncated: bool


def read_capped(path: Path, limit: int) -> CappedRead | None:
    """Read at most `limit` bytes of the regular file `path`; None if it does not exist.

    Raises:
        ControlFileError: a symbolic link, not a regular file, or unreadable.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if path.is_symlink():
            raise ControlFileError(f"{path.name} is a symbolic link; it is not followed") from exc
        raise ControlFileError(f"cannot open {path.name}: {exc.strerror}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ControlFileError(f"{path.name} is not a regular file")
        data = _read_up_to(fd, limit + 1)
    except OSError as exc:
        raise ControlFileError(f"cannot read {path.name}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return CappedRead(data=data[:limit], truncated=len(data) > limit)


def _read_up_to(fd: int, size: int) -> bytes:
    parts: list[bytes] = []
    left = size
    while left > 0:
        part = os.read(fd, min(left, 1 << 20))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)
