"""The real image files the generated batches are built from (`/work/shared/corpora/`).

Seeds are small, valid images of every format the damage functions know (JPEG, PNG, GIF,
WebP, TIFF, HEIC/HEIF, AVIF), so a damaged copy starts from a file a real camera or tool
wrote. Hostile files are real fuzz reproducers and bombs from Pillow's test suite.
"""

from __future__ import annotations

import functools

from tests.corpora import CORPORA, available, require_corpora

__all__ = ["CORPORA", "available", "require_corpora"]

SEED_FILES: tuple[str, ...] = (
    "exif-samples/jpg/Canon_40D.jpg",
    "exif-samples/jpg/Fujifilm_FinePix_E500.jpg",
    "pillow-edge/orientation/hopper_orientation_6.jpg",
    "pillow-edge/orientation/hopper.jpg",
    "pillow-edge/animated/apng/delay.png",
    "pillow-edge/orientation/xmp_tags_orientation_exiftool.png",
    "pillow-edge/animated/dispose_bgnd.gif",
    "pillow-edge/animated/test_extents.gif",
    "pillow-edge/modes/hopper.webp",
    "pillow-edge/orientation/hopper_orientation_3.webp",
    "pillow-edge/animated/multipage.tiff",
    "pillow-edge/high-bit/16bit.deflate.tif",
    "exif-samples/tiff/Arbitro.tiff",
    "exif-samples/heic/samplefilehub.heif",
    "pillow-edge/orientation/avif/rot1mir0.avif",
    "pillow-edge/icc/avif/icc_profile.avif",
)

HOSTILE_FILES: tuple[str, ...] = (
    "pillow-edge/broken/broken.png",
    "pillow-edge/broken/broken_data_stream.png",
    "pillow-edge/broken/crash-0c7e0e8e11ce787078f00b5b0ca409a167f070e0.tif",
    "pillow-edge/broken/crash-2020-10-test.tif",
    "pillow-edge/broken/crash-465703f71a0f0094873a3e0e82c9f798161171b8.sgi",
    "pillow-edge/broken/crash-4fb027452e6988530aa5dabee76eecacb3b79f8a.j2k",
    "pillow-edge/broken/crash-5762152299364352.fli",
    "pillow-edge/broken/hopper_unknown_pixel_mode.tif",
    "pillow-edge/broken/cross_scan_line_truncated.tga",
    "pillow-edge/bombs/decompression_bomb.gif",
    "pillow-edge/bombs/decompression_bomb_extents.gif",
    "pillow-edge/bombs/png_decompression_dos.png",
    "pillow-edge/bombs/oom-225817ca0f8c663be7ab4b9e717b02c661e66834.tif",
    "pillow-edge/bombs/timeout-041dd17dfde800360a47a172269df127af138c6b.dds",
    "pillow-edge/bombs/timeout-060745d3f534ad6e4128c51d336ea5489182c69d.blp",
)


@functools.cache
def read(relpath: str) -> bytes:
    return (CORPORA / relpath).read_bytes()


def seeds() -> tuple[str, ...]:
    """The seed files present in this checkout of the corpora."""
    return tuple(path for path in SEED_FILES if (CORPORA / path).is_file())


def hostile() -> tuple[str, ...]:
    return tuple(path for path in HOSTILE_FILES if (CORPORA / path).is_file())
