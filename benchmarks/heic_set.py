"""Build HEIC benchmark sets: the bench photos encoded as phones write them, plus corpus HEIC files.

A phone stores the photo as a grid of 512 x 512 HEVC tiles and, beside it, a small thumbnail
(an iPhone: 320 px on the long side) scaled with a proper low-pass filter. libheif's own
thumbnails (pillow-heif's `thumbnails=[...]`) are scaled nearest-neighbour instead, which
aliases: a 1-pixel checkerboard comes out flat black. So this script scales each thumbnail
itself (`--filter lanczos`, the default) and hands libheif a copy of it doubled pixel for pixel,
which libheif's nearest-neighbour halving gives back exactly; `--filter nearest` writes libheif's
own. Photos are oriented before encoding, so hashes from a thumbnail can be compared with
imagehash on the full decode.

Usage: .venv/bin/python benchmarks/heic_set.py [--thumbnails 320[,512...]] [--filter lanczos]
       [--out DIR] [--count N] [--corpus-photos] [--quadrants] [--quality 80]
(after fetch_photos.py, whose photos it encodes). Default: data/heic/, iPhone-like 320-px
thumbnails, plus the corpus HEIC files. Files already there are kept.
--corpus-photos adds the JPEG photos of the corpora (imagededup-testdata, exif-samples) whose
short side is at least 512 px, besides the bench photos; --quadrants encodes each photo's four
quarters instead of the photo (four times the distinct real content for accuracy tables).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps
from pillow_heif.constants import HeifCompressionFormat
from pillow_heif.misc import MODE_INFO, CtxEncode, _add_planes

BENCH_DIR = Path(__file__).resolve().parent
PHOTO_DIR = BENCH_DIR / "data" / "photos"
HEIC_DIR = BENCH_DIR / "data" / "heic"
CORPORA = BENCH_DIR.parent.parent / "shared" / "corpora"
CORPUS_HEIC = CORPORA / "exif-samples" / "heic"
CORPUS_PHOTO_DIRS = (CORPORA / "imagededup-testdata", CORPORA / "exif-samples" / "jpg")
IPHONE_THUMBNAIL_BOX = 320
TILE_SIZE = 512  # phones' grid tiles
CORPUS_PHOTO_MIN_SIDE = 512  # smaller images are decoded whole: their thumbnails never count
FILTERS = {"lanczos": Image.Resampling.LANCZOS, "nearest": None}
# x265's slow default takes minutes per photo on this machine
ENCODER_PARAMS = {"preset": "ultrafast"}


def oriented(photo: Path) -> Image.Image:
    with Image.open(photo) as opened:
        return ImageOps.exif_transpose(opened).convert("RGB")


def quadrants(image: Image.Image) -> list[Image.Image]:
    """The four quarters of a photo: more distinct real content for the accuracy tables."""
    half_width, half_height = image.width // 2, image.height // 2
    return [
        image.crop((left, top, left + half_width, top + half_height))
        for top in (0, half_height)
        for left in (0, half_width)
    ]


def encode(image: Image.Image, target: Path, boxes: list[int], resample: str, quality: int) -> None:
    """`image` as a HEIC grid with one thumbnail per box (long side), scaled by `resample`
    (nearest: libheif's own scaling)."""
    encoder = CtxEncode(
        HeifCompressionFormat.HEVC, quality=quality, enc_params=dict(ENCODER_PARAMS)
    )
    encoder.add_image(image.size, "RGB", image.tobytes(), tile_size=TILE_SIZE, primary=True)
    if encoder._grid_images:  # images within one tile are worked on whole: no thumbnails
        handle = encoder._grid_images[-1]
        for box in sorted(b for b in boxes if b < max(image.size)):
            add_thumbnail(encoder, handle, image, box, FILTERS[resample])
    encoder.save(target)


def add_thumbnail(
    encoder: CtxEncode,
    handle: Any,
    image: Image.Image,
    box: int,
    resample: Image.Resampling | None,
) -> None:
    """One thumbnail of `image` fitting `box`, scaled by `resample` (None: by libheif)."""
    if resample is None:
        pixels = image
    else:
        small = image.copy()
        small.thumbnail((box, box), resample, reducing_gap=None)
        # Doubled pixel for pixel: libheif scales it back to `box` by taking every other pixel.
        pixels = small.resize((small.width * 2, small.height * 2), Image.Resampling.NEAREST)
    _, _, colorspace, chroma = MODE_INFO["RGB"]
    planes = encoder.ctx_write.create_image(pixels.size, colorspace, chroma, 0)
    _add_planes(planes, pixels.size, "RGB", pixels.tobytes(), 0, 8)
    handle.encode_thumbnail(encoder.ctx_write, box, 1, planes)


def source_photos(count: int, corpus_photos: bool) -> list[Path]:
    """The bench photos (sorted, the first `count`), then corpus JPEG photos if asked."""
    photos = sorted(PHOTO_DIR.glob("*.jpg"))[:count]
    if corpus_photos:
        for folder in CORPUS_PHOTO_DIRS:
            for path in sorted(folder.rglob("*.jp*g")):
                if _is_large_photo(path) and not any(p.name.endswith(path.name) for p in photos):
                    photos.append(path)
    return photos


def _is_large_photo(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()  # the corpora hold damaged files too
            return min(image.size) >= CORPUS_PHOTO_MIN_SIDE and image.format == "JPEG"
    except (OSError, ValueError, SyntaxError):
        return False


def main() -> int:
    """Encode the photos not yet encoded, copy the corpus HEIC files, print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=int, default=80)
    parser.add_argument("--count", type=int, default=30, help="bench photos (sorted by name)")
    parser.add_argument("--thumbnails", default=str(IPHONE_THUMBNAIL_BOX), help="long sides, a,b")
    parser.add_argument("--filter", choices=sorted(FILTERS), default="lanczos")
    parser.add_argument("--out", type=Path, default=HEIC_DIR)
    parser.add_argument("--corpus-photos", action="store_true")
    parser.add_argument("--quadrants", action="store_true", help="each photo's 4 quarters instead")
    args = parser.parse_args()
    boxes = [int(b) for b in args.thumbnails.split(",") if b]
    photos = source_photos(args.count, args.corpus_photos)
    if not photos:
        print(f"heic: no photos in {PHOTO_DIR}; run fetch_photos.py first", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        prefix = "" if photo.parent == PHOTO_DIR else f"{photo.parent.name}__"
        images = {f"{prefix}{photo.stem}": lambda photo=photo: oriented(photo)}
        if args.quadrants:
            images = {
                f"{prefix}{photo.stem}__q{index}": lambda photo=photo, index=index: quadrants(
                    oriented(photo)
                )[index]
                for index in range(4)
            }
        for stem, load in images.items():
            target = args.out / f"{stem}.heic"
            if not target.exists():
                partial = target.with_suffix(".partial")
                encode(load(), partial, boxes, args.filter, args.quality)
                partial.rename(target)
    corpus = sorted(p for p in CORPUS_HEIC.rglob("*") if p.suffix.lower() in {".heic", ".heif"})
    for source in corpus:
        shutil.copyfile(source, args.out / f"corpus__{source.name}")
    print(f"heic: {len(photos)} photos encoded, {len(corpus)} corpus files, in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
