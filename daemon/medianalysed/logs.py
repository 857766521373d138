"""Logging set-up: human text or one JSON object per line, with secrets masked.

Masking happens in the formatter, on the final text of every field (message, arguments,
exception), so a secret cannot leak through an f-string, a repr of a headers dict or a
traceback. Masked: every value given to `register_secret` (the webhook secret), the value
after `Authorization:` and `X-Medianalysed-Signature:`, and a URL's whole userinfo (a token
is often the user name). httpx and httpcore log every request URL at info/debug level, with
its tokens: they are kept at warning.

A file name never forges a line (SPEC §1): in text logs a record is one line, its control
characters escaped (`names.log_text`), and a traceback follows on lines that start with a
space; JSON logs escape them as JSON does, plus the characters `str.splitlines` also breaks on.
Undecodable name bytes show as `\\xNN` in both.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Final, Literal, TextIO

from medianalysed import names
from medianalysed.redaction import MASK, mask_userinfo

JSON_EXTRA_FIELDS: Final = ("batch_id", "path", "attempt", "inbox", "code")
LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# A header name, its separator as it appears in a log line, a dict repr or JSON, then the value
# up to the end of the line, a quote or a comma.
_HEADER_VALUE = re.compile(
    r"""(?i)\b(authorization|x-medianalysed-signature)(["']?\s*[:=]\s*["']?)([^"'\r\n,}]+)"""
)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Mask `value` wherever it appears in a log record from now on (empty: ignored)."""
    if value:
        with _secrets_lock:
            _secrets.add(value)


def clear_secrets() -> None:
    """Forget every registered secret (before registering the secrets of a reloaded config)."""
    with _secrets_lock:
        _secrets.clear()


def redact(text: str) -> str:
    """Return `text` with registered secrets, auth header values and URL userinfo masked."""
    with _secrets_lock:
        # Longest first, so a secret containing another one is masked whole.
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    text = _HEADER_VALUE.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    return mask_userinfo(text)


class RedactingTextFormatter(logging.Formatter):
    """The text format, with the whole formatted line (traceback included) redacted."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """Format the record as the stdlib would, on one line plus an indented traceback, then
        mask secrets.

        Unlike the stdlib, the traceback text is not cached on the record: another handler
        formats it its own way.
        """
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        lines = [names.log_text(self.formatMessage(record))]
        if record.exc_info:
            lines.append(_indented(self.formatException(record.exc_info)))
        elif record.exc_text:
            lines.append(_indented(record.exc_text))
        if record.stack_info:
            lines.append(_indented(self.formatStack(record.stack_info)))
        return redact("\n".join(lines))


def _indented(text: str) -> str:
    return "\n".join(" " + names.log_text(line) for line in text.splitlines())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, known extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialise the record; every string field is redacted before encoding."""
        entry: dict[str, object] = {
            "ts": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(names.display(record.getMessage())),
        }
        for name in JSON_EXTRA_FIELDS:
            if name in record.__dict__:
                entry[name] = _json_value(record.__dict__[name])
        if record.exc_info:
            entry["exc"] = redact(names.display(self.formatException(record.exc_info)))
        elif record.exc_text:
            entry["exc"] = redact(names.display(record.exc_text))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return _one_json_line(entry)


# Line breaks for str.splitlines() that JSON does not escape (C0 controls it does).
_JSON_LINE_BREAKS: Final = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _one_json_line(entry: dict[str, object]) -> str:
    text = json.dumps(entry, ensure_ascii=False)
    for char, escape in _JSON_LINE_BREAKS.items():
        text = text.replace(char, escape)  # only ever inside a JSON string
    return text


class _MedianalysedHandler(logging.StreamHandler[TextIO]):
    """The one handler `setup_logging` owns on the root logger; its type marks it as ours."""


def setup_logging(level: str, fmt: Literal["text", "json"], stream: TextIO | None = None) -> None:
    """Send every log record at `level` or above to `stream` (default: the current stderr).

    Idempotent: a second call replaces the handler of the first (used on reload); handlers
    others installed on the root logger are left alone.

    Raises:
        ValueError: unknown level or format.
    """
    numeric_level = LEVELS.get(level.lower())
    if numeric_level is None:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r}; expected text or json")

    handler = _MedianalysedHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else RedactingTextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _MedianalysedHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)

    debug = numeric_level <= logging.DEBUG
    # pykka logs every actor start and stop at debug level.
    logging.getLogger("pykka").setLevel(logging.NOTSET if debug else logging.WARNING)
    # Pillow's debug output is one line per PNG chunk and TIFF tag: noise even when debugging.
    logging.getLogger("PIL").setLevel(logging.INFO)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _iso_utc(created: float) -> str:
    return (
        datetime.fromtimestamp(created, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _json_value(value: object) -> object:
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(names.display(str(value)))
