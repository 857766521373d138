"""`POST /v1/batches` as `multipart/form-data`: option fields, then files, streamed to disk.

The body is parsed as it arrives (`multipart.PushMultipartParser`, sans-IO): a file is
written chunk by chunk into the hidden folder `Submitter.building` gives, never held in
memory. The option fields (`name`, `inbox`, `priority`, `tags` (repeated), `callback_url`)
must come before the first file, since they decide which inbox the folder is built in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

import multipart

from medianalysed import names
from medianalysed.api.replies import ApiError, bad_request
from medianalysed.api.submit import Submitter, upload_path

MAX_FIELD_BYTES: Final = 64 * 1024


def too_large(message: str) -> ApiError:
    """413 with the limit that was passed."""
    return ApiError(413, "TOO_LARGE", message)


class _Upload:
    """The state of one upload while its body streams in."""

    def __init__(self, submitter: Submitter, max_files: int, stack: contextlib.ExitStack) -> None:
        self._submitter = submitter
        self._max_files = max_files
        self._stack = stack
        self.fields: dict[str, Any] = {}
        self.batch_id: str | None = None
        self.files = 0
        self._folder: Path | None = None
        self._field: tuple[str, bytearray] | None = None
        self._file: IO[bytes] | None = None

    def begin(self, segment: multipart.MultipartSegment) -> None:
        if segment.filename is None:
            if self._folder is not None:
                raise bad_request(
                    f"form field {segment.name!r} comes after a file; send fields first"
                )
            self._field = (segment.name or "", bytearray())
            return
        self.files += 1
        if self.files > self._max_files:
            raise too_large(f"more than {self._max_files} files ([api] max_files)")
        folder = self._open_folder()
        relative = upload_path(segment.filename)
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = self._stack.enter_context(open(target, "xb"))  # noqa: SIM115
        except FileExistsError as exc:
            raise bad_request(f"file {names.log_text(relative)!r} is uploaded twice") from exc

    def _open_folder(self) -> Path:
        if self._folder is None:
            submission = self._submitter.options(self.fields)
            self._folder = self._stack.enter_context(self._submitter.building(submission))
            self.batch_id = submission.name
        return self._folder

    def data(self, chunk: bytes) -> None:
        if self._file is not None:
            self._file.write(chunk)
        elif self._field is not None:
            self._field[1].extend(chunk)
            if len(self._field[1]) > MAX_FIELD_BYTES:
                raise too_large(f"form field {self._field[0]!r} is over {MAX_FIELD_BYTES} bytes")

    def end(self) -> None:
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None
        elif self._field is not None:
            name, raw = self._field
            self._field = None
            try:
                value = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise bad_request(f"form field {name!r} is not UTF-8") from exc
            if name == "tags":
                self.fields.setdefault("tags", []).append(value)
            else:
                self.fields[name] = value


def boundary_of(content_type: str) -> str:
    """The multipart boundary of a Content-Type.

    Raises:
        ApiError: 400 when there is none.
    """
    _kind, options = multipart.parse_options_header(content_type)
    boundary = options.get("boundary")
    if not boundary:
        raise bad_request("multipart/form-data without a boundary")
    return str(boundary)


def receive_upload(
    submitter: Submitter, content_type: str, chunks: Iterator[bytes], max_files: int
) -> str:
    """Stream a multipart body into a new batch folder; its batch id.

    `chunks` yields the body (bounded in size and time by the caller). An error anywhere,
    the client going away included, leaves nothing in the inbox.

    Raises:
        ApiError: 400 for a malformed body, 413 past `max_files`, 503 for an unwritable inbox.
    """
    boundary = boundary_of(content_type)
    with contextlib.ExitStack() as stack:
        upload = _Upload(submitter, max_files, stack)
        parser = multipart.PushMultipartParser(boundary, max_header_count=16)
        try:
            for chunk in chunks:
                _feed(parser, upload, chunk)
            _feed(parser, upload, b"")
        except multipart.MultipartError as exc:
            raise bad_request(f"the multipart body is malformed: {exc}") from exc
        if upload.batch_id is None:
            raise bad_request("the upload holds no file; send at least one file part")
        return upload.batch_id
    raise AssertionError  # pragma: no cover - the with block returns or raises


def _feed(parser: multipart.PushMultipartParser, upload: _Upload, chunk: bytes) -> None:
    for event in parser.parse(chunk):
        if isinstance(event, multipart.MultipartSegment):
            upload.begin(event)
        elif event is None:
            upload.end()
        else:
            upload.data(event)
