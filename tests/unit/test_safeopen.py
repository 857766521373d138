"""Safe opening: files are read below their batch, by descriptor, never through a link out of it.

Real files, real symlinks, real FIFOs, real permissions; the worker function runs in-process
(the same code the pool runs), so what it returns is what a record would hold.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from medianalysed import names, readiness, safeopen
from medianalysed.models import AnalysisSettings
from medianalysed.readiness import BatchEntry, iter_batch_entries, snapshot_tree
from medianalysed.worker import WorkerJob, run_job

NOBODY = 65534


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def analyse(root: Path, relpath: str) -> dict[str, Any]:
    job = WorkerJob(root=str(root), relpath=relpath, settings=AnalysisSettings(), content_dir=None)
    return run_job(job)


def entries(root: Path) -> list[BatchEntry]:
    return list(iter_batch_entries(root, ".ready"))


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    root = tmp_path / "inbox" / "trip"
    (root / "kitchen").mkdir(parents=True)
    (root / "a.jpg").write_bytes(jpeg((200, 10, 10)))
    (root / "kitchen" / "b.jpg").write_bytes(jpeg((10, 200, 10)))
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "a.jpg").write_bytes(jpeg((1, 2, 3), (80, 80)))
    (outside / "b.jpg").write_bytes(jpeg((1, 2, 3), (80, 80)))
    return root


def _secret_sha(tmp_path: Path) -> str:
    return hashlib.sha256((tmp_path / "private" / "a.jpg").read_bytes()).hexdigest()


def test_a_file_opens_and_is_analysed_from_its_descriptor(batch: Path) -> None:
    outcome = analyse(batch, "kitchen/b.jpg")
    assert outcome["result"]["image"]["width"] == 64
    assert outcome["result"]["file"]["size"] == (batch / "kitchen" / "b.jpg").stat().st_size


def test_a_symlink_swapped_in_for_an_enumerated_file_is_refused(
    batch: Path, tmp_path: Path
) -> None:
    assert BatchEntry("a.jpg") in entries(batch)
    (batch / "a.jpg").unlink()
    (batch / "a.jpg").symlink_to(tmp_path / "private" / "a.jpg")
    outcome = analyse(batch, "a.jpg")
    assert outcome["error"]["code"] == "REFUSED"
    assert outcome["error"]["message"] == safeopen.REFUSED_OUTSIDE
    assert "result" not in outcome
    assert outcome["file"] is None, "nothing of the outside file is reported"
    assert _secret_sha(tmp_path) not in json.dumps(outcome)


def test_a_symlink_swapped_in_for_an_enumerated_folder_is_refused(
    batch: Path, tmp_path: Path
) -> None:
    assert BatchEntry("kitchen/b.jpg") in entries(batch)
    shutil.rmtree(batch / "kitchen")
    (batch / "kitchen").symlink_to(tmp_path / "private", target_is_directory=True)
    outcome = analyse(batch, "kitchen/b.jpg")
    assert outcome["error"]["code"] == "REFUSED"
    assert outcome["file"] is None


def test_a_relative_link_climbing_out_is_refused(batch: Path) -> None:
    (batch / "up.jpg").symlink_to("../../private/a.jpg")
    assert analyse(batch, "up.jpg")["error"]["code"] == "REFUSED"


def test_links_that_stay_inside_the_batch_are_followed(batch: Path) -> None:
    (batch / "kitchen" / "same.jpg").symlink_to("../a.jpg")
    (batch / "absolute.jpg").symlink_to(batch / "kitchen" / "b.jpg")
    listed = entries(batch)
    assert BatchEntry("kitchen/same.jpg") in listed
    assert BatchEntry("absolute.jpg") in listed
    assert analyse(batch, "kitchen/same.jpg")["result"]["image"]["width"] == 64
    assert analyse(batch, "absolute.jpg")["result"]["image"]["width"] == 64


def test_a_loose_file_swapped_for_a_link_to_another_batch_is_refused(batch: Path) -> None:
    inbox = batch.parent
    (inbox / "loose.jpg").write_bytes(jpeg((7, 7, 7)))
    job = WorkerJob(
        root=str(inbox),
        relpath="loose.jpg",
        settings=AnalysisSettings(),
        content_dir=None,
        follow_links=False,
    )
    assert run_job(job)["result"]["image"]["width"] == 64
    (inbox / "loose.jpg").unlink()
    (inbox / "loose.jpg").symlink_to("trip/a.jpg")  # inside the inbox, but another batch's
    assert run_job(job)["error"] == {
        "code": "REFUSED",
        "message": safeopen.REFUSED_OUTSIDE,
        "retryable": False,
    }


def test_a_link_loop_swapped_in_is_refused(batch: Path) -> None:
    (batch / "a.jpg").unlink()
    (batch / "a.jpg").symlink_to("loop.jpg")
    (batch / "loop.jpg").symlink_to("a.jpg")
    outcome = analyse(batch, "a.jpg")
    assert outcome["error"] == {
        "code": "REFUSED",
        "message": safeopen.REFUSED_UNRESOLVABLE,
        "retryable": False,
    }


@pytest.mark.timeout(20)
def test_a_fifo_swapped_in_is_refused_without_blocking(batch: Path) -> None:
    (batch / "a.jpg").unlink()
    os.mkfifo(batch / "a.jpg")  # opening it for reading would wait for a writer for ever
    assert analyse(batch, "a.jpg")["error"]["message"] == safeopen.REFUSED_NOT_REGULAR


def test_a_vanished_file_is_an_io_error_that_says_so(batch: Path) -> None:
    (batch / "a.jpg").unlink()
    error = analyse(batch, "a.jpg")["error"]
    assert error["code"] == "IO_ERROR"
    assert error["retryable"] is True
    assert "moved or deleted" in error["message"]


def test_a_folder_in_place_of_a_file_is_an_io_error(batch: Path) -> None:
    # What `retry` of an unlistable folder's record ("kitchen/") meets.
    error = analyse(batch, "kitchen/")["error"]
    assert error["code"] == "IO_ERROR"
    assert "reprocess the batch" in error["message"]


def test_an_empty_root_is_not_the_current_directory(batch: Path, monkeypatch) -> None:
    monkeypatch.chdir(batch)
    job = WorkerJob(root="", relpath="a.jpg", settings=AnalysisSettings(), content_dir=None)
    assert run_job(job)["error"]["code"] == "IO_ERROR"


def test_a_swapped_batch_folder_is_not_followed(batch: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    batch.rename(moved)
    batch.symlink_to(tmp_path / "private", target_is_directory=True)
    assert analyse(batch, "a.jpg")["error"]["code"] == "IO_ERROR"


def test_a_failure_after_reading_keeps_the_file_facts(batch: Path) -> None:
    data = jpeg((5, 5, 5))
    (batch / "broken.jpg").write_bytes(data[: len(data) // 2])
    outcome = analyse(batch, "broken.jpg")
    assert outcome["error"]["code"] == "CORRUPT"
    assert outcome["file"]["size"] == len(data) // 2
    assert len(outcome["file"]["sha256"]) == 64
    assert outcome["file"]["mtime"].endswith("Z")


def test_a_too_large_file_keeps_its_size_and_mtime(batch: Path) -> None:
    job = WorkerJob(
        root=str(batch),
        relpath="a.jpg",
        settings=AnalysisSettings(max_file_size=10),
        content_dir=None,
    )
    outcome = run_job(job)
    assert outcome["error"]["code"] == "TOO_LARGE"
    assert outcome["file"]["size"] == (batch / "a.jpg").stat().st_size
    assert outcome["file"]["sha256"] is None, "not read: it is over the limit"


def test_undecodable_names_open_like_any_other(tmp_path: Path) -> None:
    root = tmp_path / "trip"
    folder = os.fsencode(root) + b"/sub\xfe"
    os.makedirs(folder)
    with open(folder + b"/img\xff\n.jpg", "wb") as handle:
        handle.write(jpeg((9, 9, 9)))
    (listed,) = entries(root)
    assert names.to_bytes(listed.relpath) == b"sub\xfe/img\xff\n.jpg"
    assert analyse(root, listed.relpath)["result"]["image"]["height"] == 48


# --- deep trees ------------------------------------------------------------------------------


def _build_chain(root: Path, levels: int, name: bytes, leaf: bytes, extra: bytes = b"") -> None:
    """`levels` nested folders named `name`, built through descriptors (no path is that long);
    each level holds `extra` (when given) and the last one `leaf.jpg`."""
    root.mkdir(parents=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            if extra:
                _write_at(fd, b"z.jpg", extra)
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        _write_at(fd, b"leaf.jpg", leaf)
    finally:
        os.close(fd)


def _write_at(directory_fd: int, name: bytes, data: bytes) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=directory_fd)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def test_a_tree_deeper_than_path_max_enumerates_settles_and_opens(tmp_path: Path) -> None:
    root = tmp_path / "deep"
    _build_chain(root, 24, b"d" * 200, jpeg((50, 60, 70)))
    (entry,) = entries(root)
    full = os.fsencode(root) + b"/" + names.to_bytes(entry.relpath)
    assert len(full) > os.pathconf(root, "PC_PATH_MAX")
    with pytest.raises(OSError, match="File name too long"):
        os.stat(full)  # the kernel cannot take the path: only descriptors reach the file
    assert snapshot_tree(root, ".ready").file_count == 1
    outcome = analyse(root, entry.relpath)
    assert outcome["result"]["image"]["width"] == 64


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_deep_walk_holds_a_bounded_number_of_descriptors_and_stays_sorted(
    tmp_path: Path,
) -> None:
    root = tmp_path / "deep"
    levels = readiness._MAX_OPEN_DIRS * 3
    _build_chain(root, levels, b"d", b"leaf", extra=b"x")
    before = _open_fds()
    most = 0
    got = []
    for entry in iter_batch_entries(root, ".ready"):
        most = max(most, _open_fds() - before)
        got.append(entry.relpath)
    expected = ["d/" * depth + "z.jpg" for depth in range(levels)] + ["d/" * levels + "leaf.jpg"]
    assert sorted(got) == sorted(expected)
    assert got == sorted(got), "the walk comes back up through '..' in order"
    assert most <= readiness._MAX_OPEN_DIRS + 4
    assert _open_fds() == before


# --- permissions -----------------------------------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder an unprivileged user can reach (pytest's tmp_path is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="medianalysed-perm-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        for path in [directory, *directory.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(directory)


# Imported before dropping privileges: the interpreter's own files may be readable by root only.
_PRELUDE = """
import json, os, pathlib
from PIL import Image
import medianalysed.analysis, medianalysed.readiness, medianalysed.worker
Image.init()
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid({nobody})
    os.setuid({nobody})
