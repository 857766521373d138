"""HEIC/HEIF photos are hashed from their embedded thumbnail when it is fit for it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from medianalysed import decoding
from medianalysed.analysis import AnalysisSettings, analyse_file
from medianalysed.dupindex import hamming
from tests.unit.test_analysis import reference_hashes

CONTRACT = ("ahash", "phash", "dhash")


@pytest.fixture
def exif_samples(corpora: Path) -> Path:
    return corpora / "exif-samples"


def heic(size: tuple[int, int], thumbnails: list[int]) -> Image.Image:
    """A HEIC of smooth made-up content (gradients and discs), opened again."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    red = 255 * x / width
    green = 255 * (np.hypot(x - width / 3, y - height / 2) < height / 4)
    blue = 255 * y / height
    pixels = np.dstack([red, green, blue]).astype(np.uint8)
    buffer = io.BytesIO()
    pillow_heif.from_pillow(Image.fromarray(pixels)).save(
        buffer, format="HEIF", quality=90, thumbnails=thumbnails, enc_params={"preset": "ultrafast"}
    )
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_a_large_heic_is_worked_on_from_its_thumbnail_in_whole_blocks() -> None:
    with heic((1280, 1024), [640]) as image:
        working = decoding.decode_working(image)
    # The 640 x 512 thumbnail as 2 x 2 blocks, box-reduced by 2 like any large decode.
    assert (working.scale, working.image.size) == (4, (320, 256))
    assert working.full_size == (1280, 1024)


def test_without_a_thumbnail_the_image_is_decoded_whole() -> None:
    with heic((1024, 768), []) as image:
        working = decoding.decode_working(image)
    assert (working.scale, working.image.size) == (3, (342, 256))  # box-reduced, as before


def test_a_phone_sized_thumbnail_is_too_small_to_stand_for_the_image() -> None:
    with heic((1024, 768), [320]) as image:  # 320 x 240: under HEIF_THUMBNAIL_MIN_SIDE
        working = decoding.decode_working(image)
    assert working.scale == 3


def test_an_image_small_enough_to_hash_exactly_ignores_its_thumbnail() -> None:
    with heic((600, 400), [320]) as image:
        working = decoding.decode_working(image)
    assert (working.scale, working.image.size) == (1, (600, 400))


def test_the_iphone_photo_falls_back_to_the_full_decode_within_2_bits(exif_samples: Path) -> None:
    path = exif_samples / "heic" / "mobile" / "iphone_13_pro_max.HEIC"
    with Image.open(path) as image:
        assert decoding.decode_working(image).scale == 3024 // 256  # not its 240 x 320 thumbnail
    hashes = analyse_file(path, AnalysisSettings())["hashes"]
    reference = reference_hashes(path, CONTRACT)  # imagehash on the full decode
    for name in CONTRACT:
        assert hamming(hashes[name], reference[name]) <= 2, name
