"""The report's thumbnails: upright, small, JPEG, from the decode already made."""

from __future__ import annotations

import base64
import io

from PIL import Image

from medianalysed.thumbnails import THUMBNAIL_SIDE, data_uri, thumbnail


def _decoded(encoded: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    image.load()
    return image


def test_a_rotated_photo_is_shown_upright_and_at_most_128_px():
    stored = Image.new("RGB", (256, 128), "white")
    stored.paste((255, 0, 0), (0, 0, 128, 128))  # left half red in the stored frame
    upright = _decoded(thumbnail(stored, 6))  # EXIF 6: turn 90 degrees clockwise to show
    assert upright.format == "JPEG"
    assert upright.size == (THUMBNAIL_SIDE // 2, THUMBNAIL_SIDE)
    top = upright.convert("RGB").getpixel((32, 16))
    bottom = upright.convert("RGB").getpixel((32, 112))
    assert isinstance(top, tuple)
    assert isinstance(bottom, tuple)
    assert top[0] > 200, "the stored left half is on top once upright"
    assert top[1] < 60
    assert bottom[1] > 200


def test_grey_and_alpha_images_become_rgb_with_alpha_flattened_onto_white():
    assert _decoded(thumbnail(Image.new("L", (300, 200), 90), 1)).mode == "RGB"
    clear = _decoded(thumbnail(Image.new("LA", (40, 30), (90, 0)), 1))
    assert clear.mode == "RGB"
    pixel = clear.getpixel((20, 15))
    assert isinstance(pixel, tuple)
    assert min(pixel) > 240, "a transparent image shows white"
    assert _decoded(thumbnail(Image.new("RGB", (40, 30)), 1)).size == (40, 30)  # never enlarged


def test_a_photo_thumbnail_is_a_few_kilobytes():
    photo = Image.effect_mandelbrot((256, 192), (-2.0, -1.2, 1.0, 1.2), 100).convert("RGB")
    encoded = thumbnail(photo, 1)
    assert len(base64.b64decode(encoded)) < 8_000
    assert data_uri(encoded).startswith("data:image/jpeg;base64,")
