"""The small thumbnail `report.html` shows, made from the decode the analysis already did.

No second decode: the reduced image the hashes read is oriented, shrunk to at most
`THUMBNAIL_SIDE` px a side, and written as JPEG (quality 70, optimised Huffman tables),
base64-encoded, into the image's stored result. Only `report.html` reads it, and only for
duplicates and failures. JPEG rather than WebP: measured on 60 corpus photos
(`benchmarks/bench_report.py` notes in the README), WebP at quality 60 is 27 % smaller
(1.7 KB against 2.3 KB) but costs about twice the encoding time, paid for every image.
"""

from __future__ import annotations

import base64
import io
from typing import Final

from PIL import Image

from medianalysed.decoding import ORIENTATION_TRANSPOSE

THUMBNAIL_SIDE: Final = 128
THUMBNAIL_MIME: Final = "image/jpeg"
_QUALITY: Final = 70
_WHITE: Final = (255, 255, 255)


def _shrunk(image: Image.Image) -> Image.Image:
    scale = THUMBNAIL_SIDE / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if "A" in image.mode:  # JPEG has no alpha: flattened onto white, as the colours are
        background = Image.new("RGB", image.size, _WHITE)
        background.paste(image.convert("RGBA"), mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def thumbnail(image: Image.Image, orientation: int) -> str:
    """The base64 JPEG of `image` (stored orientation) shown upright, at most 128 px a side."""
    small = _shrunk(image)
    transpose = ORIENTATION_TRANSPOSE.get(orientation)
    if transpose is not None:
        small = small.transpose(transpose)
    buffer = io.BytesIO()
    _rgb(small).save(buffer, "JPEG", quality=_QUALITY, optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def data_uri(encoded: str) -> str:
    """A thumbnail as a `data:` URI for an `<img src>`."""
    return f"data:{THUMBNAIL_MIME};base64,{encoded}"
