"""`ApiRouter`: one request in, one answer out; the HTTP plumbing is `api.http`'s.

Every `/v1` request is authenticated first (`auth`), then routed by method and path. What
the router returns is a complete `Reply`, a `FileReply` (results.jsonl, streamed) or an
`EventStream` (the handler hands the socket to the `EventHub`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, unquote

from medianalysed.api import reads
from medianalysed.api.auth import Authenticator, Caller
from medianalysed.api.replies import ApiError, Reply, bad_request, not_found, ok
from medianalysed.api.submit import Submitter
from medianalysed.api.uploads import receive_upload, too_large
from medianalysed.lifecycle import BatchPhase
from medianalysed.rerun import RerunError, plan_rerun
from medianalysed.state import StateStore

PREFIX: Final = "/v1/"
_JSON_TYPES: Final = ("application/json",)
_MULTIPART: Final = "multipart/form-data"


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """The `[api]` limits the router applies."""

    submit: bool = False
    max_upload_bytes: int = 100_000_000
    max_files: int = 1000


@dataclass(frozen=True, slots=True)
class FileReply:
    """Stream a file as the body (results.jsonl)."""

    path: Path
    content_type: str = "application/x-ndjson"


@dataclass(frozen=True, slots=True)
class EventStream:
    """Hand the connection to the event hub, replaying what came after `last_event_id`."""

    last_event_id: str | None


Answer = Reply | FileReply | EventStream


@dataclass(slots=True)
class ApiRequest:
    """What the router needs of a request; `body` yields at most `Content-Length` bytes."""

    method: str
    target: str
    headers: Mapping[str, str]
    client_host: str
    body: Callable[[int], Iterator[bytes]] = field(default=lambda _limit: iter(()))

    @property
    def path(self) -> str:
        """The path without the query."""
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> dict[str, list[str]]:
        """The query parameters."""
        _path, _sep, query = self.target.partition("?")
        return parse_qs(query, keep_blank_values=True)

    @property
    def content_length(self) -> int | None:
        """The declared body size, None without one.

        Raises:
            ApiError: 400 for a value that is not a size.
        """
        text = self.headers.get("Content-Length")
        if text is None:
            return None
        if not text.strip().isdigit():
            raise bad_request("Content-Length is not a number")
        return int(text)


class ApiRouter:
    """Answers `/v1` requests from the state store; writes submissions into inboxes."""

    def __init__(
        self,
        store: StateStore,
        auth: Authenticator,
        *,
        submitter: Submitter | None = None,
        limits: ApiLimits | None = None,
    ) -> None:
        self._store = store
        self._auth = auth
        self._submitter = submitter
        self._limits = limits or ApiLimits()

    def answer(self, request: ApiRequest) -> Answer:
        """The answer to one request (errors as `{"error": ...}` replies)."""
        try:
            caller = self._auth.caller(request.headers.get("Authorization"), request.client_host)
            return self._route(request, caller)
        except ApiError as error:
            return error.reply()

    def _route(self, request: ApiRequest, caller: Caller) -> Answer:
        parts = [unquote(part) for part in request.path[len(PREFIX) :].split("/")]
        method = request.method
        if parts == ["events"] and method == "GET":
            return EventStream(request.headers.get("Last-Event-ID"))
        if parts[0] != "batches":
            raise not_found(f"{request.path}")
        if len(parts) == 1:
            if method == "GET":
                page = reads.PageQuery.parse(request.query, reads.batch_statuses())
                return ok(reads.list_batches(self._store, page))
            if method == "POST":
                return self._submit(request, caller)
        elif len(parts) in {2, 3} and parts[1]:
            return self._batch_route(request, caller, parts[1], parts[2:])
        raise not_found(f"{method} {request.path}")

    def _batch_route(
        self, request: ApiRequest, caller: Caller, batch_id: str, rest: list[str]
    ) -> Answer:
        record = reads.find_batch(self._store, batch_id)
        verb = (request.method, rest[0] if rest else "")
        if verb == ("GET", ""):
            return ok(reads.batch_document(self._store, record))
        if verb == ("GET", "images"):
            page = reads.PageQuery.parse(request.query, reads.image_statuses())
            return ok(reads.list_images(self._store, record, page))
        if verb == ("GET", "results"):
            return FileReply(reads.results_file(record))
        if verb in {("POST", "retry"), ("POST", "cancel")}:
            self._require_submit(caller)
            return self._control(batch_id, rest[0], record.phase)
        raise not_found(f"{request.method} {request.path}")

    # -- writes ------------------------------------------------------------------------------

    def _require_submit(self, caller: Caller) -> Submitter:
        if not self._limits.submit or self._submitter is None:
            raise ApiError(403, "FORBIDDEN", "submission is off; set [api] submit = true")
        if not caller.has_token:
            raise ApiError(401, "UNAUTHORIZED", "submission needs a bearer token")
        return self._submitter

    def _control(self, batch_id: str, verb: str, phase: BatchPhase) -> Reply:
        if verb == "cancel":
            if phase == BatchPhase.DONE:
                raise bad_request(f"batch {batch_id!r} has already finished; nothing to cancel")
            self._store.control.append({"verb": "cancel", "batch_id": batch_id})
        else:
            try:
                plan = plan_rerun(self._store, batch_id, only_failed=True)
            except RerunError as exc:
                raise bad_request(str(exc)) from exc
            if plan.images == 0:
                raise bad_request(f"batch {batch_id!r} has no failed images to retry")
            self._store.control.append({"verb": "retry", "batch_id": batch_id, "force": False})
        location = reads.batch_path(batch_id)
        return ok({"batch_id": batch_id, "action": verb}, 202, {"Location": location})

    def _submit(self, request: ApiRequest, caller: Caller) -> Reply:
        submitter = self._require_submit(caller)
        length = request.content_length
        if length is None:
            raise bad_request("send the body with a Content-Length")
        if length > self._limits.max_upload_bytes:
            raise too_large(
                f"the body is {length} bytes, over [api] max_upload_bytes "
                f"({self._limits.max_upload_bytes})"
            )
        content_type = request.headers.get("Content-Type", "")
        kind = content_type.split(";", 1)[0].strip().lower()
        if kind in _JSON_TYPES:
            batch_id = self._submit_json(submitter, b"".join(request.body(length)))
        elif kind == _MULTIPART:
            batch_id = receive_upload(
                submitter, content_type, request.body(length), self._limits.max_files
            )
        else:
            raise bad_request(f"Content-Type must be application/json or {_MULTIPART}")
        location = reads.batch_path(batch_id)
        return ok({"batch_id": batch_id}, 202, {"Location": location})

    def _submit_json(self, submitter: Submitter, body: bytes) -> str:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"the body is not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise bad_request("the body must be a JSON object")
        urls = document.pop("urls", None)
        submission = submitter.options(document)
        return submitter.write_urls(submission, urls)
