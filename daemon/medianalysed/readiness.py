"""When a dropped folder is complete, and what in it counts as input (SPEC §1).

Pure functions and one small clock-injected tracker: no threads, no watchers. The watcher and the
batch actor call these.

Completeness (STYLE §4.2 item 6): a folder is ready when its ready marker exists, or when nothing
below it (names, sizes, mtimes) has changed for `settle_seconds`. An inotify or polling event only
says "look again"; `cp -r` and `rsync` create the directory before its content arrives.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medianalysed import names, safeopen

BUILTIN_IGNORES: tuple[str, ...] = (
    "@eaDir",
    ".DS_Store",
    "._*",
    "Thumbs.db",
    "desktop.ini",
    "__MACOSX",
)
TEMP_SUFFIXES: tuple[str, ...] = (".part", ".tmp", ".crdownload")
CONTROL_FILES: tuple[str, ...] = ("batch.toml", "urls.txt")

# Why an entry is refused; opening applies the same rules (safeopen).
REFUSED_OUTSIDE = safeopen.REFUSED_OUTSIDE
REFUSED_DANGLING = safeopen.REFUSED_DANGLING
REFUSED_LINK_TO_DIR = safeopen.REFUSED_LINK_TO_DIR
REFUSED_UNRESOLVABLE = safeopen.REFUSED_UNRESOLVABLE
REFUSED_NOT_REGULAR = safeopen.REFUSED_NOT_REGULAR

_BUILTIN_IGNORES_FOLDED = tuple(pattern.casefold() for pattern in BUILTIN_IGNORES)


def ignore_rule(
    name: str, extra_patterns: Sequence[str] = (), *, at_top: bool = False
) -> str | None:
    """Why a name is skipped (None: it is not): hidden, a temporary name at the inbox root
    (`at_top`), OS/NAS junk, or a configured glob.

    Built-in junk names match case-insensitively (Windows writes both `Thumbs.db` and
    `thumbs.db`); configured patterns are `fnmatch` globs matched case-sensitively on the name.
    """
    if name.startswith("."):
        return "hidden names (starting with '.') are ignored"
    folded = name.casefold()
    if at_top and folded.endswith(TEMP_SUFFIXES):
        return f"temporary names ({', '.join(TEMP_SUFFIXES)}) are not picked up"
    for pattern, pattern_folded in zip(BUILTIN_IGNORES, _BUILTIN_IGNORES_FOLDED, strict=True):
        if fnmatch.fnmatchcase(folded, pattern_folded):
            return f"NAS/OS junk is ignored (built-in pattern {pattern!r})"
    for pattern in extra_patterns:
        if fnmatch.fnmatchcase(name, pattern):
            return f"ignored by the inbox's ignore pattern {pattern!r}"
    return None


def is_ignored(name: str, extra_patterns: Sequence[str] = ()) -> bool:
    """Whether a file or directory name is hidden, OS/NAS junk, or matches a configured glob."""
    return ignore_rule(name, extra_patterns) is not None


def is_batch_candidate(name: str, extra_patterns: Sequence[str] = ()) -> bool:
    """Whether an inbox root entry may become a batch (not ignored, not a partial download)."""
    return ignore_rule(name, extra_patterns, at_top=True) is None


def group_of(relpath: str) -> str | None:
    """The group (first sub-directory) of a batch-relative posix path, or None at the top level."""
    head, sep, _ = relpath.partition("/")
    return head if sep else None


# --- walking ---------------------------------------------------------------------------------

# Entry kinds, from the directory listing's d_type (no extra syscall on local filesystems);
# _UNLISTABLE is a directory whose listing failed (the node carries the error).
_DIR, _LINK, _FILE, _OTHER, _UNLISTABLE = range(5)

# At most this many directory descriptors stay open on the current path: a deeper walk
# re-opens an ancestor through ".." (checked to be the same directory) on its way back up.
_MAX_OPEN_DIRS = 32
# Gone, or replaced by something that is not a directory, since it was listed: skipped.
_VANISHED = frozenset({errno.ENOENT, errno.ENOTDIR})

# (sort key, kind, OS name); the key is the name's key, plus "/" for directories.
_Child = tuple[str, int, bytes]


@dataclass(frozen=True, slots=True)
class _Node:
    """One entry met by `_walk`; `dir_fd` is valid only until the walk resumes."""

    relpath: str  # a key (names.py): posix, relative to the root
    name: bytes  # the OS name inside its directory
    dir_fd: int
    kind: int
    error: OSError | None = None

    def lstat(self) -> os.stat_result:
        """The entry's own status, symlinks not followed."""
        return os.lstat(self.name, dir_fd=self.dir_fd)


