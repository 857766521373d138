"""A submitted batch becomes a folder in an inbox, exactly as if a person had dropped it.

The folder is built under a hidden name (`.api-<random>.part`: never picked up, SPEC §1) on
the inbox's own filesystem, its files and ready marker written and flushed, and only then
renamed to its final name, so the watcher sees a complete, ready folder or nothing. Any
failure on the way, an interrupted upload included, removes the hidden folder.

Names from the client pass the rules dropped files follow (`names.py`): a batch name
becomes a printable folder name; an uploaded file's name must be a relative path of
visible, non-empty components.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from medianalysed import names
from medianalysed.api.replies import ApiError, bad_request
from medianalysed.batchoptions import parse_batch_options
from medianalysed.config import InboxConfig
from medianalysed.outbox import fsync_directory
from medianalysed.state import StateStore

PRIORITIES: Final = ("high", "normal", "low")
_URL_SCHEMES: Final = ("http://", "https://")
_OPTION_KEYS: Final = frozenset({"name", "urls", "priority", "tags", "callback_url", "inbox"})
_ID_ROOM: Final = 24  # bytes kept for `-<timestamp>-<random>` and the `-N` suffix


@dataclass(frozen=True, slots=True)
class Submission:
    """What a submission asks for besides its files."""

    inbox: InboxConfig
    name: str
    priority: str = "normal"
    tags: tuple[str, ...] = ()
    callback_url: str = ""


class Submitter:
    """Writes submitted batches into the configured inboxes."""

    def __init__(self, inboxes: Sequence[InboxConfig], store: StateStore) -> None:
        self._inboxes = {inbox.name: inbox for inbox in inboxes}
        self._first = inboxes[0]
        self._store = store

    def options(self, fields: Mapping[str, Any]) -> Submission:
        """Check a submission's options (JSON keys or form fields).

        Raises:
            ApiError: 400 naming the option that is wrong.
        """
        unknown = sorted(set(fields) - _OPTION_KEYS)
        if unknown:
            raise bad_request(
                f"unknown field {unknown[0]!r}; the fields are {', '.join(sorted(_OPTION_KEYS))}"
            )
        inbox_name = _text(fields, "inbox", self._first.name)
        inbox = self._inboxes.get(inbox_name)
        if inbox is None:
            raise bad_request(
                f"inbox {inbox_name!r} is not configured; one of {', '.join(self._inboxes)}"
            )
        priority = _text(fields, "priority", "normal")
        if priority not in PRIORITIES:
            raise bad_request(f"priority {priority!r} is not one of {', '.join(PRIORITIES)}")
        tags = fields.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise bad_request("tags must be a list of strings")
        callback_url = _text(fields, "callback_url", "")
        if callback_url and not callback_url.startswith(_URL_SCHEMES):
            raise bad_request("callback_url must be an http:// or https:// URL")
        submission = Submission(
            inbox=inbox,
            name=self._batch_name(inbox, _text(fields, "name", "")),
            priority=priority,
            tags=tuple(tags),
            callback_url=callback_url,
        )
        note = parse_batch_options(_batch_toml(submission).encode()).note
        if note:  # the rules a dropped batch.toml follows (number and length of tags...)
            raise bad_request(note)
        return submission

    def _batch_name(self, inbox: InboxConfig, asked: str) -> str:
        """A folder name no batch, outbox or inbox folder has: what its batch id will be."""
        base = names.safe_folder_name(asked.strip().lstrip(".")) if asked.strip() else "api"
        base = names.shortened(base, names.name_max(inbox.path) - _ID_ROOM)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
        while True:
            candidate = f"{base}-{stamp}-{secrets.token_hex(3)}"
            taken = self._store.has_batch(candidate) or any(
                os.path.lexists(folder / candidate) for folder in (inbox.path, inbox.outbox)
            )
            if not taken:
                return candidate

    def write_urls(self, options: Submission, urls: object) -> str:
        """Write a batch of remote images (`urls.txt`); its batch id.

        Raises:
            ApiError: 400 for a bad URL list, 503 when the inbox cannot be written.
        """
        if not isinstance(urls, list) or not urls:
            raise bad_request("urls must be a non-empty list of http(s) URLs")
        for index, url in enumerate(urls):
            if not isinstance(url, str) or not url.startswith(_URL_SCHEMES) or "\n" in url:
                raise bad_request(f"urls[{index}] is not an http:// or https:// URL")
        text = "".join(f"{url}\n" for url in urls)
        with self.building(options) as folder:
            _write_file(folder / "urls.txt", [text.encode()])
        return options.name

    @contextlib.contextmanager
    def building(self, options: Submission) -> Iterator[Path]:
        """A hidden folder to fill; on a clean exit it gets its marker and its final name.

        Raises:
            ApiError: 503 when the inbox cannot be written.
        """
        inbox = options.inbox
        hidden = inbox.path / f".api-{secrets.token_hex(8)}.part"
        try:
            hidden.mkdir(mode=0o755)
        except OSError as exc:
            raise _unwritable(inbox, exc) from exc
        try:
            yield hidden
            _write_file(hidden / "batch.toml", [_batch_toml(options).encode()])
            _write_file(hidden / inbox.ready_marker, [b""])
            fsync_directory(hidden)
            os.rename(hidden, inbox.path / options.name)
            fsync_directory(inbox.path)
        except OSError as exc:
            shutil.rmtree(hidden, ignore_errors=True)
            raise _unwritable(inbox, exc) from exc
        except BaseException:
            shutil.rmtree(hidden, ignore_errors=True)
            raise


def _unwritable(inbox: InboxConfig, exc: OSError) -> ApiError:
    return ApiError(
        503,
        "UNAVAILABLE",
        f"inbox {inbox.name!r} cannot be written now ({exc.strerror or type(exc).__name__})",
    )


def _text(fields: Mapping[str, Any], key: str, default: str) -> str:
    value = fields.get(key, default)
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string")
    return value


def upload_path(filename: str | None) -> str:
    """The relative path an uploaded file gets in the batch folder (`a/b.jpg` is a group).

    Raises:
        ApiError: 400 when the name is empty, absolute, hidden, or has `.`/`..` components.
    """
    if not filename:
        raise bad_request("an uploaded file has no filename")
    parts = filename.replace("\\", "/").split("/")
    for part in parts:
        if part in {"", ".", ".."} or part.startswith(".") or "\x00" in part:
            raise bad_request(
                f"file name {names.log_text(filename)!r} must be a relative path of visible "
                "names (no empty, '.', '..' or hidden components)"
            )
        if len(names.to_bytes(part)) > names.NAME_MAX:
            raise bad_request(f"file name {names.log_text(filename)!r} has a component too long")
    return "/".join(parts)


def _batch_toml(options: Submission) -> str:
    lines = [f"priority = {_toml_string(options.priority)}"]
    if options.tags:
        lines.append(f"tags = [{', '.join(_toml_string(tag) for tag in options.tags)}]")
    if options.callback_url:
        lines.append(f"callback_url = {_toml_string(options.callback_url)}")
    return "\n".join(lines) + "\n"


def _toml_string(text: str) -> str:
    # JSON's escapes are TOML's, except that TOML has no surrogate pairs: keep text as is.
    return json.dumps(text, ensure_ascii=False)


def _write_file(path: Path, chunks: Iterable[bytes]) -> int:
    """Write and flush a new file; its size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with open(path, "xb") as handle:
        for chunk in chunks:
            handle.write(chunk)
            size += len(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    return size


def write_file(path: Path, chunks: Iterable[bytes]) -> int:
    """Write one uploaded file into a folder from `Submitter.building`; its size."""
    return _write_file(path, chunks)
