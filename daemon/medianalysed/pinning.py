"""An httpx client for URLs a dropper chose: checked addresses, pinned, within a total deadline.

- `PinnedBackend`, an httpcore network backend: its `connect_tcp` resolves the host once,
  refuses it if any address is not public (unless private networks are allowed), and
  connects to one of the addresses it checked. httpcore takes the Host header, the TLS SNI
  and the certificate check from the URL, so those stay the name. There is no second
  resolution, so no second answer for a rebinding DNS server to change.
- `total_deadline(seconds)`: while it is active, every resolution, connect, TLS handshake,
  read and write of the calling thread is clamped to what is left of `seconds`; httpx's own
  timeouts are per operation, so a server dripping one byte at a time would never trip them.
- `PinnedTransport`: httpx's transport, built on a connection pool using that backend
  (httpx does not take a network backend), with httpcore's exceptions mapped to httpx's.

Proxies from the environment are not used (`trust_env=False`): a proxy would resolve the
name itself, out of our sight.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final

import httpcore
import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port, timeout in seconds or None) -> the host's addresses, in preference order.
Resolver = Callable[[str, int, float | None], list[Address]]

WRITE_CHUNK: Final = 1 << 16
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_deadline: ContextVar[float | None] = ContextVar("medianalysed_http_deadline", default=None)


class AddressRefusedError(Exception):
    """The host resolves to an address requests may not go to; the text says how to allow it."""

    def __init__(self, host: str, address: Address) -> None:
        super().__init__(
            f"{host} resolves to non-public address {address}; "
            "set [downloads] allow_private_networks = true to allow it"
        )


@contextmanager
def total_deadline(seconds: float) -> Iterator[None]:
    """Bound every network operation of this thread, together, to `seconds` from now."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def is_public(address: Address) -> bool:
    """Whether `address` is globally routable, also through the IPv4 it may embed."""
    if not address.is_global:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour]
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        return all(v4 is None or v4.is_global for v4 in embedded)
    return True


def system_resolver(host: str, port: int, timeout: float | None) -> list[Address]:
    """The addresses of `host` from the system resolver, which is given at most `timeout`.

    getaddrinfo has no timeout of its own: it runs in a daemon thread that is left to finish
    on its own if it outlives `timeout`.

    Raises:
        httpcore.ConnectTimeout: no answer in time.
        httpcore.ConnectError: the name does not resolve.
    """
    literal = _literal(host)
    if literal is not None:
        return [literal]
    answer: list[Any] = []
    done = threading.Event()

    def resolve() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:
            answer.append(exc)
        finally:
            done.set()

    threading.Thread(target=resolve, name="resolve", daemon=True).start()
    if not done.wait(timeout):
        raise httpcore.ConnectTimeout(f"resolving {host} took too long")
    result = answer[0]
    if isinstance(result, Exception):
        reason = getattr(result, "strerror", None) or type(result).__name__
        raise httpcore.ConnectError(f"cannot resolve {host}: {reason}")
    addresses: list[Address] = []
    for info in result:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def pinned_client(
    *,
    timeout_s: float,
    allow_private: bool,
    user_agent: str,
    resolver: Resolver = system_resolver,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """A client whose every connection goes to a checked, pinned address (see the module).

    `transport` replaces the pinned one (unit tests pass an `httpx.MockTransport`: no network,
    so no address to check); the timeout, redirect and header settings stay.
    """
    return httpx.Client(
        transport=transport or PinnedTransport(allow_private=allow_private, resolver=resolver),
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": user_agent},
    )


class LazyClient:
    """An httpx client built at its first use: building one loads the CA bundle (20-40 ms),
    which a daemon that never downloads or posts a webhook should not pay while starting."""

    def __init__(self, build: Callable[[], httpx.Client]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._closed = False

    def get(self) -> httpx.Client:
        """The client, built on the first call (any thread).

        Raises:
            RuntimeError: after `close` (as a closed httpx client does).
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the HTTP client has been closed")
            if self._client is None:
                self._client = self._build()
            return self._client

    def close(self) -> None:
        """Close the client if it was built; later `get` calls raise."""
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def _clamp(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the total time limit was reached")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation is clamped to the current total deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # One write may be many sends, each given the whole timeout: clamp chunk by chunk.
        for start in range(0, len(buffer), WRITE_CHUNK):
            chunk = buffer[start : start + WRITE_CHUNK]
            self._inner.write(chunk, _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        clamped = _clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, clamped))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class PinnedBackend(httpcore.NetworkBackend):
    """Resolves once, checks, connects to what it checked (see the module docstring)."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = system_resolver) -> None:
        self._allow_private = allow_private
        self._resolver = resolver
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._resolver(host, port, _clamp(timeout, httpcore.ConnectTimeout))
        if not self._allow_private:
            for address in addresses:
                if not is_public(address):
                    raise AddressRefusedError(host, address)
        failure: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(
                    str(address),
                    port,
                    _clamp(timeout, httpcore.ConnectTimeout),
                    local_address,
                    socket_options,
                )
            except httpcore.ConnectError as exc:
                failure = exc
                continue
            return _DeadlineStream(stream)
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.UnsupportedProtocol("no unix sockets for remote URLs")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


# Most specific first: the first match wins.
_EXCEPTIONS: Final[tuple[tuple[type[Exception], type[httpx.HTTPError]], ...]] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _httpx_exceptions() -> Iterator[None]:
    try:
        yield
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as exc:
        raise _mapped(exc) from exc
    except httpcore.UnsupportedProtocol as exc:
        raise httpx.UnsupportedProtocol(str(exc)) from exc


def _mapped(exc: Exception) -> httpx.HTTPError:
    for source, target in _EXCEPTIONS:
        if isinstance(exc, source):
            return target(str(exc))
    return httpx.TransportError(str(exc))


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, inner: Iterable[bytes]) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_exceptions():
            yield from self._inner

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class PinnedTransport(httpx.BaseTransport):
    """httpx's HTTP/1.1 transport over a `PinnedBackend`."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver = system_resolver,
        max_connections: int = 32,
    ) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=PinnedBackend(allow_private=allow_private, resolver=resolver),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` over a pinned connection (httpx calls this)."""
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_exceptions():
            response = self._pool.handle_request(core_request)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()