@dataclass(slots=True)
class _Frame:
    prefix: str  # the directory's relpath plus "/" ("" for the root)
    children: Iterator[_Child]
    fd: int | None  # None once closed to stay within _MAX_OPEN_DIRS
    identity: tuple[int, int]
    owned: bool = True


def _kind_of(entry: os.DirEntry[str]) -> int:
    # A vanished entry answers False everywhere and reads as _OTHER; callers re-check with lstat.
    if entry.is_dir(follow_symlinks=False):
        return _DIR
    if entry.is_symlink():
        return _LINK
    if entry.is_file(follow_symlinks=False):
        return _FILE
    return _OTHER


def _sorted_children(directory_fd: int) -> list[_Child]:
    """List one directory, sorted so that a depth-first walk yields paths in `sorted()` order.

    A directory sorts under "name/" rather than "name": every path below "a/" then lands exactly
    where plain string sorting puts it (after "a-b", since "-" < "/"), so the walk streams in
    global order while holding only the listings of the directories on the current path.
    """
    children: list[_Child] = []
    with os.scandir(directory_fd) as entries:
        for entry in entries:
            kind = _kind_of(entry)
            key = names.from_os(entry.name)
            children.append((key + "/" if kind == _DIR else key, kind, os.fsencode(entry.name)))
    children.sort()
    return children


def _identity(fd: int) -> tuple[int, int]:
    status = os.fstat(fd)
    return status.st_dev, status.st_ino


def _walk(root_fd: int, keep: Callable[[str, bool, bool], bool]) -> Iterator[_Node]:
    """Yield every entry below the directory `root_fd` depth-first in sorted relpath order.

    Symlinks are never followed; every directory is opened by name relative to its parent's
    descriptor (`O_NOFOLLOW`), so the walk neither leaves the tree nor minds PATH_MAX.
    `keep(name, is_dir, at_top)` filters entries; a directory it rejects is pruned. Entries that
    vanish while the walk runs are skipped; a directory that cannot be listed (EACCES, EIO...)
    is yielded again, right after itself, as an _UNLISTABLE node carrying the error (with
    relpath "" when it is the root).
    """
    try:
        listing = _sorted_children(root_fd)
    except OSError as exc:
        yield _Node("", b"", root_fd, _UNLISTABLE, exc)
        return
    stack = [_Frame("", iter(listing), root_fd, _identity(root_fd), owned=False)]
    try:
        while stack:
            frame = stack[-1]
            child = None if frame.fd is None else next(frame.children, None)
            if child is None or frame.fd is None:
                _leave(stack)
                continue
            key, kind, os_name = child
            name = key[:-1] if kind == _DIR else key
            if not keep(name, kind == _DIR, not frame.prefix):
                continue
            node = _Node(frame.prefix + name, os_name, frame.fd, kind)
            yield node
            if kind == _DIR:
                problem = _enter(stack, node)
                if problem is not None:
                    yield problem
    finally:
        for frame in stack:
            if frame.owned and frame.fd is not None:
                os.close(frame.fd)


def _enter(stack: list[_Frame], node: _Node) -> _Node | None:
    """Open and list the directory `node`, pushing its frame; the error node if it failed."""
    try:
        fd = os.open(node.name, safeopen.DIRECTORY_FLAGS, dir_fd=node.dir_fd)
    except OSError as exc:
        return None if exc.errno in _VANISHED else _unlistable(node, exc)
    try:
        listing = _sorted_children(fd)
        identity = _identity(fd)
    except OSError as exc:
        os.close(fd)
        return None if exc.errno in _VANISHED else _unlistable(node, exc)
    stack.append(_Frame(node.relpath + "/", iter(listing), fd, identity))
    open_frames = [frame for frame in stack if frame.owned and frame.fd is not None]
    if len(open_frames) > _MAX_OPEN_DIRS:
        oldest = open_frames[0]
        assert oldest.fd is not None
        os.close(oldest.fd)
        oldest.fd = None
    return None


def _unlistable(node: _Node, exc: OSError) -> _Node:
    return _Node(node.relpath, node.name, node.dir_fd, _UNLISTABLE, exc)


