"""The test helper that writes huge flat PNGs in milliseconds writes what zlib and Pillow read."""

from __future__ import annotations

import zlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.pngs import GRAY, RGB, RGBA, flat_idat, write_flat_png

_BLOCK = 1 << 20


@settings(max_examples=40, deadline=None)
@given(
    # Scanlines around the repeated megabyte: none of it, one short, exactly one, a few.
    width=st.sampled_from([1, 7, _BLOCK // 3 - 1, _BLOCK // 3, _BLOCK - 1, _BLOCK]),
    height=st.integers(1, 5),
    colour=st.sampled_from([GRAY, RGB, RGBA]),
    depth=st.sampled_from([8, 16]),
)
def test_the_flat_idat_inflates_to_zero_scanlines_of_the_size_asked(
    width: int, height: int, colour: int, depth: int
) -> None:
    channels = {GRAY: 1, RGB: 3, RGBA: 4}[colour]
    idat = flat_idat(width, height, depth, colour)
    stream = idat[8:-4]  # length and type before it, the CRC after
    assert zlib.crc32(idat[4:-4]) == int.from_bytes(idat[-4:], "big")
    # zlib checks the Adler-32 at the end: a wrong one raises here.
    assert zlib.decompress(stream) == bytes(height * (1 + width * channels * depth // 8))


def test_pillow_decodes_a_flat_png_past_the_block_to_zeros(tmp_path: Path) -> None:
    path = write_flat_png(tmp_path / "flat.png", 3000, 400, colour=RGB)
    with Image.open(path) as image:
        image.load()
        assert image.size == (3000, 400)
        assert image.getextrema() == ((0, 0), (0, 0), (0, 0))
