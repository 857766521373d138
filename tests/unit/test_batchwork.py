"""The batch actor's helpers in `batchwork/`: parking on a disk fault, the live status, the job
line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medianalysed.batchwork.jobline import GAUGE_REFRESH_S, JobLine
from medianalysed.batchwork.livestatus import live_status
from medianalysed.batchwork.parking import Parking
from medianalysed.batchwork.retries import WRITE_RETRY_BACKOFF_S
from medianalysed.diskfaults import FaultBoard
from medianalysed.errors import DiskWriteError
from medianalysed.jobqueue import window
from medianalysed.messages import AnalyseImage
from medianalysed.models import BatchStatus, ImageStatus
from medianalysed.state import ImageRecord, StateStore
from tests.seeding import seed_batch


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


# -- the job line (batchwork/jobline.py): a real state store, no actors ---------------------


class _Line:
    """A JobLine over a seeded batch; `failures` holds the paths it could not prepare."""

    def __init__(self, tmp_path, images, *, slots=1, broken=()):
        self.store = StateStore(tmp_path / "state")
        self.record = seed_batch(self.store, tmp_path, "b1", images)
        self.clock = _Clock()
        self.parked = False
        self.failures: list[str] = []
        self.line = JobLine(
            self.store,
            "b1",
            window=window(slots),
            make_job=lambda path, image: self._job(path, image, broken),
            fail_unstarted=lambda path, exc: self.failures.append(path),
            paused=lambda: self.parked,
            clock=self.clock,
            monotonic=self.clock,
        )
        self.line.reread(self.record)

    def _job(self, path, image, broken):
        if path in broken:
            raise ValueError(path)
        attempts = 0 if image is None else image.attempts
        return AnalyseImage(
            batch_id="b1",
            path=path,
            file_path=path,
            source_url=None,
            attempt=attempts + 1,
            reply_to=None,
        )

    def take(self) -> list[str]:
        jobs: list[AnalyseImage] = []
        self.line.take(jobs)
        return [job.path for job in jobs]


def _pending(paths):
    return [ImageRecord(path=path) for path in paths]


def test_the_line_offers_a_window_in_path_order_and_skips_terminal_images(tmp_path):
    paths = [f"{n:02}.jpg" for n in range(8)]
    images = [*_pending(paths[:2]), ImageRecord(path=paths[2], status=ImageStatus.DONE)]
    images += _pending(paths[3:])
    subject = _Line(tmp_path, images, slots=1)  # window: at most 3 offered, refill at 2
    line = subject.line
    assert line.counts == {"done": 1, "failed": 0, "skipped": 0, "pending": 7}

    assert subject.take() == ["00.jpg", "01.jpg", "03.jpg"]
    assert (line.outstanding, line.counts["pending"]) == (3, 4)
    assert subject.take() == []  # no room: 3 outstanding
    line.answered("00.jpg")
    assert subject.take() == ["04.jpg"]  # topped up to 3
    subject.store.close()


def test_a_retry_waits_in_the_heap_until_due_and_a_cancel_drops_it(tmp_path):
    subject = _Line(tmp_path, _pending(["a.jpg", "b.jpg"]), slots=2)
    line = subject.line
    assert subject.take() == ["a.jpg", "b.jpg"]
    line.answered("a.jpg")
    line.retry_at("a.jpg", subject.clock.now + 5)
    assert (line.retrying, line.ready_count()) == (1, 0)
    assert subject.take() == []
    subject.clock.now += 5
    assert line.ready_count() == 1
    assert subject.take() == ["a.jpg"]

    line.answered("a.jpg")
    line.retry_at("a.jpg", subject.clock.now)
    line.cancel()
    assert (line.cancelled, line.retrying, line.ready_count()) == (True, 0, 0)
    assert subject.take() == []
    subject.store.close()


def test_jobs_taken_back_are_offered_again_but_not_after_a_cancel(tmp_path):
    subject = _Line(tmp_path, _pending(["a.jpg", "b.jpg", "c.jpg"]), slots=1)
    line = subject.line
    first = []
    line.take(first)
    subject.parked = True
    assert line.ready_count() == 0
    line.take_back(tuple(first[:2]))
    line.take_back(tuple(first[:1]))  # given back twice: counted once
    assert (line.outstanding, line.counts["pending"]) == (1, 2)
    subject.parked = False
    assert sorted(subject.take()) == ["a.jpg", "b.jpg"]

    again = []
    line.take(again)
    line.cancel()
    line.take_back(tuple(first[2:]))
    assert (line.outstanding, line.retrying) == (2, 0)
    subject.store.close()


def test_an_image_that_cannot_be_prepared_is_failed_and_the_next_one_offered(tmp_path):
    subject = _Line(tmp_path, _pending(["a.jpg", "b.jpg"]), slots=1, broken={"a.jpg"})
    assert subject.take() == ["b.jpg"]
    assert subject.failures == ["a.jpg"]
    assert subject.line.counts == {"done": 0, "failed": 1, "skipped": 0, "pending": 0}
    assert subject.line.changed
    subject.store.close()


def test_a_path_lost_from_the_line_is_found_by_reading_it_again(tmp_path):
    subject = _Line(tmp_path, _pending(["a.jpg", "b.jpg"]), slots=1)
    subject.line._cursor = iter(["b.jpg"])  # a bug lost a.jpg
    assert subject.take() == ["b.jpg", "a.jpg"]  # the line, read again, still holds a.jpg
    subject.store.close()


def test_counts_go_alone_only_on_a_quiet_tick_and_only_when_they_moved(tmp_path):
    subject = _Line(tmp_path, _pending(["a.jpg", "b.jpg", "c.jpg", "d.jpg"]), slots=1)
    line = subject.line
    jobs = []
    line.take(jobs)
    assert line.report(jobs, tick=False) == (1, 4)  # offered: 1 more ready, 4 unfinished
    assert line.report([], tick=False) is None  # an outcome: the counts wait for a tick
    assert line.report([], tick=True) is None  # within GAUGE_REFRESH_S of the offer
    subject.clock.now += GAUGE_REFRESH_S
    assert line.report([], tick=True) is None  # nothing moved
    line.answered("a.jpg")
    assert line.report([], tick=True) == (1, 3)


def test_undo_forgets_a_half_applied_outcome(tmp_path):
    subject = _Line(tmp_path, _pending(["a.jpg", "b.jpg"]), slots=1)
    line = subject.line
    subject.take()
    before = dict(line.counts)
    line.answered("a.jpg")
    line.retry_at("a.jpg", subject.clock.now + 9)
    line.undo("a.jpg", before)
    assert (line.counts, line.outstanding, line.retrying) == (before, 1, 0)  # b.jpg still out
    subject.store.close()
