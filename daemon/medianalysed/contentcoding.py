"""Decoding a download's `Content-Encoding` in bounded steps.

httpx inflates each network chunk whole: 64 KB of gzip can become 64 MB at once, per
download in flight, in the daemon's own memory. Here the raw bytes are inflated at most
`step` bytes at a time, so the caller's size cap (`[downloads] max_bytes`) stops a
decompression bomb after one step past it. Only what we ask for (`ACCEPT_ENCODING`) is
decoded; anything else a server sends is an error, as is a body that does not inflate.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Final

ACCEPT_ENCODING: Final = "gzip, deflate"


class ContentCodingError(Exception):
    """The body cannot be decoded; the message says why (for the error record)."""


class BoundedDecoder:
    """Turns raw body chunks into decoded chunks of at most `step` bytes."""

    def __init__(self, content_encoding: str, step: int = 1 << 16) -> None:
        """Raises ContentCodingError for an encoding other than identity, gzip or deflate."""
        encoding = content_encoding.strip().lower()
        self._step = step
        self._raw_deflate_fallback = encoding == "deflate"
        self._started = False
        if encoding in {"", "identity"}:
            self._inflater: zlib._Decompress | None = None
        elif encoding in {"gzip", "x-gzip"}:
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflater = zlib.decompressobj()
        else:
            raise ContentCodingError(f"unsupported Content-Encoding {encoding[:40]!r}")

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decoded bytes of `data`, in pieces of at most `step` bytes."""
        if self._inflater is None:
            for start in range(0, len(data), self._step):
                yield data[start : start + self._step]
            return
        pending = data
        while pending and not self._inflater.eof:
            out = self._inflate(pending)
            pending = self._inflater.unconsumed_tail
            if out:
                yield out

    def finish(self) -> None:
        """Raises ContentCodingError if the compressed body stopped before its end."""
        if self._inflater is not None and self._started and not self._inflater.eof:
            raise ContentCodingError("the compressed body is truncated")

    def _inflate(self, data: bytes) -> bytes:
        assert self._inflater is not None
        try:
            out = self._inflater.decompress(data, self._step)
        except zlib.error as exc:
            if self._raw_deflate_fallback and not self._started:
                # "deflate" is often sent without its zlib header, as httpx also allows.
                self._raw_deflate_fallback = False
                self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                return self._inflate(data)
            raise ContentCodingError(f"the body cannot be decoded: {exc}") from exc
        self._started = True
        return out
