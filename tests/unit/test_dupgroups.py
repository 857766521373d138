"""Batch duplicates (dupgroups): the same answers as one unlimited `find` per image, bounded.

The reference is `HistoryIndex.find` with no limit, image by image (quadratic, fine for small
batches); the planner must give the same first matches (with their distances and near clause),
the same counts, and groups equal to the connected components of the within-batch matches of
each tier — under the 0.2.0 pHash rule, the default `NearRule` and rules that need a scan.
And `find` itself is checked against the rule applied to every stored pair by brute force.
"""

from __future__ import annotations

import gc
import random
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medianalysed import dupgroups
from medianalysed.dupgroups import BatchImage, DuplicatePlanner
from medianalysed.dupindex import HistoryIndex, ImageRef, IndexedImage, evidence
from medianalysed.nearrule import Clause, NearRule

BATCH = "now"
MASK64 = (1 << 64) - 1
MASK42 = (1 << 42) - 1
OTHER_WIDTHS = (64, 64, 64, 42)  # dhash, ahash, whash, colorhash
RULES = [
    NearRule.phash_only(0),
    NearRule.phash_only(6),
    NearRule.phash_only(12),
    NearRule.default(6),
    NearRule.default(2),
    # No clause can use a table (radius 3 on pHash, colorhash not indexed): the scan path.
    NearRule((Clause("wide", {"phash": 13, "colorhash": 9}),)),
]


def hex64(value: int) -> str:
    return f"{value & MASK64:016x}"


