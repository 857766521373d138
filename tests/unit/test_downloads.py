"""Downloads against real servers on 127.0.0.1: total deadline, error mapping, pinned address."""

from __future__ import annotations

import base64
import gzip
import ipaddress
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medianalysed.config import DownloadsConfig
from medianalysed.contentcoding import BoundedDecoder, ContentCodingError
from medianalysed.downloads import Downloader, DownloadOutcome
from medianalysed.errors import AnalysisError, ErrorCode
from medianalysed.pinning import Address
from tests.scripted_http import answer, broken_gzip, drip, scripted_server

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 200


@pytest.fixture
def downloader() -> Iterator[Downloader]:
    made = Downloader(DownloadsConfig(timeout_seconds=1.0, allow_private_networks=True))
    yield made
    made.close()


def code_of(downloader: Downloader, url: str, destination: Path) -> ErrorCode:
    with pytest.raises(AnalysisError) as caught:
        downloader.fetch(url, destination)
    return caught.value.code


def test_a_plain_download_lands_at_its_destination(downloader: Downloader, tmp_path: Path) -> None:
    with scripted_server({"/x.jpg": answer(200, JPEG)}) as server:
        downloader.fetch(f"{server.base}/x.jpg", tmp_path / "x")
    assert (tmp_path / "x").read_bytes() == JPEG
    assert not (tmp_path / "x.part").exists()


@pytest.mark.parametrize("in_headers", [False, True], ids=["body", "headers"])
def test_a_server_dripping_one_byte_at_a_time_is_cut_at_the_total_deadline(
    downloader: Downloader, tmp_path: Path, in_headers: bool
) -> None:
    # Each byte comes well within the per-read timeout; only a total deadline ends this.
    with scripted_server({}) as server:
        server.routes["/slow.jpg"] = drip(server, 0.05, in_headers=in_headers)
        with pytest.raises(AnalysisError) as caught:
            downloader.fetch(f"{server.base}/slow.jpg", tmp_path / "slow")
    assert caught.value.code == ErrorCode.TIMEOUT
    assert "timeout_seconds (1 s)" in caught.value.message
    assert not list(tmp_path.iterdir())  # the partial file is gone


def test_a_broken_gzip_body_is_a_remote_error(downloader: Downloader, tmp_path: Path) -> None:
    with scripted_server({"/z.jpg": broken_gzip(JPEG * 50)}) as server:
        assert code_of(downloader, f"{server.base}/z.jpg", tmp_path / "z") == ErrorCode.REMOTE_ERROR


def test_a_connection_closed_mid_body_is_a_network_error(
    downloader: Downloader, tmp_path: Path
) -> None:
    def truncated(out, _headers):  # type: ignore[no-untyped-def]
        out.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + JPEG[:10])

    with scripted_server({"/t.jpg": truncated}) as server:
        code = code_of(downloader, f"{server.base}/t.jpg", tmp_path / "t")
    assert code == ErrorCode.NETWORK_ERROR


@pytest.mark.parametrize(
    ("status", "code"),
    [(404, ErrorCode.BAD_REQUEST), (429, ErrorCode.RATE_LIMITED), (503, ErrorCode.REMOTE_ERROR)],
)
def test_statuses_map_to_their_codes(
    downloader: Downloader, tmp_path: Path, status: int, code: ErrorCode
) -> None:
    with scripted_server({"/s": answer(status)}) as server:
        assert code_of(downloader, f"{server.base}/s", tmp_path / "s") == code


@pytest.mark.parametrize(
    "url",
    ["http://[::1/x.jpg", "http://a..b/x.jpg", "http://h:99999/", "http://h:0/", "ftp://h/x"],
)
def test_malformed_urls_are_bad_requests(downloader: Downloader, tmp_path: Path, url: str) -> None:
    assert code_of(downloader, url, tmp_path / "m") == ErrorCode.BAD_REQUEST


