"""Pure single-image analysis (SPEC §3, §4): file facts, header metadata, hashes and colours.

Everything here is a top-level function of plain arguments, so it runs unchanged inside pebble
worker processes; nothing imports pykka, watchdog, diskcache or threads.

Speed comes from doing ONE reduced decode per image: JPEGs are decoded by libjpeg at 1/2, 1/4 or
1/8 scale (``Image.draft``), other formats are decoded whole and box-reduced at once. Metadata
(EXIF, size, ICC, DPI) comes from the header, orientation is applied to the small results only,
and the five hashes and the colours all come from that one small image.

Hashes: where the image was reduced, ahash/dhash/phash redo imagehash's Lanczos resize of the
full-resolution image from the block averages the reduced decode holds (a 1/8 JPEG decode is
the DCT's DC term, i.e. 8x8 block means), in float and over the exact box the full image maps
to; whash's 8x8 Haar low band is the 8x8 area mean it amounts to; colorhash counts a regular
sample of the decoded pixels. Images decoded at full size go through imagehash itself.
``benchmarks/hash_accuracy.py`` measures the distance to imagehash on the full-resolution
oriented image (SPEC §4 allows 2 bits on ahash/phash/dhash for 99% of real photos).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import io
import math
import mimetypes
import os
import re
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import imagehash
import numpy as np
import numpy.typing as npt
import pillow_heif
import scipy.fftpack
from PIL import (
    EpsImagePlugin,
    ExifTags,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
)

from medianalysed.errors import AnalysisError, ErrorCode
from medianalysed.models import AnalysisSettings

try:
    from PIL import ImageCms
except ImportError:  # Pillow built without littlecms: icc_profile is then null
    ImageCms = None  # type: ignore[assignment]

if TYPE_CHECKING:
    pass

# HEIC/HEIF; Pillow >= 11.3 decodes AVIF itself, and pillow-heif >= 1.0 no longer does.
pillow_heif.register_heif_opener()

FloatArray = npt.NDArray[np.float64]

IN_MEMORY_LIMIT: Final = 64 * 1024 * 1024  # files up to this size are read once and kept
HASH_MIN_SIDE: Final = 128  # the reduced decode keeps at least this many pixels on the short side
HASH_INPUT_SIDE: Final = 128  # hashes and colours read a copy box-reduced to about this size
WORK_MAX_SIDE: Final = 4 * HASH_MIN_SIDE  # non-JPEG decodes are box-reduced below this
COLOR_SIDE: Final = 32  # colours come from a box-reduced copy about this big on the short side
COLORHASH_SAMPLE_SIDE: Final = 64  # colorhash counts a sample about this big on the short side
# PIPELINE_ID (models.py) changes whenever a constant above or the way results are computed
# changes: it is part of AnalysisSettings.fingerprint(), the content-cache key.

_READ_CHUNK: Final = 1024 * 1024
_JPEG_SCALES: Final = (8, 4, 2)
_HASH_SIZE: Final = 8
_SINGLE_THREAD_PRODUCT: Final = 4 * 65536  # OpenBLAS multithreads products above this
_WHITE: Final = (255, 255, 255)

_EXIF_ORIENTATION: Final = 0x0112
_EXIF_IFD: Final = 0x8769
_GPS_IFD: Final = 0x8825
_INTEROP_IFD: Final = 0xA005
# Image-structure and container tags: offsets and blobs, not facts about the photo.
_STRUCTURE_TAGS: Final = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 322, 323, 324, 325}
    | {338, 339, 347, 513, 514, 700, 34675, _EXIF_IFD, _GPS_IFD, _INTEROP_IFD}
)
_USER_COMMENT: Final = 0x9286
_USER_COMMENT_CODES: Final = {b"ASCII": "ascii", b"UNICODE": "utf-16", b"": "latin-1"}
_INTEROP_TAGS: Final = {1: "InteropIndex", 2: "InteropVersion", 0x1000: "RelatedImageFileFormat"}
_RAW_STR_LIMIT: Final = 256
_RAW_BYTES_LIMIT: Final = 64  # bytes shown (as hex) of a binary value such as MakerNote
_RAW_LIST_LIMIT: Final = 64
_DATETIME_RE: Final = re.compile(r"^\s*(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")

# Transposes that bring a stored image to its displayed orientation (EXIF 0x0112).
_ORIENTATION_TRANSPOSE: Final[dict[int, Image.Transpose]] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES: Final = frozenset({5, 6, 7, 8})

# Exceptions Pillow's plugins raise on damaged input (besides OSError, handled on its own).
_DAMAGED_INPUT_ERRORS: Final = (
    SyntaxError,
    ValueError,
    TypeError,
    EOFError,
    IndexError,
    KeyError,
    struct.error,
    zlib.error,
    ZeroDivisionError,
    OverflowError,
)
_SIGNATURES: Final = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF
    b"MM\x00*",
    b"II+\x00",  # BigTIFF
    b"MM\x00+",
    b"\x00\x00\x00\x0cjP  ",  # JPEG 2000
    b"\xff\x4f\xff\x51",  # J2K codestream
    b"8BPS",  # PSD
    b"DDS ",
    b"BLP1",
    b"BLP2",
    b"icns",
    b"\x00\x00\x01\x00",  # ICO
    b"\x00\x00\x02\x00",  # CUR
    b"qoif",
    b"\x01\xda",  # SGI
    b"SIMPLE  =",  # FITS
)
_ISO_BMFF_BRANDS: Final = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_ISO_BMFF_BRANDS_AVIF: Final = (b"avif", b"avis")


# --------------------------------------------------------------------------- settings and facts


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What the file itself says, before any decoding."""

    size: int
    sha256: str
    mtime: str  # ISO 8601 UTC with Z
    data: bytes | None  # the whole file when size <= IN_MEMORY_LIMIT, else None


