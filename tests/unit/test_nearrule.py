"""The `near` rule on hashes the daemon computes from real corpus photos and copies made of them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from medianalysed.analysis import analyse_file
from medianalysed.config import NearConfig, config_from_dict
from medianalysed.dupindex import evidence
from medianalysed.errors import ConfigError
from medianalysed.models import AnalysisSettings
from medianalysed.nearrule import Clause, NearRule
from tests.conftest import CORPORA

# Real photos of one town on one day (the same church from two streets among them), and
# UKBench objects: the distinct photos a rule must keep apart.
PHOTOS = (
    "exif-samples/jpg/gps/DSCN0010.jpg",
    "exif-samples/jpg/gps/DSCN0021.jpg",
    "exif-samples/jpg/gps/DSCN0029.jpg",
    "exif-samples/jpg/gps/DSCN0038.jpg",
    "imagededup-testdata/base_images/ukbench01380.jpg",
    "imagededup-testdata/base_images/ukbench09012.jpg",
)


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _crop(image: Image.Image, share: float) -> Image.Image:
    w, h = image.size
    return image.crop(
        (round(w * share), round(h * share), round(w * (1 - share)), round(h * (1 - share)))
    )


def _box(image: Image.Image) -> Image.Image:
    out = image.copy()
    w, h = out.size
    box = (round(w * 0.82), round(h * 0.89), round(w * 0.97), round(h * 0.97))
    ImageDraw.Draw(out).rectangle(box, fill=(255, 255, 255), outline=(40, 40, 40), width=2)
    return out


COPIES = {
    "crop 4% each side": lambda image: _jpeg(_crop(image, 0.04)),
    "watermark box": lambda image: _jpeg(_box(image)),
    "JPEG q40 + brightness +15%": lambda image: _jpeg(
        ImageEnhance.Brightness(image).enhance(1.15), 40
    ),
    "half size": lambda image: _jpeg(image.resize((image.width // 2, image.height // 2))),
}


@pytest.fixture(scope="module")
def hashed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict[str, str]]]:
    """Per photo: the daemon's hashes of the original, of each copy and of its mirror image."""
    folder = tmp_path_factory.mktemp("near")
    found: dict[str, dict[str, dict[str, str]]] = {}
    for index, relative in enumerate(PHOTOS):
        with Image.open(CORPORA / relative) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        files = {
            "original": _jpeg(image, 95),
            "flip": _jpeg(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
        }
        files |= {name: make(image) for name, make in COPIES.items()}
        found[relative] = {}
        for name, data in files.items():
            path = folder / f"{index}-{name}.jpg"
            path.write_bytes(data)
            found[relative][name] = analyse_file(path, AnalysisSettings())["hashes"]
    return found


def test_cropped_watermarked_and_recompressed_copies_are_near_and_say_which_clause(
    hashed: dict[str, dict[str, dict[str, str]]],
) -> None:
    rule = NearRule.default()
    linked = {
        (photo, copy): rule.match(evidence(versions["original"], versions[copy]))
        for photo, versions in hashed.items()
        for copy in COPIES
    }
    missed = [pair for pair, clause in linked.items() if clause is None]
    assert len(missed) <= 1, missed  # 24 pairs: the benchmark's 95 % allows one miss here
    assert set(linked.values()) - {None} <= {"phash", "combined", "watermark"}


def test_the_combined_clauses_find_what_phash_alone_misses(
    hashed: dict[str, dict[str, dict[str, str]]],
) -> None:
    old = NearRule((Clause("phash", {"phash": 6}),))
    new = NearRule.default()
    pairs = [
        evidence(versions["original"], versions[copy])
        for versions in hashed.values()
        for copy in ("crop 4% each side", "watermark box")
    ]
    assert sum(new.match(d) is not None for d in pairs) > sum(
        old.match(d) is not None for d in pairs
    )


def test_distinct_photos_and_mirror_images_are_not_near(
    hashed: dict[str, dict[str, dict[str, str]]],
) -> None:
    rule = NearRule.default()
    images = [
        (photo, name, hashes)
        for photo, versions in hashed.items()
        for name, hashes in versions.items()
    ]
    false = [
        (a, an, b, bn)
        for i, (a, an, ha) in enumerate(images)
        for b, bn, hb in images[i + 1 :]
        if (a != b or "flip" in (an, bn)) and rule.match(evidence(ha, hb)) is not None
    ]
    assert false == []


def test_vectorised_decision_agrees_with_the_single_pair_one(
    hashed: dict[str, dict[str, dict[str, str]]],
) -> None:
    rule = NearRule.default()
    images = [hashes for versions in hashed.values() for hashes in versions.values()]
    pairs = [evidence(a, b) for i, a in enumerate(images) for b in images[i + 1 :]]
    columns = {
        name: np.array([pair[name] for pair in pairs], dtype=np.int64) for name in rule.needs
    }
    near, which = rule.decide(columns)
    names = [rule.clauses[index].name if index >= 0 else None for index in which.tolist()]
    assert names == [rule.match(pair) for pair in pairs]
    assert near.tolist() == [name is not None for name in names]


def test_a_missing_hash_satisfies_no_limit() -> None:
    rule = NearRule((Clause("phash", {"phash": 6, "dhash": 12}),))
    assert rule.match({"phash": 0, "dhash": None}) is None
    assert rule.match({"phash": 6, "dhash": 12}) == "phash"
    assert rule.match({"phash": 7, "dhash": 0}) is None


def test_the_rule_comes_from_the_near_section_and_near_duplicate_distance() -> None:
    config = config_from_dict(
        {
            "analysis": {"near_duplicate_distance": 4},
            "near": {"phash_dhash": 64, "combined_ahash": 5, "watermark_phash": -1},
        },
        base_dir=Path("/elsewhere"),
        source=None,
    )

    rule = NearRule.from_config(config.near, config.analysis.near_duplicate_distance)

    assert [clause.name for clause in rule.clauses] == ["phash", "combined"]
    assert rule.clauses[0].limits == {"phash": 4, "dhash": 64}
    assert rule.clauses[1].limits["ahash"] == 5
    assert NearRule.from_config(NearConfig(), 6) == NearRule.default()


def test_a_near_limit_out_of_range_names_its_key() -> None:
    with pytest.raises(ConfigError, match=r"near\.combined_dhash"):
        config_from_dict({"near": {"combined_dhash": 65}}, base_dir=Path("/x"), source=None)
