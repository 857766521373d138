"""Duplicates a person can act on: one group and one tier per file, a keeper, history members."""

from __future__ import annotations

from typing import Any

from medianalysed.dupactions import (
    DuplicateGroups,
    KeeperFacts,
    choose_keeper,
    duplicate_fields,
    keeper_facts,
    outermost,
    strongest,
)


def _match(tier: str, path: str, seen_in: str | None = None) -> dict[str, Any]:
    return {"tier": tier, "path": path, "seen_in": seen_in, "distances": {"phash": 0}}


def test_nested_groups_are_listed_once_under_the_tier_that_joins_them():
    groups = {
        "exact": [["a", "c"], ["x", "y"]],
        "same_pixels": [["a", "c", "d"]],
        "near": [["a", "b", "c", "d"]],
    }
    assert outermost(groups) == {
        "exact": [["x", "y"]],
        "same_pixels": [],
        "near": [["a", "b", "c", "d"]],
    }


def test_overlapping_groups_of_different_tiers_merge_whatever_their_order():
    groups = {"near": [["c", "d"]], "exact": [["a", "b"], ["b", "c"]], "same_pixels": [["e", "f"]]}
    assert outermost(groups) == {
        "exact": [],
        "same_pixels": [["e", "f"]],
        "near": [["a", "b", "c", "d"]],
    }


def test_strongest_tier():
    assert strongest(["near", "exact", "same_pixels"]) == "exact"
    assert strongest(["near", "same_pixels"]) == "same_pixels"
    assert strongest([]) is None


def test_keeper_is_largest_then_earliest_then_shortest_path():
    big = KeeperFacts("deep/folder/big.jpg", 12_000_000, "2024-05-02T10:00:00")
    early = KeeperFacts("deep/early.jpg", 8_000_000, "2020-01-01T00:00:00")
    undated = KeeperFacts("x.jpg", 8_000_000, None)
    assert choose_keeper([early, big, undated]) == "deep/folder/big.jpg"
    assert choose_keeper([undated, early]) == "deep/early.jpg"
    assert choose_keeper([KeeperFacts("aa/b.jpg", 1, None), KeeperFacts("c.jpg", 1, None)]) == (
        "c.jpg"
    )
    assert choose_keeper([KeeperFacts("b.jpg", 1, None), KeeperFacts("a.jpg", 1, None)]) == "a.jpg"


def test_keeper_facts_of_a_stored_result():
    result = {
        "image": {"width": 40, "height": 30},
        "exif": {"datetime_original": "2021-06-01T12:00:00"},
    }
    assert keeper_facts("a.jpg", result) == KeeperFacts("a.jpg", 1200, "2021-06-01T12:00:00")
    assert keeper_facts("b.jpg", None) == KeeperFacts("b.jpg", 0, None)
    assert keeper_facts("c.jpg", {"image": {"width": None}, "exif": None}).pixels == 0


def test_duplicate_fields_point_at_the_keeper_else_at_the_closest_earlier_image():
    in_batch_first = [_match("exact", "c.jpg"), _match("near", "old/a.jpg", "holiday")]
    assert duplicate_fields(in_batch_first, "k.jpg") == {
        "duplicate_of": "k.jpg",
        "duplicate_tier": "exact",
        "duplicate_seen_in": None,
    }
    # The strongest match is already in an earlier batch: that is what it duplicates.
    matches = [_match("exact", "old/a.jpg", "holiday"), _match("near", "b.jpg")]
    assert duplicate_fields(matches, "k.jpg") == {
        "duplicate_of": "old/a.jpg",
        "duplicate_tier": "exact",
        "duplicate_seen_in": "holiday",
    }
    assert duplicate_fields(matches, None) == {
        "duplicate_of": "old/a.jpg",
        "duplicate_tier": "exact",
        "duplicate_seen_in": "holiday",
    }
    # The keeper of an in-batch group: a tier, nothing to replace it with.
    assert duplicate_fields([_match("near", "b.jpg")], None) == {
        "duplicate_of": None,
        "duplicate_tier": "near",
        "duplicate_seen_in": None,
    }
    assert duplicate_fields(None, None)["duplicate_tier"] is None


def _record(path: str, matches: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    chosen = duplicate_fields(matches, fields.pop("keeper", None))
    return {"path": path, "duplicates": matches, "duplicate_group": None, **chosen, **fields}


def test_groups_hold_history_matches_with_their_batch_and_one_tier_per_file():
    collector = DuplicateGroups()
    collector.add(
        _record(
            "a.jpg",
            [_match("exact", "c.jpg"), _match("near", "b.jpg")],
            duplicate_group="a.jpg",
            image={"width": 10, "height": 10},
        )
    )
    collector.add(
        _record(
            "b.jpg",
            [_match("exact", "old/b.jpg", "holiday"), _match("near", "a.jpg")],
            duplicate_group="a.jpg",
            keeper="a.jpg",
        )
    )
    collector.add(
        _record(
            "c.jpg",
            [_match("exact", "a.jpg")],
            duplicate_group="a.jpg",
            keeper="a.jpg",
            image={"width": 5, "height": 10},
        )
    )
    # Seen only in an earlier batch: a group of its own.
    collector.add(_record("new.jpg", [_match("near", "old/new.jpg", "holiday")]))
    collector.add({"path": "alone.jpg", "duplicates": []})

    assert collector.groups_json() == [
        {
            "id": "a.jpg",
            "keeper": "a.jpg",
            "size": 4,
            "members": [
                {"path": "a.jpg", "tier": "exact", "seen_in": None},
                {"path": "b.jpg", "tier": "exact", "seen_in": None},
                {"path": "c.jpg", "tier": "exact", "seen_in": None},
                {"path": "old/b.jpg", "tier": "exact", "seen_in": "holiday"},
            ],
        },
        {
            "id": "new.jpg",
            "keeper": "new.jpg",
            "size": 2,
            "members": [
                {"path": "new.jpg", "tier": "near", "seen_in": None},
                {"path": "old/new.jpg", "tier": "near", "seen_in": "holiday"},
            ],
        },
    ]
    assert collector.nodes() == [
        (None, "a.jpg"),
        (None, "b.jpg"),
        (None, "c.jpg"),
        (None, "new.jpg"),
        ("holiday", "old/b.jpg"),
        ("holiday", "old/new.jpg"),
    ]
    # a-b and a-c are listed from both sides: one edge each.
    pairs = sorted(sorted((e.source[1], e.target[1])) for e in collector.edges())
    assert pairs == [
        ["a.jpg", "b.jpg"],
        ["a.jpg", "c.jpg"],
        ["b.jpg", "old/b.jpg"],
        ["new.jpg", "old/new.jpg"],
    ]
