"""Moving and deleting a finished batch's input, by steps that are safe to repeat.

A kill at any point leaves a state that the same call, repeated, finishes:

- same filesystem: one `rename` (atomic), then the directories are fsynced;
- across filesystems: copy into `.NAME.medianalysed-partial` beside the target, fsync
  every file and directory of the copy, rename it to the target, then remove the source.
  A resumed call discards a partial copy and copies again; when the target exists and the
  source still does, the rename happened and only the removal is left.

The caller records the target before the first call (the batch's `disposing` phase), so a
resumed call always aims at the same place.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from pathlib import Path

from medianalysed.crashpoints import crash_point
from medianalysed.outbox import fsync_directory

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".medianalysed-partial"


def partial_copy_path(target: Path) -> Path:
    """Where a copy across filesystems is assembled before it is renamed to `target`."""
    return target.parent / f".{target.name}{PARTIAL_SUFFIX}"


def move_input(source: Path, target: Path) -> bool:
    """Move `source` to `target`, or finish an interrupted move; idempotent.

    Returns False (and moves nothing) when `target` holds something that is not a copy of
    `source`: then the input stays where it is.
    """
    if not _lexists(source):
        return True  # moved already
    if _lexists(target):
        if not _holds_copy_of(target, source):
            return False
        delete_input(source)  # the copy was renamed into place; the removal was cut short
        _fsync_dir(source.parent)
        return True
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_across(source, target)
        crash_point("archive:renamed", target.name)
        delete_input(source)
    _fsync_dir(target.parent)
    _fsync_dir(source.parent)
    return True


def delete_input(source: Path) -> None:
    """Remove a file or a directory tree (never following a link); missing is fine."""
    if source.is_dir() and not source.is_symlink():
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile: goal reached
            shutil.rmtree(source)
    else:
        source.unlink(missing_ok=True)


def _copy_across(source: Path, target: Path) -> None:
    partial = partial_copy_path(target)
    if _lexists(partial):
        logger.info("discarding the partial copy %s of an interrupted archive", partial)
        delete_input(partial)
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, partial, symlinks=True)
    else:
        shutil.copy2(source, partial, follow_symlinks=False)
    _fsync_tree(partial)
    crash_point("archive:copied", target.name)
    os.rename(partial, target)


def _fsync_tree(root: Path) -> None:
    if root.is_symlink():
        return
    if root.is_file():
        _fsync_file(root)
        return
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            if not path.is_symlink():
                _fsync_file(path)
        _fsync_dir(Path(directory))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fsync_directory(path)
    except OSError:  # gone (a deleted parent) or unreadable: nothing to make durable
        logger.debug("fsync of %s failed", path, exc_info=True)


def _lexists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _holds_copy_of(target: Path, source: Path) -> bool:
    """Whether every file left in `source` is in `target` with its size.

    True for a completed copy whose source removal was cut short (a subset is left).
    """
    return _listing(source) <= _listing(target)


def _listing(root: Path) -> set[tuple[str, int]]:
    if not (root.is_dir() and not root.is_symlink()):
        return {("", root.lstat().st_size if not root.is_dir() else 0)}
    found: set[tuple[str, int]] = set()
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            found.add((str(path.relative_to(root)), path.lstat().st_size))
    return found
