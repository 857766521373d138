"""Per embedded-thumbnail size, how far hashes from it are from imagehash on the full decode.

For every HEIC/HEIF in the folders (heic_set.py --thumbnails 256,320,... writes several
thumbnails into each photo), `analyse_file` is run once per thumbnail, with the thumbnail rule
(heifdecode.THUMBNAIL_MIN_LONG_SIDE) set to that thumbnail's long side so that exactly it is used,
and once with no thumbnail at all (the full decode); images small enough to be worked on whole
(short side under 512 px) are left out. Each is compared with imagehash on the
full-resolution oriented image (SPEC: ahash/phash/dhash within 2 bits for >= 99 % of photos).
Prints one table per hash: rows are thumbnail long sides, then the full decode.

Usage: .venv/bin/python benchmarks/heic_thumbnail_accuracy.py DIR... [--worst 5]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from PIL import Image

from hash_accuracy import CONTRACT, HASHES, reference_hashes
from medianalysed import heifdecode
from medianalysed.analysis import AnalysisSettings, analyse_file
from medianalysed.decoding import WORK_MAX_SIDE
from medianalysed.dupindex import hamming

FULL = "full decode"
NO_THUMBNAIL = 10**9


def thumbnail_sizes(path: Path) -> list[tuple[int, int]]:
    """(width, height) of each thumbnail pillow-heif lists for the primary image."""
    with Image.open(path) as image:
        heif_file = getattr(image, "_heif_file", None)
        if heif_file is None:
            return []
        primary = heif_file[image.tell()]
        sizes = []
        for index in range(len(primary.info.get("thumbnails", []))):
            sizes.append(primary.get_thumbnail(index).size)
        return sizes


def is_worked_on_whole(path: Path) -> bool:
    with Image.open(path) as image:
        return min(image.size) < WORK_MAX_SIDE


def hashes_with_rule(path: Path, min_long_side: int) -> dict[str, str]:
    heifdecode.THUMBNAIL_MIN_LONG_SIDE = min_long_side  # type: ignore[misc]
    result: dict[str, str] = analyse_file(path, AnalysisSettings())["hashes"]
    return result


def measure(files: list[Path]) -> tuple[dict[str, dict[str, list[int]]], list[str]]:
    """distances[row][hash] over the files, and a line per contract miss."""
    distances: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    misses: list[str] = []
    for path in files:
        if is_worked_on_whole(path):  # its thumbnails are never used, its hashes are exact
            continue
        reference = reference_hashes(path)
        if reference is None:
            continue
        rows = {f"{max(size)} px": max(size) for size in thumbnail_sizes(path)}
        rows[FULL] = NO_THUMBNAIL
        for row, min_long_side in rows.items():
            ours = hashes_with_rule(path, min_long_side)
            found = {name: hamming(ours[name], reference[name]) for name in HASHES}
            for name, distance in found.items():
                distances[row][name].append(distance)
            if any(found[name] > 2 for name in CONTRACT):
                misses.append(f"  {row:12s} {path.name}: {found}")
    return distances, misses


def row_order(row: str) -> int:
    return NO_THUMBNAIL if row == FULL else int(row.split(maxsplit=1)[0])


def print_tables(distances: dict[str, dict[str, list[int]]]) -> None:
    for name in HASHES:
        contract = " (contract: >= 99 % within 2 bits)" if name in CONTRACT else ""
        print(f"\n{name}{contract}")
        print(
            f"{'thumbnail':12s} {'n':>4s} {'0':>4s} {'1':>4s} {'2':>4s} {'3+':>4s} {'<=2':>7s} max"
        )
        for row in sorted(distances, key=row_order):
            values = distances[row][name]
            counts = [values.count(d) for d in (0, 1, 2)] + [sum(v >= 3 for v in values)]
            within = 100 * sum(v <= 2 for v in values) / len(values)
            cells = " ".join(f"{c:4d}" for c in counts)
            print(f"{row:12s} {len(values):4d} {cells} {within:6.1f}% {max(values):3d}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    args = parser.parse_args()
    files = [p for d in args.dirs for p in sorted(d.iterdir()) if p.suffix in {".heic", ".heif"}]
    distances, misses = measure(files)
    print(f"{len(files)} files in {', '.join(map(str, args.dirs))}")
    print_tables(distances)
    print("\ncontract misses (ahash/phash/dhash > 2 bits):")
    print("\n".join(misses) if misses else "  none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
