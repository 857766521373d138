"""A batch's `urls.txt`: one entry per line, whatever the file holds.

Every line that is neither blank nor a `#` comment becomes exactly one entry: a pending
remote image for a well-formed http(s) URL, else a BAD_REQUEST record saying what is wrong
with the line. Lines are split on "\\n" only (a "\\r" before it is dropped), so the line
number in `urls.txt#L0003` is the one an editor shows. The file is read up to
`MAX_URLS_BYTES`; the lines past the cap become one BAD_REQUEST record, so nothing is lost
silently. A `urls.txt` that is a symbolic link or not a regular file is one REFUSED record.

Paths: a URL entry is `urls.txt#L<line>`, unless a local file of the batch has that very
name. The local file keeps its literal path, and the URL entry gets `urls.txt#L<line>/`
instead: enumerated local paths are files, so none ends in "/", and the two can never share
a record or a state key.

What is written down about a URL (records, messages) has its userinfo stripped; the URL
with its credentials stays in the state database only, for the download itself.
"""

from __future__ import annotations

import functools
import heapq
import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from medianalysed.controlfiles import ControlFileError, read_capped
from medianalysed.errors import AnalysisError, ErrorCode, clip_message
from medianalysed.models import ImageStatus
from medianalysed.outcomes import ImageError
from medianalysed.redaction import strip_userinfo
from medianalysed.state import ImageRecord

URLS_FILE: Final = "urls.txt"
URL_PATH_PREFIX: Final = "urls.txt#L"
MAX_URLS_BYTES: Final = 8 * 1024 * 1024  # ~100,000 URLs; all are held at enumeration
MAX_URL_CHARS: Final = 8192
SHOWN_URL_CHARS: Final = 500  # how much of a bad line its record keeps, as `source_url`

Entry = tuple[str, ImageRecord | None]

logger = logging.getLogger(__name__)

_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def parse_url(text: str) -> str:
    """`text` stripped, if it is an http(s) URL httpx can fetch; else BAD_REQUEST with why.

    The messages never quote the URL (it may hold a token); the caller shows it stripped.
    """
    url = text.strip()
    if len(url) > MAX_URL_CHARS:
        raise _bad(f"the URL is longer than {MAX_URL_CHARS} characters")
    if _FORBIDDEN.search(url):
        raise _bad("the URL contains a space or a control character")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise _bad(f"not a valid URL ({_reason(exc)})") from exc
    if parts.scheme not in {"http", "https"}:
        raise _bad("not an http(s) URL")
    if not host:
        raise _bad("the URL has no host")
    if port == 0:
        raise _bad("port 0 is not a port to connect to")
    _check_host(host)
    return url


def shown_url(url: str) -> str:
    """What a record or message may show of `url`: no userinfo, clipped."""
    return strip_userinfo(url)[:SHOWN_URL_CHARS]


def url_entries(data: bytes, *, truncated: bool, local_names: Iterable[str] = ()) -> list[Entry]:
    """The entries of a `urls.txt` whose (first) bytes are `data`, in path order.

    `local_names` are the names at the batch's top level, which URL entries must not take.
    """
    lines = data.split(b"\n")
    if truncated:
        lines.pop()  # cut by the cap, and reported with the rest of the file
    elif lines and not lines[-1]:
        lines.pop()
    numbers = len(lines) + (1 if truncated else 0)
    width = max(4, len(str(numbers)))
    taken = {name for name in local_names if name.startswith(URL_PATH_PREFIX)}

    def path_for(number: int) -> str:
        path = f"{URL_PATH_PREFIX}{number:0{width}d}"
        return path + "/" if path in taken else path

    entries: list[Entry] = []
    for number, raw in enumerate(lines, start=1):
        entry = _line_entry(path_for(number), raw.removesuffix(b"\r"), first=number == 1)
        if entry is not None:
            entries.append(entry)
    if truncated:
        path = path_for(numbers)
        message = (
            f"urls.txt is larger than {MAX_URLS_BYTES // (1024 * 1024)} MB: this line and "
            "the ones after it were not read; split the list across batches"
        )
        entries.append((path, _failed(path, ErrorCode.BAD_REQUEST, message, None)))
    entries.sort(key=lambda entry: entry[0])
    return entries


