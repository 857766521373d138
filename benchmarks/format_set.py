"""Every bench photo as PNG, WebP (quality 90) and TIFF (deflate), for hash_accuracy.py and
run.py: benchmarks/data/formats/ (bench_formats.py's files, kept once made).

Usage: .venv/bin/python benchmarks/format_set.py [--limit N]
then:  .venv/bin/python benchmarks/hash_accuracy.py benchmarks/data/formats --no-timing [--no-vips]
"""

from __future__ import annotations

import argparse
import sys

from bench_formats import FORMAT_DIR, PHOTO_DIR, SAVE, converted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N photos")
    args = parser.parse_args()
    photos = sorted(PHOTO_DIR.glob("*.jpg"))
    if args.limit:
        photos = photos[: args.limit]
    if not photos:
        print(f"format_set: no photos in {PHOTO_DIR}; run fetch_photos.py first", file=sys.stderr)
        return 1
    for photo in photos:
        for extension in SAVE:
            converted(photo, extension)
    print(f"{len(photos) * len(SAVE)} files in {FORMAT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
