"""`LazyClient`: the HTTP clients of downloads and webhooks are built at their first use."""

from __future__ import annotations

import threading

import httpx
import pytest

from medianalysed.pinning import LazyClient


def answer(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="ok")


class Builds:
    """A client factory that counts its calls."""

    def __init__(self) -> None:
        self.clients: list[httpx.Client] = []

    def __call__(self) -> httpx.Client:
        client = httpx.Client(transport=httpx.MockTransport(answer))
        self.clients.append(client)
        return client


def test_nothing_is_built_until_the_first_use_and_then_once_for_every_thread() -> None:
    builds = Builds()
    lazy = LazyClient(builds)
    assert builds.clients == []
    seen: list[httpx.Client] = []
    threads = [threading.Thread(target=lambda: seen.append(lazy.get())) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(builds.clients) == 1
    assert seen == builds.clients * 16
    assert lazy.get().get("http://example.test/").text == "ok"
    lazy.close()
    assert builds.clients[0].is_closed


def test_a_closed_client_refuses_like_httpx_and_one_never_used_is_never_built() -> None:
    builds = Builds()
    lazy = LazyClient(builds)
    lazy.close()
    assert builds.clients == []
    with pytest.raises(RuntimeError, match="closed"):
        lazy.get()
