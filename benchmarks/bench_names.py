"""What safe opening and descriptor walks cost, against plain path-based opening and os.walk.

- open: per file, `safeopen.open_root` + `open_beneath` + close (what each worker job does)
  against `open(path)` + close, on files 1 and 4 folders deep;
- walk: `readiness.iter_batch_entries` (dirfds, O_NOFOLLOW, links judged) against `os.walk`
  listing the same tree (FILES files in 100 folders), and the descriptors the walk holds;
- deep: a chain of DEPTH folders (deeper than PATH_MAX), enumerated and opened.

Usage: .venv/bin/python benchmarks/bench_names.py [--files N] [--depth N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from medianalysed import names, readiness, safeopen


def _per_call_us(action: Callable[[], None], repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        action()
    return (time.perf_counter() - started) / repeat * 1e6


def bench_open(root: Path, repeat: int) -> None:
    for relpath in ("a.jpg", "b/c/d/e/f.jpg"):
        target = root / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x" * 1024)

        def safe(relpath: str = relpath) -> None:
            with safeopen.open_root(root) as opened:
                os.close(safeopen.open_beneath(opened, relpath))

        def plain(target: Path = target) -> None:
            with open(target, "rb"):
                pass

        print(
            f"open {relpath:14} safe {_per_call_us(safe, repeat):6.1f} us"
            f"   plain {_per_call_us(plain, repeat):6.1f} us"
        )


def bench_walk(root: Path, files: int) -> None:
    for index in range(files):
        folder = root / f"g{index % 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"IMG_{index:06d}.jpg").write_bytes(b"")
    started = time.perf_counter()
    count = sum(1 for _ in readiness.iter_batch_entries(root, ".ready"))
    ours = time.perf_counter() - started
    started = time.perf_counter()
    listed = sum(len(found) for _, _, found in os.walk(root))
    walked = time.perf_counter() - started
    print(f"walk {count} files: iter_batch_entries {ours:.3f} s   os.walk {walked:.3f} s")
    assert listed == count


def bench_deep(root: Path, depth: int) -> None:
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir(b"d" * 100, dir_fd=fd)
        child = os.open(b"d" * 100, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open(b"leaf.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)
    before = len(os.listdir("/proc/self/fd"))
    most = 0
    started = time.perf_counter()
    found = []
    for entry in readiness.iter_batch_entries(root, ".ready"):
        most = max(most, len(os.listdir("/proc/self/fd")) - before)
        found.append(entry)
    walk = time.perf_counter() - started
    (entry,) = found
    started = time.perf_counter()
    with safeopen.open_root(root) as opened:
        os.close(safeopen.open_beneath(opened, entry.relpath))
    opening = time.perf_counter() - started
    length = len(names.to_bytes(entry.relpath))
    print(
        f"deep {depth} levels ({length} bytes): walk {walk * 1000:.1f} ms, "
        f"open {opening * 1000:.2f} ms, at most {most} extra fds"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--depth", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=5_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        bench_open(base / "open", args.repeat)
        bench_walk(base / "walk", args.files)
        bench_deep(base / "deep", args.depth)


if __name__ == "__main__":
    main()
