"""HEIC/HEIF photos worked on from an embedded thumbnail, when one can stand for the image.

libheif has no reduced HEVC decode: a 12 MP grid of 48 tiles costs 48 times one tile, and
decoding (HEVC, then YCbCr to RGB) is about 94 % of a HEIC's analysis. Phones store a small
scaled copy beside the photo (an iPhone: 320 x 240); decoding that one costs about 1 % of the
photo. pillow-heif's ``draft`` selects the smallest thumbnail that is a scaled copy of the image
(same aspect, crop, orientation and colour profile) and not smaller than asked; otherwise the
image is decoded whole. The sizes and measurements are in the README (HEIC).
"""

from __future__ import annotations

from typing import Final

from PIL import Image

# A thumbnail stands in for the image from this short side on, the floor the JPEG draft keeps
# too (decoding.HASH_MIN_SIDE). Phone-made thumbnails (low-pass scaled), from 256 px long
# side (110-192 px short) up, gave ahash/phash/dhash within 2 bits of imagehash on the full
# decode as often as the full decode itself; libheif-made ones (nearest-neighbour, aliased)
# miss 2-13 % at every size, 1024 px included, and cannot be told apart (README, HEIC).
THUMBNAIL_MIN_SIDE: Final = 128


def draft_thumbnail(image: Image.Image, min_side: int | None = None) -> bool:
    """Have pillow-heif decode an embedded thumbnail instead of the image, when one is a scaled
    copy of it with at least `min_side` (THUMBNAIL_MIN_SIDE) pixels on the short side. Whether
    it did."""
    side = THUMBNAIL_MIN_SIDE if min_side is None else min_side
    width, height = image.size
    short = min(width, height)
    if short <= side:
        return False
    # Rounded down: a thumbnail's long side is rounded by whoever scaled it.
    wanted = (width * side // short, height * side // short)
    return image.draft(image.mode, wanted) is not None


def thumbnail_scale(full_size: tuple[int, int], thumbnail_size: tuple[int, int]) -> int:
    """The whole number of full-resolution pixels per working pixel a thumbnail can stand for."""
    return max(-(-full // thumb) for full, thumb in zip(full_size, thumbnail_size, strict=True))


def thumbnail_span(
    full_size: tuple[int, int], thumbnail_size: tuple[int, int]
) -> tuple[float, float]:
    """Full-resolution pixels per thumbnail pixel, along x and y."""
    (width, height), (t_width, t_height) = full_size, thumbnail_size
    return width / t_width, height / t_height
