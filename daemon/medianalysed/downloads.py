"""Downloads of remote images listed in a batch's `urls.txt`, with httpx.

Every failure becomes an `AnalysisError` with the SPEC §3 code. Targets on loopback,
private, link-local or otherwise non-public addresses are REFUSED unless
`[downloads] allow_private_networks = true`; redirects are followed by hand so each hop
is checked the same way.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from medianalysed import __version__
from medianalysed.config import DownloadsConfig
from medianalysed.errors import AnalysisError, ErrorCode

MAX_REDIRECTS = 5
_CHUNK = 1 << 16


def parse_url_line(line: str) -> str:
    """Validate one `urls.txt` line; raise BAD_REQUEST with the reason when malformed."""
    url = line.strip()
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise AnalysisError(ErrorCode.BAD_REQUEST, f"not an http(s) URL: {url[:120]!r}")
    if not parts.hostname:
        raise AnalysisError(ErrorCode.BAD_REQUEST, f"URL has no host: {url[:120]!r}")
    return url


def redact_url(url: str) -> str:
    """The URL without any user:password part, for messages and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()


class Downloader:
    """Fetches one URL to a file, within the configured time and size limits."""

    def __init__(self, config: DownloadsConfig) -> None:
        self._config = config
        self._client = httpx.Client(
            timeout=httpx.Timeout(config.timeout_seconds),
            follow_redirects=False,
            headers={"User-Agent": f"medianalysed/{__version__}"},
        )

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    def fetch(self, url: str, destination: Path) -> None:
        """Download `url` to `destination` (written to a temp name, then renamed)."""
        current = parse_url_line(url)
        for _ in range(MAX_REDIRECTS + 1):
            self._check_target(current)
            location = self._fetch_once(current, destination)
            if location is None:
                return
            current = parse_url_line(urljoin(current, location))
        raise AnalysisError(ErrorCode.BAD_REQUEST, f"more than {MAX_REDIRECTS} redirects")

    def _check_target(self, url: str) -> None:
        if self._config.allow_private_networks:
            return
        host = urlsplit(url).hostname or ""
        for address in resolve_host(host):
            if not address.is_global:
                raise AnalysisError(
                    ErrorCode.REFUSED,
                    f"{host} resolves to non-public address {address}; "
                    "set [downloads] allow_private_networks = true to allow it",
                )

    def _fetch_once(self, url: str, destination: Path) -> str | None:
        try:
            with self._client.stream("GET", url) as response:
                if response.is_redirect:
                    return str(response.headers.get("location", ""))
                _raise_for_status(response)
                self._save(response, destination)
        except httpx.TimeoutException as exc:
            raise AnalysisError(
                ErrorCode.TIMEOUT, f"download timed out: {type(exc).__name__}"
            ) from exc
        except httpx.TransportError as exc:
            raise AnalysisError(
                ErrorCode.NETWORK_ERROR, f"download failed: {type(exc).__name__}: {exc}"
            ) from exc
        return None

    def _save(self, response: httpx.Response, destination: Path) -> None:
        limit = self._config.max_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise AnalysisError(
                ErrorCode.TOO_LARGE, f"remote file is {declared} bytes, over max_bytes {limit}"
            )
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(destination.name + ".part")
        received = 0
        try:
            with partial.open("wb") as handle:
                for chunk in response.iter_bytes(_CHUNK):
                    received += len(chunk)
                    if received > limit:
                        raise AnalysisError(
                            ErrorCode.TOO_LARGE, f"remote file exceeds max_bytes {limit}"
                        )
                    handle.write(chunk)
            os.replace(partial, destination)
        except OSError as exc:
            raise AnalysisError(
                ErrorCode.IO_ERROR, f"cannot save download: {exc.strerror}"
            ) from exc
        finally:
            partial.unlink(missing_ok=True)


def _raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    if status == 429:
        raise AnalysisError(ErrorCode.RATE_LIMITED, "remote answered 429 Too Many Requests")
    if status >= 500:
        raise AnalysisError(ErrorCode.REMOTE_ERROR, f"remote answered {status}")
    raise AnalysisError(ErrorCode.BAD_REQUEST, f"remote answered {status}")


def resolve_host(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses a host name (or literal address) resolves to; NETWORK_ERROR if none."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as exc:
        raise AnalysisError(ErrorCode.NETWORK_ERROR, f"cannot resolve {host}: {exc}") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
