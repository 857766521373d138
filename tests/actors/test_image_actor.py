"""ImageActor on its own: what it submits to the executor and what it reports of each outcome.

The executor is a scripted double of our own seam (`executors.Executor`): the test decides how
each future ends. The real pool is covered by test_executors.py and the e2e suite.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import pytest

from medianalysed.actors.image import ImageActor
from medianalysed.config import Config, InboxConfig
from medianalysed.executors.base import LOST_RUNS, REPLACED
from medianalysed.messages import AnalyseImage, ImageAnalysed, WorkerIdle
from medianalysed.models import AnalysisSettings
from medianalysed.worker import WorkerJob
from tests.recording import RecordingActor, expect


class ScriptedExecutor:
    """Hands out futures the test resolves; records every job submitted."""

    kind = "scripted"

    def __init__(self) -> None:
        self.jobs: queue.Queue[tuple[WorkerJob, Future[dict[str, Any]]]] = queue.Queue()
        self.closing = False

    def submit(self, job: WorkerJob) -> Future[dict[str, Any]]:
        if self.closing:
            raise RuntimeError("closing")
        future: Future[dict[str, Any]] = Future()
        self.jobs.put((job, future))
        return future

    def next_job(self) -> tuple[WorkerJob, Future[dict[str, Any]]]:
        return self.jobs.get(timeout=10)

    def held(self, _future: Future[dict[str, Any]]) -> bool:
        return False

    def broken(self) -> str | None:
        return None

    def unavailable(self) -> str | None:
        return None

    def check_inboxes(self, inboxes: Sequence[InboxConfig]) -> None:
        del inboxes

    def notes(self) -> list[str]:
        return []

    def close(self) -> None:
        self.closing = True


class Env:
    def __init__(self) -> None:
        self.executor = ScriptedExecutor()
        self.replies: queue.Queue[Any] = queue.Queue()
        self.supervisor_q: queue.Queue[Any] = queue.Queue()
        self.batch = RecordingActor.start(self.replies)
        self.supervisor = RecordingActor.start(self.supervisor_q)
        self.replaced = threading.Event()
        self.actor = ImageActor.start(
            executor=self.executor,
            settings=AnalysisSettings.from_config(Config()),
            timeout_s=5,
            content_dir=None,
            supervisor=self.supervisor,
            on_process_replaced=self.replaced.set,
        )

    def job(self, path: str = "a.jpg", **changes: Any) -> AnalyseImage:
        fields: dict[str, Any] = {
            "batch_id": "b",
            "path": path,
            "file_path": f"/in/b/{path}",
            "source_url": None,
            "attempt": 1,
            "reply_to": self.batch,
            "root": "/in/b",
            "relpath": path,
            **changes,
        }
        return AnalyseImage(**fields)

    def run(self, job: AnalyseImage, outcome: dict[str, Any] | BaseException) -> ImageAnalysed:
        self.actor.tell(job)
        _, future = self.executor.next_job()
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
        analysed: ImageAnalysed = expect(self.replies, ImageAnalysed)
        idle = expect(self.supervisor_q, WorkerIdle)
        assert (idle.worker, idle.job) == (self.actor, job)  # which slot is free again
        return analysed


@pytest.fixture
def env() -> Iterator[Env]:
    made = Env()
    yield made
    made.actor.stop()
    made.batch.stop()
    made.supervisor.stop()


def test_the_job_submitted_names_the_file_below_its_root_and_the_attempt(env: Env) -> None:
    env.actor.tell(env.job(attempt=3, bypass_cache=True, follow_links=False))

    job, _future = env.executor.next_job()

    assert (job.root, job.relpath, job.attempt) == ("/in/b", "a.jpg", 3)
    assert job.bypass_cache
    assert not job.follow_links
    assert job.source_url is None


def test_a_result_goes_to_the_batch_and_the_worker_is_idle_again(env: Env) -> None:
    result = {"file": {"size": 3}}

    analysed = env.run(env.job(), {"result": result, "cached": True, "elapsed_ms": 12.34})

    assert (analysed.path, analysed.attempt) == ("a.jpg", 1)
    assert analysed.result == result
    assert analysed.error is None
    assert analysed.cached
    assert analysed.duration_ms == 12.3
    assert not analysed.interrupted


def test_an_error_keeps_what_was_learnt_of_the_file(env: Env) -> None:
    error = {"code": "CORRUPT", "message": "truncated", "retryable": False}

    analysed = env.run(env.job(), {"error": error, "file": {"size": 9}, "elapsed_ms": 1})

    assert analysed.result is None
    assert analysed.error == error
    assert analysed.file == {"size": 9}


def test_a_timeout_of_the_pool_is_a_timeout_error_and_the_process_is_replaced(env: Env) -> None:
    analysed = env.run(env.job(), TimeoutError())

    assert analysed.error is not None
    assert analysed.error["code"] == "TIMEOUT"
    assert env.replaced.is_set()


def test_an_executor_failure_is_an_internal_error(env: Env) -> None:
    analysed = env.run(env.job(), OSError("pipe broke"))

    assert analysed.error is not None
    assert analysed.error["code"] == "INTERNAL"
    assert "pipe broke" in analysed.error["message"]
    assert not env.replaced.is_set()


def test_a_replaced_process_is_reported_from_the_outcome_too(env: Env) -> None:
    error = {"code": "INTERNAL", "message": "died", "retryable": False}

    env.run(env.job(), {"error": error, REPLACED: True})

    assert env.replaced.is_set()


def test_runs_lost_with_a_cluster_worker_count_as_attempts(env: Env) -> None:
    analysed = env.run(env.job(attempt=2), {"result": {}, LOST_RUNS: 2})

    assert analysed.attempt == 4


def test_a_cancelled_job_is_no_attempt(env: Env) -> None:
    env.actor.tell(env.job())
    _, future = env.executor.next_job()
    future.cancel()

    analysed = expect(env.replies, ImageAnalysed)

    assert analysed.interrupted
    assert analysed.error is None
    expect(env.supervisor_q, WorkerIdle)


def test_a_closing_executor_leaves_the_image_pending(env: Env) -> None:
    env.executor.close()
    env.actor.tell(env.job())

    analysed = expect(env.replies, ImageAnalysed)

    assert analysed.interrupted
    expect(env.supervisor_q, WorkerIdle)


def test_two_jobs_run_at_once_and_each_outcome_finds_its_image(env: Env) -> None:
    env.actor.tell(env.job("a.jpg"))
    env.actor.tell(env.job("b.jpg"))
    (job_a, future_a), (job_b, future_b) = env.executor.next_job(), env.executor.next_job()
    assert {job_a.relpath, job_b.relpath} == {"a.jpg", "b.jpg"}

    future_b.set_result({"result": {"n": job_b.relpath}})
    future_a.set_result({"result": {"n": job_a.relpath}})

    outcomes = [expect(env.replies, ImageAnalysed) for _ in range(2)]
    assert {o.path: o.result for o in outcomes} == {
        "a.jpg": {"n": "a.jpg"},
        "b.jpg": {"n": "b.jpg"},
    }


def test_a_batch_that_is_gone_does_not_stop_the_worker(env: Env) -> None:
    gone = RecordingActor.start(queue.Queue())
    gone.stop()

    env.actor.tell(env.job(reply_to=gone))
    _, future = env.executor.next_job()
    future.set_result({"result": {}})

    expect(env.supervisor_q, WorkerIdle)
    assert env.actor.is_alive()
    assert env.run(env.job("next.jpg"), {"result": {}}).path == "next.jpg"
