"""A batch's life: the table of moves, and `StateStore.advance` refusing what it does not hold."""

from __future__ import annotations

import itertools
from collections import deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medianalysed.lifecycle import (
    RESTARTABLE,
    TRANSITIONS,
    BatchPhase,
    IllegalTransitionError,
    is_legal,
)
from medianalysed.models import BatchStatus
from medianalysed.state import BatchRecord, StateStore

_IDS = itertools.count()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    opened = StateStore(tmp_path_factory.mktemp("lifecycle") / "state")
    yield opened
    opened.close()


def _new_batch(store: StateStore) -> BatchRecord:
    batch_id = f"b{next(_IDS)}"
    record = BatchRecord(batch_id=batch_id, inbox="default", source="/in", outbox_dir="/out")
    store.put_batch(record)
    return record


def test_every_phase_leads_to_done():
    reached = {BatchPhase.DONE}
    frontier = deque([BatchPhase.DONE])
    while frontier:
        target = frontier.popleft()
        for phase, moves in TRANSITIONS.items():
            if target in moves and phase not in reached:
                reached.add(phase)
                frontier.append(phase)
    assert reached == set(BatchPhase)


def test_the_table_names_every_phase_and_nothing_goes_back_to_listing_but_a_rerun():
    assert set(TRANSITIONS) == set(BatchPhase)
    into_listing = {
        phase for phase, moves in TRANSITIONS.items() if BatchPhase.ENUMERATING in moves
    }
    assert into_listing == {BatchPhase.ENUMERATING, BatchPhase.RESETTING}


_MOVES = st.lists(st.sampled_from(list(BatchPhase)), max_size=25)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(moves=_MOVES)
def test_a_random_walk_stores_only_legal_moves(store, moves):
    record = _new_batch(store)
    for to in moves:
        before = store.get_batch(record.batch_id)
        assert before == record
        if is_legal(record.phase, to):
            record = store.advance(record, to, note=f"at {to}")
            assert record.phase == to
        else:
            with pytest.raises(IllegalTransitionError) as raised:
                store.advance(record, to, note="never stored")
            assert (raised.value.current, raised.value.to) == (before.phase, to)
        assert store.get_batch(record.batch_id) == record  # an illegal move wrote nothing
    assert record.phase in BatchPhase


@pytest.mark.parametrize(
    ("current", "to"),
    [
        (BatchPhase.DONE, BatchPhase.RUNNING),
        (BatchPhase.RUNNING, BatchPhase.ENUMERATING),
        (BatchPhase.FINALIZING, BatchPhase.RUNNING),
        (BatchPhase.FINALIZING, BatchPhase.FINALIZING),
        (BatchPhase.WRITTEN, BatchPhase.FINALIZING),
        (BatchPhase.DISPOSING, BatchPhase.WRITTEN),
        (BatchPhase.RUNNING, BatchPhase.WRITTEN),
    ],
)
def test_an_illegal_move_raises_naming_the_batch_and_both_phases(store, current, to):
    record = _new_batch(store).evolve(phase=current)
    store.put_batch(record)
    with pytest.raises(
        IllegalTransitionError,
        match=f"batch {record.batch_id}: illegal move from {current} to {to}",
    ):
        store.advance(record, to, status=BatchStatus.CANCELLED)
    assert store.get_batch(record.batch_id) == record


@pytest.mark.parametrize("phase", list(BatchPhase))
def test_state_repair_lists_again_only_an_unfinished_batch(store, phase):
    record = _new_batch(store).evolve(phase=phase, total=5, chunks=1)
    store.put_batch(record)
    if phase in RESTARTABLE:
        restarted = store.restart_listing(record)
        assert (restarted.phase, restarted.status, restarted.total) == (
            BatchPhase.ENUMERATING,
            BatchStatus.QUEUED,
            0,
        )
        assert store.get_batch(record.batch_id) == restarted
    else:
        with pytest.raises(IllegalTransitionError):
            store.restart_listing(record)
        assert store.get_batch(record.batch_id) == record