def read_file_facts(path: Path, settings: AnalysisSettings) -> FileFacts:
    """Stat, check the size limit, read (when small enough) and hash one file.

    Raises:
        AnalysisError: TOO_LARGE (before reading the content) or IO_ERROR.
    """
    try:
        with path.open("rb") as handle:
            status = os.fstat(handle.fileno())
            if status.st_size > settings.max_file_size:
                raise AnalysisError(
                    ErrorCode.TOO_LARGE,
                    f"file is {status.st_size} bytes, over max_file_size "
                    f"({settings.max_file_size} bytes)",
                )
            if status.st_size <= IN_MEMORY_LIMIT:
                data: bytes | None = handle.read()
                assert data is not None
                size = len(data)
                digest = hashlib.sha256(data).hexdigest()
            else:
                data = None
                size, digest = _stream_sha256(handle)
    except OSError as exc:
        raise AnalysisError(ErrorCode.IO_ERROR, _os_error_message("cannot read file", exc)) from exc
    if size > settings.max_file_size:  # the file grew since fstat
        raise AnalysisError(
            ErrorCode.TOO_LARGE,
            f"file is {size} bytes, over max_file_size ({settings.max_file_size} bytes)",
        )
    return FileFacts(size=size, sha256=digest, mtime=_utc_iso(status.st_mtime), data=data)


