"""Duplicate index: tiers, evidence, persistence, crash recovery, threads, exactness of MIH."""

from __future__ import annotations

import bisect
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import diskcache
import pytest

from medianalysed import dupindex
from medianalysed.dupindex import (
    SNAPSHOT_NAME,
    HistoryIndex,
    ImageRef,
    IndexedImage,
    Match,
    evidence,
    hamming,
)
from medianalysed.errors import StateError
from medianalysed.nearrule import NearRule

MASK64 = (1 << 64) - 1
MASK42 = (1 << 42) - 1
BLANK = 0x8000000000000000  # the pHash of a blank page


def hex64(value: int) -> str:
    return f"{value & MASK64:016x}"


def flip(value: int, bits: list[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    return value


def make(
    batch: str,
    path: str,
    *,
    phash: int | None,
    sha: str | None = None,
    pixels: str | None = None,
    other: int = 0,
    version: int = 1,
) -> IndexedImage:
    """An image whose other hashes all derive from `other`, so tests control their distances."""
    hashes = {
        "ahash": hex64(other),
        "dhash": hex64(other),
        "whash": hex64(other),
        "colorhash": f"{other & MASK42:011x}",
    }
    if phash is not None:
        hashes["phash"] = hex64(phash)
    return IndexedImage(
        ref=ImageRef(batch, path),
        sha256=sha or f"sha-{batch}-{path}",
        pixel_digest=pixels if pixels is not None else f"px-{batch}-{path}",
        hashes=hashes,
        analysis_version=version,
    )


def seeded(batch: str, i: int, *, salt: int = 0) -> IndexedImage:
    """A deterministic image, shared with the crash child process."""
    value = ((i + 1) * 0x9E3779B97F4A7C15 + salt * 0xD1B54A32D192ED03) & MASK64
    return make(batch, f"img/{i:05d}.jpg", phash=value, sha=f"{batch}-{i}-{salt}")


def refs(matches: list[Match]) -> list[ImageRef]:
    return [match.ref for match in matches]


@pytest.fixture
def index(tmp_path: Path) -> Iterator[HistoryIndex]:
    opened = HistoryIndex(tmp_path / "history", analysis_version=1)
    yield opened
    opened.close()


# ----------------------------------------------------------------------------- distances


def test_hamming_counts_differing_bits() -> None:
    assert hamming("0000000000000000", "0000000000000000") == 0
    assert hamming("ffffffffffffffff", "0000000000000000") == 64
    assert hamming("00000000000000f1", "0000000000000000") == 5
    assert hamming("1ffffffffff", "00000000000") == 41


def test_hamming_refuses_hashes_of_different_sizes() -> None:
    with pytest.raises(ValueError, match="lengths differ"):
        hamming("00", "0000")


def test_evidence_gives_none_for_missing_or_incomparable_hashes() -> None:
    query = {"phash": "00ff", "dhash": "0001", "ahash": "0"}
    stored = {"phash": "000f", "dhash": "0003", "ahash": "00", "whash": "0000"}
    assert evidence(query, stored) == {
        "phash": 4,
        "dhash": 1,
        "ahash": None,
        "whash": None,
        "colorhash": None,
    }


# ----------------------------------------------------------------------------- tiers


def test_tiers_come_best_first_with_every_distance(index: HistoryIndex) -> None:
    base = 0x0123456789ABCDEF
    query = make("q", "query.jpg", phash=base, sha="S", pixels="P", other=0)
    index.add_many(
        [
            make("b1", "near.jpg", phash=flip(base, [0, 17, 40]), other=0b101),
            make("b1", "far.jpg", phash=flip(base, list(range(0, 64, 8))), other=0),
            make("b2", "pixels.png", phash=base, sha="S2", pixels="P", other=0),
            make("b3", "copy.jpg", phash=base, sha="S", pixels="P", other=0),
            make("b3", "nearer.jpg", phash=flip(base, [63]), other=0b1),
        ]
    )

    matches = index.find(query, max_distance=6)

    assert [(m.ref.path, m.tier) for m in matches] == [
        ("copy.jpg", "exact"),
        ("pixels.png", "same_pixels"),
        ("nearer.jpg", "near"),
        ("near.jpg", "near"),
    ]
    assert matches[0].distances == {"phash": 0, "dhash": 0, "ahash": 0, "whash": 0, "colorhash": 0}
    assert matches[3].distances == {"phash": 3, "dhash": 2, "ahash": 2, "whash": 2, "colorhash": 2}
    assert index.find(query, max_distance=6, limit=2) == matches[:2]


def test_near_distance_bound_is_inclusive(index: HistoryIndex) -> None:
    base = 0xFEDCBA9876543210
    index.add(make("b", "six.jpg", phash=flip(base, [1, 2, 20, 33, 50, 61])))
    index.add(make("b", "seven.jpg", phash=flip(base, [1, 2, 20, 33, 50, 61, 62])))
    query = make("q", "q.jpg", phash=base)

    assert [m.ref.path for m in index.find(query, max_distance=6)] == ["six.jpg"]
    assert [m.ref.path for m in index.find(query, max_distance=7)] == ["six.jpg", "seven.jpg"]
    assert index.find(query, max_distance=5) == []


def test_find_never_returns_the_image_itself(index: HistoryIndex) -> None:
    image = make("b", "a.jpg", phash=42, sha="S", pixels="P")
    twin = make("c", "a.jpg", phash=42, sha="S", pixels="P")
    index.add_many([image, twin])

    assert refs(index.find(image, max_distance=6)) == [twin.ref]
    assert refs(index.find(twin, max_distance=6)) == [image.ref]


def test_an_image_without_phash_still_gets_exact_and_pixel_matches(index: HistoryIndex) -> None:
    index.add(make("b", "stored.jpg", phash=None, sha="S", pixels="P"))
    index.add(make("b", "other.jpg", phash=7))
    query = make("q", "q.jpg", phash=None, sha="S", pixels="P")

    matches = index.find(query, max_distance=64)

    assert [(m.ref.path, m.tier) for m in matches] == [("stored.jpg", "exact")]
    assert matches[0].distances["phash"] is None


def test_negative_max_distance_is_refused(index: HistoryIndex) -> None:
    with pytest.raises(ValueError, match="max_distance"):
        index.find(make("q", "q.jpg", phash=1), max_distance=-1)


def test_a_malformed_phash_is_refused(index: HistoryIndex) -> None:
    bad = IndexedImage(ImageRef("b", "x.jpg"), "S", None, {"phash": "abc"}, 1)
    with pytest.raises(ValueError, match="phash"):
        index.add(bad)
    assert len(index) == 0


# ----------------------------------------------------------------------------- add / remove


def test_adding_a_ref_again_keeps_one_entry_with_the_latest_content(index: HistoryIndex) -> None:
    first = make("b", "a.jpg", phash=0xFF, sha="S1")
    index.add(first)
    index.add(first)
    assert len(index) == 1

    index.add(make("b", "a.jpg", phash=0xFF00, sha="S2"))

    assert len(index) == 1
    assert index.find(make("q", "q.jpg", phash=0xFF, sha="S1"), max_distance=0) == []
    found = index.find(make("q", "q.jpg", phash=0xFF00, sha="S2"), max_distance=0)
    assert [(m.ref.path, m.tier) for m in found] == [("a.jpg", "exact")]


def test_remove_batch_forgets_only_that_batch(index: HistoryIndex) -> None:
    index.add_many([make("gone", f"{i}.jpg", phash=1000 + i, sha=f"S{i}") for i in range(5)])
    index.add(make("kept", "0.jpg", phash=1000, sha="S0"))

    assert index.remove_batch("gone") == 5
    assert index.remove_batch("gone") == 0
    assert index.remove_batch("never-seen") == 0

    assert len(index) == 1
    query = make("q", "q.jpg", phash=1000, sha="S0")
    assert refs(index.find(query, max_distance=10)) == [ImageRef("kept", "0.jpg")]
    index.add(make("gone", "0.jpg", phash=1000, sha="S0"))
    assert len(refs(index.find(query, max_distance=10))) == 2


def test_versions_are_not_compared_except_by_sha256(tmp_path: Path) -> None:
    old = HistoryIndex(tmp_path, analysis_version=1)
    old.add(make("old", "a.jpg", phash=77, sha="S", pixels="P", version=1))
    old.add(make("old", "b.jpg", phash=77, pixels="P2", version=1))
    old.close()

    new = HistoryIndex(tmp_path, analysis_version=2)
    try:
        different_bytes = make("new", "x.jpg", phash=77, sha="T", pixels="P", version=2)
        assert new.find(different_bytes, max_distance=10) == []

        same_bytes = make("new", "y.jpg", phash=77, sha="S", pixels="P", version=2)
        [match] = new.find(same_bytes, max_distance=10)
        assert (match.ref, match.tier) == (ImageRef("old", "a.jpg"), "exact")
        assert set(match.distances.values()) == {None}

        # An old-version query still finds old-version neighbours (the linear-scan path).
        old_query = make("q", "q.jpg", phash=77, sha="U", pixels="P2", version=1)
        found = new.find(old_query, max_distance=3)
        assert [(m.ref.path, m.tier) for m in found] == [
            ("b.jpg", "same_pixels"),
            ("a.jpg", "near"),
        ]
    finally:
        new.close()


def test_a_closed_index_refuses_work(tmp_path: Path) -> None:
    closed = HistoryIndex(tmp_path, analysis_version=1)
    closed.close()
    closed.close()
    with pytest.raises(StateError, match="closed"):
        closed.add(make("b", "a.jpg", phash=1))
    with pytest.raises(StateError, match="closed"):
        closed.find(make("b", "a.jpg", phash=1), max_distance=6)


# ----------------------------------------------------------------------------- persistence


def test_a_store_of_another_format_is_refused(tmp_path: Path) -> None:
    HistoryIndex(tmp_path, analysis_version=1).close()
    with diskcache.Cache(str(tmp_path)) as raw:
        raw.set("meta:format", 99)
    with pytest.raises(StateError, match="format 99"):
        HistoryIndex(tmp_path, analysis_version=1)


def test_entries_survive_close_and_reopen(tmp_path: Path) -> None:
    first = HistoryIndex(tmp_path, analysis_version=1)
    first.add_many(seeded("a", i) for i in range(50))
    first.remove_batch("a")
    first.add_many(seeded("b", i) for i in range(50))
    first.close()

    again = HistoryIndex(tmp_path, analysis_version=1)
    try:
        assert len(again) == 50
        matches = again.find(seeded("q", 7), max_distance=0)
        assert [(m.ref, m.tier) for m in matches] == [(seeded("b", 7).ref, "near")]
    finally:
        again.close()


def test_a_new_index_writes_no_snapshot_until_it_holds_an_image(tmp_path: Path) -> None:
    directory = tmp_path / "history"
    HistoryIndex(directory, analysis_version=1).close()
    assert not (directory / SNAPSHOT_NAME).exists()  # nothing to save, and no fsync at start
    again = HistoryIndex(directory, analysis_version=1)
    try:
        assert len(again) == 0
        again.add_many(seeded("a", i) for i in range(3))
    finally:
        again.close()
    reopened = HistoryIndex(directory, analysis_version=1)
    try:
        assert len(reopened) == 3
        assert refs(reopened.find(seeded("q", 1), max_distance=0)) == [seeded("a", 1).ref]
    finally:
        reopened.close()


@pytest.mark.parametrize("damage", ["missing", "garbage", "foreign"])
def test_an_unusable_snapshot_means_a_rebuild_not_a_failure(tmp_path: Path, damage: str) -> None:
    first = HistoryIndex(tmp_path / "one", analysis_version=1)
    first.add_many(seeded("a", i) for i in range(30))
    first.close()
    snapshot = tmp_path / "one" / SNAPSHOT_NAME
    if damage == "missing":
        snapshot.unlink()
    elif damage == "garbage":
        snapshot.write_bytes(b"not a zip file")
    else:
        other = HistoryIndex(tmp_path / "two", analysis_version=1)
        other.add_many(seeded("z", i, salt=1) for i in range(40))
        other.close()
        snapshot.write_bytes((tmp_path / "two" / SNAPSHOT_NAME).read_bytes())

    again = HistoryIndex(tmp_path / "one", analysis_version=1)
    try:
        assert len(again) == 30
        assert refs(again.find(seeded("q", 3), max_distance=0)) == [seeded("a", 3).ref]
    finally:
        again.close()


def crash_child(directory: str) -> None:
    """Run in a subprocess: leave a snapshot, change things after it, then die by SIGKILL."""
    first = HistoryIndex(Path(directory), analysis_version=1)
    first.add_many(seeded("a", i) for i in range(100))
    first.add_many(seeded("gone", i, salt=2) for i in range(20))
    first.close()
    second = HistoryIndex(Path(directory), analysis_version=1)
    second.add_many(seeded("b", i) for i in range(100))
    second.remove_batch("gone")
    second.add(seeded("a", 0, salt=3))
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def run_child(function: str, directory: str) -> subprocess.Popen[str]:
    """Run a function of this module in a fresh interpreter."""
    code = f"import sys, test_dupindex; test_dupindex.{function}(sys.argv[1])"
    return subprocess.Popen(
        [sys.executable, "-c", code, directory],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
    )


def test_acknowledged_changes_survive_sigkill(tmp_path: Path) -> None:
    child = run_child("crash_child", str(tmp_path))
    out, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert out == "ready\n"

    for attempt in ("snapshot and replay", "full rebuild"):
        if attempt == "full rebuild":
            (tmp_path / SNAPSHOT_NAME).unlink()
        index = HistoryIndex(tmp_path, analysis_version=1)
        try:
            assert len(index) == 200, attempt
            assert refs(index.find(seeded("q", 5), max_distance=0)) == [
                seeded("a", 5).ref,
                seeded("b", 5).ref,
            ]
            assert index.find(seeded("q", 5, salt=2), max_distance=0) == []
            replaced = index.find(seeded("q", 0, salt=3), max_distance=0)
            assert refs(replaced) == [seeded("a", 0).ref]
            assert refs(index.find(seeded("q", 0), max_distance=0)) == [seeded("b", 0).ref]
        finally:
            index.close()


def adding_child(directory: str) -> None:
    """Run in a subprocess: add one image at a time, report each, until killed."""
    dupindex._SNAPSHOT_EVERY = 150  # so that the kill may land in a snapshot write
    index = HistoryIndex(Path(directory), analysis_version=1)
    for i in range(100_000):
        index.add(seeded("loop", i))
        print(i, flush=True)


def test_a_kill_at_any_moment_loses_nothing_acknowledged(tmp_path: Path) -> None:
    child = run_child("adding_child", str(tmp_path))
    assert child.stdout is not None
    last = -1
    while last < 700:
        line = child.stdout.readline()
        assert line, "child ended early"
        last = int(line)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)

    index = HistoryIndex(tmp_path, analysis_version=1)
    try:
        assert len(index) >= last + 1
        for i in (0, 149, 150, 151, 450, last):
            assert refs(index.find(seeded("q", i), max_distance=0)) == [seeded("loop", i).ref]
    finally:
        index.close()


# ----------------------------------------------------------------------------- threads


def test_threads_can_add_and_find_at_the_same_time(index: HistoryIndex) -> None:
    errors: list[BaseException] = []
    per_thread = 700  # 4 x 700 rows cross the first merge of the append buffer

    def worker(batch: str) -> None:
        try:
            for i in range(per_thread):
                image = seeded(batch, i, salt=len(batch))
                index.add(image)
                twin = make("probe", batch, phash=int(image.hashes["phash"], 16) ^ 1)
                assert image.ref in refs(index.find(twin, max_distance=1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=("t" * n,)) for n in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert not any(thread.is_alive() for thread in threads)
    assert len(index) == 4 * per_thread


# ----------------------------------------------------------------------------- exactness


def clustered_phashes(rng: random.Random, count: int) -> list[int]:
    """Hashes in tight clusters, so buckets collide and many pairs lie near every threshold."""
    centres = [rng.getrandbits(64) for _ in range(count // 100)]
    hashes = []
    for _ in range(count):
        centre = rng.choice(centres)
        distance = rng.randint(0, 14)
        if rng.random() < 0.5:  # every flip in one 16-bit chunk: the hard case for pigeonhole
            chunk = rng.randrange(4)
            bits = rng.sample(range(chunk * 16, chunk * 16 + 16), min(distance, 16))
        else:
            bits = rng.sample(range(64), distance)
        hashes.append(flip(centre, bits))
    return hashes


def test_mih_finds_exactly_what_a_brute_force_scan_finds(index: HistoryIndex) -> None:
    rng = random.Random(20240607)
    stored = clustered_phashes(rng, 20_000) + [rng.getrandbits(64) for _ in range(2000)]
    images = [
        make("b", f"{i}.jpg", phash=value, sha=f"S{i}", pixels=f"P{i}")
        for i, value in enumerate(stored)
    ]
    index.add_many(images[:20_000])  # merged into the bucket tables
    index.add_many(images[20_000:])  # stays in the append buffer, scanned linearly
    queries = [flip(value, rng.sample(range(64), rng.randint(0, 3))) for value in stored[::997]]
    queries += [rng.getrandbits(64) for _ in range(5)]

    for query in queries:
        image = make("q", "q.jpg", phash=query, sha="none", pixels="none")
        by_distance = sorted(((query ^ value).bit_count(), i) for i, value in enumerate(stored))
        for max_distance in (0, 3, 4, 6, 7, 8, 10, 11, 12, 16):
            found = index.find(image, max_distance=max_distance, limit=len(stored))
            within = bisect.bisect_right(by_distance, (max_distance, len(stored)))
            expected = [(d, f"{i}.jpg") for d, i in by_distance[:within]]
            got = [(m.distances["phash"], m.ref.path) for m in found]
            assert got == expected, (max_distance, hex(query))


def _near_flip(rng: random.Random, value: int, width: int) -> int:
    distance = rng.randint(0, 8 if width == 64 else 3)
    if width == 64 and rng.random() < 0.5:  # all in one 16-bit chunk, as above
        chunk = rng.randrange(4)
        return flip(value, rng.sample(range(chunk * 16, chunk * 16 + 16), distance))
    return flip(value, rng.sample(range(width), distance))


def _five(batch: str, name: str, values: list[int]) -> IndexedImage:
    names = ("phash", "dhash", "ahash", "whash")
    hashes = {key: hex64(value) for key, value in zip(names, values, strict=False)}
    hashes["colorhash"] = f"{values[4]:011x}"
    return IndexedImage(ImageRef(batch, name), f"S-{name}", f"P-{name}", hashes, 1)


def test_the_rule_finds_exactly_what_a_brute_force_scan_finds(index: HistoryIndex) -> None:
    rng = random.Random(20261202)
    widths = (64, 64, 64, 64, 42)
    centres = [[rng.getrandbits(width) for width in widths] for _ in range(150)]
    # Each hash near its centre's, or (one in three) another centre's: pairs then often
    # satisfy one clause only, found through one table only.
    stored = [
        [
            _near_flip(rng, rng.choice(centres)[k] if rng.random() < 0.3 else value, width)
            for k, (value, width) in enumerate(zip(centre, widths, strict=True))
        ]
        for centre in (rng.choice(centres) for _ in range(12_000))
    ]
    images = [_five("b", f"{i}.jpg", values) for i, values in enumerate(stored)]
    index.add_many(images[:10_000])  # merged into the bucket tables
    index.add_many(images[10_000:])  # stays in the append buffer, scanned linearly
    rule = NearRule.default(6)

    for values in stored[::401]:
        query = [_near_flip(rng, value, width) for value, width in zip(values, widths, strict=True)]
        image = _five("q", "q.jpg", query)
        expected = set()
        for i, other in enumerate(stored):
            distances = dict(
                zip(
                    dupindex.HASH_NAMES,
                    ((a ^ b).bit_count() for a, b in zip(query, other, strict=True)),
                    strict=True,
                )
            )
            if rule.match(distances) is not None:
                expected.add(f"{i}.jpg")
        found = index.find(image, rule=rule, limit=len(stored))
        assert {match.ref.path for match in found} == expected
        assert all(match.rule == rule.match(match.distances) for match in found)
        ids, _, capped = index.near_ids(tuple(query), rule=rule, limit=len(stored) * 8)
        assert len(ids) == len(expected)
        assert not capped


# ----------------------------------------------------------------------------- batch queries


def test_copies_of_one_file_keep_one_lookup_entry_each_through_adds_and_removals(
    index: HistoryIndex,
) -> None:
    copies = [
        make(batch, f"{i:04d}.png", phash=BLANK, sha="same", pixels="px")
        for batch in ("one", "two")
        for i in range(2500)  # more than one transaction of add_many
    ]
    index.add_many(copies)
    assert len(index.content_ids(sha256="same")) == 5000
    assert len(index.content_ids(pixel_digest="px")) == 5000

    assert index.remove_batch("one") == 2500
    index.add(make("two", "0000.png", phash=BLANK, sha="other", pixels="px"))  # replaced

    remaining = index.content_ids(sha256="same")
    assert len(remaining) == 2499
    assert list(remaining) == sorted(remaining)
    assert len(index.content_ids(pixel_digest="px")) == 2500
    assert (
        len(index.find(make("q", "q.png", phash=BLANK, sha="same"), max_distance=0, limit=10**6))
        == 2500
    )


def test_near_ids_leave_out_one_batch_and_say_when_capped(index: HistoryIndex) -> None:
    index.add_many(
        make("old", f"{i}.png", phash=flip(BLANK, [i % 3]), sha=f"o{i}") for i in range(40)
    )
    index.add_many(make("new", f"{i}.png", phash=BLANK, sha=f"n{i}") for i in range(30))

    query = (BLANK, 0, 0, 0, 0)  # the five hashes of make(..., other=0)
    ids, distances, capped = index.near_ids(
        query, rule=NearRule.phash_only(6), limit=10**6, exclude_batch="new"
    )
    assert len(ids) == 40
    assert not capped
    assert list(distances) == sorted(distances)
    assert set(index.rows_info(ids).batch.tolist()) == {index.batch_code("old")}

    few, _, capped = index.near_ids(query, rule=NearRule.phash_only(6), limit=8)
    assert capped
    assert len(few) <= 8
