"""Readiness: ignore rules, tree snapshots, settling with a fake clock, batch enumeration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medianalysed import readiness
from medianalysed.readiness import (
    BUILTIN_IGNORES,
    REFUSED_DANGLING,
    REFUSED_LINK_TO_DIR,
    REFUSED_NOT_REGULAR,
    REFUSED_OUTSIDE,
    REFUSED_UNRESOLVABLE,
    BatchEntry,
    SettleTracker,
    TreeSnapshot,
    group_of,
    is_batch_candidate,
    is_ignored,
    iter_batch_entries,
    snapshot_tree,
)

MARKER = ".ready"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def snap(signature: str, *, marker: bool = False) -> TreeSnapshot:
    return TreeSnapshot(signature=signature, file_count=1, has_marker=marker)


def entries(root: Path, extra: tuple[str, ...] = ()) -> list[BatchEntry]:
    return list(iter_batch_entries(root, MARKER, extra))


# --- ignore rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "@eaDir",
        ".DS_Store",
        "._IMG_0001.jpg",
        "Thumbs.db",
        "thumbs.db",
        "desktop.ini",
        "Desktop.ini",
        "__MACOSX",
        ".hidden.jpg",
        ".ready",
        ".trip",
    ],
)
def test_junk_and_hidden_names_are_ignored(name):
    assert is_ignored(name)
    assert not is_batch_candidate(name)


def test_every_builtin_pattern_is_covered_by_a_case():
    for pattern in BUILTIN_IGNORES:
        name = pattern.replace("*", "anything")
        assert is_ignored(name), pattern


@pytest.mark.parametrize(
    "name", ["IMG_0001.jpg", "eaDir", "_IMG.jpg", "Thumbs.db.jpg", "MACOSX", "trip-2025"]
)
def test_ordinary_names_are_not_ignored(name):
    assert not is_ignored(name)
    assert is_batch_candidate(name)


def test_extra_patterns_are_case_sensitive_globs():
    assert is_ignored("scan.raw", ["*.raw"])
    assert not is_ignored("scan.RAW", ["*.raw"])
    assert is_ignored("draft-01", ["*.raw", "draft-*"])
    assert not is_batch_candidate("draft-01", ["draft-*"])


@pytest.mark.parametrize(
    "name", ["trip.part", "IMG.jpg.tmp", "video.crdownload", "SHOUT.CRDOWNLOAD", "a.PART"]
)
def test_temp_suffixes_are_not_batch_candidates_but_not_ignored(name):
    assert not is_batch_candidate(name)
    assert not is_ignored(name)


def test_group_of():
    assert group_of("kitchen/IMG_1.jpg") == "kitchen"
    assert group_of("level1/a/b.png") == "level1"
    assert group_of("IMG_1.jpg") is None


# --- settling --------------------------------------------------------------------------------


def test_marker_is_ready_at_once():
    tracker = SettleTracker(60, clock=FakeClock())
    assert tracker.observe("trip", snap("a", marker=True))


def test_unchanged_signature_is_ready_after_settle_seconds():
    clock = FakeClock()
    tracker = SettleTracker(5, clock=clock)
    assert not tracker.observe("trip", snap("a"))
    clock.now += 4.9
    assert not tracker.observe("trip", snap("a"))
    clock.now += 0.1
    assert tracker.observe("trip", snap("a"))


def test_a_change_restarts_the_timer():
    clock = FakeClock()
    tracker = SettleTracker(5, clock=clock)
    tracker.observe("trip", snap("a"))
    clock.now += 3
    assert not tracker.observe("trip", snap("b"))
    clock.now += 4
    assert not tracker.observe("trip", snap("b"))
    clock.now += 1
    assert tracker.observe("trip", snap("b"))
    clock.now += 100
    assert not tracker.observe("trip", snap("c")), "a late rewrite makes it unready again"


def test_zero_settle_seconds_means_ready_at_first_observation():
    tracker = SettleTracker(0, clock=FakeClock())
    assert tracker.observe("trip", snap("a"))


def test_negative_settle_seconds_is_rejected():
    with pytest.raises(ValueError, match="settle_seconds"):
        SettleTracker(-1)


def test_waiting_reports_stable_seconds_and_forget_restarts():
    clock = FakeClock()
    tracker = SettleTracker(5, clock=clock)
    tracker.observe("a", snap("1"))
    clock.now += 2
    tracker.observe("b", snap("1"))
    clock.now += 1
    assert tracker.waiting() == {"a": 3.0, "b": 1.0}
    tracker.forget("a")
    tracker.forget("never-seen")
    assert tracker.waiting() == {"b": 1.0}
    clock.now += 10
    assert not tracker.observe("a", snap("1")), "a forgotten key starts over"


# --- snapshots -------------------------------------------------------------------------------


def test_snapshot_is_stable_and_sees_growth_mtime_and_new_directories(tmp_path):
    root = tmp_path / "trip"
    photo = touch(root / "kitchen" / "a.jpg", b"12345")
    touch(root / "b.jpg")
    first = snapshot_tree(root, MARKER)
    assert first == snapshot_tree(root, MARKER)
    assert first.file_count == 2
    assert not first.has_marker

    photo.write_bytes(b"123456")
    os.utime(photo, ns=(1_000_000_000, 1_000_000_000))
    grown = snapshot_tree(root, MARKER)
    assert grown.signature != first.signature

    os.utime(photo, ns=(2_000_000_000, 2_000_000_000))
    touched = snapshot_tree(root, MARKER)
    assert touched.signature != grown.signature

    kitchen = os.stat(root / "kitchen")
    (root / "kitchen" / "empty").mkdir()
    # Only the new directory's own entry differs: its parent's mtime is put back.
    os.utime(root / "kitchen", ns=(kitchen.st_atime_ns, kitchen.st_mtime_ns))
    with_dir = snapshot_tree(root, MARKER)
    assert with_dir.signature != touched.signature
    assert with_dir.file_count == 2


def test_snapshot_sees_a_rename_with_same_sizes_and_mtimes(tmp_path):
    root = tmp_path / "trip"
    photo = touch(root / "a.jpg")
    os.utime(photo, ns=(1_000_000_000, 1_000_000_000))
    before = snapshot_tree(root, MARKER)
    parent = os.stat(root)
    photo.rename(root / "b.jpg")
    os.utime(root, ns=(parent.st_atime_ns, parent.st_mtime_ns))
    assert snapshot_tree(root, MARKER).signature != before.signature


def test_snapshot_reports_the_marker_at_top_level_only(tmp_path):
    root = tmp_path / "trip"
    touch(root / "sub" / MARKER)
    assert not snapshot_tree(root, MARKER).has_marker
    touch(root / MARKER)
    assert snapshot_tree(root, MARKER).has_marker
    assert not snapshot_tree(root, "").has_marker


def test_snapshot_of_a_loose_file(tmp_path):
    photo = touch(tmp_path / "IMG_1.jpg", b"abc")
    first = snapshot_tree(photo, MARKER)
    assert first.file_count == 1
    assert not first.has_marker
    photo.write_bytes(b"abcd")
    assert snapshot_tree(photo, MARKER).signature != first.signature


def test_snapshot_does_not_follow_symlinks(tmp_path):
    outside = touch(tmp_path / "outside" / "big.jpg", b"1")
    root = tmp_path / "trip"
    root.mkdir()
    (root / "link.jpg").symlink_to(outside)
    (root / "linkdir").symlink_to(outside.parent, target_is_directory=True)
    before = snapshot_tree(root, MARKER)
    assert before.file_count == 2
    outside.write_bytes(b"grown outside the batch")
    touch(outside.parent / "more.jpg")
    assert snapshot_tree(root, MARKER) == before


def test_snapshot_of_a_missing_root_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        snapshot_tree(tmp_path / "gone", MARKER)


def test_snapshot_tolerates_an_entry_vanishing_during_the_walk(tmp_path, monkeypatch):
    root = tmp_path / "trip"
    touch(root / "a.jpg")
    victim = touch(root / "b.jpg")
    real_lstat = os.lstat

    def lstat_after_delete(path, *args, **kwargs):
        # Remove the file between the directory listing and its stat, as a concurrent mv would.
        # (The walk stats each name relative to its directory's descriptor.)
        if os.fsencode(path) == victim.name.encode() and victim.exists():
            victim.unlink()
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat_after_delete)
    result = snapshot_tree(root, MARKER)
    assert result.file_count == 1


def test_walk_tolerates_a_directory_vanishing_before_it_is_listed(tmp_path):
    root = tmp_path / "trip"
    touch(root / "a" / "1.jpg")
    touch(root / "b" / "2.jpg")
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    seen = []
    try:
        for node in readiness._walk(root_fd, readiness._keep_everything):
            seen.append(node.relpath)
            if node.relpath == "b":
                (root / "b" / "2.jpg").unlink()
                (root / "b").rmdir()
    finally:
        os.close(root_fd)
    assert seen == ["a", "a/1.jpg", "b"]


# --- batch entries ---------------------------------------------------------------------------


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    root = tmp_path / "inbox" / "trip"
    for name in [
        MARKER,
        "batch.toml",
        "urls.txt",
        "b.jpg",
        "a-c.jpg",
        "a/x.jpg",
        "a/batch.toml",
        "a/urls.txt",
        "kitchen/IMG_1.jpg",
        "kitchen/sub/IMG_2.jpg",
        "kitchen/.hidden.jpg",
        "kitchen/Thumbs.db",
        "@eaDir/b.jpg/SYNOPHOTO_THUMB_XL.jpg",
        "__MACOSX/._b.jpg",
        "._b.jpg",
        ".DS_Store",
        "scan.raw",
        "desktop.ini",
    ]:
        touch(root / name)
    touch(tmp_path / "outside" / "secret.jpg")
    (root / "link_in.jpg").symlink_to("b.jpg")
    (root / "link_chain.jpg").symlink_to("link_in.jpg")
    (root / "link_out.jpg").symlink_to(tmp_path / "outside" / "secret.jpg")
    (root / "link_up.jpg").symlink_to("../../outside/secret.jpg")
    (root / "link_dangling.jpg").symlink_to("missing.jpg")
    (root / "link_dir").symlink_to("kitchen", target_is_directory=True)
    (root / "link_outdir").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    os.mkfifo(root / "pipe")
    return root


def test_batch_entries_content_order_and_refusals(batch):
    got = entries(batch, ("*.raw",))
    assert got == [
        BatchEntry("a-c.jpg"),
        BatchEntry("a/batch.toml"),
        BatchEntry("a/urls.txt"),
        BatchEntry("a/x.jpg"),
        BatchEntry("b.jpg"),
        BatchEntry("kitchen/IMG_1.jpg"),
        BatchEntry("kitchen/sub/IMG_2.jpg"),
        BatchEntry("link_chain.jpg"),
        BatchEntry("link_dangling.jpg", REFUSED_DANGLING),
        BatchEntry("link_dir", REFUSED_LINK_TO_DIR),
        BatchEntry("link_in.jpg"),
        BatchEntry("link_out.jpg", REFUSED_OUTSIDE),
        BatchEntry("link_outdir", REFUSED_OUTSIDE),
        BatchEntry("link_up.jpg", REFUSED_OUTSIDE),
        BatchEntry("loop1", REFUSED_UNRESOLVABLE),
        BatchEntry("loop2", REFUSED_UNRESOLVABLE),
        BatchEntry("pipe", REFUSED_NOT_REGULAR),
    ]
    assert [entry.relpath for entry in got] == sorted(entry.relpath for entry in got)
    assert {group_of(entry.relpath) for entry in got} == {None, "a", "kitchen"}


def test_extra_patterns_prune_directories_too(batch):
    got = [entry.relpath for entry in entries(batch, ("kitchen", "link*", "loop*"))]
    assert got == ["a-c.jpg", "a/batch.toml", "a/urls.txt", "a/x.jpg", "b.jpg", "pipe", "scan.raw"]


def test_a_visible_ready_marker_is_excluded_at_top_level_only(tmp_path):
    root = tmp_path / "trip"
    touch(root / "READY")
    touch(root / "sub" / "READY")
    touch(root / "IMG.jpg")
    got = [entry.relpath for entry in iter_batch_entries(root, "READY")]
    assert got == ["IMG.jpg", "sub/READY"]


def test_order_equals_plain_string_sort_for_tricky_names(tmp_path):
    root = tmp_path / "trip"
    names = ["a", "a-b", "a.b", "a0", "A", "b", "é.jpg", "z z"]
    for directory in ["a-", "a", "a.", "ab", "a b"]:
        for name in names:
            touch(root / directory / name)
    for name in names[1:]:  # "a" is a directory at the top
        touch(root / name)
    got = [entry.relpath for entry in entries(root)]
    assert len(got) == 5 * len(names) + len(names) - 1
    assert got == sorted(got)


def test_entries_stream_lazily(tmp_path):
    root = tmp_path / "trip"
    touch(root / "a" / "1.jpg")
    (root / "z").mkdir()
    walk = iter_batch_entries(root, MARKER)
    assert next(walk) == BatchEntry("a/1.jpg")
    touch(root / "z" / "2.jpg")  # z has not been listed yet
    assert list(walk) == [BatchEntry("z/2.jpg")]


def test_symlink_inside_is_judged_against_the_resolved_root(tmp_path):
    real = tmp_path / "real"
    touch(real / "trip" / "a.jpg")
    (real / "trip" / "b.jpg").symlink_to("a.jpg")
    alias = tmp_path / "alias"
    alias.symlink_to(real, target_is_directory=True)
    assert entries(alias / "trip") == [BatchEntry("a.jpg"), BatchEntry("b.jpg")]


def test_a_loose_file_root_is_one_entry(tmp_path):
    photo = touch(tmp_path / "inbox" / "IMG_1.jpg")
    assert entries(photo) == [BatchEntry("IMG_1.jpg")]


def test_a_loose_symlink_root_is_refused(tmp_path):
    target = touch(tmp_path / "elsewhere" / "IMG_1.jpg")
    link = tmp_path / "inbox" / "IMG_1.jpg"
    link.parent.mkdir()
    link.symlink_to(target)
    assert entries(link) == [BatchEntry("IMG_1.jpg", REFUSED_OUTSIDE)]


def test_a_missing_root_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        entries(tmp_path / "gone")


def test_an_empty_batch_yields_nothing(tmp_path):
    root = tmp_path / "trip"
    touch(root / MARKER)
    touch(root / "batch.toml")
    assert entries(root) == []
