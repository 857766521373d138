"""Open a batch's files relative to the batch folder, never following a link out of it (SPEC §1).

Every name is opened with `O_NOFOLLOW` relative to the directory descriptor of its parent,
one component at a time, starting from a descriptor of the batch folder: the kernel never
resolves a path, so a symlink swapped in for a file or a folder at any moment is seen as
what it is, and a tree deeper than PATH_MAX opens like any other. A symlink met on the way
is resolved here, textually, and only while it stays inside the batch (the rule enumeration
applies, `readiness.iter_batch_entries`); one that leaves the batch, loops or dangles is
refused. The final file is opened without ever opening a FIFO or a device, and checked to
be the very inode that was judged.

Only the descriptor of the current directory is held open, so depth costs no descriptors.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from medianalysed import names

REFUSED_OUTSIDE: Final = "symlink points outside the batch"
REFUSED_DANGLING: Final = "dangling symlink"
REFUSED_LINK_TO_DIR: Final = "symlink points to a directory"
REFUSED_UNRESOLVABLE: Final = "symlink cannot be resolved"
REFUSED_NOT_REGULAR: Final = "not a regular file"
REFUSED_SWAPPED: Final = "the file was replaced while it was being opened"

MAX_LINKS: Final = 40  # the kernel's own limit on symlinks followed in one lookup

_PATH: Final = getattr(os, "O_PATH", os.O_RDONLY)
_LOOKUP: Final = _PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_READ: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
DIRECTORY_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class RefusedError(Exception):
    """The name must not be read: it leads out of the batch, or is not a regular file."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class BatchRoot:
    """An open descriptor of a batch folder, and the absolute path it was opened by.

    The path only serves to recognise absolute symlinks that point back inside the batch;
    every lookup goes through `fd`.
    """

    fd: int
    path: bytes

    def prefixes(self) -> tuple[bytes, ...]:
        """The absolute paths of the folder: as opened, and with every link resolved."""
        return (self.path, os.fsencode(os.path.realpath(self.path)))

    def close(self) -> None:
        """Close the descriptor."""
        os.close(self.fd)

    def __enter__(self) -> BatchRoot:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_root(root: str | Path) -> BatchRoot:
    """Open a batch folder: its parent as configured, the folder itself without following a link.

    Raises:
        OSError: the folder cannot be opened (ENOTDIR when it was replaced by a link or a file;
            ENOENT for an empty path, never taken to mean the current directory).
    """
    if not os.fspath(root):
        raise FileNotFoundError(errno.ENOENT, "no batch folder given")
    raw = os.fsencode(os.path.abspath(root))
    parent, _, name = raw.rpartition(b"/")
    if not name:  # the filesystem root
        fd = os.open(raw or b"/", DIRECTORY_FLAGS & ~os.O_NOFOLLOW)
    else:
        parent_fd = os.open(parent or b"/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = os.open(name, DIRECTORY_FLAGS, dir_fd=parent_fd)
        finally:
            os.close(parent_fd)
    return BatchRoot(fd, os.path.normpath(raw))


def open_beneath(root: BatchRoot, relpath: str, *, follow_links: bool = True) -> int:
    """Open the regular file at `relpath` (a key) below `root` for reading; return its fd.

    With `follow_links` False any symlink on the way is refused (a loose file's "batch" is the
    file alone: the folder it sits in is the inbox, shared with other batches).

    Raises:
        RefusedError: a link leads out of the batch, loops or dangles; the target is not a
            regular file; or it was swapped while being opened.
        OSError: the file cannot be reached or read (EACCES, ENOENT, EIO...).
    """
    parent, name, status = _resolve(root, names.to_bytes(relpath), follow_links=follow_links)
    try:
        if stat.S_ISDIR(status.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file")
        if not stat.S_ISREG(status.st_mode):
            raise RefusedError(REFUSED_NOT_REGULAR)
        fd = os.open(name, _READ, dir_fd=parent)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link took its place after it was judged
            raise RefusedError(REFUSED_SWAPPED) from exc
        raise
    finally:
        _close_unless_root(parent, root)
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (status.st_dev, status.st_ino) or not stat.S_ISREG(
        opened.st_mode
    ):
        os.close(fd)
        raise RefusedError(REFUSED_SWAPPED)
    os.set_blocking(fd, True)
    return fd


def link_refusal(root: BatchRoot, relpath: str) -> str | None:
    """Why the symlink at `relpath` must be refused, or None when it leads to a file inside.

    The same resolution `open_beneath` applies, so enumeration and opening agree.
    """
    try:
        parent, _, status = _resolve(root, names.to_bytes(relpath))
    except RefusedError as exc:
        return exc.reason
    except FileNotFoundError:
        return REFUSED_DANGLING
    except OSError:  # ENOTDIR on the way, EACCES...
        return REFUSED_UNRESOLVABLE
    _close_unless_root(parent, root)
    if stat.S_ISDIR(status.st_mode):
        return REFUSED_LINK_TO_DIR
    if not stat.S_ISREG(status.st_mode):
        return REFUSED_NOT_REGULAR
    return None


def _components(path: bytes) -> list[bytes]:
    return [part for part in path.split(b"/") if part not in {b"", b"."}]


def _close_unless_root(fd: int, root: BatchRoot) -> None:
    if fd != root.fd:
        os.close(fd)


class _Cursor:
    """The directory a lookup stands in: its names below the root and one descriptor."""

    def __init__(self, root: BatchRoot) -> None:
        self.root = root
        self.fd = root.fd
        self.trail: list[bytes] = []

    def enter(self, fd: int, name: bytes) -> None:
        _close_unless_root(self.fd, self.root)
        self.fd = fd
        self.trail.append(name)

    def leave(self) -> None:
        """Go to the parent; above the root is outside the batch."""
        if not self.trail:
            raise RefusedError(REFUSED_OUTSIDE)
        self.restart(self.trail[:-1])

    def restart(self, trail: list[bytes]) -> None:
        """Stand in the directory `trail` below the root, re-opened name by name."""
        _close_unless_root(self.fd, self.root)
        self.fd, self.trail = self.root.fd, []
        for name in trail:
            self.enter(_open_directory(self.fd, name), name)

    def release(self) -> int:
        """Hand the current descriptor over to the caller (who closes it unless it is the root)."""
        fd, self.fd = self.fd, self.root.fd
        return fd

    def close(self) -> None:
        _close_unless_root(self.fd, self.root)
        self.fd = self.root.fd


def _open_directory(parent: int, name: bytes) -> int:
    fd = os.open(name, _LOOKUP, dir_fd=parent)
    if not stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise RefusedError(REFUSED_SWAPPED)
    return fd


def _resolve(
    root: BatchRoot, relpath: bytes, *, follow_links: bool = True
) -> tuple[int, bytes, os.stat_result]:
    """(parent fd, name, lstat of the final non-link) for `relpath`, links resolved inside.

    The parent fd is the caller's to close (unless it is `root.fd`).
    """
    pending = deque(_components(relpath))
    if not pending:
        raise IsADirectoryError(errno.EISDIR, "is the batch folder itself")
    cursor = _Cursor(root)
    links = 0
    try:
        while pending:
            name = pending.popleft()
            if name == b"..":
                cursor.leave()
                continue
            fd = os.open(name, _LOOKUP, dir_fd=cursor.fd)
            status = os.fstat(fd)
            if stat.S_ISLNK(status.st_mode):
                os.close(fd)
                if not follow_links:
                    raise RefusedError(REFUSED_OUTSIDE)
                links += 1
                if links > MAX_LINKS:
                    raise RefusedError(REFUSED_UNRESOLVABLE)
                _follow(cursor, pending, os.readlink(name, dir_fd=cursor.fd))
            elif not pending:
                os.close(fd)
                return cursor.release(), name, status
            elif stat.S_ISDIR(status.st_mode):
                cursor.enter(fd, name)
            else:
                os.close(fd)
                raise NotADirectoryError(errno.ENOTDIR, "a path component is not a folder")
        raise IsADirectoryError(errno.EISDIR, "is the batch folder itself")
    finally:
        cursor.close()


def _follow(cursor: _Cursor, pending: deque[bytes], target: bytes) -> None:
    """Queue a link's target in place of the link; an absolute one must name the batch."""
    if target.startswith(b"/"):
        inside = _inside_root(os.path.normpath(target), cursor.root.prefixes())
        if inside is None:
            raise RefusedError(REFUSED_OUTSIDE)
        cursor.restart([])
        target = inside
    pending.extendleft(reversed(_components(target)))


def _inside_root(target: bytes, prefixes: tuple[bytes, ...]) -> bytes | None:
    for prefix in prefixes:
        if target == prefix:
            return b""
        if target.startswith(prefix.rstrip(b"/") + b"/"):
            return target[len(prefix.rstrip(b"/")) + 1 :]
    return None
