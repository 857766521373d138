"""The plain data a generated batch is made of (see strategies.py for what is generated).

A `BatchSpec` holds names, bytes, link kinds and URL line kinds only; materialise.py turns it
into real files, symlinks and FIFOs, filling in what depends on where the batch lands.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal


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
