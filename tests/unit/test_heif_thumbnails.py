"""HEIC/HEIF photos are hashed from their embedded thumbnail when it is fit for it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from medianalysed import decoding, heifdecode
from medianalysed.analysis import AnalysisSettings, analyse_file
from medianalysed.dupindex import hamming
from medianalysed.hashes import _gray_grids
from tests.unit.test_analysis import reference_hashes

CONTRACT = ("ahash", "phash", "dhash")
RULE = heifdecode.THUMBNAIL_MIN_LONG_SIDE
GRID_TOLERANCE = 4  # grey levels: the copy's own 8-bit rounding, Lanczos weights per block


@pytest.fixture
def exif_samples(corpora: Path) -> Path:
    return corpora / "exif-samples"


def smooth_pixels(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Made-up photo-like content: gradients, a disc and a few soft blobs."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    blobs = np.zeros((height, width))
    for _ in range(4):
        centre_x, centre_y = rng.uniform(0, width), rng.uniform(0, height)
        distance = np.hypot(x - centre_x, y - centre_y) / (width / 6)
        blobs += rng.uniform(-90, 90) * np.exp(-(distance**2))
    red = 255 * x / width
    green = 200 * (np.hypot(x - width / 3, y - height / 2) < height / 4) + 30
    blue = 255 * y / height
    pixels = np.dstack([red + blobs, green, blue - blobs])
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def heic(size: tuple[int, int], thumbnails: list[int]) -> Image.Image:
    """A HEIC of made-up content with libheif's own thumbnails (long sides), opened again."""
    buffer = io.BytesIO()
    pillow_heif.from_pillow(smooth_pixels(size)).save(
        buffer, format="HEIF", quality=90, thumbnails=thumbnails, enc_params={"preset": "ultrafast"}
    )
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_a_large_heic_is_worked_on_from_its_thumbnail() -> None:
    with heic((1280, 1024), [640]) as image:
        working = decoding.decode_working(image)
    # The 640 x 512 thumbnail, box-reduced by 2 like any large decode.
    assert working.image.size == (320, 256)
    assert working.pixel_span == (4.0, 4.0)
    assert working.full_size == (1280, 1024)


def test_a_phone_sized_thumbnail_stands_for_the_image_pixel_for_its_exact_share() -> None:
    with heic((1000, 750), [320]) as image:  # 320 x 240, as an iPhone's
        working = decoding.decode_working(image)
    assert working.image.size == (320, 240)  # not resampled to whole blocks of the image
    assert working.pixel_span == (1000 / 320, 750 / 240)


def test_without_a_thumbnail_the_image_is_decoded_whole() -> None:
    with heic((1024, 768), []) as image:
        working = decoding.decode_working(image)
    assert (working.scale, working.image.size) == (3, (342, 256))  # box-reduced, as before
    assert working.pixel_span == (3, 3)


def test_a_thumbnail_under_the_rule_is_not_used() -> None:
    with heic((1024, 768), [RULE - 64]) as image:  # 256 x 192
        working = decoding.decode_working(image)
    assert working.scale == 3


def test_an_image_small_enough_to_hash_exactly_ignores_its_thumbnail() -> None:
    with heic((600, 400), [320]) as image:
        working = decoding.decode_working(image)
    assert (working.scale, working.image.size) == (1, (600, 400))


def test_the_iphone_photo_is_hashed_from_its_thumbnail_within_2_bits(exif_samples: Path) -> None:
    path = exif_samples / "heic" / "mobile" / "iphone_13_pro_max.HEIC"
    with Image.open(path) as image:
        working = decoding.decode_working(image)
    assert working.image.size == (240, 320)  # Apple's thumbnail, rotated like the photo
    assert working.pixel_span == (3024 / 240, 4032 / 320)
    found = analyse_file(path, AnalysisSettings())["hashes"]
    reference = reference_hashes(path, CONTRACT)  # imagehash on the full decode
    for name in CONTRACT:
        assert hamming(found[name], reference[name]) <= 2, name


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    width=st.integers(700, 1800),
    aspect=st.floats(0.5, 1.0),
    box=st.integers(256, 640),
    seed=st.integers(0, 1000),
)
def test_a_scaled_copy_of_any_size_gives_the_hash_grids_of_the_full_image(
    width: int, aspect: float, box: int, seed: int
) -> None:
    """The ahash, dhash and phash grids from an area-scaled copy (what a phone's thumbnail is),
    at any ratio to the image, are within a few grey levels of imagehash's Lanczos resizes of
    the full image: each of its pixels stands for its exact share of it. (Resampled to whole
    blocks first, as 0.3.0 did, they were up to 11 levels off.)"""
    full = smooth_pixels((width, round(width * aspect)), seed)
    copy = full.copy()
    copy.thumbnail((box, box), Image.Resampling.BOX, reducing_gap=None)
    working = decoding._working_from_thumbnail(copy, full.size, has_alpha=False)
    grids = _gray_grids(decoding.reduce_for_hashes(working), full.size, 1)
    gray = full.convert("L")
    for grid, size in zip(grids, ((8, 8), (9, 8), (32, 32)), strict=False):
        expected = np.asarray(gray.resize(size, Image.Resampling.LANCZOS), dtype=np.float64)
        assert np.abs(grid - expected).max() <= GRID_TOLERANCE, size