def flip(value: int, bits: list[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    return value


def _hashes(phash: int | None, other: int | tuple[int, ...]) -> dict[str, str]:
    """pHash and the other four hashes, given or derived from one int (dhash, ahash, whash
    and colorhash then differ in few bits when the ints are small and close)."""
    dhash, ahash, whash, color = (
        other if isinstance(other, tuple) else (other * 7, other, other * 13, other)
    )
    hashes = {
        "ahash": hex64(ahash),
        "dhash": hex64(dhash),
        "whash": hex64(whash),
        "colorhash": f"{color & MASK42:011x}",
    }
    if phash is not None:
        hashes["phash"] = hex64(phash)
    return hashes


class World:
    """Contents nest as in real analysis: same bytes -> same pixels -> same hashes."""

    def __init__(self, rng: random.Random, *, centres: int, spread: int, others: int) -> None:
        self.rng = rng
        self.centres = [
            (rng.getrandbits(64), *(rng.getrandbits(width) for width in OTHER_WIDTHS))
            for _ in range(centres)
        ]
        self.spread = spread
        self.others = others  # bits flipped at most in each of the other four hashes
        self.pixels: list[tuple[str | None, int | None, tuple[int, ...]]] = []
        self.files: list[tuple[str, int]] = []  # (sha, pixel class)

    def new_pixels(self) -> int:
        rng = self.rng
        phash = None
        centre = rng.choice(self.centres)
        if rng.random() > 0.05:
            phash = flip(centre[0], rng.sample(range(64), rng.randint(0, self.spread)))
        others = tuple(
            flip(value, rng.sample(range(width), rng.randint(0, self.others)))
            for value, width in zip(centre[1:], OTHER_WIDTHS, strict=True)
        )
        digest = None if rng.random() < 0.1 else f"px{len(self.pixels)}"
        self.pixels.append((digest, phash, others))
        return len(self.pixels) - 1

    def new_file(self) -> int:
        rng = self.rng
        if self.pixels and rng.random() < 0.4:
            pixels = rng.randrange(len(self.pixels))
            if self.pixels[pixels][0] is None:  # no digest: another file would be unrelated
                pixels = self.new_pixels()
        else:
            pixels = self.new_pixels()
        self.files.append((f"sha{len(self.files)}", pixels))
        return len(self.files) - 1

    def image(self, batch: str, path: str) -> IndexedImage:
        rng = self.rng
        file = rng.randrange(len(self.files)) if self.files and rng.random() < 0.4 else None
        sha, pixels = self.files[file if file is not None else self.new_file()]
        digest, phash, other = self.pixels[pixels]
        return IndexedImage(ImageRef(batch, path), sha, digest, _hashes(phash, other), 1)


def _plan(
    index: HistoryIndex, images: list[IndexedImage], *, listed: int, rule: NearRule
) -> DuplicatePlanner:
    planner = DuplicatePlanner(index, batch_id=BATCH, rule=rule, listed=listed)
    for image in images:
        planner.add(BatchImage(image.ref.path, image.sha256, image.pixel_digest, image.hashes))
    for _ in planner.steps():
        pass
    return planner


def _as_json(match: Any) -> dict[str, Any]:
    return {
        "tier": match.tier,
        "path": match.ref.path,
        "seen_in": None if match.ref.batch_id == BATCH else match.ref.batch_id,
        "distances": match.distances,
        "rule": match.rule,
    }


class _Forest:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            item = self.parent[item]
        return item

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[str]]:
        members: dict[str, list[str]] = {}
        for item in self.parent:
            members.setdefault(self.find(item), []).append(item)
        return sorted(sorted(g) for g in members.values() if len(g) > 1)


def check_against_find(
    index: HistoryIndex, images: list[IndexedImage], *, listed: int, rule: NearRule
) -> DuplicatePlanner:
    planner = _plan(index, images, listed=listed, rule=rule)
    forests = {tier: _Forest() for tier in ("exact", "same_pixels", "near")}
    everything = _Forest()
    for position, image in enumerate(images):
        every = index.find(image, rule=rule, limit=10**9)
        got = planner.duplicates(position)
        assert got.count == len(every), image.ref.path
        assert got.matches == [_as_json(m) for m in every[:listed]], image.ref.path
        assert not got.capped
        for match in every:
            if match.ref.batch_id == BATCH:
                forests[match.tier].union(image.ref.path, match.ref.path)
                everything.union(image.ref.path, match.ref.path)
    assert planner.groups() == {tier: forest.groups() for tier, forest in forests.items()}
    coarsest = {path: group[0] for group in everything.groups() for path in group}
    for position, image in enumerate(images):
        assert planner.duplicates(position).group == coarsest.get(image.ref.path)
    assert planner.capped == 0
    return planner


@pytest.fixture
def index(tmp_path: Path) -> Iterator[HistoryIndex]:
    opened = HistoryIndex(tmp_path / "history", analysis_version=1)
    yield opened
    opened.close()


@settings(deadline=None, max_examples=25)
@given(
    seed=st.integers(0, 2**32),
    history=st.integers(0, 40),
    batch=st.integers(0, 60),
    centres=st.integers(1, 6),
    spread=st.sampled_from([0, 2, 5, 9, 15]),
    others=st.sampled_from([0, 4, 9, 20]),
    listed=st.sampled_from([0, 1, 3, 10]),
    rule=st.sampled_from(RULES),
)
def test_the_planner_agrees_with_one_unlimited_find_per_image(
    tmp_path_factory: pytest.TempPathFactory,
    *,
    seed: int,
    history: int,
    batch: int,
    centres: int,
    spread: int,
    others: int,
    listed: int,
    rule: NearRule,
) -> None:
    world = World(random.Random(seed), centres=centres, spread=spread, others=others)
    old = [world.image(f"h{i % 3}", f"old/{i:03d}.jpg") for i in range(history)]
    new = [world.image(BATCH, f"img/{i:03d}.jpg") for i in range(batch)]
    index = HistoryIndex(tmp_path_factory.mktemp("history"), analysis_version=1)
    try:
        index.add_many(old)
        index.add_many(new)
        check_against_find(index, new, listed=listed, rule=rule)
        check_find_by_brute_force(index, old + new, rule)
    finally:
        index.close()


def check_find_by_brute_force(
    index: HistoryIndex, images: list[IndexedImage], rule: NearRule
) -> None:
    """`find`'s near matches are the stored images the rule accepts on their distances."""
    latest = {image.ref: image for image in images}  # a ref added again keeps its last content
    for image in latest.values():
        expected = set()
        for other in latest.values():
            if other.ref == image.ref or other.sha256 == image.sha256:
                continue
            if image.pixel_digest is not None and other.pixel_digest == image.pixel_digest:
                continue
            if rule.match(evidence(image.hashes, other.hashes)) is not None:
                expected.add(other.ref)
        found = index.find(image, rule=rule, limit=10**9)
        assert {match.ref for match in found if match.tier == "near"} == expected
        for match in found:
            named = rule.match(match.distances) if match.tier == "near" else None
            assert match.rule == named


def test_a_batch_of_look_alikes_lists_few_counts_all_and_forms_one_group(
    index: HistoryIndex,
) -> None:
    blank = 0x8000000000000000
    history = [
        IndexedImage(ImageRef("before", f"{i}.png"), f"old{i}", f"opx{i}", _hashes(blank, 0), 1)
        for i in range(30)
    ]
    images = [
        IndexedImage(ImageRef(BATCH, f"{i:04d}.png"), f"s{i}", f"px{i}", _hashes(blank, i), 1)
        for i in range(400)
    ]
    index.add_many(history)
    index.add_many(images)

    planner = check_against_find(index, images, listed=10, rule=NearRule.default(6))

    first = planner.duplicates(0)
    assert first.count == 399 + 30
    assert len(first.matches) == 10
    assert all(match["seen_in"] == "before" for match in first.matches)  # older first
    assert first.group == "0000.png"
    assert planner.groups() == {
        "exact": [],
        "same_pixels": [],
        "near": [[image.ref.path for image in images]],
    }


def test_copies_of_one_file_are_one_exact_group(index: HistoryIndex) -> None:
    images = [
        IndexedImage(ImageRef(BATCH, f"{i:03d}.jpg"), "same", "px", _hashes(42, 1), 1)
        for i in range(300)
    ]
    index.add_many(images)

    planner = check_against_find(index, images, listed=10, rule=NearRule.default(6))

    assert planner.groups()["exact"] == [[image.ref.path for image in images]]
    last = planner.duplicates(299)
    assert last.count == 299
    assert [match["path"] for match in last.matches] == [f"{i:03d}.jpg" for i in range(10)]


def test_a_chain_of_near_matches_is_one_group(index: HistoryIndex) -> None:
    base = 0x0123456789ABCDEF
    chain = [base, flip(base, [0, 1, 2, 3, 4]), flip(base, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])]
    images = [
        IndexedImage(ImageRef(BATCH, f"{i}.jpg"), f"s{i}", f"p{i}", _hashes(value, i), 1)
        for i, value in enumerate(chain)
    ]
    index.add_many(images)

    planner = check_against_find(index, images, listed=10, rule=NearRule.phash_only(6))

    assert planner.groups()["near"] == [["0.jpg", "1.jpg", "2.jpg"]]
    assert planner.duplicates(0).count == 1  # 2.jpg is 10 bits away: grouped, not matched