def _stream_sha256(handle: io.BufferedReader) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while chunk := handle.read(_READ_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _utc_iso(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _os_error_message(action: str, exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    return f"{action}: {reason}"


# --------------------------------------------------------------------------- entry points


def analyse_file(
    path: Path, settings: AnalysisSettings, *, source_url: str | None = None
) -> dict[str, Any]:
    """Read, hash and analyse one file: the `file` section plus analyse_image's sections."""
    facts = read_file_facts(path, settings)
    analysed = analyse_image(path, facts, settings)
    file_section = {
        "size": facts.size,
        "sha256": facts.sha256,
        "mtime": facts.mtime,
        "source_url": source_url,
    }
    return {"file": file_section, **analysed}


def analyse_image(path: Path, facts: FileFacts, settings: AnalysisSettings) -> dict[str, Any]:
    """Analyse one image: `image`, `exif`, `colors`, `hashes` and `pixel_digest`.

    Not thread-safe: for the duration of the call it sets Pillow's global MAX_IMAGE_PIXELS and
    the warnings filters, so run one analysis at a time per process (as pebble workers do).

    Raises:
        AnalysisError: UNSUPPORTED_FORMAT, CORRUPT, DECOMPRESSION_BOMB, TOO_SMALL or IO_ERROR.
    """
    with _pillow_limits(settings.max_pixels):
        with _pillow_errors(path, facts.data), _open_image(path, facts.data) as image:
            header = _read_header(image)
            _check_limits(header, settings)
            # Before decoding: a TIFF's sub-IFDs are read from its file, which loading may close.
            tags = _read_exif_tags(header.exif, gps=settings.gps)
            working = _decode_working(image)
            late = _with_late_exif(header, image)
            if late is not header:
                _check_limits(late, settings)
                header = late
                tags = _read_exif_tags(header.exif, gps=settings.gps)
        reduced = _reduced(working)
        return {
            "image": header.section(has_alpha=working.has_alpha),
            "exif": _exif_section(tags, gps=settings.gps),
            "colors": _colors_section(reduced.image, settings.dominant_colors),
            "hashes": _hashes(working, reduced, header.applied_orientation),
            "pixel_digest": _pixel_digest(working),
        }


@contextmanager
def _pillow_limits(max_pixels: int) -> Iterator[None]:
    """Pillow's bomb check set to our max_pixels, and its warnings kept in, for one analysis.

    Pillow raises DecompressionBombError above twice MAX_IMAGE_PIXELS and only warns above it;
    the warning is made an error so that anything over max_pixels is refused the same way.
    Other warnings (odd but readable files) are not the caller's business.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def hamming_distance(hex_a: str, hex_b: str) -> int:
    """Bits that differ between two imagehash hex strings of the same length (colorhash too)."""
    if len(hex_a) != len(hex_b):
        raise ValueError(f"hashes of different lengths: {len(hex_a)} and {len(hex_b)}")
    return (int(hex_a, 16) ^ int(hex_b, 16)).bit_count()


# --------------------------------------------------------------------------- opening and errors


@contextmanager
def _open_image(path: Path, data: bytes | None) -> Iterator[Image.Image]:
    source: Path | io.BytesIO = io.BytesIO(data) if data is not None else path
    with Image.open(source) as image:
        yield image


@contextmanager
def _pillow_errors(path: Path, data: bytes | None) -> Iterator[None]:
    """Translate what Pillow raises on bad input into AnalysisError codes."""
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise AnalysisError(ErrorCode.DECOMPRESSION_BOMB, _bomb_message(exc)) from exc
    except UnidentifiedImageError as exc:
        if _claims_image_format(path, data):
            raise AnalysisError(
                ErrorCode.CORRUPT, "claims an image format but Pillow cannot identify it"
            ) from exc
        raise AnalysisError(ErrorCode.UNSUPPORTED_FORMAT, "not an image format we decode") from exc
    except NotImplementedError as exc:
        raise AnalysisError(
            ErrorCode.UNSUPPORTED_FORMAT, f"image variant not supported: {exc}"
        ) from exc
    except _UnsupportedVariantError as exc:
        raise AnalysisError(ErrorCode.UNSUPPORTED_FORMAT, str(exc)) from exc
    except OSError as exc:
        if exc.errno is not None:  # a real OS error; Pillow's own OSErrors carry no errno
            raise AnalysisError(
                ErrorCode.IO_ERROR, _os_error_message("cannot read file", exc)
            ) from exc
        raise AnalysisError(ErrorCode.CORRUPT, _decode_failure_message(exc)) from exc
    except _DAMAGED_INPUT_ERRORS as exc:
        if "too large" in str(exc).lower():  # PNG text-chunk bombs raise ValueError
            raise AnalysisError(ErrorCode.DECOMPRESSION_BOMB, _bomb_message(exc)) from exc
        raise AnalysisError(ErrorCode.CORRUPT, _decode_failure_message(exc)) from exc


class _UnsupportedVariantError(Exception):
    """A format Pillow recognises but cannot decode here (stub plugins, EPS without Ghostscript)."""


def _bomb_message(exc: Exception) -> str:
    match = re.search(r"\((\d+) pixels\)", str(exc))
    if match:
        return f"image has {match.group(1)} pixels, over max_pixels ({Image.MAX_IMAGE_PIXELS})"
    return f"decompression bomb: {exc}"


def _decode_failure_message(exc: BaseException) -> str:
    return f"cannot decode: {type(exc).__name__}: {exc}"


def _claims_image_format(path: Path, data: bytes | None) -> bool:
    """Whether the file's signature or its name says it is an image format we know."""
    if path.suffix.lower() in _image_extensions():
        return True
    head = data[:32] if data is not None else _read_head(path)
    if head.startswith(_SIGNATURES):
        return True
    brand = head[8:12] if head[4:8] == b"ftyp" else b""
    return brand in _ISO_BMFF_BRANDS or brand in _ISO_BMFF_BRANDS_AVIF


@functools.cache
def _image_extensions() -> frozenset[str]:
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(32)
    except OSError:
        return b""


# --------------------------------------------------------------------------- header


@dataclass(frozen=True, slots=True)
class _Header:
    """What the container says before any pixel is decoded."""

    format: str
    mime: str | None
    mode: str
    stored_size: tuple[int, int]
    orientation: int  # as reported (the file's own value)
    applied_orientation: int  # what still has to be applied to decoded pixels
    frames: int
    animated: bool
    icc_profile: str | None
    dpi: list[float] | None
    exif: Image.Exif | None

    @property
    def displayed_size(self) -> tuple[int, int]:
        width, height = self.stored_size
        if self.applied_orientation in _SWAPS_AXES:
            return height, width
        return width, height

    def section(self, *, has_alpha: bool) -> dict[str, Any]:
        """The `image` section of the record."""
        width, height = self.displayed_size
        return {
            "format": self.format,
            "mime": self.mime,
            "width": width,
            "height": height,
            "mode": self.mode,
            "orientation": self.orientation,
            "frames": self.frames,
            "animated": self.animated,
            "has_alpha": has_alpha,
            "icc_profile": self.icc_profile,
            "dpi": self.dpi,
        }


def _read_header(image: Image.Image) -> _Header:
    exif = _exif_before_decode(image)
    reported, applied = _orientations(image, exif)
    fmt = image.format or "UNKNOWN"
    frames = int(getattr(image, "n_frames", 1))
    return _Header(
        format=fmt,
        mime=_mime_of(fmt),
        mode=image.mode,
        stored_size=image.size,
        orientation=reported,
        applied_orientation=applied,
        frames=frames,
        animated=bool(getattr(image, "is_animated", False)) or frames > 1,
        icc_profile=_icc_of(image.info.get("icc_profile")),
        dpi=_dpi_of(image.info.get("dpi")),
        exif=exif,
    )


def _with_late_exif(header: _Header, image: Image.Image) -> _Header:
    """The header completed with EXIF that only a decoded image gives (PNG eXIf after IDAT)."""
    if header.exif is not None:
        return header
    exif = _safe_exif(image)
    if exif is None:
        return header
    reported, applied = _orientations(image, exif)
    return dataclasses.replace(header, exif=exif, orientation=reported, applied_orientation=applied)


def _orientations(image: Image.Image, exif: Image.Exif | None) -> tuple[int, int]:
    """The orientation the file states, and the one still to apply to decoded pixels."""
    applied = _orientation_of(exif)
    # pillow-heif applies the HEIF transforms while decoding and resets the EXIF tag to 1; it
    # keeps the file's value in info["original_orientation"].
    original = image.info.get("original_orientation")
    reported = original if isinstance(original, int) and 1 <= original <= 8 else applied
    return reported, applied


def _exif_before_decode(image: Image.Image) -> Image.Exif | None:
    """EXIF from the header, or None where reading it would decode the image.

    PngImageFile.getexif() loads the whole image to look for an eXIf chunk after the pixel
    data; a decode error there would be swallowed with the EXIF, leaving a half-loaded image.
    """
    if isinstance(image, PngImagePlugin.PngImageFile) and "exif" not in image.info:
        return None
    return _safe_exif(image)


def _check_limits(header: _Header, settings: AnalysisSettings) -> None:
    width, height = header.displayed_size
    pixels = width * height
    if pixels > settings.max_pixels:
        raise AnalysisError(
            ErrorCode.DECOMPRESSION_BOMB,
            f"image has {pixels} pixels ({width}x{height}), "
            f"over max_pixels ({settings.max_pixels})",
        )
    if width < settings.min_width or height < settings.min_height:
        raise AnalysisError(
            ErrorCode.TOO_SMALL,
            f"image is {width}x{height}, under min_width x min_height "
            f"({settings.min_width}x{settings.min_height})",
        )


def _safe_exif(image: Image.Image) -> Image.Exif | None:
    try:
        exif = image.getexif()
    except Exception:  # a broken EXIF block must never fail the image
        return None
    return exif


def _orientation_of(exif: Image.Exif | None) -> int:
    if exif is None:
        return 1
    try:
        value = exif.get(_EXIF_ORIENTATION)
    except Exception:  # broken EXIF: treat as absent
        return 1
    if isinstance(value, int) and 1 <= value <= 8:
        return value
    return 1


def _mime_of(fmt: str) -> str | None:
    mime = Image.MIME.get(fmt.upper())  # filled in by the plugin that opened the file
    if mime:
        return mime
    guessed, _ = mimetypes.guess_type(f"image.{fmt.lower()}")
    return guessed


def _icc_of(profile: object) -> str | None:
    if ImageCms is None or not isinstance(profile, bytes) or not profile:
        return None
    return _icc_description(profile)


@functools.lru_cache(maxsize=64)  # most photos of a batch carry the same few profiles
def _icc_description(profile: bytes) -> str | None:
    try:
        description = ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile.profile_description
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return None
    if not isinstance(description, str):
        return None
    return description.strip() or None


def _dpi_of(value: object) -> list[float] | None:
    if not isinstance(value, tuple | list) or len(value) != 2:
        return None
    numbers: list[float] = []
    for item in value:
        number = _finite_float(item)
        if number is None or number <= 0:
            return None
        numbers.append(_compact_number(number))
    return numbers


def _compact_number(number: float) -> float:
    """Integral floats as ints (72, not 72.0), others rounded to 2 decimals."""
    rounded = round(number, 2)
    return int(rounded) if rounded.is_integer() else rounded


def _finite_float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------- the reduced decode


@dataclass(frozen=True, slots=True)
class _Working:
    """The one reduced decode: stored orientation, mode L, LA, RGB or RGBA."""

    image: Image.Image
    scale: int  # full-resolution pixels per working pixel, along each axis
    full_size: tuple[int, int]  # stored (not oriented) full-resolution size
    has_alpha: bool


def _decode_working(image: Image.Image) -> _Working:
    """Decode the first frame once, as small as the hashes allow."""
    full_size = image.size
    if image.format == "EPS" and not _has_ghostscript():
        raise _UnsupportedVariantError("EPS needs Ghostscript, which is not installed")
    scale = _draft_jpeg(image) if isinstance(image, JpegImagePlugin.JpegImageFile) else 1
    if isinstance(image, ImageFile.StubImageFile):
        raise _UnsupportedVariantError(f"no decoder for {image.format} files")
    image.load()
    has_alpha = image.has_transparency_data
    frame = _normalised(image)
    factor = _reduce_factor(min(frame.size))
    if factor > 1:
        frame = frame.reduce(factor)
        scale *= factor
    return _Working(image=frame, scale=scale, full_size=full_size, has_alpha=has_alpha)


def _reduce_factor(short_side: int) -> int:
    """Integer box factor that brings the short side under WORK_MAX_SIDE but not below half."""
    if short_side < WORK_MAX_SIDE:
        return 1
    return short_side // (WORK_MAX_SIDE // 2)


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


def _normalised(image: Image.Image) -> Image.Image:
    """The decoded frame in L, LA, RGB or RGBA (8 bits per channel)."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode in ("1",):
        return image.convert("L")
    if mode in ("P", "PA"):
        return image.convert("RGBA" if image.has_transparency_data else "RGB")
    if mode == "La":
        return image.convert("LA")
    if mode == "RGBa":
        return image.convert("RGBA")
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _high_bit_to_l(image)
    return image.convert("RGB")


def _high_bit_to_l(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit and float pixels to 8 bits (Pillow's convert would clip them at 255)."""
    values = np.asarray(image).astype(np.float64)
    if values.size == 0:
        return Image.new("L", image.size)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if image.mode == "F" and low >= 0 and high <= 1:
        values = values * 255
    elif image.mode != "F" and low >= 0 and high > 255:
        # 10/12/14/16-bit samples: scale the smallest bit depth that holds them to 8 bits.
        values = values * (255 / (2 ** int(high).bit_length() - 1))
    elif low < 0 or high > 255:
        values = (values - low) * (255 / (high - low))
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))  # mode L


@dataclass(frozen=True, slots=True)
class _Reduced:
    """The working decode box-reduced for hashes and colours (short side HASH_INPUT_SIDE..2x)."""

    image: Image.Image
    block: int  # full-resolution pixels per reduced pixel, along each axis


def _reduced(working: _Working) -> _Reduced:
    factor = max(1, min(working.image.size) // HASH_INPUT_SIDE)
    image = working.image.reduce(factor) if factor > 1 else working.image
    return _Reduced(image=image, block=working.scale * factor)


# --------------------------------------------------------------------------- pixel digest


def _pixel_digest(working: _Working) -> str:
    """sha256 of the decoded working pixels, their size, mode and decode scale.

    Identical pixel data decodes identically whatever the metadata or the container's
    compression settings, so a JPEG whose EXIF was rewritten or a PNG saved again with another
    zlib level get the same digest. Limit: a JPEG and a lossless PNG of its full-size pixels do
    not match, since the JPEG is digested as its reduced (DCT-scaled) decode.
    """
    image = working.image
    header = f"{image.mode}:{image.width}x{image.height}:1/{working.scale}\n".encode()
    return hashlib.sha256(header + image.tobytes()).hexdigest()


# --------------------------------------------------------------------------- colours


def _colors_section(reduced: Image.Image, dominant: int) -> dict[str, Any]:
    """Dominant colours (octree quantisation) and the average, alpha flattened onto white."""
    factor = max(1, min(reduced.size) // COLOR_SIDE)
    small = _flattened_rgb(reduced.reduce(factor) if factor > 1 else reduced)
    mean = small.reduce((small.width, small.height)).getpixel((0, 0))  # one box: the mean
    average = _hex_color(mean if isinstance(mean, tuple) else (0, 0, 0))
    return {"dominant": _dominant_colors(small, dominant), "average": average}


def _flattened_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGB", image.size, _WHITE)
        background.paste(image.convert("RGBA"), mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def _dominant_colors(small: Image.Image, count: int) -> list[dict[str, Any]]:
    if count <= 0:
        return []
    quantised = small.quantize(colors=count, method=Image.Quantize.FASTOCTREE)
    palette = quantised.getpalette() or []
    totals: dict[str, int] = {}
    for pixels, index in quantised.getcolors() or []:
        start = int(index) * 3  # type: ignore[arg-type]  # a "P" image's colours are indices
        key = _hex_color(tuple(palette[start : start + 3]))
        totals[key] = totals.get(key, 0) + pixels
    area = small.width * small.height
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:count]
    return [{"hex": key, "ratio": round(pixels / area, 4)} for key, pixels in ranked]


def _hex_color(rgb: tuple[int, ...]) -> str:
    red, green, blue = rgb
    return f"#{red:02x}{green:02x}{blue:02x}"


# --------------------------------------------------------------------------- hashes
#
# imagehash resizes the whole image with Pillow's Lanczos filter (ahash 8x8, dhash 9x8, phash
# 32x32) or Haar-transforms it (whash: its 8x8 low band is the image's 8x8 area means). Each
# pixel of a reduced decode is the mean of a block x block square of the full image (a 1/8 JPEG
# decode keeps just the DCT's DC term), so the full image's filter weights summed per block,
# applied in float to the reduced image, land within a fraction of a grey level of Pillow's
# 8-bit resize of the full image; rounding once at the end then mostly agrees with it. The
# filters are separable and orientation only mirrors and swaps axes, so they run in the stored
# frame and the tiny results are oriented.

# ahash, dhash and phash grids as (width, height), displayed; phash's is hash_size * 4.
_HASH_GRIDS: Final = ((8, 8), (9, 8), (32, 32))


def _hashes(working: _Working, reduced: _Reduced, orientation: int) -> dict[str, str]:
    """The five imagehash hashes of the oriented image, from the working decode."""
    colorhash = _bits_to_hex(_colorhash_bits(working.image))
    if working.scale == 1:
        return {**_exact_gray_hashes(working.image, orientation), "colorhash": colorhash}
    ahash, dhash, phash, whash = _gray_grids(reduced, working.full_size, orientation)
    return {
        "ahash": _bits_to_hex(ahash > float(ahash.mean())),
        "phash": _bits_to_hex(_phash_bits(phash)),
        "dhash": _bits_to_hex(dhash[:, 1:] > dhash[:, :-1]),
        "whash": _bits_to_hex(whash > float(np.median(whash))),
        "colorhash": colorhash,
    }


def _exact_gray_hashes(image: Image.Image, orientation: int) -> dict[str, str]:
    """Images decoded at full size (short side under WORK_MAX_SIDE): imagehash itself."""
    gray = image.convert("L")  # like imagehash: alpha is ignored, not flattened
    transpose = _ORIENTATION_TRANSPOSE.get(orientation)
    if transpose is not None:
        gray = gray.transpose(transpose)
    return {
        "ahash": str(imagehash.average_hash(gray)),
        "phash": str(imagehash.phash(gray)),
        "dhash": str(imagehash.dhash(gray)),
        "whash": str(imagehash.whash(gray)),
    }


def _gray_grids(
    reduced: _Reduced, full_size: tuple[int, int], orientation: int
) -> list[FloatArray]:
    """ahash, dhash and phash's resizes (8-bit like Pillow's) and whash's 8x8 area means."""
    gray = np.asarray(reduced.image.convert("L"), dtype=np.float32)  # alpha ignored, as imagehash
    height, width = gray.shape
    full_width, full_height = full_size
    swap = orientation in _SWAPS_AXES
    columns, column_spans = _filter_bank(full_width, reduced.block, width, not swap)
    rows, row_spans = _filter_bank(full_height, reduced.block, height, swap)
    filtered = _product_on_this_thread(gray, columns.T)  # every column filter at once
    grids = []
    for index, (row_span, column_span) in enumerate(zip(row_spans, column_spans, strict=True)):
        grid = rows[slice(*row_span)] @ filtered[:, slice(*column_span)]
        if index < len(_HASH_GRIDS):
            grid = np.clip(np.floor(grid + 0.5), 0, 255)  # Pillow's resize yields 8-bit pixels
        else:  # float32 sums of equal pixels differ in the last bits: make flat areas tie
            grid = np.round(grid, 3)
        grids.append(_oriented(grid.astype(np.float64), orientation))
    return grids


def _product_on_this_thread(
    left: npt.NDArray[np.float32], right: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """left @ right, in row chunks small enough for OpenBLAS to keep on the calling thread.

    Bigger products wake its thread pool, which in worker processes that already share every
    core costs more than it saves.
    """
    rows_per_chunk = max(1, _SINGLE_THREAD_PRODUCT // max(1, left.shape[1] * right.shape[1]))
    out = np.empty((left.shape[0], right.shape[1]), dtype=np.float32)
    for start in range(0, left.shape[0], rows_per_chunk):
        np.matmul(
            left[start : start + rows_per_chunk], right, out=out[start : start + rows_per_chunk]
        )
    return out


@functools.lru_cache(maxsize=256)
def _filter_bank(
    full: int, block: int, blocks: int, displayed_width: bool
) -> tuple[npt.NDArray[np.float32], tuple[tuple[int, int], ...]]:
    """The hash filters along one stored axis, stacked, and the rows of each in the stack.

    Rows are weights over the reduced image's blocks: ahash's, dhash's and phash's Lanczos
    resizes of the full axis (`full` pixels), then whash's 8 equal areas. `displayed_width`
    says whether this stored axis is displayed horizontally (orientations 5-8 swap axes).
    """
    outs = [size[0 if displayed_width else 1] for size in _HASH_GRIDS]
    matrices = [_lanczos_matrix(full, out, block, blocks) for out in outs]
    matrices.append(_box_matrix(full, _HASH_SIZE, block, blocks))
    spans, start = [], 0
    for matrix in matrices:
        spans.append((start, start + matrix.shape[0]))
        start += matrix.shape[0]
    stacked = np.vstack(matrices).astype(np.float32)
    stacked.flags.writeable = False
    return stacked, tuple(spans)


def _lanczos_matrix(full: int, out: int, block: int, blocks: int) -> FloatArray:
    """Pillow's Lanczos-3 weights for resizing `full` pixels to `out`, summed per block.

    Same kernel, support and centres as Pillow's precompute_coeffs; each block's weight is its
    centre's times its length (the kernel is smooth across a block), then rows sum to 1.
    """
    scale = full / out
    support_scale = max(scale, 1.0)
    starts = np.arange(blocks, dtype=np.float64) * block
    lengths = np.clip(np.minimum(starts + block, full) - starts, 1, None)
    centres = starts + lengths / 2
    targets = (np.arange(out, dtype=np.float64) + 0.5) * scale
    x = (centres[None, :] - targets[:, None]) / support_scale
    weights = np.where((x >= -3) & (x < 3), np.sinc(x) * np.sinc(x / 3), 0.0) * lengths[None, :]
    return _normalised_rows(weights)


def _box_matrix(full: int, out: int, block: int, blocks: int) -> FloatArray:
    """Area weights: how much of each of `out` equal cells of the axis each block covers."""
    starts = np.arange(blocks, dtype=np.float64) * block
    ends = np.minimum(starts + block, full)
    edges = np.arange(out + 1, dtype=np.float64) * (full / out)
    overlap = np.minimum(ends[None, :], edges[1:, None]) - np.maximum(
        starts[None, :], edges[:-1, None]
    )
    return _normalised_rows(np.clip(overlap, 0, None))


def _normalised_rows(weights: FloatArray) -> FloatArray:
    totals = weights.sum(axis=1, keepdims=True)
    totals[totals == 0] = 1.0
    normalised: FloatArray = weights / totals
    return normalised


def _phash_bits(grid: FloatArray) -> npt.NDArray[np.bool_]:
    # The same DCT as imagehash.phash, so that flat images tie (exact zeros) the same way.
    low = scipy.fftpack.dct(scipy.fftpack.dct(grid, axis=0), axis=1)[:_HASH_SIZE, :_HASH_SIZE]
    bits: npt.NDArray[np.bool_] = low > np.median(low)
    return bits


def _colorhash_bits(working: Image.Image) -> npt.NDArray[np.bool_]:
    """imagehash.colorhash (binbits=3) of a regular sample of the decoded pixels.

    A sample, not a resize: averaging neighbours would change saturations and hues.
    """
    rgb = working if working.mode == "RGB" else working.convert("RGB")  # alpha ignored
    step = max(1, round(min(rgb.size) / COLORHASH_SAMPLE_SIDE))
    if step > 1:
        rgb = rgb.resize((rgb.width // step, rgb.height // step), Image.Resampling.NEAREST)
    intensity = np.asarray(rgb.convert("L"))
    hsv = np.asarray(rgb.convert("HSV"))
    hue, saturation = hsv[..., 0], hsv[..., 1]
    black = intensity < 256 // 8
    low_saturation = saturation < 256 // 3
    colours = ~black & ~low_saturation
    faint = colours & (saturation < 256 * 2 // 3)
    bright = colours & (saturation > 256 * 2 // 3)
    hue_bins = np.minimum(hue.astype(np.int32) * 2 // 85, 5)  # np.histogram, linspace(0, 255, 7)
    faint_counts = np.bincount(hue_bins[faint], minlength=6)
    bright_counts = np.bincount(hue_bins[bright], minlength=6)
    coloured = max(1, int(colours.sum()))
    fractions = [float(black.mean()), float((~black & low_saturation).mean())]
    fractions += [int(count) / coloured for count in (*faint_counts, *bright_counts)]
    values = [min(7, int(fraction * 8)) for fraction in fractions]
    return np.array([[value >= 4, value // 2 % 4 > 0, value % 2 > 0] for value in values])


def _oriented(values: FloatArray, orientation: int) -> FloatArray:
    """A stored-orientation array as displayed (numpy twin of _ORIENTATION_TRANSPOSE)."""
    return _ARRAY_ORIENTATION.get(orientation, _identity)(values)


def _identity(values: FloatArray) -> FloatArray:
    return values


_ARRAY_ORIENTATION: Final[dict[int, Callable[[FloatArray], FloatArray]]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.T,
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].T,
    8: lambda a: np.rot90(a, 1),
}


def _bits_to_hex(bits: npt.NDArray[np.bool_]) -> str:
    """imagehash's hex form of a bit array (row-major, most significant bit first)."""
    flat = np.asarray(bits, dtype=bool).ravel()
    width = -(-flat.size // 4)
    padded = np.concatenate([np.zeros((-flat.size) % 8, dtype=bool), flat])
    return np.packbits(padded).tobytes().hex()[-width:]


# --------------------------------------------------------------------------- EXIF


@dataclass(frozen=True, slots=True)
class _ExifTags:
    """The tags of each IFD, by number, as Pillow decoded them."""

    ifd0: dict[int, Any]
    exif: dict[int, Any]
    gps: dict[int, Any]
    interop: dict[int, Any]


def _read_exif_tags(exif: Image.Exif | None, *, gps: bool) -> _ExifTags | None:
    """Every tag Pillow can decode (a TIFF's sub-IFDs are read from the open file)."""
    if exif is None:
        return None
    return _ExifTags(
        ifd0=_ifd_values(exif),
        exif=_sub_ifd_values(exif, _EXIF_IFD),
        gps=_sub_ifd_values(exif, _GPS_IFD) if gps else {},
        interop=_sub_ifd_values(exif, _INTEROP_IFD),
    )


def _exif_section(tags: _ExifTags | None, *, gps: bool) -> dict[str, Any] | None:
    """The `exif` section: a few parsed fields plus every tag by name (best effort)."""
    if tags is None:
        return None
    groups = (
        ("", tags.ifd0, ExifTags.TAGS),
        ("Exif.", tags.exif, ExifTags.TAGS),
        ("GPS.", tags.gps, ExifTags.GPSTAGS),
        ("Interop.", tags.interop, _INTEROP_TAGS),
    )
    raw = _raw_tags(groups)
    if not raw:
        return None
    merged = {**tags.ifd0, **tags.exif}
    return {
        "make": _clean_text(merged.get(0x010F)),
        "model": _clean_text(merged.get(0x0110)),
        "lens": _clean_text(merged.get(0xA434)),
        "datetime_original": _exif_datetime(merged.get(0x9003))
        or _exif_datetime(merged.get(0x9004)),
        "exposure_time": _exposure_text(merged.get(0x829A)),
        "f_number": _rounded(merged.get(0x829D), 2),
        "iso": _iso_of(merged.get(0x8827)),
        "focal_length_mm": _rounded(merged.get(0x920A), 2),
        "gps": _gps_position(tags.gps) if gps else None,
        "raw": raw,
    }


def _ifd_values(mapping: Mapping[int, Any]) -> dict[int, Any]:
    """Every tag that decodes; a broken entry is skipped, never fatal."""
    values: dict[int, Any] = {}
    try:
        tags = list(mapping.keys())
    except Exception:  # broken EXIF: keep what parsed
        return values
    for tag in tags:
        try:
            values[int(tag)] = mapping[tag]
        except Exception:  # noqa: S112 - one unreadable tag must not lose the others
            continue
    return values


def _sub_ifd_values(exif: Image.Exif, tag: int) -> dict[int, Any]:
    try:
        sub_ifd = exif.get_ifd(tag)
    except Exception:  # broken sub-IFD pointer: keep what parsed
        return {}
    return _ifd_values(sub_ifd) if isinstance(sub_ifd, Mapping) else {}


def _raw_tags(
    groups: tuple[tuple[str, dict[int, Any], Mapping[int, str]], ...],
) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for prefix, values, names in groups:
        for tag, value in values.items():
            if tag in _STRUCTURE_TAGS:
                continue
            name = names.get(tag) or f"Tag0x{tag:04X}"
            key = name if name not in raw else f"{prefix}{name}"
            raw[key] = _json_safe(_user_comment(value) if tag == _USER_COMMENT else value)
    return raw


def _json_safe(value: Any, depth: int = 0) -> Any:
    """EXIF values made JSON-safe: rationals to floats, bytes to text or hex, all clipped."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float | TiffImagePlugin.IFDRational):
        return _rational_value(value)
    if isinstance(value, bytes):
        return _bytes_text(value)
    if isinstance(value, str):
        return _clip_text(value.replace("\x00", "").strip())
    if depth < 3 and isinstance(value, tuple | list):
        return [_json_safe(item, depth + 1) for item in value[:_RAW_LIST_LIMIT]]
    if depth < 3 and isinstance(value, Mapping):
        return {str(key): _json_safe(item, depth + 1) for key, item in list(value.items())[:64]}
    return _clip_text(str(value))


def _rational_value(value: float | TiffImagePlugin.IFDRational) -> float | None:
    if isinstance(value, TiffImagePlugin.IFDRational) and value.denominator == 0:
        return None
    return _finite_float(value)


def _bytes_text(value: bytes) -> str:
    """Printable ASCII as text (trailing NULs dropped), anything else as clipped hex."""
    trimmed = value.rstrip(b"\x00")
    if trimmed and all(32 <= byte < 127 or byte in b"\t\n\r" for byte in trimmed):
        return _clip_text(trimmed.decode("ascii").strip())
    head = value[:_RAW_BYTES_LIMIT].hex()
    return head + ("…" if len(value) > _RAW_BYTES_LIMIT else "")


def _user_comment(value: Any) -> Any:
    """UserComment (0x9286) starts with an 8-byte character-code prefix (EXIF 2.32 §4.6.5)."""
    if not isinstance(value, bytes) or len(value) < 8:
        return value
    prefix, text = value[:8], value[8:]
    encoding = _USER_COMMENT_CODES.get(prefix.rstrip(b"\x00"))
    if encoding is None:
        return value
    try:
        return text.decode(encoding).replace("\x00", "").strip()
    except UnicodeDecodeError:
        return value


def _clip_text(text: str) -> str:
    return text if len(text) <= _RAW_STR_LIMIT else text[: _RAW_STR_LIMIT - 1] + "…"


def _clean_text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = _bytes_text(value)
    if not isinstance(value, str):
        return None
    text = _clip_text(value.replace("\x00", "").strip())
    return text or None


def _exif_datetime(value: Any) -> str | None:
    text = _clean_text(value)
    match = _DATETIME_RE.match(text or "")
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        moment = dt.datetime(year, month, day, hour, minute, second)  # EXIF: camera local time
    except ValueError:
        return None
    return moment.isoformat(timespec="seconds")


def _exposure_text(value: Any) -> str | None:
    """Exposure as photographers write it: "1/125" below a quarter second, else "0.5", "2"."""
    seconds = _scalar_float(value)
    if seconds is None or seconds <= 0:
        return None
    if seconds < 0.25001:
        return f"1/{round(1 / seconds)}"
    return f"{seconds:.1f}".removesuffix(".0")


def _scalar_float(value: Any) -> float | None:
    if isinstance(value, tuple | list):
        value = value[0] if value else None
    if isinstance(value, TiffImagePlugin.IFDRational | float | int) and not isinstance(value, bool):
        return _rational_value(value)
    return None


def _rounded(value: Any, digits: int) -> float | None:
    number = _scalar_float(value)
    if number is None or number <= 0:
        return None
    return round(number, digits)


def _iso_of(value: Any) -> int | None:
    number = _scalar_float(value)
    if number is None or number <= 0:
        return None
    return round(number)


def _gps_position(gps: Mapping[int, Any]) -> dict[str, float | None] | None:
    """Decimal degrees, signed by their references; None without a usable fix."""
    if _clean_text(gps.get(9)) == "V":  # GPSStatus "V": measurement void
        return None
    latitude = _degrees(gps.get(2), _clean_text(gps.get(1)), negative="S", limit=90)
    longitude = _degrees(gps.get(4), _clean_text(gps.get(3)), negative="W", limit=180)
    if latitude is None or longitude is None:
        return None
    altitude = _scalar_float(gps.get(6))
    if altitude is not None and _altitude_below_sea_level(gps.get(5)):
        altitude = -altitude
    return {
        "lat": round(latitude, 7),
        "lon": round(longitude, 7),
        "alt_m": round(altitude, 2) if altitude is not None else None,
    }


def _degrees(value: Any, reference: str | None, *, negative: str, limit: float) -> float | None:
    parts = value if isinstance(value, tuple | list) else (value,)
    numbers = [_scalar_float(part) for part in parts[:3]]
    if not numbers or any(number is None for number in numbers):
        return None
    degrees = sum(number / 60**power for power, number in enumerate(numbers) if number is not None)
    if reference is not None and reference.upper().startswith(negative):
        degrees = -abs(degrees)
    return degrees if abs(degrees) <= limit else None


def _altitude_below_sea_level(reference: Any) -> bool:
    if isinstance(reference, bytes):
        return reference[:1] == b"\x01"
    return isinstance(reference, int) and reference == 1
