"""A batch's `batch.toml` (SPEC §1): `priority`, `tags`, `callback_url`, read defensively.

The file comes from whoever dropped the batch, so nothing in it may stop the daemon: it is
read through `read_capped` (no symlink, no FIFO, at most `MAX_BATCH_TOML_BYTES`), its
bracket nesting is measured by a scan that skips strings and comments *before* `tomllib`
(which recurses once per level) sees it, and `tomllib` runs only on a text that is shallow
enough. Every problem is one sentence in `BatchOptions.note` (shown in summary.json); the
options that were valid still apply, the others keep their defaults, and the batch runs.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from medianalysed.controlfiles import ControlFileError, read_capped
from medianalysed.errors import AnalysisError
from medianalysed.models import Priority
from medianalysed.urllist import parse_url

BATCH_OPTIONS_FILE: Final = "batch.toml"
MAX_BATCH_TOML_BYTES: Final = 64 * 1024
MAX_NESTING: Final = 16
MAX_TAGS: Final = 100
MAX_TAG_CHARS: Final = 200
MAX_NOTE_CHARS: Final = 1000
KNOWN_KEYS: Final = ("callback_url", "priority", "tags")


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """The options of one batch; `note` says what of batch.toml was ignored and why."""

    priority: Priority = Priority.NORMAL
    tags: tuple[str, ...] = ()
    callback_url: str = ""
    note: str = ""


def read_batch_options(folder: Path) -> BatchOptions:
    """The options in `folder/batch.toml` (defaults when there is none). Never raises."""
    try:
        read = read_capped(folder / BATCH_OPTIONS_FILE, MAX_BATCH_TOML_BYTES)
    except ControlFileError as exc:
        return BatchOptions(note=f"batch.toml ignored: {exc}")
    if read is None:
        return BatchOptions()
    if read.truncated:
        return BatchOptions(
            note=f"batch.toml ignored: larger than {MAX_BATCH_TOML_BYTES // 1024} KB"
        )
    return parse_batch_options(read.data)


def parse_batch_options(data: bytes) -> BatchOptions:
    """The options a batch.toml holding `data` gives. Never raises."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BatchOptions(note=f"batch.toml ignored: not UTF-8 text (byte {exc.start})")
    depth = max_nesting(text)
    if depth > MAX_NESTING:
        return BatchOptions(
            note=f"batch.toml ignored: brackets nested {depth} deep (at most {MAX_NESTING})"
        )
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return BatchOptions(note=_clip(f"batch.toml ignored: {exc}"))
    except RecursionError:  # unreachable unless max_nesting misreads a string; never fatal
        return BatchOptions(note="batch.toml ignored: nested too deeply")
    return _options_from(table)


def max_nesting(text: str) -> int:
    """The deepest `[`/`{` nesting of a TOML text, strings and comments skipped.

    A linear scan with no recursion. It follows TOML's four string forms and comments, so it
    sees a bracket exactly where `tomllib` would; on text that is not TOML it may see more
    brackets than there are, never fewer before `tomllib` would stop with an error.
    """
    depth = deepest = 0
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if char == "#":
            i = _line_end(text, i)
        elif char in "\"'":
            i = _string_end(text, i)
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
        i += 1
    return deepest


def _line_end(text: str, start: int) -> int:
    newline = text.find("\n", start)
    return len(text) if newline < 0 else newline


def _string_end(text: str, start: int) -> int:
    """The index of the last character of the string that opens at `start`."""
    quote = text[start]
    escapes = quote == '"'
    if text.startswith(quote * 3, start):
        i = start + 3
        while i < len(text):
            if escapes and text[i] == "\\":
                i += 2
                continue
            if text.startswith(quote * 3, i):
                i += 3
                # Up to two more quotes belong to the content (`"""a""""`).
                for _ in range(2):
                    if i < len(text) and text[i] == quote:
                        i += 1
                return i - 1
            i += 1
        return len(text)
    i = start + 1
    while i < len(text) and text[i] != "\n":
        if escapes and text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i
        i += 1
    return i  # unterminated: tomllib stops here with an error


def _options_from(table: dict[str, object]) -> BatchOptions:
    priority = Priority.NORMAL
    tags: tuple[str, ...] = ()
    callback_url = ""
    problems: list[str] = []
    for key, value in table.items():
        if key == "priority":
            chosen = _priority(value)
            if chosen is None:
                problems.append(f"priority must be high, normal or low, got {_shown(value)}")
            else:
                priority = chosen
        elif key == "tags":
            parsed = _tags(value)
            if parsed is None:
                problems.append(
                    f"tags must be a list of at most {MAX_TAGS} strings "
                    f"of at most {MAX_TAG_CHARS} characters"
                )
            else:
                tags = parsed
        elif key == "callback_url":
            problem = _callback_problem(value)
            if problem is None:
                assert isinstance(value, str)
                callback_url = value.strip()
            else:
                problems.append(problem)
        else:
            problems.append(f"unknown key {_shown(key)} (known: {', '.join(KNOWN_KEYS)})")
    note = _clip(f"batch.toml: {'; '.join(problems)}") if problems else ""
    return BatchOptions(priority=priority, tags=tags, callback_url=callback_url, note=note)


def _priority(value: object) -> Priority | None:
    if not isinstance(value, str):
        return None
    try:
        return Priority(value)
    except ValueError:
        return None


def _tags(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        return None
    if not all(isinstance(tag, str) and len(tag) <= MAX_TAG_CHARS for tag in value):
        return None
    return tuple(value)


def _callback_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return "callback_url must be a string, an http(s) URL"
    try:
        parse_url(value)
    except AnalysisError as exc:  # the message never quotes the URL: it may hold a token
        return f"callback_url ignored: {exc.message}"
    return None


def _shown(value: object) -> str:
    text = repr(value) if isinstance(value, str) else type(value).__name__
    return text if len(text) <= 60 else text[:59] + "…"


def _clip(note: str) -> str:
    return note if len(note) <= MAX_NOTE_CHARS else note[: MAX_NOTE_CHARS - 1] + "…"