def test_an_empty_batch_has_no_groups(index: HistoryIndex) -> None:
    planner = _plan(index, [], listed=10, rule=NearRule.default(6))
    assert planner.groups() == {"exact": [], "same_pixels": [], "near": []}
    assert planner.capped == 0


def test_a_search_over_the_cap_counts_what_it_verified_and_says_so(
    index: HistoryIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dupgroups, "MAX_BATCH_CANDIDATES", 8)
    base = 0x0F0F0F0F0F0F0F0F
    images = [  # 40 distinct pHashes, all within 2 bits of each other
        IndexedImage(
            ImageRef(BATCH, f"{i:02d}.jpg"), f"s{i}", f"p{i}", _hashes(flip(base, [i % 40]), i), 1
        )
        for i in range(40)
    ]
    index.add_many(images)

    planner = _plan(index, images, listed=10, rule=NearRule.default(6))

    assert planner.capped == 40
    for position in range(40):
        duplicates = planner.duplicates(position)
        assert duplicates.capped
        assert duplicates.count <= 39  # a lower bound
        assert len(duplicates.matches) <= 10


class CountingHistory(HistoryIndex):
    """Counts the history's near searches."""

    near_searches = 0

    def near_ids(self, query: tuple[int, ...], **options: Any) -> Any:
        self.near_searches += 1
        return super().near_ids(query, **options)


def test_the_history_is_searched_once_per_distinct_hashes_not_per_image(tmp_path: Path) -> None:
    history = CountingHistory(tmp_path / "counting", analysis_version=1)
    try:
        base = 0x0123456789ABCDEF
        values = [flip(base, [bit]) for bit in range(64)]
        values += [flip(base, [bit, bit + 1]) for bit in range(36)]  # 100: more than any cache
        images = [  # interleaved: image i has the pHash of i % 100, and its own bytes
            IndexedImage(
                ImageRef(BATCH, f"{i:03d}.jpg"),
                f"s{i}",
                f"p{i}",
                _hashes(values[i % 100], i % 100),
                1,
            )
            for i in range(300)
        ]
        history.add_many(images)

        planner = _plan(history, images, listed=10, rule=NearRule.default(6))

        assert history.near_searches == 100
        assert planner.duplicates(0).count == 299
    finally:
        history.close()


def test_a_finished_planner_is_freed_with_its_tables(index: HistoryIndex) -> None:
    # Its caches used to live on the class and kept every batch's planner (~1 MB) alive.
    earlier = [
        IndexedImage(ImageRef("earlier", f"{i:03d}.jpg"), f"old{i}", f"pxo{i}", _hashes(7, i), 1)
        for i in range(20)
    ]
    index.add_many(earlier)
    images = [
        IndexedImage(ImageRef(BATCH, f"{i:03d}.jpg"), f"new{i}", f"pxn{i}", _hashes(7, i), 1)
        for i in range(20)
    ]
    index.add_many(images)
    planner = _plan(index, images, listed=5, rule=NearRule.default(6))
    assert planner.duplicates(0).count > 0  # the history caches were used
    freed = weakref.ref(planner)

    del planner
    gc.collect()

    assert freed() is None
