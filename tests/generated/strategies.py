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

from hypothesis import strategies as st

from tests.generated.content import (
    LINK_KINDS,
    OVERSIZED,
    blobs,
    damaged_images,
    hostile_files,
    intact_images,
    leaves,
    links,
    non_images,
)
from tests.generated.controls import (
    TOML_KINDS,
    URL_KINDS,
    batch_tomls,
    url_lines,
    urls_files,
)
from tests.generated.spec import (
    BatchSpec,
    Blob,
    Fifo,
    Folder,
    Link,
    LinkKind,
    Node,
    OutsideLink,
    UrlKind,
    UrlLine,
)

__all__ = [
    "LINK_KINDS", "OVERSIZED", "TOML_KINDS", "URL_KINDS", "BatchSpec", "Blob", "Fifo", "Folder",
    "Link", "LinkKind", "Node", "OutsideLink", "UrlKind", "UrlLine", "batch_suffixes",
    "batch_tomls", "batches", "blobs", "damaged_images", "deep_chains", "hostile_files",
    "intact_images", "leaves", "links", "loose_entries", "names", "non_images", "trees",
    "url_lines", "urls_files",
]  # fmt: skip

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
