"""The duplicate index's SQLite store on its own: ids, lookups, replacement, the removal log."""

from __future__ import annotations

from pathlib import Path

import pytest

from medianalysed.dupstore import ImageRef, ImageStore, IndexedImage
from medianalysed.errors import StateError


def image(
    path: str, *, sha: str = "s", pixels: str | None = "p", phash: str = "0" * 16
) -> IndexedImage:
    return IndexedImage(
        ref=ImageRef("b1", path),
        sha256=sha,
        pixel_digest=pixels,
        hashes={"phash": phash},
        analysis_version=3,
    )


def test_ids_grow_and_lookups_follow_adds_and_removals(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    committed = store.add([image("a.jpg"), image("b.jpg", pixels=None)])
    assert [image_id for image_id, _ in committed.added] == [1, 2]
    assert store.sha_ids("s") == [1, 2]
    assert store.pixel_ids("p") == [1]
    assert store.ref_id(ImageRef("b1", "b.jpg")) == 2
    store.remove([1])
    assert store.sha_ids("s") == [2]
    assert store.pixel_ids("p") == []
    assert store.image(1) is None
    stored = store.image(2)
    assert stored is not None
    assert (stored.ref, stored.hashes, stored.analysis_version) == (
        ImageRef("b1", "b.jpg"),
        {"phash": "0" * 16},
        3,
    )
    assert store.removed_since(0, store.removals()) == [1]
    store.close()


def test_re_adding_a_ref_replaces_it_unless_unchanged(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    store.add([image("a.jpg")])
    assert store.add([image("a.jpg")]).added == []
    changed = store.add([image("a.jpg", phash="f" * 16)])
    assert [image_id for image_id, _ in changed.added] == [2]
    assert changed.replaced == [1]
    assert [stored.image_id for stored in store.images(0, store.last_id())] == [2]
    store.close()


def test_a_trimmed_removal_log_reports_the_gap(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    store.add([image("a.jpg"), image("b.jpg")])
    store.remove([1])
    store.remove([2])
    store.trim_removal_log(1)
    assert store.removals_trimmed() == 1
    assert store.removed_since(1, 2) == [2]
    assert store.removed_since(0, 2) is None
    store.close()


def test_a_store_of_another_format_is_refused_by_name(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    store._cache.set("meta:format", 99)
    store.close()
    with pytest.raises(StateError, match=r"has format 99, this version reads 1"):
        ImageStore(tmp_path)
