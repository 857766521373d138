"""Where PNG, WebP and TIFF time goes on large photos, and what libvips (pyvips) gives.

The largest bench photos (benchmarks/data/photos, from fetch_photos.py) are saved as PNG, WebP
(quality 90) and TIFF (deflate) under benchmarks/data/formats/. For each file, median of
--repeat runs, in one process:

- ``open+load``: Pillow's decode of the whole image (``Image.open`` + ``load``)
- ``working``: decoding.decode_working, the engine's one decode (load + box reduce), with
  Pillow decoding (``vips=False``) and with libvips where vipsdecode takes the file
- ``analyse``: analysis.analyse_file, the whole engine on the file, both ways
- ``shrink``: pyvips loading with shrink-on-load to about the same working size
  (``webpload``'s ``scale``, ``pngload``/``tiffload`` then ``shrink``), into memory: what a
  reduced decode would give, not used (its pixels are not Pillow's)

whether the engine's working image is the same bytes both ways (``same``), and the Hamming
distance of ahash/phash/dhash to imagehash on the full decode, from the engine and from the
shrink-on-load working image.

Usage: .venv/bin/python benchmarks/bench_formats.py [--photos 4] [--repeat 3] [--cpu]
       [--only png tiff webp]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from PIL import Image

from medianalysed import decoding, vipsdecode
from medianalysed.analysis import AnalysisSettings, analyse_file
from medianalysed.dupindex import hamming
from medianalysed.hashes import hashes

BENCH_DIR = Path(__file__).resolve().parent
PHOTO_DIR = BENCH_DIR / "data" / "photos"
FORMAT_DIR = BENCH_DIR / "data" / "formats"
SAVE: dict[str, dict[str, Any]] = {
    "png": {"format": "PNG"},
    "webp": {"format": "WEBP", "quality": 90},
    "tiff": {"format": "TIFF", "compression": "tiff_adobe_deflate"},
}
CONTRACT = ("ahash", "phash", "dhash")


def largest_photos(count: int) -> list[Path]:
    """The `count` photos with the most pixels."""

    def pixels(path: Path) -> int:
        with Image.open(path) as image:
            return image.width * image.height

    return sorted(PHOTO_DIR.glob("*.jpg"), key=pixels, reverse=True)[:count]


def converted(photo: Path, extension: str) -> Path:
    """`photo` saved as `extension` under data/formats/ (kept once made)."""
    target = FORMAT_DIR / f"{photo.stem}.{extension}"
    if not target.exists():
        FORMAT_DIR.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}")  # a run stopped midway leaves no half file
        with Image.open(photo) as image:
            image.convert("RGB").save(partial, **SAVE[extension])
        partial.rename(target)
    return target


def median_seconds(
    actions: dict[str, Callable[[], object]], repeat: int, clock: Callable[[], float]
) -> dict[str, float]:
    """Median time of each action over `repeat` rounds, the actions alternated in each round
    (the machine's noise then falls on all of them alike)."""
    times: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(repeat):
        for name, action in actions.items():
            started = clock()
            action()
            times[name].append(clock() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def pillow_load(path: Path) -> None:
    with Image.open(path) as image:
        image.load()


def pillow_working(path: Path, *, vips: bool = False) -> decoding.Working:
    with Image.open(path) as image:
        return decoding.decode_working(image, vips=vips)


def reference(path: Path) -> dict[str, str]:
    """imagehash on the full decode (these files carry no orientation)."""
    with Image.open(path) as image:
        image.load()
        return {
            "ahash": str(imagehash.average_hash(image)),
            "phash": str(imagehash.phash(image)),
            "dhash": str(imagehash.dhash(image)),
        }


def vips_working(path: Path, pyvips: Any, factor: int) -> decoding.Working:
    """The working image as pyvips makes it: shrink-on-load where the loader has one."""
    if path.suffix == ".webp":
        image = pyvips.Image.new_from_file(str(path), scale=1 / factor, access="sequential")
    else:
        image = pyvips.Image.new_from_file(str(path), access="sequential").shrink(factor, factor)
    pixels = np.ndarray(
        buffer=image.write_to_memory(), dtype=np.uint8, shape=(image.height, image.width, 3)
    )
    with Image.open(path) as opened:
        full_size = opened.size
    return decoding.Working(
        image=Image.fromarray(pixels), scale=factor, full_size=full_size, has_alpha=False
    )


def distances(working: decoding.Working, expected: dict[str, str]) -> list[int]:
    computed = hashes(working, decoding.reduce_for_hashes(working), 1)
    return [hamming(computed[name], expected[name]) for name in CONTRACT]


def measure(path: Path, repeat: int, pyvips: Any, clock: Callable[[], float]) -> dict[str, Any]:
    pillow, vips = AnalysisSettings(vips=False), AnalysisSettings(vips=True)
    expected = reference(path)
    working = pillow_working(path)
    with_vips = pillow_working(path, vips=True)
    actions: dict[str, Callable[[], object]] = {
        "open+load": lambda: pillow_load(path),
        "working": lambda: pillow_working(path),
        "working vips": lambda: pillow_working(path, vips=True),
        "analyse": lambda: analyse_file(path, pillow),
        "analyse vips": lambda: analyse_file(path, vips),
    }
    row: dict[str, Any] = {
        "file": path.name,
        "engine bits": distances(working, expected),
        "same": working.image.tobytes() == with_vips.image.tobytes()
        and working.scale == with_vips.scale,
    }
    factor = working.scale
    actions["shrink"] = lambda: vips_working(path, pyvips, factor)
    row["shrink bits"] = distances(vips_working(path, pyvips, factor), expected)
    return row | median_seconds(actions, repeat, clock)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="CPU seconds of this process (all its threads) instead of wall time: steadier "
        "on a machine other work shares (libvips runs one thread of its own)",
    )
    parser.add_argument("--only", nargs="*", default=list(SAVE), choices=list(SAVE))
    args = parser.parse_args()
    pyvips = vipsdecode.pyvips_module()
    if pyvips is None:
        print("formats: pyvips does not load", file=sys.stderr)
        return 1
    photos = largest_photos(args.photos)
    if not photos:
        print(f"formats: no photos in {PHOTO_DIR}; run fetch_photos.py first", file=sys.stderr)
        return 1
    clock = time.process_time if args.cpu else time.perf_counter
    unit = "CPU seconds" if args.cpu else "seconds"
    print(f"libvips {vipsdecode.libvips_version()}; {args.repeat} runs per file, median {unit}")
    print(
        "| file | MP | open+load | working | working vips | analyse | analyse vips | shrink "
        "| same | engine bits | shrink bits |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
    for photo in photos:
        for extension in args.only:
            path = converted(photo, extension)
            with Image.open(path) as image:
                megapixels = image.width * image.height / 1e6
            row = measure(path, args.repeat, pyvips, clock)
            times = " | ".join(
                f"{row[name]:.3f}"
                for name in ("open+load", "working", "working vips", "analyse", "analyse vips")
            )
            print(
                f"| {row['file']} | {megapixels:.1f} | {times} | {row['shrink']:.3f} "
                f"| {row['same']} | {row['engine bits']} | {row['shrink bits']} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
