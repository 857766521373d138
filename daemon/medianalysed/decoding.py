"""The one reduced decode of an image's first frame, and the digest of its pixels.

JPEGs are decoded by libjpeg at 1/2, 1/4 or 1/8 scale (``Image.draft``); HEIC/HEIF photos from
their embedded thumbnail when it is a scaled copy big enough for the hashes (heifdecode.py),
resampled to whole blocks of the full image; other formats are decoded whole in
their native mode and box-reduced at once, so that at most one full-resolution buffer (the
decoder's own) ever exists. Hashes and colours then read the small result.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import EpsImagePlugin, Image, ImageFile, JpegImagePlugin

from medianalysed import heifdecode, vipsdecode

HASH_MIN_SIDE: Final = 128  # the reduced decode keeps at least this many pixels on the short side
HASH_INPUT_SIDE: Final = 128  # hashes and colours read a copy box-reduced to about this size
WORK_MAX_SIDE: Final = 4 * HASH_MIN_SIDE  # non-JPEG decodes are box-reduced below this
WORK_MAX_LONG_SIDE: Final = 16 * WORK_MAX_SIDE  # and their long side below this
# PIPELINE_ID (models.py) changes whenever a constant here, in hashes.py or colours.py, or the
# way results are computed changes: it is part of AnalysisSettings.fingerprint(), the
# content-cache key.

_JPEG_SCALES: Final = (8, 4, 2)
# Bytes handed to libjpeg per decoder call: Pillow's default 64 KiB makes libjpeg suspend and
# resume (and Pillow re-join the unread tail) a dozen times per photo; 1 MiB feeds most photos
# at once, for the same pixels and ~1.5 % less decode CPU (README, "Per-image CPU").
_JPEG_DECODE_BLOCK: Final = 1 << 20

# Transposes that bring a stored image to its displayed orientation (EXIF 0x0112).
ORIENTATION_TRANSPOSE: Final[dict[int, Image.Transpose]] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
SWAPS_AXES: Final = frozenset({5, 6, 7, 8})


class UnsupportedVariantError(Exception):
    """A format Pillow recognises but cannot decode here (stub plugins, EPS without Ghostscript)."""


@dataclass(frozen=True, slots=True)
class Working:
    """The one reduced decode: stored orientation, mode L, LA, RGB or RGBA."""

    image: Image.Image
    scale: int  # full-resolution pixels per working pixel, along each axis (rounded up)
    full_size: tuple[int, int]  # stored (not oriented) full-resolution size
    has_alpha: bool
    # Full-resolution pixels per working pixel along x and y when that is no whole `scale`
    # (an embedded thumbnail: 3024 / 240 = 12.6); None: `scale` on both axes.
    span: tuple[float, float] | None = None

    @property
    def pixel_span(self) -> tuple[float, float]:
        """Full-resolution pixels per working pixel, along x and y."""
        return self.span if self.span is not None else (self.scale, self.scale)


def decode_working(image: Image.Image, *, vips: bool = True) -> Working:
    """Decode the first frame once, as small as the hashes allow; `vips`: let libvips decode
    the PNG and TIFF variants it decodes to the same pixels, faster (vipsdecode.py)."""
    full_size = image.size
    if image.format == "EPS" and not _has_ghostscript():
        raise UnsupportedVariantError("EPS needs Ghostscript, which is not installed")
    scale = 1
    if isinstance(image, JpegImagePlugin.JpegImageFile):
        scale = _draft_jpeg(image)
        image.decodermaxblock = max(image.decodermaxblock, _JPEG_DECODE_BLOCK)
    if isinstance(image, ImageFile.StubImageFile):
        raise UnsupportedVariantError(f"no decoder for {image.format} files")
    # Images small enough to be worked on whole are decoded whole: there the hashes are exact.
    from_thumbnail = (
        image.format == "HEIF"
        and min(full_size) >= WORK_MAX_SIDE
        and heifdecode.draft_thumbnail(image)
    )
    if not (vips and vipsdecode.load(image)):
        image.load()
    has_alpha = image.has_transparency_data
    if from_thumbnail:
        return _working_from_thumbnail(image, full_size, has_alpha)
    factor = _reduce_factor(image.size)
    frame = _normalised_reduced(image, factor)
    scale *= factor
    return Working(image=frame, scale=scale, full_size=full_size, has_alpha=has_alpha)


def _working_from_thumbnail(
    thumbnail: Image.Image, full_size: tuple[int, int], has_alpha: bool
) -> Working:
    """A thumbnail box-reduced like any decode, each pixel standing for its exact share of the
    full image (resampling it to whole blocks first put most hashes' errors there)."""
    factor = _reduce_factor(thumbnail.size)
    frame = _normalised_reduced(thumbnail, factor)
    span = heifdecode.thumbnail_span(full_size, thumbnail.size)
    return Working(
        image=frame,
        scale=heifdecode.thumbnail_scale(full_size, thumbnail.size) * factor,
        full_size=full_size,
        has_alpha=has_alpha,
        span=(span[0] * factor, span[1] * factor),
    )


def _reduce_factor(size: tuple[int, int]) -> int:
    """Integer box factor that brings the short side under WORK_MAX_SIDE but not below half,
    and the long side under WORK_MAX_LONG_SIDE (a 245 x 100000 strip is no photo, and working
    on its 24 Mpx whole would take imagehash ten seconds)."""
    short_side, long_side = min(size), max(size)
    factor = 1 if short_side < WORK_MAX_SIDE else short_side // (WORK_MAX_SIDE // 2)
    return max(factor, -(-long_side // WORK_MAX_LONG_SIDE))


def _draft_jpeg(image: Image.Image) -> int:
    """Ask libjpeg for the smallest DCT scale keeping HASH_MIN_SIDE on the short side."""
    width, height = image.size
    short = min(width, height)
    for scale in _JPEG_SCALES:
        if -(-short // scale) >= HASH_MIN_SIDE:
            # Requesting size // scale makes Pillow pick exactly `scale` (see Image.draft).
            drafted = image.draft(image.mode, (max(1, width // scale), max(1, height // scale)))
            if drafted is None:
                return 1
            return round(width / drafted[1][2])
    return 1


@functools.cache
def _has_ghostscript() -> bool:
    return bool(EpsImagePlugin.has_ghostscript())


def _normalised_reduced(image: Image.Image, factor: int) -> Image.Image:
    """The decoded frame in L, LA, RGB or RGBA (8 bits per channel), box-reduced by `factor`.

    Converting a whole frame at once would hold a second full-resolution copy next to the
    decoder's (for 16-bit and float pixels, several float64 ones: 2.5 GB for a 10000x10000
    16-bit PNG), and so does Pillow's reduce of LA and RGBA (it premultiplies a copy first).
    Strips whose height is a multiple of `factor` convert and reduce to exactly the same
    pixels, so only one strip is ever converted at a time.
    """
    if image.mode in _REDUCED_IN_PLACE_MODES:
        # A copy, never the file's image itself: counting frames seeks that one afterwards.
        return image.reduce(factor) if factor > 1 else image.copy()
    convert = _converter(image)
    width, height = image.size
    rows = _strip_rows(width, factor)
    reduced: Image.Image | None = None
    for top in range(0, height, rows):
        strip = convert(image.crop((0, top, width, min(height, top + rows))))
        if factor > 1:
            strip = strip.reduce(factor)
        if reduced is None:
            reduced = Image.new(strip.mode, (-(-width // factor), -(-height // factor)))
        reduced.paste(strip, (0, top // factor))
    return reduced if reduced is not None else convert(image.copy())


_REDUCED_IN_PLACE_MODES: Final = frozenset({"L", "RGB"})
_STRIP_PIXELS: Final = 1 << 20  # a mode conversion works on strips of about this many pixels
_CONVERTED_MODES: Final = {"1": "L", "La": "LA", "RGBa": "RGBA"}


def _strip_rows(width: int, factor: int) -> int:
    rows = max(1, _STRIP_PIXELS // max(1, width))
    return max(factor, rows // factor * factor)


def _converter(image: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """How one strip of this image becomes L, LA, RGB or RGBA."""
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        low, high = _value_range(image)
        return functools.partial(_high_bit_to_l, low=low, high=high)
    if mode in ("LA", "RGBA"):
        return _unchanged
    if mode in ("P", "PA"):
        target = "RGBA" if image.has_transparency_data else "RGB"
    else:
        target = _CONVERTED_MODES.get(mode, "RGB")
    return functools.partial(Image.Image.convert, mode=target)


def _unchanged(strip: Image.Image) -> Image.Image:
    return strip


def _value_range(image: Image.Image) -> tuple[float, float]:
    """The smallest and largest sample, NaN and infinities counted as 0, strip by strip."""
    width, height = image.size
    rows = _strip_rows(width, 1)
    low, high = math.inf, -math.inf
    for top in range(0, height, rows):
        values = _finite_values(image.crop((0, top, width, min(height, top + rows))))
        if values.size:
            low, high = min(low, float(values.min())), max(high, float(values.max()))
    return low, high


def _finite_values(image: Image.Image) -> npt.NDArray[np.float64]:
    values = np.asarray(image).astype(np.float64)
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def _high_bit_to_l(image: Image.Image, *, low: float, high: float) -> Image.Image:
    """Scale 16/32-bit and float pixels to 8 bits (Pillow's convert would clip them at 255).

    `low` and `high` are the whole frame's, so every strip is scaled alike.
    """
    values = _finite_values(image)
    if values.size == 0:
        return Image.new("L", image.size)
    if image.mode == "F" and low >= 0 and high <= 1:
        values = values * 255
    elif image.mode != "F" and low >= 0 and high > 255:
        # 10/12/14/16-bit samples: scale the smallest bit depth that holds them to 8 bits.
        values = values * (255 / (2 ** int(high).bit_length() - 1))
    elif low < 0 or high > 255:
        values = (values - low) * (255 / (high - low) if high > low else 0.0)
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))  # mode L


@dataclass(frozen=True, slots=True)
class Reduced:
    """The working decode box-reduced for hashes and colours (short side HASH_INPUT_SIDE..2x)."""

    image: Image.Image
    span: tuple[float, float]  # full-resolution pixels per reduced pixel, along x and y


def reduce_for_hashes(working: Working) -> Reduced:
    factor = max(1, min(working.image.size) // HASH_INPUT_SIDE)
    image = working.image.reduce(factor) if factor > 1 else working.image
    span_x, span_y = working.pixel_span
    return Reduced(image=image, span=(span_x * factor, span_y * factor))


# --------------------------------------------------------------------------- pixel digest


def pixel_digest(working: Working) -> str:
    """sha256 of the decoded working pixels, their size, mode and decode scale.

    Identical pixel data decodes identically whatever the metadata or the container's
    compression settings, so a JPEG whose EXIF was rewritten or a PNG saved again with another
    zlib level get the same digest. Limit: a JPEG and a lossless PNG of its full-size pixels do
    not match, since the JPEG is digested as its reduced (DCT-scaled) decode; likewise a HEIC
    hashed from its embedded thumbnail is digested as that thumbnail, so it matches the same
    pixels saved with the same thumbnail, not without one.
    """
    image = working.image
    header = f"{image.mode}:{image.width}x{image.height}:1/{working.scale}\n"
    digest = hashlib.sha256(header.encode())
    digest.update(image.tobytes())
    return digest.hexdigest()
