"""urls.txt cannot hurt: one entry per non-comment line, BAD_REQUEST for each malformed one."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from medianalysed.errors import ErrorCode
from medianalysed.models import ImageStatus
from medianalysed.state import ImageRecord
from medianalysed.urllist import (
    MAX_URLS_BYTES,
    entries_with_urls,
    parse_url,
    read_url_entries,
    url_entries,
)

HOSTILE = [
    "http://[::1/x.jpg",  # ValueError in urlsplit
    "http://a..b/x.jpg",  # UnicodeError in the idna codec
    "http://h:99999/",  # port out of range
    "http://h:0/x.jpg",
    "http://h:port/x.jpg",
    "ftp://example.com/x.jpg",
    "http:///x.jpg",
    "http://exa mple.com/x.jpg",
    "http://example.com/\x00.jpg",
    "http://" + "a" * 64 + ".com/x.jpg",
    "http://example.com/" + "x" * 9000,
    "javascript:alert(1)",
    "//example.com/x.jpg",
]


def records_of(text: bytes) -> dict[str, ImageRecord | None]:
    return dict(url_entries(text, truncated=False))


def test_each_reproduced_malformed_line_is_its_own_bad_request() -> None:
    text = ("\n".join(["http://example.com/ok.jpg", *HOSTILE]) + "\n").encode()
    records = records_of(text)
    assert len(records) == 1 + len(HOSTILE)
    good = records["urls.txt#L0001"]
    assert good is not None
    assert good.status == ImageStatus.PENDING
    assert good.source_url == "http://example.com/ok.jpg"
    for number in range(2, len(HOSTILE) + 2):
        record = records[f"urls.txt#L{number:04d}"]
        assert record is not None
        assert record.status == ImageStatus.FAILED
        assert record.error is not None
        assert record.error["code"] == "BAD_REQUEST", record
        assert len(record.error["message"]) <= 200


def test_blank_lines_comments_crlf_and_a_bom() -> None:
    text = (
        b"\xef\xbb\xbfhttp://a.example/1.jpg\r\n\r\n# a comment\n  \n\thttp://a.example/2.jpg  \n"
    )
    records = records_of(text)
    assert sorted(records) == ["urls.txt#L0001", "urls.txt#L0005"]
    assert all(r is not None and r.status == ImageStatus.PENDING for r in records.values())


def test_only_newline_splits_lines() -> None:
    # str.splitlines would also split at \x0b, \x1c, \u2028: line numbers would drift.
    text = "http://a.example/1.jpg\u2028x\nhttp://a.example/2.jpg\x0bx\n".encode()
    assert sorted(records_of(text)) == ["urls.txt#L0001", "urls.txt#L0002"]


def test_invalid_utf8_is_a_bad_request_for_that_line_only() -> None:
    records = records_of(b"http://a.example/\xff.jpg\nhttp://a.example/ok.jpg\n")
    bad = records["urls.txt#L0001"]
    assert bad is not None
    assert bad.error is not None
    assert "UTF-8" in bad.error["message"]
    assert records["urls.txt#L0002"] is not None


def test_credentials_stay_for_the_download_and_never_in_what_is_shown() -> None:
    records = records_of(b"http://bob:PW1SECRET@a.example/x.jpg\nhttp://bob:PW2SECRET@[::1/x\n")
    good, bad = records["urls.txt#L0001"], records["urls.txt#L0002"]
    assert good is not None
    assert good.source_url == "http://bob:PW1SECRET@a.example/x.jpg"  # state only
    assert bad is not None
    assert "PW2SECRET" not in json.dumps([bad.source_url, bad.error])
    assert bad.source_url == "http://[::1/x"


def test_a_file_over_the_cap_reports_the_unread_rest(tmp_path: Path) -> None:
    comment = b"#" * 1023 + b"\n"
    body = comment * (MAX_URLS_BYTES // len(comment) - 1)
    (tmp_path / "urls.txt").write_bytes(body + b"http://a.example/x.jpg\n" + comment * 10)
    entries = read_url_entries(tmp_path)
    assert len(entries) == 2
    (_, good), (path, last) = entries
    assert good is not None
    assert good.status == ImageStatus.PENDING
    assert last is not None
    assert last.error is not None
    assert last.error["code"] == "BAD_REQUEST"
    assert "were not read" in last.error["message"]
    assert path == f"urls.txt#L{MAX_URLS_BYTES // len(comment) + 1}"


def test_a_local_file_named_like_a_url_entry_keeps_its_own_record(tmp_path: Path) -> None:
    # The reproduction: `urls.txt#L0001` beside a urls.txt shared one record, for ever.
    (tmp_path / "urls.txt").write_text("http://a.example/1.jpg\nhttp://a.example/2.jpg\n")
    (tmp_path / "urls.txt#L0001").write_bytes(b"local")
    (tmp_path / "a.jpg").write_bytes(b"local")
    local = iter([("a.jpg", None), ("urls.txt#L0001", None)])

    merged = list(entries_with_urls(tmp_path, local))

    paths = [path for path, _ in merged]
    assert paths == ["a.jpg", "urls.txt#L0001", "urls.txt#L0001/", "urls.txt#L0002"]
    assert paths == sorted(paths)
    records = dict(merged)
    assert records["urls.txt#L0001"] is None  # the local file: enumerated, no URL
    moved = records["urls.txt#L0001/"]
    assert moved is not None
    assert moved.path == "urls.txt#L0001/"
    assert moved.source_url == "http://a.example/1.jpg"


def test_a_late_local_twin_still_gets_its_own_path(tmp_path: Path) -> None:
    (tmp_path / "urls.txt").write_text("http://a.example/1.jpg\n")
    # Not on disk when the top level is listed, but enumerated: the merge still separates.
    merged = list(entries_with_urls(tmp_path, iter([("urls.txt#L0001", None)])))
    assert [path for path, _ in merged] == ["urls.txt#L0001", "urls.txt#L0001/"]


def test_a_urls_txt_that_is_a_symlink_or_a_fifo_is_one_refused_record(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("http://a.example/1.jpg\n")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "urls.txt").symlink_to(tmp_path / "real.txt")
    ((path, record),) = read_url_entries(linked)
    assert path == "urls.txt"
    assert record is not None
    assert record.error is not None
    assert record.error["code"] == "REFUSED"

    piped = tmp_path / "piped"
    piped.mkdir()
    os.mkfifo(piped / "urls.txt")
    ((_, record),) = read_url_entries(piped)
    assert record is not None
    assert record.error is not None
    assert "not a regular file" in record.error["message"]


def test_a_folder_named_urls_txt_is_a_group_not_a_list(tmp_path: Path) -> None:
    (tmp_path / "urls.txt").mkdir()
    assert read_url_entries(tmp_path) == []


secrets = st.text(alphabet="ABCDEFGHJKMNPQRSTUVWXYZ23456789", min_size=12, max_size=16).map(
    lambda core: "Zq" + core
)
url_like = st.one_of(
    st.text(max_size=60),
    st.sampled_from(HOSTILE),
    st.builds(lambda host: f"http://{host}/x.jpg", st.text(max_size=20)),
    st.just("http://example.com/x.jpg"),
    st.just("# comment"),
    st.just(""),
)


@st.composite
def urls_files(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """A urls.txt, and the secrets it hides in userinfo."""
    lines: list[bytes] = []
    hidden: list[str] = []
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["text", "bytes", "secret"]))
        if kind == "bytes":
            lines.append(draw(st.binary(max_size=40)).replace(b"\n", b""))
        elif kind == "secret":
            secret = draw(secrets)
            hidden.append(secret)
            tail = draw(url_like).replace("\n", "")
            lines.append(f"https://user:{secret}@{tail.split('//', 1)[-1]}".encode())
        else:
            lines.append(draw(url_like).replace("\n", "").encode())
    return b"\n".join(lines), hidden


def is_entry_line(raw: bytes, first: bool) -> bool:
    try:
        text = raw.removesuffix(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        return True
    text = text.removeprefix("\ufeff").strip() if first else text.strip()
    return bool(text) and not text.startswith("#")


@settings(deadline=None, max_examples=200)
@given(urls_files())
def test_any_urls_txt_gives_one_entry_per_line_and_shows_no_secret(
    drawn: tuple[bytes, list[str]],
) -> None:
    data, hidden = drawn
    entries = url_entries(data, truncated=False)

    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    expected = [n for n, raw in enumerate(lines, start=1) if is_entry_line(raw, n == 1)]
    paths = [path for path, _ in entries]
    assert paths == sorted(paths)
    assert len(set(paths)) == len(paths)
    assert [int(path.removeprefix("urls.txt#L")) for path in paths] == expected
    for path, record in entries:
        assert record is not None
        assert record.path == path
        if record.status == ImageStatus.FAILED:
            assert record.error is not None
            assert record.error["code"] == ErrorCode.BAD_REQUEST
            shown = json.dumps([record.source_url, record.error])
            assert not any(secret in shown for secret in hidden)
        else:
            assert record.source_url is not None
            assert parse_url(record.source_url) == record.source_url