def _leave(stack: list[_Frame]) -> None:
    """Pop the finished top frame; re-open its parent through ".." if that one was closed.

    A parent that cannot be re-opened as the same directory was moved meanwhile: what is left
    of it is skipped, like any entry that vanishes during the walk.
    """
    done = stack.pop()
    parent = stack[-1] if stack else None
    if parent is not None and parent.fd is None:
        parent.fd = None if done.fd is None else _reopen_parent(done.fd, parent.identity)
        if parent.fd is None:
            parent.children = iter(())
    if done.owned and done.fd is not None:
        os.close(done.fd)


def _reopen_parent(child_fd: int, identity: tuple[int, int]) -> int | None:
    try:
        fd = os.open(b"..", safeopen.DIRECTORY_FLAGS, dir_fd=child_fd)
    except OSError:
        return None
    if _identity(fd) != identity:
        os.close(fd)
        return None
    return fd


def _keep_everything(_name: str, _is_dir: bool, _at_top: bool) -> bool:
    return True


def listing_error(relpath: str, exc: OSError) -> str:
    """The message of an IO_ERROR record for a folder that could not be listed."""
    reason = exc.strerror or type(exc).__name__
    what = "the batch folder" if not relpath else "this folder"
    return f"cannot list {what}: {reason}; nothing in it was analysed"


# --- snapshots and settling ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TreeSnapshot:
    """What a dropped entry looks like now: a digest of every (relpath, type, size, mtime) below it.

    `file_count` counts everything that is not a directory; `has_marker` says the ready marker
    exists at the top of the folder.
    """

    signature: str
    file_count: int
    has_marker: bool


def _stat_record(relpath: str, st: os.stat_result) -> bytes:
    fields = f"\0{stat.S_IFMT(st.st_mode)}\0{st.st_size}\0{st.st_mtime_ns}\n"
    return names.to_bytes(relpath) + fields.encode()


def _error_record(relpath: str, exc: OSError) -> bytes:
    return names.to_bytes(relpath) + f"\0unlistable\0{exc.errno}\n".encode()


def snapshot_tree(root: Path, ready_marker: str) -> TreeSnapshot:
    """Snapshot a dropped folder (recursively) or a loose file, without following symlinks.

    Ignored names are included on purpose: anything still changing means someone is still writing.
    A folder that cannot be listed (the root or below) counts as an entry with its error, so it
    settles like the rest and its batch reports it instead of waiting for ever.

    Raises:
        FileNotFoundError: `root` itself is gone.
    """
    root_stat = os.lstat(root)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(_stat_record("", root_stat))
    if not stat.S_ISDIR(root_stat.st_mode):
        digest.update(names.to_bytes(names.from_os(root.name)))
        return TreeSnapshot(signature=digest.hexdigest(), file_count=1, has_marker=False)
    try:
        opened = safeopen.open_root(root)
    except FileNotFoundError:
        raise
    except OSError as exc:  # unreadable, or replaced by a link since the lstat
        digest.update(_error_record("", exc))
        return TreeSnapshot(signature=digest.hexdigest(), file_count=0, has_marker=False)
    with opened:
        file_count = _digest_tree(opened.fd, digest)
        has_marker = bool(ready_marker) and _exists(opened.fd, ready_marker)
    return TreeSnapshot(signature=digest.hexdigest(), file_count=file_count, has_marker=has_marker)


def _digest_tree(root_fd: int, digest: Any) -> int:
    file_count = 0
    for node in _walk(root_fd, _keep_everything):
        if node.kind == _UNLISTABLE:
            assert node.error is not None
            digest.update(_error_record(node.relpath, node.error))
            continue
        try:
            st = node.lstat()
        except (FileNotFoundError, NotADirectoryError):
            continue  # removed (or its parent replaced) while we walked: the next look sees it
        digest.update(_stat_record(node.relpath, st))
        if not stat.S_ISDIR(st.st_mode):
            file_count += 1
    return file_count


def _exists(directory_fd: int, name: str) -> bool:
    try:
        os.lstat(names.to_bytes(name), dir_fd=directory_fd)
    except OSError:
        return False
    return True


@dataclass(slots=True)
class _Settling:
    signature: str
    stable_since: float


