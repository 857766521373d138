"""A small HTTP/1.0 server whose threads, connections and waits are all bounded.

Slow or silent clients never hold a thread: one selector thread accepts connections and
reads each request head without blocking; only a complete head is handed to one of a fixed
number of handler threads, which answer with `BaseHTTPRequestHandler` as usual.

- A request head not complete within `request_timeout_s` of the connect is dropped (408).
- At most `max_connections` heads are being read at once; a new connection beyond that
  evicts the oldest incomplete one (so a flood of half-sent requests cannot lock out a
  health probe whose request arrives in one packet).
- Complete requests wait in a queue of `queue_size`; when it is full the client gets an
  immediate 503 instead of a thread.
- Writing a response has a total deadline of `write_timeout_s` (`sendall` with a timeout).
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import queue
import selectors
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Final

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_S: Final = 5.0
WRITE_TIMEOUT_S: Final = 10.0
HANDLER_THREADS: Final = 4
MAX_CONNECTIONS: Final = 128
QUEUE_SIZE: Final = 16
MAX_HEAD_BYTES: Final = 64 * 1024
_READ_CHUNK: Final = 8192
_BODY_CHUNK: Final = 256 * 1024
BODY_TIMEOUT_S: Final = 120.0
_POLL_S: Final = 0.1
_HEAD_ENDS: Final = (b"\r\n\r\n", b"\n\n")


@dataclass(slots=True)
class ReceivedRequest:
    """A connection whose request head has arrived whole; the handler's `request`."""

    sock: socket.socket
    head: bytes
    address: Any
    detached: bool = False  # handed over (an event stream): the handler loop leaves it open


@dataclass(slots=True)
class _Pending:
    address: Any
    deadline: float
    buffer: bytearray = field(default_factory=bytearray)


