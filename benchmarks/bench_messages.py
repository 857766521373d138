"""Actor messages per image: `medianalysed analyze` in-process, every `tell` counted by type.

Runs the CLI's `analyze` on the benchmark set (benchmarks/data/set/, from fetch_photos.py) with
`[processing] workers = 2`, counting each pykka `tell` by message type, and prints the counts per
image: the cost of handing images to the workers and their outcomes back.

Usage: python benchmarks/bench_messages.py [--set DIR] [--workers 2]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pykka

from medianalysed import cli

SET_DIR = Path(__file__).resolve().parent / "data" / "set"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", type=Path, default=SET_DIR)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    images = sum(1 for entry in args.set.iterdir() if entry.is_file())
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    original = pykka.ActorRef.tell

    def counting_tell(self: pykka.ActorRef[Any], message: Any) -> None:
        with lock:
            counts[type(message).__name__] += 1
        original(self, message)

    pykka.ActorRef.tell = counting_tell  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as work:
        config = Path(work) / "m.toml"
        config.write_text(
            f'[daemon]\nstate_dir = "{work}/state"\n[processing]\nworkers = {args.workers}\n'
        )
        started = time.perf_counter()
        code = cli.main(
            [
                "analyze",
                str(args.set),
                "--out",
                f"{work}/out",
                "--no-progress",
                "--config",
                str(config),
            ]
        )
        seconds = time.perf_counter() - started
    pykka.ActorRef.tell = original  # type: ignore[method-assign]
    per_image = {name: count / images for name, count in counts.most_common()}
    dispatch = sum(per_image.values()) - sum(
        value for name, value in per_image.items() if name.startswith("_") or _timed(name)
    )
    print(f"{images} images, exit {code}, {seconds:.1f} s, {images / seconds:.1f} images/s")
    for name, value in per_image.items():
        print(f"  {name:<16} {value:6.2f} per image")
    print(f"  between actors   {dispatch:6.2f} per image (all but ticks and self-messages)")
    return 0


def _timed(name: str) -> bool:
    """Ticks come with time, not with images: the app's `Tick`, the supervisor's `BatchTick`
    (0.3.0 passed the `Tick` itself on to each batch)."""
    return name in {"Tick", "BatchTick"}


if __name__ == "__main__":
    raise SystemExit(main())
