"""The reduced decode converts strip by strip, exactly as a whole-frame conversion would."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from medianalysed import decoding

MODES = ("I;16", "I;16B", "I", "F", "P", "PA", "1", "CMYK", "LAB", "YCbCr", "HSV", "RGBX")
MODES_8BIT = ("L", "LA", "RGB", "RGBA", "La", "RGBa")


def whole_frame(image: Image.Image, factor: int) -> Image.Image:
    """The conversion the strips must reproduce: the whole frame to 8 bits, then one reduce."""
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        values = np.asarray(image).astype(np.float64)
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(values.min()), float(values.max())
        if mode == "F" and low >= 0 and high <= 1:
            values = values * 255
        elif mode != "F" and low >= 0 and high > 255:
            values = values * (255 / (2 ** int(high).bit_length() - 1))
        elif low < 0 or high > 255:
            values = (values - low) * (255 / (high - low) if high > low else 0.0)
        converted = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    elif mode in ("P", "PA"):
        converted = image.convert("RGBA" if image.has_transparency_data else "RGB")
    elif mode in ("L", "LA", "RGB", "RGBA"):
        converted = image
    else:
        converted = image.convert({"1": "L", "La": "LA", "RGBa": "RGBA"}.get(mode, "RGB"))
    return converted.reduce(factor) if factor > 1 else converted


def made_up(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    width, height = size
    if mode in ("I;16", "I;16B"):
        top = int(rng.choice([255, 4095, 65535]))
        raw = rng.integers(0, top + 1, (height, width), dtype=np.uint16)
        order = ">u2" if mode == "I;16B" else "<u2"
        return Image.frombytes(mode, size, raw.astype(order).tobytes())
    if mode == "I":
        low = int(rng.choice([0, -5000]))
        return Image.fromarray(rng.integers(low, 70000, (height, width), dtype=np.int32))
    if mode == "F":
        values = rng.random((height, width), dtype=np.float32) * float(rng.choice([1, 1000]))
        values.flat[rng.integers(0, values.size, 3)] = [np.nan, np.inf, -np.inf]
        return Image.fromarray(values)
    noise = rng.integers(0, 256, width * height * 4, dtype=np.uint8)
    image = Image.frombytes(mode, size, noise.tobytes())
    if mode == "P":
        image.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
        if rng.random() < 0.5:
            image.info["transparency"] = 7
    return image


@settings(deadline=None, max_examples=40)
@given(
    mode=st.sampled_from(MODES + MODES_8BIT),
    width=st.integers(1, 1100),
    height=st.sampled_from([1, 7, 300, 511, 512, 1100, 2600]),
    strip_pixels=st.sampled_from([977, 65536, 1 << 20]),
    seed=st.integers(0, 2**16),
)
def test_strips_give_the_whole_frame_conversion_exactly(
    mode: str, width: int, height: int, strip_pixels: int, seed: int
) -> None:
    image = made_up(mode, (width, height), seed)
    factor = decoding._reduce_factor((width, height))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decoding, "_STRIP_PIXELS", strip_pixels)
        strips = decoding._normalised_reduced(image, factor)
    expected = whole_frame(image, factor)
    assert (strips.mode, strips.size) == (expected.mode, expected.size)
    assert strips.tobytes() == expected.tobytes()
    assert strips is not image


def test_a_constant_negative_float_image_is_black_not_an_error() -> None:
    image = Image.fromarray(np.full((600, 700), -3.0, dtype=np.float32))
    working = decoding.decode_working(image)
    assert working.image.mode == "L"
    assert working.image.getextrema() == (0, 0)


@pytest.mark.parametrize(
    ("size", "factor"),
    [
        ((4000, 3000), 11),  # short side 3000 // 256
        ((511, 8192), 1),  # small enough both ways: decoded at full size
        ((245, 100_001), 13),  # a strip: its long side decides
        ((16_000, 1_000), 3),  # a panorama: still its short side
    ],
)
def test_the_reduce_factor_bounds_both_sides(size: tuple[int, int], factor: int) -> None:
    assert decoding._reduce_factor(size) == factor
    assert max(size) // factor <= decoding.WORK_MAX_LONG_SIDE