class SettleTracker:
    """Decide per key (usually the dropped path) whether its snapshots have settled.

    Not thread-safe: one owner (the supervisor actor) calls it.
    """

    def __init__(self, settle_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        """Create a tracker; `clock` is injectable so tests never sleep."""
        if settle_seconds < 0:
            msg = f"settle_seconds must be >= 0, got {settle_seconds}"
            raise ValueError(msg)
        self.settle_seconds = settle_seconds
        self._clock = clock
        self._states: dict[str, _Settling] = {}

    def observe(self, key: str, snapshot: TreeSnapshot) -> bool:
        """Record a snapshot; return True when the entry is ready.

        Ready means the marker is present, or the signature has not changed for at least
        `settle_seconds` (the first observation starts the timer; 0 means ready at once). The
        caller should observe once more right before starting the batch (STYLE §4.2 item 6).
        """
        now = self._clock()
        state = self._states.get(key)
        if state is None or state.signature != snapshot.signature:
            state = _Settling(snapshot.signature, now)
            self._states[key] = state
        if snapshot.has_marker:
            return True
        return now - state.stable_since >= self.settle_seconds

    def waiting(self) -> dict[str, float]:
        """Seconds each tracked key has been stable so far."""
        now = self._clock()
        return {key: now - state.stable_since for key, state in self._states.items()}

    def forget(self, key: str) -> None:
        """Stop tracking a key (started, removed or ignored); unknown keys are fine."""
        self._states.pop(key, None)


# --- batch content ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """One input of a batch: its path relative to the batch (a key), and what is wrong with it.

    `refused` says why it must not be read (a REFUSED record); `unreadable` says why a folder
    could not be listed (an IO_ERROR record; its relpath ends with "/", or is "." for the
    batch folder itself, so it sorts where its content would have been).
    """

    relpath: str
    refused: str | None = None
    unreadable: str | None = None


def _loose_entry(root: Path, root_stat: os.stat_result) -> BatchEntry:
    name = names.from_os(root.name)
    if stat.S_ISLNK(root_stat.st_mode):
        # A loose symlink's target is by definition outside its one-file batch.
        return BatchEntry(name, REFUSED_OUTSIDE)
    if not stat.S_ISREG(root_stat.st_mode):
        return BatchEntry(name, REFUSED_NOT_REGULAR)
    return BatchEntry(name)


def iter_batch_entries(
    root: Path, ready_marker: str, extra_patterns: Sequence[str] = ()
) -> Iterator[BatchEntry]:
    """Yield the input files of a batch in `sorted(relpath)` order, streaming.

    Ignored names are skipped and ignored directories pruned; the ready marker and the control
    files (`batch.toml`, `urls.txt`) are skipped at the top level only. Symlinks are never
    followed: one resolving to a regular file inside the batch is yielded as a normal entry, any
    other (outside, dangling, looping, to a directory) is yielded with `refused` set, as are FIFOs,
    sockets and devices. A folder that cannot be listed is yielded with `unreadable` set. The
    walk goes by directory descriptors, so trees deeper than PATH_MAX enumerate too. Memory is
    bounded by the listings of the directories on the current path.

    Raises:
        FileNotFoundError: `root` itself is gone.
    """
    root_stat = os.lstat(root)
    if not stat.S_ISDIR(root_stat.st_mode):
        yield _loose_entry(root, root_stat)
        return
    try:
        opened = safeopen.open_root(root)
    except FileNotFoundError:
        raise
    except OSError as exc:
        yield BatchEntry(".", unreadable=listing_error("", exc))
        return

    def keep(name: str, is_dir: bool, at_top: bool) -> bool:
        if is_ignored(name, extra_patterns):
            return False
        return is_dir or not at_top or (name != ready_marker and name not in CONTROL_FILES)

    with opened:
        for node in _walk(opened.fd, keep):
            entry = _entry_of(node, opened)
            if entry is not None:
                yield entry


def _entry_of(node: _Node, root: safeopen.BatchRoot) -> BatchEntry | None:
    if node.kind == _FILE:
        return BatchEntry(node.relpath)
    if node.kind == _LINK:
        return BatchEntry(node.relpath, safeopen.link_refusal(root, node.relpath))
    if node.kind == _OTHER:
        return _other_entry(node)
    if node.kind == _UNLISTABLE:
        assert node.error is not None
        relpath = node.relpath + "/" if node.relpath else "."
        return BatchEntry(relpath, unreadable=listing_error(node.relpath, node.error))
    return None


def _other_entry(node: _Node) -> BatchEntry:
    """A FIFO, socket or device is refused; an entry that vanished mid-walk is yielded as a file.

    (The analysis then reports IO_ERROR for it, which says more than silently dropping it.)
    """
    try:
        st = node.lstat()
    except OSError:
        return BatchEntry(node.relpath)
    if stat.S_ISREG(st.st_mode):
        return BatchEntry(node.relpath)
    return BatchEntry(node.relpath, REFUSED_NOT_REGULAR)
