"""Hypothesis strategies for whole batches: a tree of arbitrary byte names and hostile content.

A `BatchSpec` is plain data (names, bytes, link kinds, URL line kinds); `materialise.py` turns
it into real files, symlinks and FIFOs. Everything that depends on where the batch lands (the
test server's port, the folder outside the batch a link points at) is left symbolic here and
filled in there, so the same spec rebuilds the same batch anywhere.

What is generated (issue 15 point 9):
- names: 1-255 bytes, anything but `/` and NUL: invalid UTF-8, newlines and control characters,
  emoji, NFC/NFD twins, names the daemon itself uses (`urls.txt#L0001`, `.ready`, `batch.toml`),
  NAS/OS junk in any case, partial-download suffixes; and chains of folders deep enough to pass
  PATH_MAX;
- content: real corpus images, damaged copies (truncated, bit-flipped, header fields that lie),
  fuzz reproducers and bombs, empty files, non-images, sparse files over `max_file_size`;
- entries that are not plain files: symlinks (to a file or folder inside the batch, out of it,
  to /etc/passwd, dangling, looping) and FIFOs;
- `batch.toml`: valid, wrong keys or types, not TOML, deeply nested, huge, not UTF-8, a symlink
  out of the batch;
- `urls.txt`: URLs to the local test server (images, 404/500/429, slow drip, huge bodies,
  broken gzip, resets, redirect loops), credentials in URLs, malformed lines, comments, blank
  lines, CRLF, odd separators, not UTF-8, a symlink out of the batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from hypothesis import strategies as st

from tests.generated import corpus, damage

# --- the spec -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Blob:
    """A regular file. `sparse_size` > 0 makes it a hole of that many bytes instead."""

    content: bytes
    label: str
    sparse_size: int = 0

    def __repr__(self) -> str:
        # Short, so a failing example prints in a few lines; input.tar and spec.pickle of a
        # saved reproducer hold the bytes.
        digest = hashlib.sha256(self.content).hexdigest()[:12]
        size = self.sparse_size or len(self.content)
        return f"Blob({self.label!r}, {size} bytes, sha256 {digest}…)"

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:  # hypothesis' printer
        printer.text(repr(self))


LinkKind = Literal["outside", "etc", "inside-file", "inside-dir", "parent", "dangling", "loop"]


@dataclass(frozen=True, slots=True)
class Link:
    """A symlink; its target is resolved when materialised (see materialise.link_target)."""

    kind: LinkKind
    pick: int = 0  # which sibling file an "inside-file" link points at


@dataclass(frozen=True, slots=True)
class Fifo:
    """A named pipe: opening it for reading would block forever."""


@dataclass(frozen=True, slots=True)
class Folder:
    entries: tuple[tuple[bytes, Node], ...]


Node = Blob | Link | Fifo | Folder

UrlKind = Literal[
    "image", "damaged", "status", "drip", "huge", "huge-chunked", "gzip-broken", "reset",
    "redirect-loop", "redirect", "lying-length", "refused-port", "unresolvable",
    "malformed", "comment", "blank",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class UrlLine:
    """One `urls.txt` line. `{NETLOC}` in `text` is the test server's host:port."""

    kind: UrlKind
    text: bytes
    body: bytes = b""  # what /img/<token> serves for "image" and "damaged"
    secret: str = ""  # the password in the URL's userinfo, never to be seen in the outbox

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 120 else self.text[:120] + b"..."
        return f"UrlLine({self.kind!r}, {text!r}, body {len(self.body)} bytes)"

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:  # hypothesis' printer
        printer.text(repr(self))

    @property
    def is_input(self) -> bool:
        return self.kind not in ("comment", "blank")


@dataclass(frozen=True, slots=True)
class OutsideLink:
    """A control file (`batch.toml`, `urls.txt`) that is a symlink out of the batch."""


