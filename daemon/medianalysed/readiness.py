"""When a dropped folder is complete, and what in it counts as input (SPEC §1).

Pure functions and one small clock-injected tracker: no threads, no watchers. The watcher and the
batch actor call these.

Completeness (STYLE §4.2 item 6): a folder is ready when its ready marker exists, or when nothing
below it (names, sizes, mtimes) has changed for `settle_seconds`. An inotify or polling event only
says "look again"; `cp -r` and `rsync` create the directory before its content arrives.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

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

REFUSED_OUTSIDE = "symlink points outside the batch"
REFUSED_DANGLING = "dangling symlink"
REFUSED_LINK_TO_DIR = "symlink points to a directory"
REFUSED_UNRESOLVABLE = "symlink cannot be resolved"
REFUSED_NOT_REGULAR = "not a regular file"

_BUILTIN_IGNORES_FOLDED = tuple(pattern.casefold() for pattern in BUILTIN_IGNORES)


def is_ignored(name: str, extra_patterns: Sequence[str] = ()) -> bool:
    """Whether a file or directory name is hidden, OS/NAS junk, or matches a configured glob.

    Built-in junk names match case-insensitively (Windows writes both `Thumbs.db` and
    `thumbs.db`); configured patterns are `fnmatch` globs matched case-sensitively on the name.
    """
    if name.startswith("."):
        return True
    folded = name.casefold()
    if any(fnmatch.fnmatchcase(folded, pattern) for pattern in _BUILTIN_IGNORES_FOLDED):
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in extra_patterns)


def is_batch_candidate(name: str, extra_patterns: Sequence[str] = ()) -> bool:
    """Whether an inbox root entry may become a batch (not ignored, not a partial download)."""
    if is_ignored(name, extra_patterns):
        return False
    return not name.casefold().endswith(TEMP_SUFFIXES)


def group_of(relpath: str) -> str | None:
    """The group (first sub-directory) of a batch-relative posix path, or None at the top level."""
    head, sep, _ = relpath.partition("/")
    return head if sep else None


# --- walking ---------------------------------------------------------------------------------

# Entry kinds, from the directory listing's d_type (no extra syscall on local filesystems).
_DIR, _LINK, _FILE, _OTHER = range(4)

# (sort key, kind); the key is the name, plus "/" for directories.
_Child = tuple[str, int]


@dataclass(frozen=True, slots=True)
class _Node:
    relpath: str
    path: str
    kind: int


def _kind_of(entry: os.DirEntry[str]) -> int:
    # A vanished entry answers False everywhere and reads as _OTHER; callers re-check with lstat.
    if entry.is_dir(follow_symlinks=False):
        return _DIR
    if entry.is_symlink():
        return _LINK
    if entry.is_file(follow_symlinks=False):
        return _FILE
    return _OTHER


def _sorted_children(directory: str, *, tolerate_missing: bool) -> list[_Child]:
    """List one directory, sorted so that a depth-first walk yields paths in `sorted()` order.

    A directory sorts under "name/" rather than "name": every path below "a/" then lands exactly
    where plain string sorting puts it (after "a-b", since "-" < "/"), so the walk streams in
    global order while holding only the listings of the directories on the current path.
    """
    children: list[_Child] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                kind = _kind_of(entry)
                children.append((entry.name + "/" if kind == _DIR else entry.name, kind))
    except (FileNotFoundError, NotADirectoryError):
        if not tolerate_missing:
            raise
        return []
    children.sort()
    return children


def _walk(root: str, keep: Callable[[str, bool, bool], bool]) -> Iterator[_Node]:
    """Yield every entry below `root` depth-first in sorted relpath order, never following symlinks.

    `keep(name, is_dir, at_top)` filters entries; a directory it rejects is pruned. Entries that
    vanish while the walk runs are skipped; `root` itself vanishing raises FileNotFoundError.
    """
    stack = [(root, "", iter(_sorted_children(root, tolerate_missing=False)))]
    while stack:
        directory, prefix, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            continue
        key, kind = child
        name = key[:-1] if kind == _DIR else key
        if not keep(name, kind == _DIR, not prefix):
            continue
        node = _Node(prefix + name, os.path.join(directory, name), kind)
        yield node
        if kind == _DIR:
            listing = _sorted_children(node.path, tolerate_missing=True)
            stack.append((node.path, node.relpath + "/", iter(listing)))


def _keep_everything(_name: str, _is_dir: bool, _at_top: bool) -> bool:
    return True


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
    return os.fsencode(relpath) + fields.encode()


def snapshot_tree(root: Path, ready_marker: str) -> TreeSnapshot:
    """Snapshot a dropped folder (recursively) or a loose file, without following symlinks.

    Ignored names are included on purpose: anything still changing means someone is still writing.

    Raises:
        FileNotFoundError: `root` itself is gone.
    """
    root_stat = os.lstat(root)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(_stat_record("", root_stat))
    if not stat.S_ISDIR(root_stat.st_mode):
        digest.update(os.fsencode(root.name))
        return TreeSnapshot(signature=digest.hexdigest(), file_count=1, has_marker=False)
    file_count = 0
    for node in _walk(os.fspath(root), _keep_everything):
        try:
            st = os.lstat(node.path)
        except (FileNotFoundError, NotADirectoryError):
            continue  # removed (or its parent replaced) while we walked: the next look sees it
        digest.update(_stat_record(node.relpath, st))
        if not stat.S_ISDIR(st.st_mode):
            file_count += 1
    has_marker = bool(ready_marker) and os.path.lexists(os.path.join(root, ready_marker))
    return TreeSnapshot(signature=digest.hexdigest(), file_count=file_count, has_marker=has_marker)


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
    """One input file of a batch: its posix path relative to the batch, and why it is refused."""

    relpath: str
    refused: str | None = None


def _inside(target: str, root_real: str) -> bool:
    return target == root_real or target.startswith(root_real.rstrip(os.sep) + os.sep)


def _symlink_refusal(link: str, root_real: str) -> str | None:
    """Why a symlink inside the batch must be refused, or None when it is a file inside the batch.

    The target is only stat'ed once it is known to be inside the batch.
    """
    target = os.path.realpath(link)
    if not _inside(target, root_real):
        return REFUSED_OUTSIDE
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return REFUSED_DANGLING
    except OSError:  # ELOOP, EACCES...
        return REFUSED_UNRESOLVABLE
    if stat.S_ISDIR(st.st_mode):
        return REFUSED_LINK_TO_DIR
    if not stat.S_ISREG(st.st_mode):
        return REFUSED_NOT_REGULAR
    return None


def _loose_entry(root: Path, root_stat: os.stat_result) -> BatchEntry:
    if stat.S_ISLNK(root_stat.st_mode):
        # A loose symlink's target is by definition outside its one-file batch.
        return BatchEntry(root.name, REFUSED_OUTSIDE)
    if not stat.S_ISREG(root_stat.st_mode):
        return BatchEntry(root.name, REFUSED_NOT_REGULAR)
    return BatchEntry(root.name)


def iter_batch_entries(
    root: Path, ready_marker: str, extra_patterns: Sequence[str] = ()
) -> Iterator[BatchEntry]:
    """Yield the input files of a batch in `sorted(relpath)` order, streaming.

    Ignored names are skipped and ignored directories pruned; the ready marker and the control
    files (`batch.toml`, `urls.txt`) are skipped at the top level only. Symlinks are never
    followed: one resolving to a regular file inside the batch is yielded as a normal entry, any
    other (outside, dangling, looping, to a directory) is yielded with `refused` set, as are FIFOs,
    sockets and devices. Memory is bounded by the listings of the directories on the current path.

    Raises:
        FileNotFoundError: `root` itself is gone.
    """
    root_stat = os.lstat(root)
    if not stat.S_ISDIR(root_stat.st_mode):
        yield _loose_entry(root, root_stat)
        return
    root_real = os.path.realpath(root)

    def keep(name: str, is_dir: bool, at_top: bool) -> bool:
        if is_ignored(name, extra_patterns):
            return False
        return is_dir or not at_top or (name != ready_marker and name not in CONTROL_FILES)

    for node in _walk(os.fspath(root), keep):
        if node.kind == _FILE:
            yield BatchEntry(node.relpath)
        elif node.kind == _LINK:
            yield BatchEntry(node.relpath, _symlink_refusal(node.path, root_real))
        elif node.kind == _OTHER:
            yield _other_entry(node)


def _other_entry(node: _Node) -> BatchEntry:
    """A FIFO, socket or device is refused; an entry that vanished mid-walk is yielded as a file.

    (The analysis then reports IO_ERROR for it, which says more than silently dropping it.)
    """
    try:
        st = os.lstat(node.path)
    except OSError:
        return BatchEntry(node.relpath)
    if stat.S_ISREG(st.st_mode):
        return BatchEntry(node.relpath)
    return BatchEntry(node.relpath, REFUSED_NOT_REGULAR)