def read_url_entries(source: Path) -> list[Entry]:
    """The entries of `source/urls.txt` (none if the batch has no such file)."""
    if not source.is_dir():
        return []
    urls = source / URLS_FILE
    try:
        read = read_capped(urls, MAX_URLS_BYTES)
    except ControlFileError as exc:
        if urls.is_dir() and not urls.is_symlink():
            return []  # a folder of that name is a group, walked like any other
        message = f"{exc}; its URLs were not read"
        return [(URLS_FILE, _failed(URLS_FILE, ErrorCode.REFUSED, message, None))]
    if read is None:
        return []
    return url_entries(read.data, truncated=read.truncated, local_names=_top_names(source))


def entries_with_urls(source: Path, local: Iterator[Entry]) -> Iterator[Entry]:
    """The batch's `local` entries (sorted, streamed) with its URL entries merged in.

    The URL lines (read at once) are merged, so the stored path list is in results order
    and nothing has to sort 100,000 paths. A URL path equal to a local one (a file created
    after the top level was listed) moves to its "/" form, so paths stay unique.
    """
    remote = read_url_entries(source)
    if not remote:
        yield from local
        return
    last_local: str | None = None
    tagged_local = ((path, 0, record) for path, record in local)
    tagged_remote = ((path, 1, record) for path, record in remote)
    for path, origin, record in heapq.merge(tagged_local, tagged_remote, key=lambda t: t[:2]):
        if origin == 0:
            last_local = path
            yield path, record
        elif path == last_local:
            logger.warning("%s appeared beside urls.txt; the URL entry is %s/", path, path)
            assert record is not None
            yield path + "/", _with_path(record, path + "/")
        else:
            yield path, record


def _line_entry(path: str, raw: bytes, *, first: bool) -> Entry | None:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace").strip()
        return path, _failed(path, ErrorCode.BAD_REQUEST, "the line is not valid UTF-8", text)
    text = line.removeprefix("\ufeff").strip() if first else line.strip()
    if not text or text.startswith("#"):
        return None
    try:
        url = parse_url(text)
    except AnalysisError as exc:
        return path, _failed(path, exc.code, exc.message, text)
    return path, ImageRecord(path=path, source_url=url)


def _failed(path: str, code: ErrorCode, message: str, text: str | None) -> ImageRecord:
    error = ImageError.of(code, message).to_json()
    shown = None if text is None else shown_url(text)
    return ImageRecord(path=path, status=ImageStatus.FAILED, error=error, source_url=shown)


def _with_path(record: ImageRecord, path: str) -> ImageRecord:
    from dataclasses import replace  # noqa: PLC0415

    return replace(record, path=path)


def _top_names(source: Path) -> list[str]:
    try:
        with os.scandir(source) as listing:
            return [entry.name for entry in listing if entry.name.startswith(URL_PATH_PREFIX)]
    except OSError:
        return []  # the walk reports an unreadable folder; the merge still keeps paths unique


def _check_host(host: str) -> None:
    if not _valid_host(host):
        raise _bad("the host name is not a valid domain name")


@functools.lru_cache(maxsize=4096)  # a list's URLs mostly share a few hosts
def _valid_host(host: str) -> bool:
    if ":" in host or host.replace(".", "").isdigit():
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return ":" not in host  # "1.2.3" is a (numeric) name to the resolver
        return True
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_host.lower().removesuffix(".").split(".")
    return len(ascii_host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def _reason(exc: ValueError) -> str:
    # urlsplit's own words ("Invalid IPv6 URL", "Port out of range 0-65535"), host-free.
    text = str(exc)
    return text if len(text) < 60 and "'" not in text else "cannot be parsed"


def _bad(message: str) -> AnalysisError:
    return AnalysisError(ErrorCode.BAD_REQUEST, clip_message(message))
