"""How far medianalysed's fast hashes are from imagehash on the full-resolution oriented image.

SPEC §4 lets hashes come from a reduced decode provided ahash/phash/dhash stay within 2 bits
(Hamming) of imagehash run on the full-resolution oriented image for at least 99% of real photos.
This prints, for all five hashes, the distribution of those distances (0, 1, 2, 3+, % within 2,
max) over every image Pillow can decode in the given folders, the worst images, and the time per
image of `analyse_file` against a bare read + `Image.open` + `draft` + `load` loop on the photos
of 3 MP and more.

Usage: .venv/bin/python benchmarks/hash_accuracy.py [DIR...] [--repeat N] [--no-timing]
       [--no-vips | --compare-vips]
(default DIRs: /work/shared/corpora/exif-samples and imagededup-testdata)
"""

from __future__ import annotations

import argparse
import functools
import io
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import imagehash
from PIL import Image, ImageOps

from medianalysed.analysis import AnalysisSettings, analyse_file
from medianalysed.dupindex import hamming
from medianalysed.errors import AnalysisError

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
DEFAULT_DIRS = (CORPORA / "exif-samples", CORPORA / "imagededup-testdata")
HASHES: dict[str, Callable[[Image.Image], imagehash.ImageHash]] = {
    "ahash": imagehash.average_hash,
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "whash": imagehash.whash,
    "colorhash": imagehash.colorhash,
}
CONTRACT = ("ahash", "phash", "dhash")
TIMING_MIN_PIXELS = 3_000_000
PILLOW_ONLY = AnalysisSettings(vips=False)


def reference_hashes(path: Path) -> dict[str, str] | None:
    """imagehash on the full-resolution, EXIF-oriented first frame; None if Pillow can't."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
            return {name: str(function(image)) for name, function in HASHES.items()}
    except (OSError, ValueError, SyntaxError, TypeError, NotImplementedError, EOFError):
        return None


def image_files(dirs: list[Path]) -> list[Path]:
    """Every regular file below the folders, sorted."""
    files: list[Path] = []
    for folder in dirs:
        files.extend(sorted(p for p in folder.rglob("*") if p.is_file()))
    return files


def measure(
    files: list[Path], *, vips: bool, differing: list[Path] | None = None
) -> tuple[dict[str, list[int]], list[str], int]:
    """Distances per hash, a line per image off by more than 2 bits, and the skipped count.

    With `differing`, each file is analysed with libvips off too, and those whose hashes
    differ between the two decoders are listed there.
    """
    settings = AnalysisSettings(vips=vips)
    distances: dict[str, list[int]] = {name: [] for name in HASHES}
    worst: list[str] = []
    skipped = 0
    for path in files:
        reference = reference_hashes(path)
        if reference is None:
            skipped += 1
            continue
        try:
            ours = analyse_file(path, settings)["hashes"]
            if differing is not None and ours != analyse_file(path, PILLOW_ONLY)["hashes"]:
                differing.append(path)
        except AnalysisError as exc:
            worst.append(f"  {path}: analyse_file failed: {exc}")
            continue
        row = {name: hamming(ours[name], reference[name]) for name in HASHES}
        for name, distance in row.items():
            distances[name].append(distance)
        if any(row[name] > 2 for name in CONTRACT):
            worst.append(f"  {path}: {row}")
    return distances, worst, skipped


def print_table(distances: dict[str, list[int]]) -> None:
    """One line per hash: counts of distance 0, 1, 2, 3+, the share within 2 and the max."""
    print(
        f"{'hash':10s} {'n':>5s} {'0':>5s} {'1':>5s} {'2':>5s} {'3+':>5s} {'<=2':>8s} {'max':>4s}"
    )
    for name, values in distances.items():
        if not values:
            continue
        counts = [values.count(d) for d in (0, 1, 2)] + [sum(1 for v in values if v >= 3)]
        within = 100 * sum(1 for v in values if v <= 2) / len(values)
        contract = " (contract >= 99%)" if name in CONTRACT else ""
        cells = " ".join(f"{c:5d}" for c in counts)
        print(f"{name:10s} {len(values):5d} {cells} {within:7.1f}% {max(values):4d}{contract}")


def bare_draft(path: Path) -> None:
    """The decode floor: read the file, open it, JPEG draft to 1/8, load."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG":
            width, height = image.size
            image.draft("RGB", (width // 8, height // 8))
        image.load()


def paired_median_ms(
    first: Callable[[], object], second: Callable[[], object], repeat: int
) -> tuple[float, float]:
    """Median CPU time (ms) of two functions, run alternately so that load hits both alike."""
    first()
    second()
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for function, times in zip((first, second), samples, strict=True):
            started = time.process_time()
            function()
            times.append(time.process_time() - started)
    return 1000 * statistics.median(samples[0]), 1000 * statistics.median(samples[1])


def print_timing(files: list[Path], repeat: int) -> None:
    """Per-image time of analyse_file against the bare draft decode, JPEGs of >= 3 MP."""
    settings = AnalysisSettings()
    photos = []
    for path in files:
        try:
            with Image.open(path) as image:
                if image.format == "JPEG" and image.width * image.height >= TIMING_MIN_PIXELS:
                    photos.append((path, image.size))
        except (OSError, ValueError, SyntaxError):
            continue
    if not photos:
        return
    print(f"\nCPU time per image, one process, median of {repeat} (JPEG >= 3 MP):")
    print(f"{'file':40s} {'size':>11s} {'bare ms':>8s} {'ours ms':>8s} {'bare/ours':>9s}")
    total_bare = total_ours = 0.0
    for path, (width, height) in photos:
        bare, ours = paired_median_ms(
            functools.partial(bare_draft, path),
            functools.partial(analyse_file, path, settings),
            repeat,
        )
        total_bare += bare
        total_ours += ours
        size = f"{width}x{height}"
        print(f"{path.name[:40]:40s} {size:>11s} {bare:8.2f} {ours:8.2f} {bare / ours:9.2f}")
    ratio = total_bare / total_ours
    print(f"{'all':40s} {'':>11s} {total_bare:8.2f} {total_ours:8.2f} {ratio:9.2f}")


def main() -> int:
    """Run the accuracy table, then the timing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path, default=list(DEFAULT_DIRS))
    parser.add_argument("--repeat", type=int, default=7, help="timing runs per image")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--no-vips", action="store_true", help="Pillow decodes every file")
    parser.add_argument(
        "--compare-vips",
        action="store_true",
        help="also analyse each file with libvips off and count the files whose hashes differ",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # odd-but-readable files make Pillow chatty
    files = image_files(args.dirs)
    differing: list[Path] | None = [] if args.compare_vips else None
    distances, worst, skipped = measure(files, vips=not args.no_vips, differing=differing)
    print(f"{len(files)} files, {skipped} not decodable by Pillow (skipped)")
    print("Hamming distance: medianalysed vs imagehash on the full-resolution oriented image\n")
    print_table(distances)
    if differing is not None:
        print(f"\nhashes differing between libvips on and off: {len(differing)} files")
        print("\n".join(f"  {path}" for path in differing))
    if worst:
        print("\nImages off by more than 2 bits on ahash/phash/dhash, or failing:")
        print("\n".join(worst))
    if not args.no_timing:
        print_timing(files, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
