"""The HTTP side of the API: a `PreReadHandler` request in, the router's answer written out."""

from __future__ import annotations

import logging
import shutil
from typing import Final

from medianalysed.api.events import EventHub
from medianalysed.api.replies import ApiError, Reply
from medianalysed.api.routes import ApiRequest, ApiRouter, EventStream, FileReply
from medianalysed.httpd import PreReadHandler

logger = logging.getLogger(__name__)

_FILE_CHUNK: Final = 256 * 1024


class ApiEndpoint:
    """The router and the event hub, as the metrics listener's handler calls them."""

    def __init__(self, router: ApiRouter, hub: EventHub) -> None:
        self.router = router
        self.hub = hub

    def handle(self, handler: PreReadHandler, method: str) -> None:
        """Answer one `/v1` request on `handler`'s connection."""
        request = ApiRequest(
            method=method,
            target=handler.path,
            headers=handler.headers,  # type: ignore[arg-type]
            client_host=str(handler.client_address[0]),
            body=handler.body_chunks,
        )
        try:
            answer = self.router.answer(request)
        except (TimeoutError, ConnectionError) as exc:
            logger.info("an API upload from %s ended early: %s", request.client_host, exc)
            return  # nothing was written into an inbox; the client is gone or too slow
        if isinstance(answer, Reply):
            write_reply(handler, answer)
        elif isinstance(answer, FileReply):
            _write_file(handler, answer)
        else:
            self._stream(handler, answer)

    def _stream(self, handler: PreReadHandler, stream: EventStream) -> None:
        if not self.hub.has_room():
            busy = ApiError(503, "UNAVAILABLE", "too many event streams open; try again later")
            write_reply(handler, busy.reply())
            return
        handler.wfile.flush()
        if not self.hub.attach(handler.detach(), stream.last_event_id):
            handler.request.detached = False  # lost a race for the last place: close it


def write_reply(handler: PreReadHandler, reply: Reply) -> None:
    """Write a complete reply."""
    handler.send_response(reply.status)
    handler.send_header("Content-Type", reply.content_type)
    handler.send_header("Content-Length", str(len(reply.body)))
    handler.send_header("Cache-Control", "no-store")
    for name, value in reply.headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(reply.body)


def _write_file(handler: PreReadHandler, reply: FileReply) -> None:
    try:
        source = reply.path.open("rb")
    except OSError as exc:
        error = ApiError(503, "UNAVAILABLE", f"{reply.path.name} cannot be read: {exc.strerror}")
        write_reply(handler, error.reply())
        return
    with source:
        size = source.seek(0, 2)
        source.seek(0)
        handler.send_response(200)
        handler.send_header("Content-Type", reply.content_type)
        handler.send_header("Content-Length", str(size))
        handler.end_headers()
        shutil.copyfileobj(source, handler.wfile, _FILE_CHUNK)