def test_credentials_are_used_for_the_request_but_never_shown(
    downloader: Downloader, tmp_path: Path
) -> None:
    with scripted_server({"/private.jpg": answer(403)}) as server:
        url = f"http://alice:S3CRETPW@127.0.0.1:{server.port}/private.jpg"
        with pytest.raises(AnalysisError) as caught:
            downloader.fetch(url, tmp_path / "p")
        (request,) = server.recorded()
    assert request.headers["authorization"] == "Basic " + base64.b64encode(
        b"alice:S3CRETPW"
    ).decode("ascii")
    assert "S3CRETPW" not in caught.value.message
    assert "alice" not in caught.value.message


class RebindingResolver:
    """A DNS that answers `first` once, then `then`: what a rebinding attacker serves."""

    def __init__(self, first: str, then: str) -> None:
        self.answers = [first, then]
        self.calls: list[str] = []

    def __call__(self, host: str, port: int, timeout: float | None) -> list[Address]:
        self.calls.append(host)
        answer = self.answers[min(len(self.calls), len(self.answers)) - 1]
        return [ipaddress.ip_address(answer)]


def test_dns_rebinding_cannot_reach_the_loopback_server(tmp_path: Path) -> None:
    # A public address for the check, loopback for any second lookup: with the address
    # pinned there is no second lookup, so the loopback server never hears from us.
    resolver = RebindingResolver(first="2606:4700:4700::1111", then="127.0.0.1")
    checking = Downloader(DownloadsConfig(timeout_seconds=1.0), resolver=resolver)
    try:
        with scripted_server({"/x.jpg": answer(200, JPEG)}) as victim:
            url = f"http://rebind.example:{victim.port}/x.jpg"
            code = code_of(checking, url, tmp_path / "r")
            assert victim.recorded() == []
    finally:
        checking.close()
    assert code in {ErrorCode.NETWORK_ERROR, ErrorCode.TIMEOUT}
    assert resolver.calls == ["rebind.example"]


def test_the_connection_goes_to_the_resolved_address_with_the_name_as_host(
    tmp_path: Path,
) -> None:
    resolver = RebindingResolver(first="127.0.0.1", then="192.0.2.1")
    allowing = Downloader(
        DownloadsConfig(timeout_seconds=2.0, allow_private_networks=True), resolver=resolver
    )
    try:
        with scripted_server({"/x.jpg": answer(200, JPEG)}) as server:
            allowing.fetch(f"http://pinned.example:{server.port}/x.jpg", tmp_path / "x")
            (request,) = server.recorded()
    finally:
        allowing.close()
    assert request.headers["host"] == f"pinned.example:{server.port}"
    assert resolver.calls == ["pinned.example"]
    assert (tmp_path / "x").read_bytes() == JPEG


def test_a_loopback_target_is_refused_by_default(tmp_path: Path) -> None:
    refusing = Downloader(DownloadsConfig(timeout_seconds=1.0))
    try:
        with scripted_server({"/x.jpg": answer(200, JPEG)}) as server:
            with pytest.raises(AnalysisError) as caught:
                refusing.fetch(f"{server.base}/x.jpg", tmp_path / "x")
            assert server.recorded() == []
    finally:
        refusing.close()
    assert caught.value.code == ErrorCode.REFUSED
    assert "allow_private_networks" in caught.value.message


def test_a_redirect_to_loopback_is_refused_at_its_hop(tmp_path: Path) -> None:
    resolver = RebindingResolver(first="127.0.0.1", then="127.0.0.1")
    refusing = Downloader(DownloadsConfig(timeout_seconds=1.0), resolver=resolver)
    try:
        with pytest.raises(AnalysisError) as caught:
            refusing.fetch("http://[::ffff:127.0.0.1]:9/x.jpg", tmp_path / "x")
    finally:
        refusing.close()
    assert caught.value.code == ErrorCode.REFUSED  # an IPv4-mapped loopback is loopback


def test_submit_reports_on_a_download_thread(downloader: Downloader, tmp_path: Path) -> None:
    done = threading.Event()
    seen: list[tuple[DownloadOutcome, str]] = []

    def on_done(outcome: DownloadOutcome) -> None:
        seen.append((outcome, threading.current_thread().name))
        done.set()

    with scripted_server({"/x.jpg": answer(200, JPEG)}) as server:
        downloader.submit(f"{server.base}/x.jpg", tmp_path / "x", on_done)
        assert done.wait(10)
    ((outcome, thread_name),) = seen
    assert outcome == DownloadOutcome()
    assert thread_name.startswith("download")