@dataclass(frozen=True, slots=True)
class BatchSpec:
    """A whole dropped folder. `suffix` follows a unique ASCII prefix in the folder's name."""

    suffix: bytes
    root: Folder
    batch_toml: Blob | OutsideLink | None
    urls: tuple[UrlLine, ...] | OutsideLink | None
    newline: bytes
    final_newline: bool
    ready_marker: bool
    # A loose file (or link, or FIFO) dropped at the inbox's root instead of a folder: a batch
    # of one (SPEC §1); `root` and the control files are then unused.
    loose: Blob | Link | Fifo | None = None


# --- names ----------------------------------------------------------------------------------

NAME_MAX = 255

TRICKY_NAMES: tuple[bytes, ...] = (
    b"urls.txt#L0001", b"urls.txt#L1", b"urls.txt#L00001", b"urls.txt", b"batch.toml",
    b"URLS.TXT", b"Batch.toml", b".ready", b".ready.jpg", b"ready", b"summary.json",
    b"results.jsonl", b"Thumbs.db", b"THUMBS.DB", b"thumbs.db", b"desktop.ini", b"Desktop.INI",
    b".DS_Store", b"._IMG_0001.jpg", b"@eaDir", b"@EADIR", b"__MACOSX", b"__macosx",
    b"photo.part", b"photo.tmp", b"photo.crdownload", b"-", b"--help", b"~", b"*", b"?",
    b"[a-z]", b"a\nb", b"\n", b"\r\n", b"\t", b" ", b"  lead", b"trail ", b"\x1b[31mred\x1b[0m",
    b"\\xff", b"\\x2f", b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf",
    b"caf\xc3\xa9", b"cafe\xcc\x81", b"\xe2\x80\xae", b"\xf0\x9f\x93\xb7.jpg", b"%s%n%x",
    b"${HOME}", b"$(id)", b"`id`", b"'", b'"', b"a,b", b"<img src=x>", b"&amp;", b"CON",
    b"nul", b"x" * NAME_MAX, b"\xe2\x82\xac" * 85, b"\xf0\x9f\x98\x80" * 63 + b"ab",
)  # fmt: skip

IMAGE_SUFFIXES: tuple[bytes, ...] = (
    b".jpg", b".JPG", b".jpeg", b".png", b".gif", b".webp", b".tif", b".tiff", b".heic",
    b".HEIC", b".avif", b".bmp", b".txt", b"",
)  # fmt: skip

_NAME_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/\x00"),  # no surrogates
    min_size=1,
    max_size=40,
)


def _valid_name(name: bytes) -> bool:
    return (
        0 < len(name) <= NAME_MAX
        and b"/" not in name
        and b"\0" not in name
        and name
        not in (
            b".",
            b"..",
        )
    )


def _clip(name: bytes) -> bytes:
    return name[:NAME_MAX]


def _is_utf8(name: bytes) -> bool:
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@st.composite
def names(draw: st.DrawFn, *, utf8_only: bool = False, forbidden: bytes = b"") -> bytes:
    """One directory-entry name: any bytes Linux allows, biased towards the hostile ones.

    `utf8_only` keeps to names that are valid UTF-8 (clipping never splits a character);
    each byte of `forbidden` is replaced by "_" (to narrow a test while a bug is open).
    """
    kinds = ("tricky", "text", "text", "image-like") if utf8_only else (
        "tricky", "bytes", "text", "text", "image-like"
    )  # fmt: skip
    kind = draw(st.sampled_from(kinds))
    if kind == "tricky":
        pool = tuple(n for n in TRICKY_NAMES if _is_utf8(n)) if utf8_only else TRICKY_NAMES
        name = draw(st.sampled_from(pool))
    elif kind == "bytes":
        name = draw(st.binary(min_size=1, max_size=NAME_MAX))
    else:
        name = draw(_NAME_TEXT).encode("utf-8")
    if kind == "image-like" or draw(st.integers(0, 3)) == 0:
        name = _clip(name) if len(name) + 5 > NAME_MAX else name
        name += draw(st.sampled_from(IMAGE_SUFFIXES))
    for byte in b"/\0" + forbidden:
        name = name.replace(bytes((byte,)), b"_")
    name = _clip(name)
    if utf8_only:
        name = name.decode("utf-8", errors="ignore").encode("utf-8") or b"_"
    if name in (b".", b".."):
        name = b"_" + name
    assert _valid_name(name), name
    return name


