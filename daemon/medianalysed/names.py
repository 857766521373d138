"""The one place where file names cross between the OS and our text forms (SPEC §1).

A Linux name is any bytes but `/` and NUL. The forms a name takes here:

- **OS form**: `bytes`, exactly as the kernel has them; what `os.open(..., dir_fd=)` and
  `os.scandir` get from our code, so nothing depends on the locale's filesystem encoding.
- **key**: `str`, the bytes decoded as UTF-8 with `surrogateescape` (each undecodable byte
  becomes a lone surrogate U+DC80..U+DCFF). Keys are what the daemon passes around, sorts
  and stores: bytes and keys convert both ways without loss.
- **display** (`path` in every output): valid UTF-8 text, each undecodable byte written
  `\\xNN`; with **path_bytes** (base64 of the exact bytes) beside it only when that happened,
  so `(path, path_bytes)` still tells every two names apart.
- **storage key**: what diskcache (SQLite) can hold: the key itself when it is valid text,
  else its exact bytes (a BLOB key; SQLite never compares a BLOB equal to a TEXT).
- **log text**: display form with control characters escaped, so a name never forges a line.
- **batch id / folder name**: printable, single-line, at most NAME_MAX bytes with room for the
  `-2`, `-3`... suffix; shortened (never skipped) when too long.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterator
from typing import Final

ENCODING: Final = "utf-8"
NAME_MAX: Final = 255  # bytes in one path component on Linux filesystems

_SURROGATE = re.compile("[\udc80-\udcff]")
# C0 controls, DEL, C1 controls and the Unicode line/paragraph separators: anything a
# terminal or a log reader may take as a line break or an escape sequence.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_FALLBACK_ID: Final = "batch"


# --- bytes and keys --------------------------------------------------------------------------


def from_bytes(raw: bytes) -> str:
    """The key of an OS name (or a relative path of names joined by `/`)."""
    return raw.decode(ENCODING, "surrogateescape")


def to_bytes(key: str) -> bytes:
    """The exact OS bytes of a key."""
    return key.encode(ENCODING, "surrogateescape")


def from_os(name: str | bytes) -> str:
    """The key of a name as Python's os module returned it (bytes, or str in the fs encoding)."""
    return from_bytes(name if isinstance(name, bytes) else os.fsencode(name))


def is_clean(key: str) -> bool:
    """Whether the key is valid text (its bytes decoded as UTF-8 without any escape)."""
    return _SURROGATE.search(key) is None


# --- display and records ---------------------------------------------------------------------


def display(key: str) -> str:
    """The `path` form: valid UTF-8 text, each undecodable byte written as `\\xNN`."""
    if is_clean(key):
        return key
    return _SURROGATE.sub(lambda m: f"\\x{ord(m[0]) - 0xDC00:02x}", key)


def is_exact(key: str) -> bool:
    """Whether `record_path` shows the key as it is: valid text with no literal `\\x`."""
    return is_clean(key) and "\\x" not in key


def record_path(key: str) -> str:
    """The `path` form of a record: `display`, made one-to-one.

    A literal name `\\xff` (four characters) and the one byte 0xff would both display as
    `\\xff`. So a name that is not exact has every literal backslash written `\\x5c` as well:
    in such a path each backslash starts an escape, and an exact path never holds `\\x`, so
    no two names share a `path` (and the inexact ones carry `path_bytes`).
    """
    if is_exact(key):
        return key
    return display(key.replace("\\", "\\x5c"))


def path_bytes(key: str) -> str | None:
    """The `path_bytes` field: base64 of the exact bytes, or None when `record_path` is exact."""
    if is_exact(key):
        return None
    return base64.b64encode(to_bytes(key)).decode("ascii")


def path_fields(key: str) -> dict[str, str]:
    """`{"path": ...}` plus `"path_bytes"` when needed: how every output names a file."""
    fields = {"path": record_path(key)}
    exact = path_bytes(key)
    if exact is not None:
        fields["path_bytes"] = exact
    return fields


def key_of_record(path: str, exact: str | None) -> str:
    """The key a record's `path` and `path_bytes` stand for (the inverse of `path_fields`).

    Raises:
        ValueError: `exact` is not base64.
    """
    if exact is None:
        return path
    try:
        return from_bytes(base64.b64decode(exact, validate=True))
    except binascii.Error as exc:
        raise ValueError(f"path_bytes is not base64: {exact!r}") from exc


def log_text(text: str) -> str:
    """Text safe on one log line: undecodable bytes as `\\xNN`, control characters escaped."""
    shown = display(text)
    if _CONTROL.search(shown) is None:
        return shown
    return _CONTROL.sub(_escape_control, shown)


def _escape_control(match: re.Match[str]) -> str:
    char = match[0]
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


# --- storage ---------------------------------------------------------------------------------


def storage_key(key: str) -> str | bytes:
    """A diskcache key for `key`: unchanged when it is valid text, else its exact bytes.

    Valid-text keys are stored exactly as before this module existed, so state written by
    earlier versions is found again.
    """
    return key if is_clean(key) else to_bytes(key)


def storable_json(value: object) -> str:
    """JSON text SQLite accepts: non-ASCII kept as is, unless a key's lone surrogate is in it.

    A lone surrogate cannot be encoded as UTF-8; `ensure_ascii` writes it as a `\\udcNN`
    escape, which `json.loads` turns back into the same key.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if is_clean(text):
        return text
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


# --- batch ids and folder names --------------------------------------------------------------


def name_max(directory: str | bytes | os.PathLike[str]) -> int:
    """The longest file name `directory`'s filesystem takes (NAME_MAX when it cannot say)."""
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return NAME_MAX
    return limit if limit > 0 else NAME_MAX


def safe_folder_name(key: str) -> str:
    """A printable, single-line folder name for a key: `log_text`, never empty, `.` or `..`."""
    text = log_text(key).replace("/", "_")
    return _FALLBACK_ID if text in {"", ".", ".."} else text


def shortened(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` of UTF-8, never inside a character or a `\\xNN`."""
    if len(text.encode(ENCODING)) <= max_bytes:
        return text
    kept: list[str] = []
    used = 0
    for unit in _display_units(text):
        size = len(unit.encode(ENCODING))
        if used + size > max_bytes:
            break
        kept.append(unit)
        used += size
    return "".join(kept)


def _display_units(text: str) -> Iterator[str]:
    """Characters, with each `\\xNN` / `\\uNNNN` escape (and `\\\\`) kept as one unit."""
    index = 0
    while index < len(text):
        if text[index] == "\\" and index + 1 < len(text):
            width = {"x": 4, "u": 6}.get(text[index + 1], 2)
            yield text[index : index + width]
            index += width
        else:
            yield text[index]
            index += 1


def suffixed_names(key: str, max_bytes: int = NAME_MAX) -> Iterator[str]:
    """Folder names to try, in order, for a batch of this name: `name`, `name-2`, `name-3`...

    Each fits in `max_bytes`: a name too long for its suffix is shortened first (a 255-byte
    name dropped twice becomes `<first 253 bytes>-2`), so no candidate is ever skipped.
    The caller checks which candidate is free.
    """
    base = safe_folder_name(key)
    yield shortened(base, max_bytes)
    suffix = 2
    while True:
        tail = f"-{suffix}"
        yield shortened(base, max_bytes - len(tail)) + tail
        suffix += 1
