"""The inbox watcher with real watchdog observers on a temporary inbox."""

from __future__ import annotations

import os
import queue
import shutil
from pathlib import Path

import pytest

from medianalysed.config import InboxConfig
from medianalysed.messages import PathSeen
from medianalysed.watch import InboxWatcher, choose_watch_mode, filesystem_type
from tests.recording import RecordingActor, expect

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def recorder():
    messages: queue.Queue = queue.Queue()
    ref = RecordingActor.start(messages)
    yield ref, messages
    ref.stop()


@pytest.mark.parametrize("mode", ["events", "polling"])
def test_folder_moved_in_and_created_and_loose_file_are_seen(tmp_path, recorder, mode):
    ref, messages = recorder
    inbox = InboxConfig(path=tmp_path / "inbox", watch=mode)
    watcher = InboxWatcher(ref, polling_interval_s=0.1)
    watcher.start((inbox,))
    try:
        assert watcher.healthy()
        assert watcher.watched["default"].mode == mode
        staged = tmp_path / "staged"
        staged.mkdir()
        (staged / "a.jpg").write_bytes(b"x")
        os.rename(staged, inbox.path / "moved")
        seen = expect(messages, PathSeen, where=lambda m: m.path.endswith("moved"))
        assert seen == PathSeen("default", str(inbox.path / "moved"))
        (inbox.path / "made").mkdir()
        expect(messages, PathSeen, where=lambda m: m.path.endswith("made"))
        shutil.copy(staged.parent / "inbox" / "moved" / "a.jpg", inbox.path / "loose.jpg")
        expect(messages, PathSeen, where=lambda m: m.path.endswith("loose.jpg"))
    finally:
        watcher.stop()
    assert not watcher.healthy() or watcher.watched == {}


def test_events_deep_inside_a_batch_are_not_reported_as_batches(tmp_path, recorder):
    ref, messages = recorder
    inbox = InboxConfig(path=tmp_path / "inbox", watch="events")
    (tmp_path / "inbox" / "batch").mkdir(parents=True)
    watcher = InboxWatcher(ref)
    watcher.start((inbox,))
    try:
        (inbox.path / "batch" / "deep.jpg").write_bytes(b"x")
        (inbox.path / "marker").mkdir()
        seen = expect(messages, PathSeen, where=lambda m: m.path.endswith("marker"))
        assert Path(seen.path).parent == inbox.path
    finally:
        watcher.stop()
    while not messages.empty():
        message = messages.get_nowait()
        assert Path(message.path).parent == inbox.path


def test_auto_mode_polls_network_filesystems(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/vda / ext4 rw 0 0\nserver:/share /mnt/nas nfs4 rw 0 0\n"
        "//host/photos /mnt/smb cifs rw 0 0\nsshfs#me@host: /mnt/fuse fuse.sshfs rw 0 0\n",
        encoding="utf-8",
    )
    assert filesystem_type(Path("/mnt/nas/inbox"), mounts) == "nfs4"
    assert filesystem_type(Path("/mnt/smb"), mounts) == "cifs"
    assert filesystem_type(Path("/home/x"), mounts) == "ext4"
    auto = InboxConfig(watch="auto")
    assert choose_watch_mode(auto, "nfs4") == "polling"
    assert choose_watch_mode(auto, "cifs") == "polling"
    assert choose_watch_mode(auto, "fuse.sshfs") == "polling"
    assert choose_watch_mode(auto, "ext4") == "events"
    assert choose_watch_mode(InboxConfig(watch="polling"), "ext4") == "polling"
    assert choose_watch_mode(InboxConfig(watch="events"), "nfs") == "events"
