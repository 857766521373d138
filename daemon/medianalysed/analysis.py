"""Pure single-image analysis (SPEC §3, §4): file facts, header metadata, then the sections.

Everything here is a top-level function of plain arguments, so it runs unchanged inside pebble
worker processes; nothing imports pykka, watchdog, diskcache or threads.

Speed comes from doing ONE reduced decode per image (decoding.py). Metadata (EXIF, size, ICC,
DPI) comes from the header, orientation is applied to the small results only, and the five
hashes (hashes.py) and the colours (colours.py) all come from that one small image; EXIF tags
are read by exif.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import io
import mimetypes
import os
import re
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Final

import pillow_heif
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from medianalysed.colours import colors_section
from medianalysed.decoding import (
    SWAPS_AXES,
    UnsupportedVariantError,
    decode_working,
    pixel_digest,
    reduce_for_hashes,
)
from medianalysed.errors import AnalysisError, ErrorCode
from medianalysed.exif import exif_section, finite_float, read_exif_tags
from medianalysed.frames import FrameCount, count_frames
from medianalysed.hashes import hashes
from medianalysed.models import AnalysisSettings
from medianalysed.thumbnails import thumbnail

try:
    from PIL import ImageCms
except ImportError:  # Pillow built without littlecms: icc_profile is then null
    ImageCms = None  # type: ignore[assignment]

# HEIC/HEIF; Pillow >= 11.3 decodes AVIF itself, and pillow-heif >= 1.0 no longer does.
pillow_heif.register_heif_opener()

IN_MEMORY_LIMIT: Final = 64 * 1024 * 1024  # files up to this size are read once and kept

_READ_CHUNK: Final = 1024 * 1024

_EXIF_ORIENTATION: Final = 0x0112

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
class OpenedFile:
    """A file the caller opened (the worker: safely, relative to its batch); read through it only.

    `name` is the file's name, for its extension; it is never opened again.
    """

    handle: BinaryIO
    name: str


# A trusted path (tests, tools) or a file opened by the caller.
ImageSource = Path | OpenedFile


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What the file itself says, before any decoding."""

    size: int
    sha256: str
    mtime: str  # ISO 8601 UTC with Z
    data: bytes | None  # the whole file when size <= IN_MEMORY_LIMIT, else None


def read_file_facts(source: ImageSource, settings: AnalysisSettings) -> FileFacts:
    """Stat, check the size limit, read (when small enough) and hash one file.

    Raises:
        AnalysisError: TOO_LARGE (before reading the content) or IO_ERROR.
    """
    try:
        if isinstance(source, OpenedFile):
            source.handle.seek(0)
            return _read_facts(source.handle, settings)
        with source.open("rb") as handle:
            return _read_facts(handle, settings)
    except OSError as exc:
        raise AnalysisError(ErrorCode.IO_ERROR, _os_error_message("cannot read file", exc)) from exc


def _read_facts(handle: BinaryIO, settings: AnalysisSettings) -> FileFacts:
    status = os.fstat(handle.fileno())
    if status.st_size > settings.max_file_size:
        raise AnalysisError(
            ErrorCode.TOO_LARGE,
            f"file is {status.st_size} bytes, over max_file_size ({settings.max_file_size} bytes)",
        )
    if status.st_size <= IN_MEMORY_LIMIT:
        data: bytes | None = handle.read()
        assert data is not None
        size = len(data)
        digest = hashlib.sha256(data).hexdigest()
    else:
        data = None
        size, digest = _stream_sha256(handle)
    if size > settings.max_file_size:  # the file grew since fstat
        raise AnalysisError(
            ErrorCode.TOO_LARGE,
            f"file is {size} bytes, over max_file_size ({settings.max_file_size} bytes)",
        )
    return FileFacts(size=size, sha256=digest, mtime=_utc_iso(status.st_mtime), data=data)


def _stream_sha256(handle: BinaryIO) -> tuple[int, str]:
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


