"""The batch actor's helpers in `batchwork/`: parking on a disk fault, the live status."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medianalysed.batchwork.livestatus import live_status
from medianalysed.batchwork.parking import Parking
from medianalysed.batchwork.retries import WRITE_RETRY_BACKOFF_S
from medianalysed.diskfaults import FaultBoard
from medianalysed.errors import DiskWriteError
from medianalysed.models import BatchStatus


def _full() -> DiskWriteError:
    return DiskWriteError("state", "/var/state", "ENOSPC", "no space left")


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_parking_backs_off_longer_after_each_failure_and_is_on_the_board():
    clock, board = _Clock(), FaultBoard()
    parking: Parking[str] = Parking("batch b1", board, now=clock)
    assert not parking.parked

    parking.park(_full())
    assert parking.parked
    assert board.failing("batch b1")
    clock.now += WRITE_RETRY_BACKOFF_S[0] - 0.01
    assert not parking.due()
    clock.now += 0.01
    assert parking.due()

    parking.park(_full())  # the retry failed: the next wait is the second step
    clock.now += WRITE_RETRY_BACKOFF_S[0]
    assert not parking.due()
    clock.now += WRITE_RETRY_BACKOFF_S[1] - WRITE_RETRY_BACKOFF_S[0]
    assert parking.due()


def test_a_retry_replays_the_failed_message_first_then_resumes_and_recovers():
    board = FaultBoard()
    parking: Parking[str] = Parking("batch b1", board, now=_Clock())
    parking.keep_first("failed")
    parking.park(_full())
    parking.keep("later")
    handled: list[str] = []

    parking.retry(handled.append, lambda: handled.append("resumed"))

    assert handled == ["failed", "later", "resumed"]
    assert not parking.parked
    assert not board.failing("batch b1")


def test_a_retry_the_disk_refuses_keeps_the_unhandled_messages_in_order():
    parking: Parking[str] = Parking("batch b1", FaultBoard(), now=_Clock())
    for message in ("one", "two", "three"):
        parking.keep(message)
    parking.park(_full())
    handled: list[str] = []

    def dispatch(message: str) -> None:
        if message == "two":
            raise _full()
        handled.append(message)

    with pytest.raises(DiskWriteError):
        parking.retry(dispatch, lambda: handled.append("resumed"))
    assert handled == ["one"]

    again: list[str] = []
    parking.retry(again.append, lambda: again.append("resumed"))
    assert again == ["two", "three", "resumed"]


@given(
    fresh=st.integers(min_value=0, max_value=5),
    retrying=st.integers(min_value=0, max_value=5),
    cancelled=st.booleans(),
)
def test_the_live_status_is_retrying_only_when_nothing_but_retries_is_left(
    fresh, retrying, cancelled
):
    status = live_status(fresh=fresh, retrying=retrying, cancelled=cancelled)
    expected = retrying > 0 and fresh == 0 and not cancelled
    assert (status == BatchStatus.RETRYING) == expected
    assert status in {BatchStatus.RETRYING, BatchStatus.PROCESSING}
