"""Downloads of remote images listed in a batch's `urls.txt`, with httpx.

- Every connection goes through `pinning`: the address is checked (loopback, private,
  link-local and other non-public targets are REFUSED unless `[downloads]
  allow_private_networks = true`) and that very address is connected to. Redirects are
  followed by hand, up to `MAX_REDIRECTS`, each hop checked the same way.
- One download, redirects included, gets `[downloads] timeout_seconds` in total.
- The body is decoded (gzip, deflate) in bounded steps (`contentcoding`), so the size cap
  also stops a decompression bomb.
- Every failure, whatever raised it, becomes an `AnalysisError` with the SPEC §3 code; the
  messages show URLs without their userinfo.
- Downloads run on a small pool of threads (`submit`), never on an actor's thread; the
  callback receives the outcome, as the pebble future's does for analyses.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urljoin

import httpx

from medianalysed import __version__
from medianalysed.config import DownloadsConfig
from medianalysed.contentcoding import ACCEPT_ENCODING, BoundedDecoder, ContentCodingError
from medianalysed.diskfaults import classified
from medianalysed.errors import AnalysisError, DiskWriteError, ErrorCode
from medianalysed.outcomes import ImageError, error_json
from medianalysed.pinning import (
    AddressRefusedError,
    LazyClient,
    Resolver,
    pinned_client,
    system_resolver,
    total_deadline,
)
from medianalysed.redaction import strip_userinfo
from medianalysed.urllist import parse_url

MAX_REDIRECTS: Final = 5
_CHUNK: Final = 1 << 16


@dataclass(frozen=True, slots=True)
class DownloadOutcome:
    """How a download ended: `error` (a SPEC §3 error object) is None on success."""

    error: dict[str, Any] | None = None
    interrupted: bool = False  # the daemon is stopping: not an attempt
    disk_fault: DiskWriteError | None = None  # the downloads folder refused: not an attempt


class _InterruptedError(Exception):
    pass


class Downloader:
    """Fetches URLs to files, within the configured total time and size, on its own threads."""

    def __init__(
        self,
        config: DownloadsConfig,
        *,
        threads: int = 4,
        resolver: Resolver = system_resolver,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`transport` replaces the pinned transport (`pinning.pinned_client`): tests only."""
        self._config = config
        self._client = LazyClient(
            lambda: pinned_client(
                timeout_s=config.timeout_seconds,
                allow_private=config.allow_private_networks,
                user_agent=f"medianalysed/{__version__}",
                resolver=resolver,
                transport=transport,
            )
        )
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="download")
        self._closing = threading.Event()

    def close(self) -> None:
        """Stop the downloads in flight (reported interrupted) and release the connections."""
        self._closing.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    def submit(
        self, url: str, destination: Path, on_done: Callable[[DownloadOutcome], None]
    ) -> None:
        """Download in the background; `on_done` is called once, from a download thread.

        Raises:
            RuntimeError: the downloader is closed.
        """
        future = self._executor.submit(self.outcome_of, url, destination)
        future.add_done_callback(lambda done: on_done(_result(done)))

    def outcome_of(self, url: str, destination: Path) -> DownloadOutcome:
        """Download `url` to `destination` and say how it went; never raises."""
        try:
            self.fetch(url, destination)
        except AnalysisError as exc:
            return DownloadOutcome(error=ImageError.raised(exc).to_json())
        except _InterruptedError:
            return DownloadOutcome(interrupted=True)
        except DiskWriteError as failure:
            return DownloadOutcome(disk_fault=failure)
        return DownloadOutcome()

    def fetch(self, url: str, destination: Path) -> None:
        """Download `url` to `destination` (written to a temp name, then renamed).

        Raises:
            AnalysisError: whatever went wrong, with its SPEC §3 code.
            _InterruptedError: `close` was called meanwhile.
            DiskWriteError: the downloads folder refused the file (full, read-only...).
        """
        try:
            with total_deadline(self._config.timeout_seconds):
                self._follow(parse_url(url), destination)
        except (AnalysisError, _InterruptedError, DiskWriteError):
            raise
        except Exception as exc:
            raise _as_analysis_error(exc, self._config.timeout_seconds) from exc

    def _follow(self, url: str, destination: Path) -> None:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            location = self._fetch_once(current, destination)
            if location is None:
                return
            current = parse_url(urljoin(current, location))
        raise AnalysisError(ErrorCode.BAD_REQUEST, f"more than {MAX_REDIRECTS} redirects")

    def _fetch_once(self, url: str, destination: Path) -> str | None:
        headers = {"Accept-Encoding": ACCEPT_ENCODING}
        with self._client.get().stream("GET", url, headers=headers) as response:
            if response.is_redirect:
                return str(response.headers.get("location", ""))
            _raise_for_status(response)
            with classified("downloads", destination.parent):
                self._save(response, destination)
        return None

    def _save(self, response: httpx.Response, destination: Path) -> None:
        limit = self._config.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise AnalysisError(
                ErrorCode.TOO_LARGE, f"remote file is {declared} bytes, over max_bytes {limit}"
            )
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(destination.name + ".part")
        decoder = BoundedDecoder(response.headers.get("content-encoding", ""), _CHUNK)
        received = 0
        try:
            with partial.open("wb") as handle:
                for raw in response.iter_raw(_CHUNK):
                    for chunk in decoder.feed(raw):
                        if self._closing.is_set():
                            raise _InterruptedError
                        received += len(chunk)
                        if received > limit:
                            raise AnalysisError(
                                ErrorCode.TOO_LARGE, f"remote file exceeds max_bytes {limit}"
                            )
                        handle.write(chunk)
                decoder.finish()
            os.replace(partial, destination)
        finally:
            partial.unlink(missing_ok=True)


