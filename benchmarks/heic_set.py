"""Build the HEIC benchmark set: the bench photos encoded as HEIC, plus the corpus HEIC files.

Phones store a small thumbnail beside the full image (an iPhone: 320 px on the long side); the
photos are encoded the same way with pillow-heif (`thumbnails=[320]`), already oriented, so that
hashes from the thumbnail can be compared with imagehash on the full decode. The corpus files
(exif-samples/heic: iPhone, Nokia, a sample) come as they are: one carries a thumbnail.

Usage: .venv/bin/python benchmarks/heic_set.py [--quality 80] [--count 30]
(after fetch_photos.py, whose photos it encodes)
Writes benchmarks/data/heic/ (git-ignored); files already there are kept.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pillow_heif
from PIL import Image, ImageOps

BENCH_DIR = Path(__file__).resolve().parent
PHOTO_DIR = BENCH_DIR / "data" / "photos"
HEIC_DIR = BENCH_DIR / "data" / "heic"
CORPUS_HEIC = BENCH_DIR.parent.parent / "shared" / "corpora" / "exif-samples" / "heic"
THUMBNAIL_BOX = 320  # what iPhones embed


def encode(photo: Path, target: Path, quality: int) -> None:
    """`photo` oriented and saved as HEIC with one embedded thumbnail."""
    with Image.open(photo) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    pillow_heif.from_pillow(image).save(
        target,
        format="HEIF",
        quality=quality,
        thumbnails=[THUMBNAIL_BOX],
        enc_params={"preset": "ultrafast"},  # x265's slow default takes minutes per photo here
    )


def main() -> int:
    """Encode the photos not yet encoded, copy the corpus HEIC files, print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=int, default=80)
    parser.add_argument("--count", type=int, default=30, help="photos to encode (sorted by name)")
    args = parser.parse_args()
    photos = sorted(PHOTO_DIR.glob("*.jpg"))[: args.count]
    if not photos:
        print(f"heic: no photos in {PHOTO_DIR}; run fetch_photos.py first", file=sys.stderr)
        return 1
    HEIC_DIR.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        target = HEIC_DIR / f"{photo.stem}.heic"
        if not target.exists():
            partial = target.with_suffix(".partial")
            encode(photo, partial, args.quality)
            partial.rename(target)
    corpus = sorted(p for p in CORPUS_HEIC.rglob("*") if p.suffix.lower() in {".heic", ".heif"})
    for source in corpus:
        shutil.copyfile(source, HEIC_DIR / f"corpus__{source.name}")
    print(f"heic: {len(photos)} photos encoded, {len(corpus)} corpus files, in {HEIC_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
