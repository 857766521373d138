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

# A thumbnail stands in for the image from this long side on (an iPhone's 320 x 240 does).
# Phone-made thumbnails (low-pass scaled) kept ahash within 2 bits of imagehash on the full
# decode for >= 99 % of 272 photos from 320 px on (256 px: 98.9 %); phash and dhash missed
# 99 % at every size, and so did the full decode itself (98.6 %, 95.7 %: near-ties).
# libheif-made thumbnails (nearest-neighbour, aliased) miss more at every size and cannot be
# told apart (README, HEIC).
THUMBNAIL_MIN_LONG_SIDE: Final = 320


def draft_thumbnail(image: Image.Image, min_long_side: int | None = None) -> bool:
    """Have pillow-heif decode an embedded thumbnail instead of the image, when one is a scaled
    copy of it with at least `min_long_side` (THUMBNAIL_MIN_LONG_SIDE) pixels on the long
    side. Whether it did."""
    side = THUMBNAIL_MIN_LONG_SIDE if min_long_side is None else min_long_side
    width, height = image.size
    long = max(width, height)
    if long <= side:
        return False
    # Rounded down: a thumbnail's short side is rounded by whoever scaled it.
    wanted = (width * side // long, height * side // long)
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
