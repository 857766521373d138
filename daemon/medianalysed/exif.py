"""The `exif` section: every tag Pillow decodes, a few parsed fields, GPS (SPEC §4)."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from PIL import ExifTags, Image, TiffImagePlugin

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


@dataclass(frozen=True, slots=True)
class ExifTagValues:
    """The tags of each IFD, by number, as Pillow decoded them."""

    ifd0: dict[int, Any]
    exif: dict[int, Any]
    gps: dict[int, Any]
    interop: dict[int, Any]


def read_exif_tags(exif: Image.Exif | None, *, gps: bool) -> ExifTagValues | None:
    """Every tag Pillow can decode (a TIFF's sub-IFDs are read from the open file)."""
    if exif is None:
        return None
    return ExifTagValues(
        ifd0=_ifd_values(exif),
        exif=_sub_ifd_values(exif, _EXIF_IFD),
        gps=_sub_ifd_values(exif, _GPS_IFD) if gps else {},
        interop=_sub_ifd_values(exif, _INTEROP_IFD),
    )


def exif_section(tags: ExifTagValues | None, *, gps: bool) -> dict[str, Any] | None:
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
    return finite_float(value)


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


def finite_float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) else None
