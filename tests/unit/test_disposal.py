"""`move_input` finishes a move from any state a kill can leave, across filesystems too.

The archive is a tmpfs mounted for the test (root needed), so the move takes the copy path:
partial copy, fsync, rename, source removal. Each generated tree is put in one of the states
a SIGKILL between two of those steps leaves, then `move_input` runs once more: the archive
must hold exactly the original tree, the source must be gone, no partial copy may remain.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medianalysed.disposal import delete_input, move_input, partial_copy_path

_NAMES = st.text(alphabet="abcé xyz.-_", min_size=1, max_size=8).filter(
    lambda name: name not in {".", ".."}
)
_TREES = st.dictionaries(
    st.lists(_NAMES, min_size=1, max_size=3).map("/".join), st.binary(max_size=300), max_size=8
)
_STATES = st.sampled_from(
    ["untouched", "partial copy", "full copy not renamed", "renamed", "source half removed"]
)


@pytest.fixture(scope="module")
def other_fs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    mount = tmp_path_factory.mktemp("tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (root needed): {done.stderr!r}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _write_tree(root: Path, tree: dict[str, bytes]) -> dict[str, bytes]:
    """Write what can be written (a name may be both a file and a folder: first one wins)."""
    written: dict[str, bytes] = {}
    root.mkdir(parents=True)
    for relpath, data in sorted(tree.items()):
        path = root / relpath
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue
        written[relpath] = data
    return written


def _read_tree(root: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def _leave_state(state: str, source: Path, target: Path, tree: dict[str, bytes]) -> None:
    partial = partial_copy_path(target)
    if state == "partial copy":
        for index, (relpath, data) in enumerate(sorted(tree.items())):
            if index % 2 == 0:
                (partial / relpath).parent.mkdir(parents=True, exist_ok=True)
                (partial / relpath).write_bytes(data[: len(data) // 2])
        partial.mkdir(parents=True, exist_ok=True)
    elif state in {"full copy not renamed", "renamed", "source half removed"}:
        _write_tree(partial, tree)
        if state != "full copy not renamed":
            partial.rename(target)
        if state == "source half removed":
            for index, relpath in enumerate(sorted(tree)):
                if index % 2 == 0:
                    (source / relpath).unlink()


@settings(
    deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tree=_TREES, state=_STATES)
def test_a_move_resumed_from_any_step_ends_with_exactly_the_original_in_the_archive(
    other_fs: Path, tmp_path_factory: pytest.TempPathFactory, tree: dict[str, bytes], state: str
) -> None:
    work = tmp_path_factory.mktemp("inbox")
    source = work / "batch"
    written = _write_tree(source, tree)
    target = other_fs / work.name
    _leave_state(state, source, target, written)

    assert move_input(source, target)

    assert not source.exists()
    assert _read_tree(target) == written
    assert not partial_copy_path(target).exists()
    assert move_input(source, target)  # and once more changes nothing
    assert _read_tree(target) == written
    delete_input(target)


def test_a_foreign_target_is_never_taken_for_a_copy(other_fs: Path, tmp_path: Path) -> None:
    source = tmp_path / "batch"
    _write_tree(source, {"a.jpg": b"mine", "b.jpg": b"mine too"})
    target = other_fs / "taken"
    _write_tree(target, {"a.jpg": b"someone else's"})
    assert not move_input(source, target)
    assert _read_tree(source) == {"a.jpg": b"mine", "b.jpg": b"mine too"}
