"""What one attempt at an image ends with: `ImageResult` or `ImageError` (`ImageOutcome`).

Typed from the worker's reply to the batch actor and its retry policy; JSON only where the
value leaves for state (`ImageRecord`) or crosses a process (the worker's reply). `ImageError.of`
is the one builder of a per-image error (SPEC §3: code, message, retryable).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from medianalysed.errors import AnalysisError, ErrorCode, clip_message

VIPS_RESULTS: Final = ("decoded", "fallback")  # the worker's outcome["vips"] (vipsdecode.py)


@dataclass(frozen=True, slots=True)
class ImageError:
    """A per-image failure: its stable code, a clipped one-line message, whether to retry."""

    code: ErrorCode
    message: str
    retryable: bool

    @classmethod
    def of(cls, code: ErrorCode, message: str, *, retryable: bool | None = None) -> ImageError:
        """The error for `code` (its own retry rule unless `retryable` says otherwise)."""
        again = code.retryable if retryable is None else retryable
        return cls(code, clip_message(message), again)

    @classmethod
    def raised(cls, exc: AnalysisError) -> ImageError:
        """The error an `AnalysisError` stands for."""
        return cls.of(exc.code, exc.message)

    @classmethod
    def internal(cls, exc: BaseException, doing: str) -> ImageError:
        """INTERNAL for an input whose handling raised (SPEC §3: the type is named).

        The message is the exception's type and text only, clipped: never a traceback, so no
        secret from a local variable can reach an outbox.
        """
        return cls.of(ErrorCode.INTERNAL, f"{doing}: {type(exc).__name__}: {exc}")

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ImageError:
        """Parse an `error` object (from state or a worker); an unknown code is INTERNAL."""
        if data is None:
            return cls.of(ErrorCode.INTERNAL, "no outcome")
        try:
            code = ErrorCode(str(data.get("code")))
        except ValueError:
            return cls.of(ErrorCode.INTERNAL, f"unknown error code {data.get('code')!r}")
        return cls(code, str(data.get("message", "")), bool(data.get("retryable", code.retryable)))

    def to_json(self) -> dict[str, Any]:
        """The `error` object of a per-image record."""
        return {"code": str(self.code), "message": self.message, "retryable": self.retryable}


def error_json(code: ErrorCode, message: str) -> dict[str, Any]:
    """`ImageError.of(code, message)` as JSON, for the replies that cross a process."""
    return ImageError.of(code, message).to_json()


@dataclass(frozen=True, slots=True)
class ImageResult:
    """A analysed image: the record's sections (file, image, exif, colors, hashes...)."""

    sections: Mapping[str, Any]

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        return int(self.sections["file"]["size"])

    def to_json(self) -> dict[str, Any]:
        """The `result` of an image record."""
        return dict(self.sections)


ImageOutcome = ImageResult | ImageError
