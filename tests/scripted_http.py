"""A real HTTP server on 127.0.0.1 whose answers are scripted per path, byte by byte if need be.

Each route is a function given the raw socket file after the request head was read; it
writes whatever it wants (a broken gzip body, one byte every half second, nothing at all).
Every request is recorded (path, headers) before its route runs.
"""

from __future__ import annotations

import gzip
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

Route = Callable[[BinaryIO, dict[str, str]], None]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class ScriptedServer:
    routes: dict[str, Route]
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def recorded(self) -> list[Request]:
        with self.lock:
            return list(self.requests)

    def recorded_paths_include(self, path: str) -> bool:
        return any(
            request.path == path or request.path.startswith(path + "?")
            for request in self.recorded()
        )


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Route:
    def route(out: BinaryIO, _headers: dict[str, str]) -> None:
        head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        out.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    return route


def broken_gzip(body: bytes) -> Route:
    """200 with `Content-Encoding: gzip`: a gzip header, then no valid deflate block."""
    broken = gzip.compress(body)[:10] + b"\xff" * 100
    return answer(200, broken, {"Content-Encoding": "gzip"})


def drip(server: ScriptedServer, interval: float = 0.5, *, in_headers: bool = False) -> Route:
    """Send an answer one byte every `interval` seconds, for ever (until the server stops)."""

    def route(out: BinaryIO, _headers: dict[str, str]) -> None:
        if in_headers:
            payload = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1_000_000
        else:
            out.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            out.flush()
            payload = b"x" * 1_000_000
        for byte in payload:
            if server.stop.wait(interval):
                return
            out.write(bytes([byte]))
            out.flush()

    return route


def hold(server: ScriptedServer, release: threading.Event, then: Route | None = None) -> Route:
    """Answer `then` (default 200) only once `release` is set (or the server stops)."""

    def route(out: BinaryIO, headers: dict[str, str]) -> None:
        while not release.wait(0.05):
            if server.stop.is_set():
                return
        (then or answer(200))(out, headers)

    return route


@contextmanager
def scripted_server(routes: dict[str, Route]) -> Iterator[ScriptedServer]:
    """Serve `routes` (404 for any other path) until the block ends."""
    state = ScriptedServer(routes)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            try:
                line = self.rfile.readline(65536).decode("latin-1").split()
                headers: dict[str, str] = {}
                while (header := self.rfile.readline(65536)) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    self.rfile.read(length)
                method, path = [*line, "", ""][:2]
                with state.lock:
                    state.requests.append(Request(method, path, headers))
                route = state.routes.get(path.split("?")[0], answer(404))
                route(self.wfile, headers)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", 0), Handler)
    state.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