def _result(future: Future[DownloadOutcome]) -> DownloadOutcome:
    try:
        return future.result()
    except CancelledError:
        return DownloadOutcome(interrupted=True)
    except Exception as exc:  # outcome_of does not raise; a bug still gets a record
        return DownloadOutcome(error=error_json(ErrorCode.INTERNAL, f"{type(exc).__name__}"))


def _as_analysis_error(exc: Exception, timeout_s: float) -> AnalysisError:
    """The SPEC §3 error for anything a download raised."""
    detail = strip_userinfo(str(exc))
    if isinstance(exc, AddressRefusedError):
        return AnalysisError(ErrorCode.REFUSED, str(exc))
    if isinstance(exc, httpx.TimeoutException):
        return AnalysisError(
            ErrorCode.TIMEOUT,
            f"download took longer than [downloads] timeout_seconds ({timeout_s:g} s): "
            f"{type(exc).__name__}",
        )
    if isinstance(exc, ContentCodingError | httpx.DecodingError):
        return AnalysisError(ErrorCode.REMOTE_ERROR, f"the remote's body: {detail}")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL | httpx.LocalProtocolError):
        return AnalysisError(ErrorCode.BAD_REQUEST, f"{type(exc).__name__}: {detail}")
    if isinstance(exc, httpx.HTTPError):
        return AnalysisError(
            ErrorCode.NETWORK_ERROR, f"download failed: {type(exc).__name__}: {detail}"
        )
    if isinstance(exc, UnicodeError | ValueError):
        return AnalysisError(
            ErrorCode.BAD_REQUEST, f"the URL cannot be fetched: {type(exc).__name__}"
        )
    if isinstance(exc, OSError):
        return AnalysisError(ErrorCode.IO_ERROR, f"cannot save download: {exc.strerror or exc}")
    return AnalysisError(ErrorCode.INTERNAL, f"{type(exc).__name__} during download: {detail}")


def _raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    if status == 429:
        raise AnalysisError(ErrorCode.RATE_LIMITED, "remote answered 429 Too Many Requests")
    if status >= 500:
        raise AnalysisError(ErrorCode.REMOTE_ERROR, f"remote answered {status}")
    raise AnalysisError(ErrorCode.BAD_REQUEST, f"remote answered {status}")
