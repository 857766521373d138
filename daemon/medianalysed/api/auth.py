"""Who may ask: bearer tokens checked in constant time, loopback only without tokens.

A token is never kept in a message, a log line or a reply: a caller is known by the index
of its token (`token 2`), and the tokens are registered with `logs.register_secret`, so
even a message quoting one is masked.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from medianalysed.api.replies import ApiError
from medianalysed.logs import register_secret

_BEARER: Final = "bearer "
LOOPBACK_CALLER: Final = "loopback"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request comes from: `token N` or `loopback` (no tokens configured)."""

    name: str
    has_token: bool


class _Bucket:
    __slots__ = ("level", "updated")

    def __init__(self, level: float, updated: float) -> None:
        self.level = level
        self.updated = updated


class RateLimiter:
    """A token bucket per caller: `per_minute` requests, refilled evenly; 0 = no limit."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def take(self, caller: str) -> float:
        """Take one request for `caller`: 0.0 when allowed, else the seconds until one is."""
        if self._per_minute <= 0:
            return 0.0
        rate = self._per_minute / 60.0
        now = self._clock()
        with self._lock:
            bucket = self._buckets.setdefault(caller, _Bucket(float(self._per_minute), now))
            bucket.level = min(self._per_minute, bucket.level + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.level >= 1.0:
                bucket.level -= 1.0
                return 0.0
            return (1.0 - bucket.level) / rate


class Authenticator:
    """Decides whether a request is answered, and as whom."""

    def __init__(
        self,
        tokens: Sequence[str],
        *,
        per_minute: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tokens = tuple(token.encode() for token in tokens)
        for token in tokens:
            register_secret(token)
        self._limiter = RateLimiter(per_minute, clock)

    def caller(self, authorization: str | None, client_host: str) -> Caller:
        """The caller of a request, rate limit taken.

        Raises:
            ApiError: 401 without a token, 403 for an unknown token or a non-loopback client
                when no tokens are configured, 429 over the rate limit.
        """
        caller = self._identify(authorization, client_host)
        wait = self._limiter.take(caller.name)
        if wait > 0:
            raise ApiError(
                429,
                "RATE_LIMITED",
                f"too many requests; retry in {math.ceil(wait)} s",
                {"Retry-After": str(math.ceil(wait))},
            )
        return caller

    def _identify(self, authorization: str | None, client_host: str) -> Caller:
        if not self._tokens:
            if not is_loopback(client_host):
                raise ApiError(
                    403,
                    "FORBIDDEN",
                    "no [api] tokens are configured: the API answers only on loopback",
                )
            return Caller(LOOPBACK_CALLER, has_token=False)
        presented = _bearer(authorization)
        if presented is None:
            raise ApiError(
                401,
                "UNAUTHORIZED",
                "send Authorization: Bearer <token> (one of [api] tokens)",
                {"WWW-Authenticate": 'Bearer realm="medianalysed"'},
            )
        index = self._match(presented.encode())
        if index is None:
            raise ApiError(403, "FORBIDDEN", "the bearer token is not one of [api] tokens")
        return Caller(f"token {index + 1}", has_token=True)

    def _match(self, presented: bytes) -> int | None:
        # Every token is compared, so the time taken does not tell which one (or none) matched.
        found: int | None = None
        for index, token in enumerate(self._tokens):
            if hmac.compare_digest(presented, token) and found is None:
                found = index
        return found


def _bearer(authorization: str | None) -> str | None:
    if authorization is None or not authorization.lower().startswith(_BEARER):
        return None
    token = authorization[len(_BEARER) :].strip()
    return token or None


def is_loopback(host: str) -> bool:
    """Whether a client address is loopback (IPv4, IPv6, or IPv4 mapped into IPv6)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
