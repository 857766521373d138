"""A real HTTP server on 127.0.0.1 that the generated `urls.txt` lines point at.

It serves registered bodies and every kind of bad answer a download must survive: 404, 500,
429, a slow drip, a body over the size limit, a gzip body that does not decompress, a reset
connection, redirect loops. It records every request path, so a test can prove a URL it
planted in a file outside a batch (behind a symlink) was never fetched.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# How long a drip lasts at most: longer than any download deadline the tests configure,
# short enough that the server's threads never pile up.
DRIP_SECONDS = 20.0


class RemoteServer:
    """Serves `/img/<token>` bodies and `/status`, `/drip`, `/huge`, `/gzip-broken`, ... routes."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    def register(self, token: str, body: bytes) -> None:
        with self._lock:
            self.bodies[token] = body

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def requested(self, fragment: str) -> bool:
        """Whether any request so far had `fragment` in its path."""
        with self._lock:
            return any(fragment in path for _, path in self.requests)

    def start(self) -> RemoteServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def stopping(self) -> bool:
        return self._stopping.is_set()

    def pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if the server is stopping."""
        self._stopping.wait(seconds)


@contextlib.contextmanager
def running_server() -> Iterator[RemoteServer]:
    server = RemoteServer().start()
    try:
        yield server
    finally:
        server.stop()


def _handler_for(server: RemoteServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            server.record("GET", self.path)
            _route(self, server)

        def do_POST(self) -> None:
            server.record("POST", self.path)
            length = self.headers.get("Content-Length", "0")
            self.rfile.read(int(length) if length.isdigit() else 0)
            _answer(self, 200, b"")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _route(handler: BaseHTTPRequestHandler, server: RemoteServer) -> None:
    path = handler.path.split("?", 1)[0]
    parts = path.strip("/").split("/")
    head = parts[0]
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, TimeoutError):
        if head == "img" and len(parts) > 1 and parts[1] in server.bodies:
            _answer(handler, 200, server.bodies[parts[1]])
        elif head == "status" and len(parts) > 1 and parts[1].isdigit():
            code = int(parts[1])
            headers = {"Retry-After": "1"} if code == 429 else {}
            _answer(handler, code, b"no", headers)
        elif head == "drip":
            _drip(handler, server)
        elif head == "huge":
            _huge(handler, chunked="chunked" in parts)
        elif head == "gzip-broken":
            _answer(handler, 200, b"\x1f\x8b\x08\x00not really gzip", {"Content-Encoding": "gzip"})
        elif head == "reset":
            handler.connection.close()
        elif head == "redirect-loop":
            _answer(handler, 302, b"", {"Location": handler.path})
        elif head == "redirect" and len(parts) > 1:
            _answer(handler, 302, b"", {"Location": "/" + "/".join(parts[1:])})
        elif head == "lying-length":
            _answer(handler, 200, b"short", {"Content-Length": "100000"}, exact=False)
        else:
            _answer(handler, 404, b"not here")


def _answer(
    handler: BaseHTTPRequestHandler,
    code: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    exact: bool = True,
) -> None:
    handler.send_response(code)
    headers = headers or {}
    if exact:
        headers.setdefault("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)
    if not exact:
        handler.close_connection = True


def _drip(handler: BaseHTTPRequestHandler, server: RemoteServer) -> None:
    """One byte every 0.2 s of a declared 1 MB body: a read timeout alone never fires."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(1 << 20))
    handler.end_headers()
    deadline = time.monotonic() + DRIP_SECONDS
    while time.monotonic() < deadline and not server.stopping():
        handler.wfile.write(b"\xff")
        handler.wfile.flush()
        server.pause(0.2)
    handler.close_connection = True


def _huge(handler: BaseHTTPRequestHandler, *, chunked: bool) -> None:
    """64 MB of zeros, with or without a Content-Length saying so."""
    handler.send_response(200)
    if chunked:
        handler.send_header("Transfer-Encoding", "chunked")
    else:
        handler.send_header("Content-Length", str(64 << 20))
    handler.end_headers()
    block = b"\0" * (1 << 16)
    for _ in range(1024):
        if chunked:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
        else:
            handler.wfile.write(block)
    if chunked:
        handler.wfile.write(b"0\r\n\r\n")
