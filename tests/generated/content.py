"""Strategies for what a batch entry holds: real, damaged and hostile files, links, FIFOs."""

from __future__ import annotations

from hypothesis import strategies as st

from tests.generated import corpus, damage
from tests.generated.spec import Blob, Fifo, Link, LinkKind, Node


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