"""


def _run_unprivileged(code: str) -> Any:
    """Run `code` in a child process that is not root, and return the JSON it prints.

    Root bypasses permission bits (CAP_DAC_OVERRIDE), so under root the child drops to
    `nobody` with os.setuid before running `code`; without that, a chmod 000 folder would
    prove nothing. The test checks the child's euid.
    """
    program = _PRELUDE.format(nobody=NOBODY) + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd="/",
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_an_unreadable_sub_folder_becomes_an_io_error_entry_and_the_walk_goes_on(
    shared_dir: Path,
) -> None:
    root = shared_dir / "trip"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "hidden.jpg").write_bytes(jpeg((1, 1, 1)))
    (root / "locked-not.jpg").write_bytes(jpeg((2, 2, 2)))
    (root / "secret.jpg").write_bytes(jpeg((3, 3, 3)))
    (root / "z.jpg").write_bytes(jpeg((4, 4, 4)))
    (root / "locked").chmod(0o000)
    (root / "secret.jpg").chmod(0o000)
    shared_dir.chmod(0o755)
    root.chmod(0o755)
    report = _run_unprivileged(
        f"""
        from medianalysed.readiness import iter_batch_entries, snapshot_tree
        from medianalysed.models import AnalysisSettings
        from medianalysed.worker import WorkerJob, run_job
        root = {str(root)!r}
        listed = [[e.relpath, e.refused, e.unreadable] for e in iter_batch_entries(root, ".r")]
        job = WorkerJob(root=root, relpath="secret.jpg", settings=AnalysisSettings(),
                        content_dir=None)
        print(json.dumps({{
            "uid": os.geteuid(),
            "entries": listed,
            "files": snapshot_tree(pathlib.Path(root), ".r").file_count,
            "secret": run_job(job),
        }}))
        """
    )
    assert report["uid"] != 0, "the permission bits were really checked"
    assert [entry[0] for entry in report["entries"]] == [
        "locked-not.jpg",
        "locked/",
        "secret.jpg",
        "z.jpg",
    ], "sorted: the folder's record stands where its content would"
    locked = report["entries"][1]
    assert locked[2] == "cannot list this folder: Permission denied; nothing in it was analysed"
    assert report["files"] == 3
    assert report["secret"]["error"]["code"] == "IO_ERROR"
    assert "Permission denied" in report["secret"]["error"]["message"]


def test_an_unreadable_batch_folder_is_one_io_error_entry(shared_dir: Path) -> None:
    root = shared_dir / "trip"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"x")
    root.chmod(0o000)
    report = _run_unprivileged(
        f"""
        from medianalysed.readiness import iter_batch_entries, snapshot_tree
        root = pathlib.Path({str(root)!r})
        print(json.dumps({{
            "uid": os.geteuid(),
            "entries": [[e.relpath, e.unreadable] for e in iter_batch_entries(root, ".r")],
            "snapshot": snapshot_tree(root, ".r").file_count,
        }}))
        """
    )
    assert report["uid"] != 0, "the permission bits were really checked"
    message = "cannot list the batch folder: Permission denied; nothing in it was analysed"
    assert report["entries"] == [[".", message]]
    assert report["snapshot"] == 0