class _SocketWriter(io.BufferedIOBase):
    """`wfile` for a handler: every write is a `sendall` (bounded by the socket timeout)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._sock.sendall(view)
        return len(view)


class PreReadHandler(BaseHTTPRequestHandler):
    """A `BaseHTTPRequestHandler` that reads the head the selector already received."""

    request: ReceivedRequest

    def setup(self) -> None:
        self.connection = self.request.sock
        self.rfile = io.BytesIO(self.request.head)
        self.wfile = _SocketWriter(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            self.wfile.flush()
        self.wfile.close()
        self.rfile.close()

    def body_chunks(self, length: int, deadline_s: float = BODY_TIMEOUT_S) -> Iterator[bytes]:
        """The request body, `length` bytes at most, within `deadline_s` in total.

        The selector may have read the body's first bytes with the head; the rest comes
        from the socket.

        Raises:
            TimeoutError: the body did not arrive in time.
            ConnectionError: the client closed before sending it all.
        """
        left = length
        early = self.rfile.read(left)
        if early:
            left -= len(early)
            yield early
        deadline = time.monotonic() + deadline_s
        while left > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the request body did not arrive within {deadline_s:.0f} s")
            self.connection.settimeout(remaining)
            chunk = self.connection.recv(min(left, _BODY_CHUNK))
            if not chunk:
                raise ConnectionError("the client closed before sending the whole body")
            left -= len(chunk)
            yield chunk
        self.connection.settimeout(self.server_write_timeout)

    def detach(self) -> socket.socket:
        """Keep the connection open after this request: the caller now owns the socket."""
        self.request.detached = True
        return self.request.sock

    @property
    def server_write_timeout(self) -> float:
        """The write deadline the server set on this connection."""
        return float(getattr(self.server, "write_timeout_s", WRITE_TIMEOUT_S))


class BoundedHTTPServer(socketserver.BaseServer):
    """Serve `handler` on `address` with a selector thread and a fixed pool of handlers.

    `start()` runs everything on background threads (the selector thread is named
    `thread_name`); `stop()` joins them all and closes every socket.
    """

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        handler: type[PreReadHandler],
        *,
        thread_name: str = "http",
        handler_threads: int = HANDLER_THREADS,
        max_connections: int = MAX_CONNECTIONS,
        queue_size: int = QUEUE_SIZE,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        write_timeout_s: float = WRITE_TIMEOUT_S,
    ) -> None:
        super().__init__(address, handler)
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(address)
            self._listener.listen(max_connections)
            self._listener.setblocking(False)
        except OSError:
            self._listener.close()
            raise
        self.server_address = self._listener.getsockname()
        self._thread_name = thread_name
        self._handler_count = handler_threads
        self._max_connections = max_connections
        self._request_timeout_s = request_timeout_s
        self.write_timeout_s = write_timeout_s
        self._requests: queue.Queue[ReceivedRequest | None] = queue.Queue(maxsize=queue_size)
        self._pending: dict[socket.socket, _Pending] = {}
        self._selector = selectors.DefaultSelector()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def bound_address(self) -> tuple[str, int]:
        """The host and port actually bound (the real port when 0 was asked for)."""
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the selector thread and the handler threads."""
        self._threads = [
            threading.Thread(target=self._select_loop, name=self._thread_name, daemon=True)
        ] + [
            threading.Thread(
                target=self._handle_loop, name=f"{self._thread_name}-handler-{i}", daemon=True
            )
            for i in range(self._handler_count)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop accepting, let handlers finish their current request, close everything."""
        self._stopping.set()
        for thread in self._threads[:1]:
            thread.join()
        for _ in self._threads[1:]:
            self._requests.put(None)  # the selector thread is gone: nothing else fills it
        for thread in self._threads[1:]:
            thread.join()
        self._threads = []
        self.server_close()

    def server_close(self) -> None:
        """Close the listening socket and every connection still being read."""
        for sock in list(self._pending):
            self._drop(sock)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._listener)
        self._selector.close()
        self._listener.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Called inside an `except` block when a handler raised; subclasses log it."""
        logger.error("request from %s failed", client_address, exc_info=sys.exc_info()[1])

    # -- the selector thread -----------------------------------------------------------

    def _select_loop(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ)
        while not self._stopping.is_set():
            for key, _events in self._selector.select(timeout=_POLL_S):
                if key.fileobj is self._listener:
                    self._accept_all()
                else:
                    self._read(key.fileobj)  # type: ignore[arg-type]
            self._expire(time.monotonic())

    def _accept_all(self) -> None:
        while True:
            try:
                sock, address = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                self._on_accept_error(exc)
                return
            sock.setblocking(False)
            if len(self._pending) >= self._max_connections:
                self._drop(next(iter(self._pending)))  # the oldest: likely a slow client
            self._pending[sock] = _Pending(address, time.monotonic() + self._request_timeout_s)
            self._selector.register(sock, selectors.EVENT_READ)

    def _on_accept_error(self, exc: OSError) -> None:
        if exc.errno in {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}:
            logger.warning("metrics endpoint cannot accept: %s", exc.strerror)
            if self._pending:
                self._drop(next(iter(self._pending)))
            else:
                self._stopping.wait(_POLL_S)  # nothing to free: do not spin on the listener
        else:
            logger.debug("accept failed: %s", exc)

    def _read(self, sock: socket.socket) -> None:
        pending = self._pending.get(sock)
        if pending is None:
            return
        try:
            chunk = sock.recv(_READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self._drop(sock)
            return
        if not chunk:
            self._drop(sock)
            return
        pending.buffer += chunk
        if any(end in pending.buffer for end in _HEAD_ENDS):
            self._dispatch(sock, bytes(pending.buffer))
        elif len(pending.buffer) > MAX_HEAD_BYTES:
            self._drop(sock, b"431 Request Header Fields Too Large")

    def _dispatch(self, sock: socket.socket, head: bytes) -> None:
        pending = self._pending.pop(sock)
        self._selector.unregister(sock)
        sock.setblocking(True)
        sock.settimeout(self.write_timeout_s)
        try:
            self._requests.put_nowait(ReceivedRequest(sock, head, pending.address))
        except queue.Full:
            _refuse(sock, b"503 Service Unavailable")
            sock.close()

    def _expire(self, now: float) -> None:
        # Every connection gets the same timeout, so insertion order is deadline order.
        for sock, pending in list(self._pending.items()):
            if pending.deadline > now:
                return
            self._drop(sock, b"408 Request Timeout")

    def _drop(self, sock: socket.socket, status: bytes = b"") -> None:
        self._pending.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        if status:
            _refuse(sock, status)
        sock.close()

    # -- handler threads ---------------------------------------------------------------

    def _handle_loop(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            try:
                self.finish_request(request, request.address)  # type: ignore[arg-type]
            except Exception:
                self.handle_error(request, request.address)
            finally:
                if not request.detached:
                    with contextlib.suppress(OSError):
                        request.sock.shutdown(socket.SHUT_WR)
                    request.sock.close()


def _refuse(sock: socket.socket, status: bytes) -> None:
    """Best effort, never blocking: a short answer to a client we are about to close."""
    body = status + b"\n"
    reply = (
        b"HTTP/1.0 " + status + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        sock.send(reply)
