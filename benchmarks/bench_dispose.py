"""What resumable disposal costs: `disposal.move_input` against `shutil.move`.

A batch of FILES files (SIZE bytes each, in 10 folders) is moved into an archive on the same
filesystem (one rename plus two directory fsyncs) and into a tmpfs mounted for the run (a
copy into a partial name, an fsync of every file and folder, a rename, then the removal of
the source), each against `shutil.move` doing the same move without fsync or resumability.
Also: what the crash-loop step markers cost (one enter + leave per risky step of a batch).

Usage (root, for the tmpfs): .venv/bin/python benchmarks/bench_dispose.py [--files N]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from medianalysed.crashloop import enter_step, leave_step
from medianalysed.disposal import move_input
from medianalysed.state import StateStore


def _batch(root: Path, files: int, size: int) -> Path:
    batch = root / "batch"
    for index in range(files):
        path = batch / f"g{index % 10}" / f"{index:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    return batch


def _timed(move: Callable[[Path, Path], object], source_root: Path, target: Path) -> float:
    started = time.perf_counter()
    move(source_root / "batch", target)
    elapsed = time.perf_counter() - started
    shutil.rmtree(target)
    return elapsed


def bench_moves(work: Path, files: int, size: int, repeat: int) -> None:
    other = work / "tmpfs"
    other.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g", "tmpfs", str(other)], check=True)
    try:
        for label, archive in (("same filesystem", work / "archive"), ("across to tmpfs", other)):
            archive.mkdir(exist_ok=True)
            for name, move in (("move_input", move_input), ("shutil.move", shutil.move)):
                times = []
                for _ in range(repeat):
                    _batch(work, files, size)
                    times.append(_timed(move, work, archive / "b1"))
                best = min(times)
                print(
                    f"{label:16} {name:12} {files} files: {best * 1000:8.1f} ms (best of {repeat})"
                )
    finally:
        subprocess.run(["umount", "-l", str(other)], check=False)


def bench_markers(work: Path, repeat: int) -> None:
    store = StateStore(work / "state")
    store.begin_incarnation()
    try:
        started = time.perf_counter()
        for index in range(repeat):
            enter_step(store, f"b{index}", "finalizing")
            leave_step(store, f"b{index}")
        per_step = (time.perf_counter() - started) / repeat * 1e6
    finally:
        store.close()
    print(f"step marker enter+leave: {per_step:.0f} us per risky step (3 per batch)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        bench_moves(Path(tmp), args.files, args.size, args.repeat)
        bench_markers(Path(tmp), 500)


if __name__ == "__main__":
    main()