# --- content --------------------------------------------------------------------------------


def _seed() -> st.SearchStrategy[tuple[str, bytes]]:
    return st.sampled_from(corpus.seeds()).map(lambda path: (path, corpus.read(path)))


@st.composite
def damaged_images(draw: st.DrawFn) -> Blob:
    """A corpus image truncated, bit-flipped, spliced with junk, or with a lying header field."""
    path, data = draw(_seed())
    how = draw(st.sampled_from(("truncate", "flip", "splice", "lie", "lie", "lie+truncate")))
    if how == "truncate":
        damaged = damage.truncate(data, draw(st.integers(0, max(0, len(data) - 1))))
    elif how == "flip":
        positions = draw(st.lists(st.integers(0, 2**32), min_size=1, max_size=16))
        damaged = damage.flip_bits(data, positions)
    elif how == "splice":
        junk = draw(st.binary(min_size=1, max_size=64))
        damaged = damage.splice(data, draw(st.integers(0, 2**32)), junk)
    else:
        field = draw(st.integers(0, 20))
        value = draw(st.sampled_from(damage.LIES) | st.integers(0, 2**32 - 1))
        damaged = damage.lie(data, field, value)
        if how == "lie+truncate":
            damaged = damage.truncate(damaged, draw(st.integers(0, len(damaged))))
    return Blob(damaged, f"{how}:{path}")


@st.composite
def intact_images(draw: st.DrawFn) -> Blob:
    """A corpus image, sometimes with a unique trailer (same pixels, different sha256)."""
    path, data = draw(_seed())
    if draw(st.booleans()):
        data += b"\0trailer" + draw(st.binary(min_size=1, max_size=8))
    return Blob(data, f"seed:{path}")


def hostile_files() -> st.SearchStrategy[Blob]:
    return st.sampled_from(corpus.hostile()).map(lambda path: Blob(corpus.read(path), path))


