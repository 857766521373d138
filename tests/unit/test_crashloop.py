"""Crash-loop detection on a real StateStore: deaths are counted once, innocents never blamed."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from medianalysed.crashloop import MAX_DEATHS, enter_step, leave_step, review_markers
from medianalysed.state import StateStore


class Runs:
    """Incarnations of a daemon on one state directory; each ends cleanly or dies."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.store: StateStore | None = None

    def start(self):
        self.store = StateStore(self.state_dir)
        self.store.begin_incarnation()
        return review_markers(self.store)

    def end(self, *, clean: bool) -> None:
        assert self.store is not None
        if clean:
            self.store.end_incarnation()
        self.store.close()
        self.store = None


def test_two_deaths_in_the_same_step_set_the_batch_aside(tmp_path: Path) -> None:
    runs = Runs(tmp_path)
    assert runs.start().suspects == frozenset()
    enter_step(runs.store, "poison", "enumerating")
    enter_step(runs.store, "bystander", "finalizing")
    runs.end(clean=False)

    review = runs.start()
    assert review.suspects == {"poison", "bystander"}
    assert review.set_aside == {}
    enter_step(runs.store, "bystander", "finalizing")  # run alone: it passes
    leave_step(runs.store, "bystander")
    enter_step(runs.store, "poison", "enumerating")  # run alone: it kills again
    runs.end(clean=False)

    review = runs.start()
    assert set(review.set_aside) == {"poison"}
    assert "died 2 times while enumerating" in review.set_aside["poison"]
    assert review.suspects == frozenset()
    assert runs.store.step_markers() == {}
    runs.end(clean=True)


def test_a_clean_stop_during_a_step_is_not_a_death(tmp_path: Path) -> None:
    runs = Runs(tmp_path)
    for _ in range(4):
        runs.start()
        enter_step(runs.store, "long", "finalizing")
        runs.end(clean=True)
    review = runs.start()
    assert review.set_aside == {}
    assert review.suspects == frozenset()


def test_deaths_at_different_steps_do_not_add_up(tmp_path: Path) -> None:
    runs = Runs(tmp_path)
    runs.start()
    enter_step(runs.store, "b", "enumerating")
    runs.end(clean=False)
    runs.start()
    enter_step(runs.store, "b", "enumerating")
    leave_step(runs.store, "b")
    enter_step(runs.store, "b", "finalizing")
    runs.end(clean=False)
    review = runs.start()
    assert review.set_aside == {}
    assert review.suspects == {"b"}


def test_a_suspect_not_started_in_a_run_that_died_is_not_blamed_for_it(tmp_path: Path) -> None:
    runs = Runs(tmp_path)
    runs.start()
    enter_step(runs.store, "waiting", "enumerating")
    runs.end(clean=False)
    for _ in range(3):  # it waits its turn; the daemon dies of something else each time
        assert runs.start().suspects == {"waiting"}
        runs.end(clean=False)
    review = runs.start()
    assert review.set_aside == {}
    assert review.suspects == {"waiting"}


# One incarnation: which batches enter their step (and whether they leave it), then the end.
_RUN = st.tuples(
    st.dictionaries(st.sampled_from("abcd"), st.booleans(), max_size=4),
    st.booleans(),
)


@settings(deadline=None, max_examples=15)
@given(st.lists(_RUN, min_size=1, max_size=4))
def test_only_a_batch_in_its_step_at_two_deaths_in_a_row_is_set_aside(
    tmp_path_factory, runs_plan: list[tuple[dict[str, bool], bool]]
) -> None:
    runs = Runs(tmp_path_factory.mktemp("state"))
    at_death: dict[str, int] = {}  # consecutive deaths each batch was armed at
    runs.start()
    for entered, clean in runs_plan:
        for batch_id, leaves in entered.items():
            enter_step(runs.store, batch_id, "enumerating")
            if leaves:
                leave_step(runs.store, batch_id)
                at_death.pop(batch_id, None)
        runs.end(clean=clean)
        review = runs.start()
        if not clean:
            for batch_id, leaves in entered.items():
                if not leaves:
                    at_death[batch_id] = at_death.get(batch_id, 0) + 1
        expected = {b for b, deaths in at_death.items() if deaths >= MAX_DEATHS}
        assert set(review.set_aside) == expected
        for batch_id in expected:
            del at_death[batch_id]
        assert review.suspects == {b for b, deaths in at_death.items() if deaths}
    runs.end(clean=True)