def test_a_closed_downloader_refuses_new_work(tmp_path: Path) -> None:
    closed = Downloader(DownloadsConfig(timeout_seconds=1.0))
    closed.close()
    with pytest.raises(RuntimeError):
        closed.submit("http://example.com/x.jpg", tmp_path / "x", lambda _outcome: None)


def _everything_is_loopback(host: str, port: int, timeout: float | None) -> list[Address]:
    return [ipaddress.ip_address("127.0.0.1")]


@settings(deadline=None, max_examples=150)
@given(
    st.one_of(
        st.text(max_size=80),
        st.builds(lambda tail: "http://" + tail, st.text(max_size=60)),
        st.builds(lambda tail: "https://[" + tail, st.text(max_size=30)),
    )
)
def test_any_text_ends_in_an_analysis_error_never_another_exception(text: str) -> None:
    # Every host resolves to loopback and private targets are refused: nothing leaves.
    guarded = Downloader(DownloadsConfig(timeout_seconds=1.0), resolver=_everything_is_loopback)
    try:
        with pytest.raises(AnalysisError) as caught:
            guarded.fetch(text, Path("/nonexistent/never-written"))
    finally:
        guarded.close()
    assert caught.value.code in {ErrorCode.BAD_REQUEST, ErrorCode.REFUSED}


def test_a_gzip_encoded_download_lands_decoded(downloader: Downloader, tmp_path: Path) -> None:
    body = JPEG * 100
    encoded = answer(200, gzip.compress(body), {"Content-Encoding": "gzip"})
    with scripted_server({"/g.jpg": encoded}) as server:
        downloader.fetch(f"{server.base}/g.jpg", tmp_path / "g")
        (request,) = server.recorded()
    assert (tmp_path / "g").read_bytes() == body
    assert request.headers["accept-encoding"] == "gzip, deflate"


def test_a_decompression_bomb_stops_at_max_bytes(tmp_path: Path) -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)  # 50 MB in ~50 KB
    capped = Downloader(
        DownloadsConfig(timeout_seconds=5.0, max_bytes=1_000_000, allow_private_networks=True)
    )
    try:
        route = answer(200, bomb, {"Content-Encoding": "gzip"})
        with scripted_server({"/b.jpg": route}) as web, pytest.raises(AnalysisError) as caught:
            capped.fetch(f"{web.base}/b.jpg", tmp_path / "b")
    finally:
        capped.close()
    assert caught.value.code == ErrorCode.TOO_LARGE
    assert not list(tmp_path.iterdir())


def test_an_encoding_we_did_not_ask_for_is_a_remote_error(
    downloader: Downloader, tmp_path: Path
) -> None:
    with scripted_server({"/br.jpg": answer(200, JPEG, {"Content-Encoding": "br"})}) as server:
        assert code_of(downloader, f"{server.base}/br.jpg", tmp_path / "b") == (
            ErrorCode.REMOTE_ERROR
        )


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate", "identity"])
def test_the_decoder_never_yields_more_than_a_step(encoding: str) -> None:
    body = bytes(range(256)) * 4000 + b"\0" * 3_000_000
    if encoding == "gzip":
        data = gzip.compress(body)
    elif encoding == "deflate":
        data = zlib.compress(body)
    elif encoding == "raw-deflate":
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data = packer.compress(body) + packer.flush()
        encoding = "deflate"
    else:
        data = body
    decoder = BoundedDecoder(encoding, step=4096)
    pieces = [
        piece
        for start in range(0, len(data), 65536)
        for piece in decoder.feed(data[start : start + 65536])
    ]
    decoder.finish()
    assert max(len(piece) for piece in pieces) <= 4096
    assert b"".join(pieces) == body


def test_a_truncated_or_unknown_coding_is_reported() -> None:
    decoder = BoundedDecoder("gzip")
    list(decoder.feed(gzip.compress(JPEG * 100)[:40]))
    with pytest.raises(ContentCodingError, match="truncated"):
        decoder.finish()
    with pytest.raises(ContentCodingError, match="unsupported"):
        BoundedDecoder("zstd")