def analyse_image(
    source: ImageSource, facts: FileFacts, settings: AnalysisSettings
) -> dict[str, Any]:
    """Analyse one image: `image`, `exif`, `colors`, `hashes`, `pixel_digest` and `thumbnail`.

    Not thread-safe: for the duration of the call it sets Pillow's global MAX_IMAGE_PIXELS and
    the warnings filters, so run one analysis at a time per process (as pebble workers do).

    Raises:
        AnalysisError: UNSUPPORTED_FORMAT, CORRUPT, DECOMPRESSION_BOMB, TOO_SMALL or IO_ERROR.
    """
    with _pillow_limits(settings.max_pixels):
        with _pillow_errors(source, facts.data), _open_image(source, facts.data) as image:
            header = _read_header(image)
            _check_limits(header, settings)
            # Before decoding: a TIFF's sub-IFDs are read from its file, which loading may close.
            tags = read_exif_tags(header.exif, gps=settings.gps)
            working = decode_working(image, vips=settings.vips)
            late = _with_late_exif(header, image)
            if late is not header:
                _check_limits(late, settings)
                header = late
                tags = read_exif_tags(header.exif, gps=settings.gps)
            frames = count_frames(image, facts.size)  # last: it seeks away from the first frame
        reduced = reduce_for_hashes(working)
        return {
            "image": header.section(has_alpha=working.has_alpha, frames=frames),
            "exif": exif_section(tags, gps=settings.gps),
            "colors": colors_section(reduced.image, settings.dominant_colors),
            "hashes": hashes(working, reduced, header.applied_orientation),
            "pixel_digest": pixel_digest(working),
            "thumbnail": thumbnail(reduced.image, header.applied_orientation),
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


# --------------------------------------------------------------------------- opening and errors


@contextmanager
def _open_image(source: ImageSource, data: bytes | None) -> Iterator[Image.Image]:
    readable: Path | BinaryIO
    if data is not None:
        readable = io.BytesIO(data)
    elif isinstance(source, OpenedFile):
        source.handle.seek(0)
        readable = source.handle  # Pillow leaves a file object it was given open
    else:
        readable = source
    with Image.open(readable) as image:
        yield image


@contextmanager
def _pillow_errors(source: ImageSource, data: bytes | None) -> Iterator[None]:
    """Translate what Pillow raises on bad input into AnalysisError codes."""
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise AnalysisError(ErrorCode.DECOMPRESSION_BOMB, _bomb_message(exc)) from exc
    except UnidentifiedImageError as exc:
        if _claims_image_format(source, data):
            raise AnalysisError(
                ErrorCode.CORRUPT, "claims an image format but Pillow cannot identify it"
            ) from exc
        raise AnalysisError(ErrorCode.UNSUPPORTED_FORMAT, "not an image format we decode") from exc
    except NotImplementedError as exc:
        raise AnalysisError(
            ErrorCode.UNSUPPORTED_FORMAT, f"image variant not supported: {exc}"
        ) from exc
    except UnsupportedVariantError as exc:
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
    except MemoryError:
        raise  # the worker reports it against max_worker_memory
    except Exception as exc:
        if _raised_by_a_decoder(exc):  # e.g. RuntimeError from the AVIF and HEIF decoders
            raise AnalysisError(ErrorCode.CORRUPT, _decode_failure_message(exc)) from exc
        raise


_DECODER_MODULES: Final = ("PIL.", "pillow_heif.")


def _raised_by_a_decoder(exc: BaseException) -> bool:
    """Whether the exception comes from inside Pillow or pillow-heif (not from our code)."""
    traceback = exc.__traceback__
    if traceback is None:
        return False
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return str(traceback.tb_frame.f_globals.get("__name__", "")).startswith(_DECODER_MODULES)


def _bomb_message(exc: Exception) -> str:
    match = re.search(r"\((\d+) pixels\)", str(exc))
    if match:
        return f"image has {match.group(1)} pixels, over max_pixels ({Image.MAX_IMAGE_PIXELS})"
    return f"decompression bomb: {exc}"


def _decode_failure_message(exc: BaseException) -> str:
    return f"cannot decode: {type(exc).__name__}: {exc}"


def _claims_image_format(source: ImageSource, data: bytes | None) -> bool:
    """Whether the file's signature or its name says it is an image format we know."""
    if PurePosixPath(source.name).suffix.lower() in _image_extensions():
        return True
    head = data[:32] if data is not None else _read_head(source)
    if head.startswith(_SIGNATURES):
        return True
    brand = head[8:12] if head[4:8] == b"ftyp" else b""
    return brand in _ISO_BMFF_BRANDS or brand in _ISO_BMFF_BRANDS_AVIF


@functools.cache
def _image_extensions() -> frozenset[str]:
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def _read_head(source: ImageSource) -> bytes:
    try:
        if isinstance(source, OpenedFile):
            return os.pread(source.handle.fileno(), 32, 0)
        with source.open("rb") as handle:
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
    icc_profile: str | None
    dpi: list[float] | None
    exif: Image.Exif | None

    @property
    def displayed_size(self) -> tuple[int, int]:
        width, height = self.stored_size
        if self.applied_orientation in SWAPS_AXES:
            return height, width
        return width, height

    def section(self, *, has_alpha: bool, frames: FrameCount) -> dict[str, Any]:
        """The `image` section of the record."""
        width, height = self.displayed_size
        return {
            "format": self.format,
            "mime": self.mime,
            "width": width,
            "height": height,
            "mode": self.mode,
            "orientation": self.orientation,
            "frames": frames.frames,
            "frames_capped": frames.capped,
            "animated": frames.frames > 1,
            "has_alpha": has_alpha,
            "icc_profile": self.icc_profile,
            "dpi": self.dpi,
        }


def _read_header(image: Image.Image) -> _Header:
    exif = _exif_before_decode(image)
    reported, applied = _orientations(image, exif)
    fmt = image.format or "UNKNOWN"
    return _Header(
        format=fmt,
        mime=_mime_of(fmt),
        mode=image.mode,
        stored_size=image.size,
        orientation=reported,
        applied_orientation=applied,
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
        number = finite_float(item)
        if number is None or number <= 0:
            return None
        numbers.append(_compact_number(number))
    return numbers


def _compact_number(number: float) -> float:
    """Integral floats as ints (72, not 72.0), others rounded to 2 decimals."""
    rounded = round(number, 2)
    return int(rounded) if rounded.is_integer() else rounded