def non_images() -> st.SearchStrategy[Blob]:
    return st.one_of(
        st.just(Blob(b"", "empty")),
        st.binary(max_size=512).map(lambda data: Blob(data, "random-bytes")),
        st.text(max_size=200).map(lambda text: Blob(text.encode(), "text")),
        st.sampled_from(
            (b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\0\0\0\0WEBP", b"II*\0")
        ).map(lambda magic: Blob(magic, "magic-only")),
        st.just(Blob(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "svg")),
    )


# Over the test config's max_file_size (TOO_LARGE), but costs no disk: a sparse file.
OVERSIZED = Blob(b"", "sparse-oversized", sparse_size=3 * 2**20)


def blobs() -> st.SearchStrategy[Blob]:
    """Any regular file's content, weighted towards images that decode or almost do."""
    return st.one_of(
        damaged_images(),
        damaged_images(),
        intact_images(),
        non_images(),
        hostile_files(),
        st.just(OVERSIZED),
    )


LINK_KINDS: tuple[LinkKind, ...] = (
    "outside", "etc", "inside-file", "inside-dir", "parent", "dangling", "loop",
)  # fmt: skip


def links(kinds: tuple[LinkKind, ...] = LINK_KINDS) -> st.SearchStrategy[Link]:
    return st.builds(Link, st.sampled_from(kinds), st.integers(0, 8))


def leaves(*, special: bool = True) -> st.SearchStrategy[Node]:
    """A file, or (when `special`) a symlink or FIFO."""
    if not special:
        return blobs()
    return st.one_of(blobs(), blobs(), blobs(), links(), st.just(Fifo()))


# --- trees ----------------------------------------------------------------------------------


def _folder(
    children: st.SearchStrategy[Node],
    max_entries: int,
    name: st.SearchStrategy[bytes],
    min_entries: int = 0,
) -> st.SearchStrategy[Folder]:
    entries = st.lists(
        st.tuples(name, children),
        min_size=min_entries,
        max_size=max(min_entries, max_entries),
        unique_by=lambda entry: entry[0],
    )
    return entries.map(lambda items: Folder(tuple(items)))


@st.composite
def deep_chains(
    draw: st.DrawFn, leaf: st.SearchStrategy[Node], name: st.SearchStrategy[bytes], max_path: int
) -> Folder:
    """Nested folders, up to `max_path` bytes (past PATH_MAX, 4096, when it allows)."""
    name_length = draw(st.sampled_from((5, 8, 64, 200, NAME_MAX)))
    depth = draw(st.integers(2, max(2, min(40, max_path // (name_length + 1) - 2))))
    chain: Node = draw(leaf)
    chain = Folder(((draw(name), chain),))
    for level in range(depth):
        chain = Folder(((b"d%d" % level + b"x" * max(0, name_length - 4), chain),))
    return chain


PATH_MAX = 4096


def trees(
    *,
    max_entries: int = 8,
    max_leaves: int = 24,
    special: bool = True,
    utf8_only: bool = False,
    forbidden: bytes = b"",
    max_path: int = 3 * PATH_MAX,
    min_entries: int = 0,
) -> st.SearchStrategy[Folder]:
    """A batch's folder tree (the top level is a Folder whose entries are the batch).

    `max_path` bounds the deep chains' length in bytes (the rest of the tree stays short);
    `utf8_only` and `forbidden` narrow the names (see `names`).
    """
    leaf = leaves(special=special)
    name = names(utf8_only=utf8_only, forbidden=forbidden)
    nested = st.recursive(
        leaf,
        lambda inner: _folder(inner, max_entries, name),
        max_leaves=max_leaves,
    )
    chains = deep_chains(leaf, name, max_path)
    return _folder(st.one_of(nested, nested, nested, chains), max_entries, name, min_entries)


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


# --- whole batches --------------------------------------------------------------------------

SAFE_SUFFIXES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", max_size=12).map(
    str.encode
)


TEMP_SUFFIXES = (b".part", b".tmp", b".crdownload")


def _batch_suffix(name: bytes) -> bytes:
    # After the 7-byte prefix, within NAME_MAX; a partial-download name is never a batch.
    name = name[: NAME_MAX - 16]
    return name + b"_" if name.lower().endswith(TEMP_SUFFIXES) else name


def batch_suffixes(*, utf8_only: bool = False, forbidden: bytes = b"") -> st.SearchStrategy[bytes]:
    """What follows the unique prefix in a dropped folder's name: plain, or any name bytes."""
    drawn = names(utf8_only=utf8_only, forbidden=forbidden).map(_batch_suffix)
    return st.one_of(SAFE_SUFFIXES, drawn)


def loose_entries(
    link_kinds: tuple[LinkKind, ...] = LINK_KINDS, *, folders_per_loose: int = 4
) -> st.SearchStrategy[Blob | Link | Fifo | None]:
    """Mostly None (a folder is dropped); sometimes one loose file, link or FIFO."""
    loose: st.SearchStrategy[Blob | Link | Fifo] = st.one_of(
        blobs(), links(link_kinds), st.just(Fifo())
    )
    return st.one_of(*[st.none()] * folders_per_loose, loose)


def batches(
    *,
    tree: st.SearchStrategy[Folder] | None = None,
    suffixes: st.SearchStrategy[bytes] | None = None,
    loose: st.SearchStrategy[Blob | Link | Fifo | None] | None = None,
    tomls: st.SearchStrategy[Blob | OutsideLink | None] | None = None,
    urls: st.SearchStrategy[tuple[UrlLine, ...] | OutsideLink | None] | None = None,
) -> st.SearchStrategy[BatchSpec]:
    """A whole dropped folder; every part can be narrowed by passing its strategy."""
    return st.builds(
        BatchSpec,
        suffix=suffixes if suffixes is not None else batch_suffixes(),
        root=tree if tree is not None else trees(),
        loose=loose if loose is not None else loose_entries(),
        batch_toml=tomls if tomls is not None else st.none() | batch_tomls(),
        urls=urls if urls is not None else st.none() | urls_files(),
        newline=st.sampled_from((b"\n", b"\r\n")),
        final_newline=st.booleans(),
        ready_marker=st.booleans(),
    )
