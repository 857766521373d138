"""Making a folder a batch (batchcreation.py): the claim check, the claim, the backoff."""

from __future__ import annotations

import pytest

from medianalysed.batchcreation import BatchCreation
from medianalysed.config import InboxConfig
from medianalysed.diskfaults import FaultBoard
from medianalysed.errors import DiskWriteError
from medianalysed.state import StateStore


class _RefusingStore(StateStore):
    """A real store whose next `refusals` batch creations fail as a full disk would."""

    refusals = 0

    def create_batch(self, record, claim_key, identity):
        if self.refusals:
            self.refusals -= 1
            raise DiskWriteError("state", str(self.root), "ENOSPC", "no space left")
        super().create_batch(record, claim_key, identity)


@pytest.fixture
def env(tmp_path):
    inbox = InboxConfig(
        path=tmp_path / "inbox", outbox=tmp_path / "outbox", archive=tmp_path / "archive"
    )
    inbox.path.mkdir()
    (inbox.path / "shoot").mkdir()
    store = _RefusingStore(tmp_path / "state")
    store.root = tmp_path / "state"
    now = [100.0]
    board = FaultBoard()
    creation = BatchCreation(
        store, board, who="new batches", retry_delay=lambda n: 2.0**n, clock=lambda: now[0]
    )
    yield inbox, store, board, creation, now
    store.close()


def test_a_created_batch_is_claimed_and_a_moved_folder_is_not(env):
    inbox, _store, _board, creation, _now = env
    folder = inbox.path / "shoot"
    assert not creation.claimed(inbox, folder, lambda _id: False)
    record = creation.create(inbox, folder)
    assert record is not None
    assert creation.claimed(inbox, folder, lambda _id: False)  # the same folder
    (inbox.path / "other").mkdir()  # made while the first exists: another inode
    folder.rmdir()
    (inbox.path / "other").rename(folder)  # another folder of the same name
    assert not creation.claimed(inbox, folder, lambda _id: False)
    assert creation.claimed(inbox, folder, lambda batch_id: batch_id == record.batch_id)
    assert creation.create(inbox, inbox.path / "gone") is None


def test_refusals_back_off_longer_each_time_and_a_success_clears_the_board(env):
    inbox, store, board, creation, now = env
    store.refusals = 2
    for delay in (1.0, 2.0):
        with pytest.raises(DiskWriteError):
            creation.create(inbox, inbox.path / "shoot")
        assert board.failing("new batches")
        assert creation.refusing(now[0] + delay - 0.01)
        assert not creation.refusing(now[0] + delay)
    assert creation.create(inbox, inbox.path / "shoot") is not None
    assert not board.failing("new batches")
