"""Strategies for a batch's control files: `batch.toml` and `urls.txt` of every kind."""

from __future__ import annotations

from hypothesis import strategies as st

from tests.generated.content import damaged_images, intact_images
from tests.generated.spec import Blob, OutsideLink, UrlKind, UrlLine

# --- batch.toml -----------------------------------------------------------------------------


# A callback URL with a password (the materialiser records every `Zq9SeCrEt...` it writes).
_CREDENTIAL_CALLBACK = "http://user:Zq9SeCrEttomlcallback@{NETLOC}/hook"

TOML_KINDS: tuple[str, ...] = (
    "valid", "wrong", "garbage", "nested-arrays", "nested-tables", "dotted", "huge", "not-utf8",
    "outside",
)  # fmt: skip


@st.composite
def batch_tomls(draw: st.DrawFn, kinds: tuple[str, ...] = TOML_KINDS) -> Blob | OutsideLink:
    kind = draw(st.sampled_from(kinds))
    if kind == "outside":
        return OutsideLink()
    if kind == "valid":
        priority = draw(st.sampled_from(("high", "normal", "low")))
        tags = draw(st.lists(st.text(max_size=10), max_size=4))
        body = f'priority = "{priority}"\ntags = {_toml_strings(tags)}\n'
        callback = draw(st.sampled_from(("", "http://{NETLOC}/hook", _CREDENTIAL_CALLBACK)))
        if callback:
            body += f'callback_url = "{callback}"\n'
        return Blob(body.encode(), "toml:valid")
    if kind == "wrong":
        lines = draw(
            st.lists(
                st.sampled_from(
                    ('priority = "urgent"', "priority = 3", 'tags = "a"', "tags = [1, 2]",
                     "callback_url = 7", 'callback_url = "ftp://x"', 'callbak_url = "http://a"',
                     "[priority]", 'unknown = "x"', 'callback_url = "' + _CREDENTIAL_CALLBACK + '"')
                ),
                min_size=1,
                max_size=4,
                unique=True,
            )
        )  # fmt: skip
        return Blob("\n".join(lines).encode(), "toml:wrong")
    if kind == "garbage":
        return Blob(draw(st.binary(max_size=300)), "toml:garbage")
    depth = draw(st.sampled_from((50, 500, 5_000, 50_000)))
    if kind == "nested-arrays":
        return Blob(b"tags = " + b"[" * depth + b"]" * depth + b"\n", f"toml:arrays{depth}")
    if kind == "nested-tables":
        return Blob(b"x = " + b"{a=" * depth + b"1" + b"}" * depth + b"\n", f"toml:tables{depth}")
    if kind == "dotted":
        return Blob(b".".join([b"a"] * depth) + b" = 1\n", f"toml:dotted{depth}")
    if kind == "huge":
        size = draw(st.sampled_from((1 << 16, 1 << 20, 8 << 20)))
        return Blob(b'tags = ["' + b"x" * size + b'"]\n', f"toml:huge{size}")
    return Blob(b'priority = "high"\ntags = ["\xff\xfe"]\n', "toml:not-utf8")


def _toml_strings(values: list[str]) -> str:
    escaped = (
        '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in v)
        + '"'
        for v in values
    )  # fmt: skip
    return "[" + ", ".join(escaped) + "]"


# --- urls.txt -------------------------------------------------------------------------------

# A prefix nothing else generated can contain, so a hit in the outbox is the credential itself.
_SECRETS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=12, max_size=12).map(
    lambda drawn: "Zq9SeCrEt" + drawn
)

_MALFORMED: tuple[bytes, ...] = (
    b"not a url", b"ftp://{NETLOC}/x.jpg", b"http://", b"https://", b"http:///x.jpg",
    b"http://[::1", b"http://{NETLOC}:99999/x", b"file:///etc/passwd", b"javascript:alert(1)",
    b"//{NETLOC}/img", b"http://exa mple.com/", b"http://\xff\xfe/x", b"http://{NETLOC}/\xff",
    b"\xef\xbb\xbfhttp://{NETLOC}/status/404", b"http://{NETLOC}/a\x0cb", b"http://{NETLOC}/a\x1cb",
    b"http://{NETLOC}/a\xc2\x85b", b"http://{NETLOC}/a\xe2\x80\xa8b", b"http://{NETLOC}/a\x0bb",
    b"  # not a comment: text before the hash", b"http://{NETLOC}/" + b"a" * 100_000,
    b"HTTP://{NETLOC}/status/404", b"http://user@{NETLOC}/status/404",
)  # fmt: skip


URL_KINDS: tuple[UrlKind, ...] = (
    "image", "image", "damaged", "status", "drip", "huge", "huge-chunked", "gzip-broken", "reset",
    "redirect-loop", "redirect", "lying-length", "refused-port", "unresolvable", "malformed",
    "malformed", "comment", "blank",
)  # fmt: skip


@st.composite
def url_lines(draw: st.DrawFn, kinds: tuple[UrlKind, ...] = URL_KINDS) -> UrlLine:
    kind: UrlKind = draw(st.sampled_from(kinds))
    if kind == "comment":
        return UrlLine(kind, draw(st.sampled_from((b"#", b"# c", b"   # indented", b"#http://x"))))
    if kind == "blank":
        return UrlLine(kind, draw(st.sampled_from((b"", b" ", b"\t", b"  \t "))))
    if kind == "malformed":
        return UrlLine(
            kind,
            draw(
                st.sampled_from(_MALFORMED)
                | st.binary(min_size=1, max_size=80).filter(_malformed_bytes)
            ),
        )
    secret = draw(_SECRETS) if draw(st.integers(0, 3)) == 0 else ""
    userinfo = f"user:{secret}@".encode() if secret else b""
    body = b""
    if kind == "image":
        body = draw(intact_images()).content
        target = b"http://%s{NETLOC}/img/{TOKEN}" % userinfo
    elif kind == "damaged":
        body = draw(damaged_images()).content
        target = b"http://%s{NETLOC}/img/{TOKEN}" % userinfo
    elif kind == "status":
        code = draw(st.sampled_from((400, 401, 403, 404, 410, 418, 429, 500, 502, 503, 599)))
        target = b"http://%s{NETLOC}/status/%d" % (userinfo, code)
    elif kind == "redirect":
        target = b"http://%s{NETLOC}/redirect/status/404" % userinfo
    elif kind == "refused-port":
        target = b"http://%s127.0.0.1:1/x.jpg" % userinfo
    elif kind == "unresolvable":
        target = b"http://%sno-such-host.invalid/x.jpg" % userinfo
    else:
        target = b"http://%s{NETLOC}/%s" % (userinfo, kind.encode())
    padding = draw(st.sampled_from((b"", b" ", b"\t", b"  ")))
    return UrlLine(kind, padding + target + padding[::-1], body=body, secret=secret)


def _malformed_bytes(line: bytes) -> bool:
    # A drawn byte string is a malformed line only if it is not blank, a comment or a line break.
    text = line.strip()
    return bool(text) and not text.startswith(b"#") and b"\n" not in line and b"\r" not in line


def urls_files(
    max_lines: int = 12, kinds: tuple[UrlKind, ...] = URL_KINDS, *, outside: bool = True
) -> st.SearchStrategy[tuple[UrlLine, ...] | OutsideLink]:
    lines = st.lists(url_lines(kinds), max_size=max_lines).map(tuple)
    if not outside:
        return lines
    return st.one_of(lines, lines, st.just(OutsideLink()))
