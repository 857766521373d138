"""`GET /v1/events`: Server-Sent Events of every batch's progress and terminal status.

One thread serves every subscriber: a handler thread answers the request head, then hands
the socket over (`attach`) and is free again, so a thousand idle subscribers hold no
handler thread. `publish` (called on the publishing thread, often an actor's) only appends
to each subscriber's buffer and wakes the thread; it never waits on a socket.

- A subscriber that closes its connection is noticed at once (its socket turns readable
  with nothing to read) and freed: its socket, buffer and registration.
- A subscriber that does not read falls behind; past `MAX_BUFFER_BYTES` queued it is
  disconnected. It reconnects with `Last-Event-ID` and gets what it missed, as long as
  that is among the last `REPLAY_EVENTS` events.
- A comment line every `HEARTBEAT_S` keeps proxies from closing an idle stream and finds
  peers that vanished without a FIN.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

from medianalysed.progress import BatchProgress
from medianalysed.state import BatchRecord
from medianalysed.webhooks.progress import event_name

logger = logging.getLogger(__name__)

MAX_SUBSCRIBERS: Final = 64
MAX_BUFFER_BYTES: Final = 1 << 20
REPLAY_EVENTS: Final = 1000
HEARTBEAT_S: Final = 15.0
_HEAD: Final = (
    b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-store\r\nConnection: close\r\nX-Accel-Buffering: no\r\n\r\n"
    b"retry: 2000\n\n"
)


def event_data(progress: BatchProgress) -> dict[str, Any]:
    """The status.json fields of a progress, as events and progress webhooks carry them."""
    return progress.document()


@dataclass(slots=True)
class _Subscriber:
    sock: socket.socket
    buffer: bytearray = field(default_factory=bytearray)


class EventHub:
    """The subscribers of `/v1/events` and the thread that writes to them."""

    def __init__(
        self,
        *,
        max_subscribers: int = MAX_SUBSCRIBERS,
        max_buffer_bytes: int = MAX_BUFFER_BYTES,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self._max_subscribers = max_subscribers
        self._max_buffer = max_buffer_bytes
        self._heartbeat_s = heartbeat_s
        self._lock = threading.Lock()
        self._subscribers: dict[socket.socket, _Subscriber] = {}
        self._arriving: list[_Subscriber] = []
        self._replay: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=REPLAY_EVENTS)
        self._next_id = 1
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- any thread ------------------------------------------------------------------------

    def observe(self, record: BatchRecord, progress: BatchProgress) -> None:
        """The `progress.add_observer` hook: one event per published progress."""
        self.publish(event_name(progress), event_data(progress))

    def publish(self, event: str, data: dict[str, Any]) -> int:
        """Queue one event for every subscriber; its id."""
        payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            event_id = self._next_id
            self._next_id += 1
            frame = f"id: {event_id}\nevent: {event}\ndata: {payload}\n\n".encode()
            self._replay.append((event_id, frame))
            for subscriber in self._subscribers.values():
                subscriber.buffer += frame
            for subscriber in self._arriving:
                subscriber.buffer += frame
        self._wake()
        return event_id

    def has_room(self) -> bool:
        """Whether another subscriber is taken now."""
        with self._lock:
            return len(self._subscribers) + len(self._arriving) < self._max_subscribers

    def attach(self, sock: socket.socket, last_event_id: str | None) -> bool:
        """Take over a subscriber's socket (its request read): the stream head, missed events.

        Returns False (the caller answers 503 and closes) when there are enough subscribers.
        """
        with self._lock:
            if len(self._subscribers) + len(self._arriving) >= self._max_subscribers:
                return False
            subscriber = _Subscriber(sock, bytearray(_HEAD))
            for event_id, frame in self._replay:
                if _is_after(event_id, last_event_id):
                    subscriber.buffer += frame
            self._arriving.append(subscriber)
        self._wake()
        return True

    @property
    def subscriber_count(self) -> int:
        """How many streams are open."""
        with self._lock:
            return len(self._subscribers) + len(self._arriving)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writing thread."""
        self._thread = threading.Thread(target=self._run, name="api-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close every stream."""
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            subscribers = list(self._subscribers.values()) + self._arriving
            self._subscribers.clear()
            self._arriving = []
        for subscriber in subscribers:
            subscriber.sock.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- the thread ------------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        next_beat = time.monotonic() + self._heartbeat_s
        try:
            while not self._stopping.is_set():
                self._admit(selector)
                for key, events in selector.select(timeout=max(0.0, next_beat - time.monotonic())):
                    if key.fileobj is self._wake_r:
                        with contextlib.suppress(BlockingIOError, OSError):
                            self._wake_r.recv(4096)
                        continue
                    self._serve(selector, key.fileobj, events)  # type: ignore[arg-type]
                if time.monotonic() >= next_beat:
                    self._beat()
                    next_beat = time.monotonic() + self._heartbeat_s
                self._flush_all(selector)
        finally:
            selector.close()

    def _admit(self, selector: selectors.BaseSelector) -> None:
        with self._lock:
            arriving, self._arriving = self._arriving, []
            for subscriber in arriving:
                subscriber.sock.setblocking(False)
                self._subscribers[subscriber.sock] = subscriber
        for subscriber in arriving:
            selector.register(subscriber.sock, selectors.EVENT_READ)

    def _serve(self, selector: selectors.BaseSelector, sock: socket.socket, events: int) -> None:
        if events & selectors.EVENT_READ:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                data = b"-"
            except OSError:
                data = b""
            if not data:  # the subscriber closed: free it now
                self._drop(selector, sock)

    def _beat(self) -> None:
        with self._lock:
            for subscriber in self._subscribers.values():
                subscriber.buffer += b": keepalive\n\n"

    def _flush_all(self, selector: selectors.BaseSelector) -> None:
        with self._lock:
            subscribers = list(self._subscribers.values())
        for subscriber in subscribers:
            self._flush(selector, subscriber)

    def _flush(self, selector: selectors.BaseSelector, subscriber: _Subscriber) -> None:
        with self._lock:
            pending = bytes(subscriber.buffer)
        sent = 0
        if pending:
            try:
                sent = subscriber.sock.send(pending)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._drop(selector, subscriber.sock)
                return
        with self._lock:
            del subscriber.buffer[:sent]
            left = len(subscriber.buffer)
        if left > self._max_buffer:
            logger.info("an event subscriber fell %d bytes behind and is disconnected", left)
            self._drop(selector, subscriber.sock)
            return
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if left else 0)
        with contextlib.suppress(KeyError, ValueError):
            selector.modify(subscriber.sock, wanted)

    def _drop(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        with self._lock:
            self._subscribers.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(sock)
        sock.close()


def _is_after(event_id: int, last_event_id: str | None) -> bool:
    if last_event_id is None:
        return False
    try:
        return event_id > int(last_event_id.strip())
    except ValueError:
        return False
