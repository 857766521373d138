"""Turn a `BatchSpec` into real files, symlinks and FIFOs, and say what must never leak.

Everything is created relative to directory file descriptors, so names of any bytes and paths
longer than PATH_MAX are built exactly. A batch is built in a staging folder on the inbox's
filesystem and renamed into the inbox in one step, so the daemon never sees it half-written.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from tests.generated import corpus
from tests.generated.remote import RemoteServer
from tests.generated.spec import (
    BatchSpec,
    Blob,
    Fifo,
    Folder,
    Link,
    Node,
    OutsideLink,
    UrlLine,
)

ETC_PASSWD = "/etc/passwd"
SECRET_PATTERN = re.compile(rb"Zq9SeCrEt[a-z0-9]{12}")


@dataclass
class Planted:
    """One materialised batch and the facts the invariant checker needs beyond the tree."""

    path: Path
    spec: BatchSpec
    secrets: set[str] = field(default_factory=set)
    # sha256 of every file outside the batch that a link in it points at.
    forbidden_hashes: set[str] = field(default_factory=set)
    # Server paths mentioned only by files outside the batch (a fetch means one was read).
    forbidden_fragments: set[str] = field(default_factory=set)


class Materialiser:
    """Builds batches under `staging`, with link targets under `outside`."""

    def __init__(self, staging: Path, outside: Path, server: RemoteServer | None) -> None:
        self.staging = staging
        self.outside = outside
        self.server = server
        self._tokens = itertools.count(1)
        staging.mkdir(parents=True, exist_ok=True)
        outside.mkdir(parents=True, exist_ok=True)

    @property
    def netloc(self) -> bytes:
        return self.server.netloc.encode() if self.server else b"127.0.0.1:9"

    def build(self, spec: BatchSpec, name: bytes) -> Planted:
        """Create the batch folder (or loose file) `staging/name`, which must not exist."""
        path = Path(os.fsdecode(os.path.join(os.fsencode(self.staging), name)))
        planted = Planted(path=path, spec=spec)
        if spec.loose is not None:
            self._build_loose(spec.loose, name, planted)
            return planted
        os.mkdir(os.fsencode(path))
        fd = os.open(os.fsencode(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            control = self._write_control_files(fd, spec, planted)
            entries = tuple(entry for entry in spec.root.entries if entry[0] not in control)
            self._fill(fd, Folder(entries), planted, depth=0)
            if spec.ready_marker and b".ready" not in {name for name, _ in entries}:
                _write(fd, b".ready", b"")  # (an entry of that name is a marker already)
        finally:
            os.close(fd)
        etc_hash = _sha256_of(Path(ETC_PASSWD))
        if etc_hash:
            planted.forbidden_hashes.add(etc_hash)
        return planted

    def _build_loose(self, node: Node, name: bytes, planted: Planted) -> None:
        fd = os.open(os.fsencode(self.staging), os.O_RDONLY | os.O_DIRECTORY)
        try:  # depth -1: a relative link climbs one level less than from inside a batch
            self._create(fd, name, node, files=[], planted=planted, depth=-1)
        finally:
            os.close(fd)

    # -- tree -----------------------------------------------------------------------------

    def _fill(self, fd: int, folder: Folder, planted: Planted, depth: int) -> None:
        files = [name for name, node in folder.entries if isinstance(node, Blob)]
        for name, node in folder.entries:
            self._create(fd, name, node, files=files, planted=planted, depth=depth)

    def _create(
        self, fd: int, name: bytes, node: Node, *, files: list[bytes], planted: Planted, depth: int
    ) -> None:
        if isinstance(node, Blob):
            _write(fd, name, node.content, sparse_size=node.sparse_size)
        elif isinstance(node, Fifo):
            os.mkfifo(name, dir_fd=fd)
        elif isinstance(node, Link):
            os.symlink(self._link_target(node, name, files, planted, depth), name, dir_fd=fd)
        else:
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            try:
                self._fill(child, node, planted, depth + 1)
            finally:
                os.close(child)

    def _link_target(
        self, link: Link, name: bytes, files: list[bytes], planted: Planted, depth: int
    ) -> bytes:
        if link.kind == "outside":
            target = self._outside_image(planted)
            if link.pick % 2:  # relative: the batch sits two levels below the test root
                return b"../" * (depth + 2) + os.fsencode(target.relative_to(self.outside.parent))
            return os.fsencode(target)
        if link.kind == "etc":
            return ETC_PASSWD.encode()
        if link.kind == "inside-file" and files:
            return files[link.pick % len(files)]
        if link.kind == "inside-dir":
            return b"."
        if link.kind == "parent":
            return b".."
        if link.kind == "loop":
            return name
        return b"no-such-target-" + str(next(self._tokens)).encode()

    def _outside_image(self, planted: Planted) -> Path:
        seed = corpus.seeds()[0]
        content = corpus.read(seed) + b"\0outside-%d" % next(self._tokens)
        target = self.outside / f"o{next(self._tokens)}.jpg"
        target.write_bytes(content)
        planted.forbidden_hashes.add(hashlib.sha256(content).hexdigest())
        return target

    # -- control files ----------------------------------------------------------------------

    def _write_control_files(self, fd: int, spec: BatchSpec, planted: Planted) -> set[bytes]:
        written: set[bytes] = set()
        if spec.batch_toml is not None:
            written.add(b"batch.toml")
            if isinstance(spec.batch_toml, OutsideLink):
                token = self._forbidden(planted)
                body = b'callback_url = "http://%s/outside/%s"\n' % (self.netloc, token)
                os.symlink(self._outside_file(b"batch.toml", body), b"batch.toml", dir_fd=fd)
            else:
                content = spec.batch_toml.content.replace(b"{NETLOC}", self.netloc)
                planted.secrets.update(m.decode() for m in SECRET_PATTERN.findall(content))
                _write(fd, b"batch.toml", content)
        if spec.urls is not None:
            written.add(b"urls.txt")
            if isinstance(spec.urls, OutsideLink):
                token = self._forbidden(planted)
                body = b"http://%s/outside/%s\n" % (self.netloc, token)
                os.symlink(self._outside_file(b"urls.txt", body), b"urls.txt", dir_fd=fd)
            else:
                _write(fd, b"urls.txt", self._urls_text(spec, spec.urls, planted))
        return written

    def _urls_text(self, spec: BatchSpec, lines: tuple[UrlLine, ...], planted: Planted) -> bytes:
        rendered = []
        for line in lines:
            text = line.text.replace(b"{NETLOC}", self.netloc)
            if b"{TOKEN}" in text:
                token = f"t{next(self._tokens)}"
                if self.server is not None:
                    self.server.register(token, line.body)
                text = text.replace(b"{TOKEN}", token.encode())
            if line.secret:
                planted.secrets.add(line.secret)
            rendered.append(text)
        body = spec.newline.join(rendered)
        return body + spec.newline if rendered and spec.final_newline else body

    def _forbidden(self, planted: Planted) -> bytes:
        token = f"forbidden-{next(self._tokens)}"
        planted.forbidden_fragments.add(token)
        return token.encode()

    def _outside_file(self, name: bytes, body: bytes) -> bytes:
        target = self.outside / f"{next(self._tokens)}-{os.fsdecode(name)}"
        target.write_bytes(body)
        return os.fsencode(target)


def _write(fd: int, name: bytes, content: bytes, *, sparse_size: int = 0) -> None:
    handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
    try:
        if sparse_size:
            os.ftruncate(handle, sparse_size)
        else:
            view = memoryview(content)
            while view:
                view = view[os.write(handle, view) :]
    finally:
        os.close(handle)


def _sha256_of(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""
