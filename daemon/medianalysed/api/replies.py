"""What every `/v1` answer is made of: JSON bodies and `{"error": {"code", "message"}}`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from medianalysed.logs import redact

JSON_TYPE: Final = "application/json"


class ApiError(Exception):
    """An answer other than success: its HTTP status, a stable code and a message."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def reply(self) -> Reply:
        """The error as a reply."""
        # A message may quote what the client sent (a path, a field): a secret never goes back.
        body = {"error": {"code": self.code, "message": redact(self.message)}}
        return Reply(self.status, encode(body), headers=dict(self.headers))


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete answer: status, body and extra headers (Content-Type is JSON unless set)."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def encode(document: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def ok(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    """A JSON success."""
    return Reply(status, encode(document), headers=headers or {})


def not_found(what: str) -> ApiError:
    """404 naming what was not found."""
    return ApiError(404, "NOT_FOUND", f"{what} not found")


def bad_request(message: str) -> ApiError:
    """400 with the reason."""
    return ApiError(400, "BAD_REQUEST", message)
