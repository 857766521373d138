"""The photo families of `bench_near.py`: real photos and the variants planted from each.

A *family* is one real photograph (from the bench photo set of `fetch_photos.py` and the shared
corpora) and every copy made from it: resized, recompressed, cropped, brightened, watermarked,
converted, EXIF-rotated, grey. Two images of different families are distinct photos. A
horizontally flipped copy is a family of its own: a mirror image is a different picture (text
reads backwards, left and right swap), imagededup's own tests expect PHash not to link it, and
making hashes mirror-blind would link every pair of mirror-symmetric scenes.

Originals wider or taller than `MAX_SIDE` are first downscaled to it and saved as JPEG quality 95
(the variants' pixels then stay affordable to make and hash); the rest are used as they are.
Everything is written once under benchmarks/data/near/ and reused.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pillow_heif
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from fetch_photos import EXIF_SAMPLE_PHOTOS

pillow_heif.register_heif_opener()

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data" / "near"
PHOTO_DIR = BENCH_DIR / "data" / "photos"
CORPORA = BENCH_DIR.parent.parent / "shared" / "corpora"
EXIF_SAMPLES = CORPORA / "exif-samples"
UKBENCH = CORPORA / "imagededup-testdata"

LAYOUT_VERSION = 1  # bump when originals or variants are made differently
MAX_SIDE = 2048
MIN_PIXELS = 250_000  # smaller corpus files are thumbnails, not photos

# Corpus photos beyond those fetch_photos.py already copies (exif-samples__*), by folder.
CORPUS_GLOBS = (
    (EXIF_SAMPLES / "jpg" / "gps", "*.jpg"),
    (EXIF_SAMPLES / "jpg" / "exif-org", "*.jpg"),
    (EXIF_SAMPLES / "jpg" / "tests", "*.jp*g"),
    (EXIF_SAMPLES / "heic", "**/*.[hH][eE][iI][cCfF]"),
    (UKBENCH / "base_images", "*.jpg"),
)
# Not photos: flat grey test cards (one is in the bench photo set), a file with a broken header.
# The corpus copies of the bench set's exif-samples photos are left out too (EXIF_SAMPLE_PHOTOS).
SKIPPED = {"45-gps_ifd.jpg", "corrupted.jpg", "exif-samples__jpg_tests_67-0_length_string.jpg"}
# The same shot with and without HDR: the same instant and framing, tones merged from several
# exposures. Neither a planted copy nor a distinct photo; reported apart, scored in neither.
TWINS = (
    ("exif-samples__jpg_hdr_canon_hdr_NO.jpg", "exif-samples__jpg_hdr_canon_hdr_YES.jpg"),
    ("exif-samples__jpg_hdr_iphone_hdr_NO.jpg", "exif-samples__jpg_hdr_iphone_hdr_YES.jpg"),
)


def _saved(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    if fmt == "HEIF":
        pillow_heif.from_pillow(image).save(out, format="HEIF", **options)
    else:
        image.save(out, format=fmt, **options)
    return out.getvalue()


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    return _saved(image.convert("RGB") if image.mode != "L" else image, "JPEG", quality=quality)


def _resized(image: Image.Image, scale: float) -> Image.Image:
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _cropped(
    image: Image.Image, left: float, top: float, right: float, bottom: float
) -> Image.Image:
    w, h = image.size
    return image.crop(
        (round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom)))
    )


def _box(image: Image.Image, width: float, height: float) -> Image.Image:
    """An opaque white box with a dark border in the bottom-right corner (a logo, a stamp)."""
    out = image.copy()
    w, h = out.size
    box = (
        round(w * (1 - width - 0.03)),
        round(h * (1 - height - 0.03)),
        round(w * 0.97),
        round(h * 0.97),
    )
    ImageDraw.Draw(out).rectangle(
        box, fill=(255, 255, 255), outline=(40, 40, 40), width=max(1, w // 200)
    )
    return out


def _text(image: Image.Image) -> Image.Image:
    """Semi-transparent white text across the lower third, as photo sites stamp their copies."""
    base = image.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    size = max(12, base.height // 10)
    font = ImageFont.load_default(size=size)
    ImageDraw.Draw(layer).text(
        (base.width // 10, base.height * 2 // 3),
        "© 2026 medianalysed",
        font=font,
        fill=(255, 255, 255, 150),
    )
    return Image.alpha_composite(base, layer).convert("RGB")


def _exif_rotated(image: Image.Image, orientation: int, fmt: str = "JPEG") -> bytes:
    """Pixels stored turned, with the EXIF orientation that displays them as `image`."""
    stored = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    turned = image.convert("RGB").transpose(stored)
    options: dict[str, object] = {"exif": exif.tobytes()}
    options["quality"] = 90 if fmt == "JPEG" else 80
    return _saved(turned, fmt, **options)


def _brightness(factor: float) -> Callable[[Image.Image], bytes]:
    return lambda image: _jpeg(ImageEnhance.Brightness(image).enhance(factor))


def _contrast(factor: float) -> Callable[[Image.Image], bytes]:
    return lambda image: _jpeg(ImageEnhance.Contrast(image).enhance(factor))


def _crop(left: float, top: float, right: float, bottom: float) -> Callable[[Image.Image], bytes]:
    return lambda image: _jpeg(_cropped(image, left, top, right, bottom))


# Variant name -> (group shown in the table, maker of the file's bytes, file suffix).
VARIANTS: dict[str, tuple[str, Callable[[Image.Image], bytes], str]] = {
    "resize 25%": ("resize 25-75%", lambda i: _jpeg(_resized(i, 0.25)), ".jpg"),
    "resize 50%": ("resize 25-75%", lambda i: _jpeg(_resized(i, 0.5)), ".jpg"),
    "resize 75%": ("resize 25-75%", lambda i: _jpeg(_resized(i, 0.75)), ".jpg"),
    "JPEG q30": ("JPEG quality 30-90", lambda i: _jpeg(i, 30), ".jpg"),
    "JPEG q50": ("JPEG quality 30-90", lambda i: _jpeg(i, 50), ".jpg"),
    "JPEG q70": ("JPEG quality 30-90", lambda i: _jpeg(i, 70), ".jpg"),
    "JPEG q90": ("JPEG quality 30-90", lambda i: _jpeg(i, 90), ".jpg"),
    "crop 2% each side": ("crop 2-10%", _crop(0.02, 0.02, 0.02, 0.02), ".jpg"),
    "crop 4% each side": ("crop 2-10%", _crop(0.04, 0.04, 0.04, 0.04), ".jpg"),
    "crop 5% top+left": ("crop 2-10%", _crop(0.05, 0.05, 0, 0), ".jpg"),
    "crop 10% right": ("crop 2-10%", _crop(0, 0, 0.10, 0), ".jpg"),
    "crop 8% bottom": ("crop 2-10%", _crop(0, 0, 0, 0.08), ".jpg"),
    "brightness +20%": ("brightness/contrast ±20%", _brightness(1.2), ".jpg"),
    "brightness -20%": ("brightness/contrast ±20%", _brightness(0.8), ".jpg"),
    "contrast +20%": ("brightness/contrast ±20%", _contrast(1.2), ".jpg"),
    "contrast -20%": ("brightness/contrast ±20%", _contrast(0.8), ".jpg"),
    "watermark box 15x8%": ("watermark", lambda i: _jpeg(_box(i, 0.15, 0.08)), ".jpg"),
    "watermark box 25x12%": ("watermark", lambda i: _jpeg(_box(i, 0.25, 0.12)), ".jpg"),
    "watermark text": ("watermark", lambda i: _jpeg(_text(i)), ".jpg"),
    "PNG": ("format change", lambda i: _saved(i, "PNG", compress_level=1), ".png"),
    "WebP q80": ("format change", lambda i: _saved(i, "WEBP", quality=80), ".webp"),
    "HEIC q60": ("format change", lambda i: _saved(i, "HEIF", quality=60), ".heic"),
    "EXIF orientation 3": ("EXIF rotation", lambda i: _exif_rotated(i, 3), ".jpg"),
    "EXIF orientation 6": ("EXIF rotation", lambda i: _exif_rotated(i, 6), ".jpg"),
    "EXIF orientation 8": ("EXIF rotation", lambda i: _exif_rotated(i, 8), ".jpg"),
    "grey-scale": ("grey-scale", lambda i: _jpeg(i.convert("L")), ".jpg"),
    "half size + WebP + EXIF 6": (
        "combined",
        lambda i: _exif_rotated(_resized(i, 0.5), 6, "WEBP"),
        ".webp",
    ),
    "JPEG q40 + brightness +15%": (
        "combined",
        lambda i: _jpeg(ImageEnhance.Brightness(i).enhance(1.15), 40),
        ".jpg",
    ),
    "crop 4% + resize 50%": (
        "combined",
        lambda i: _jpeg(_resized(_cropped(i, 0.04, 0.04, 0.04, 0.04), 0.5)),
        ".jpg",
    ),
}
FLIP = "horizontal flip"


@dataclass(frozen=True, slots=True)
class Member:
    """One file of the benchmark."""

    path: Path
    family: str
    variant: str  # "original", a VARIANTS key, or FLIP (a family of its own)


def sources() -> list[tuple[str, Path]]:
    """(family name, source file) of every real photo, bench photo set first."""
    found = [
        (p.name, p) for p in sorted(PHOTO_DIR.glob("*")) if p.is_file() and p.name not in SKIPPED
    ]
    for folder, pattern in CORPUS_GLOBS:
        for path in sorted(folder.glob(pattern)):
            relative = (
                path.relative_to(EXIF_SAMPLES).as_posix() if EXIF_SAMPLES in path.parents else ""
            )
            if path.name in SKIPPED or relative in EXIF_SAMPLE_PHOTOS:
                continue
            with Image.open(path) as image:
                if image.width * image.height < MIN_PIXELS:
                    continue
            found.append((f"{folder.name}__{path.name}", path))
    return found


def _original(path: Path, target: Path) -> Image.Image:
    """The oriented RGB pixels of a source; writes the benchmark's original file."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    if max(image.size) > MAX_SIDE or path.suffix.lower() not in {".jpg", ".jpeg"}:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        target.write_bytes(_jpeg(image, 95))
    else:
        shutil.copyfile(path, target)
    return image


def build() -> list[Member]:
    """Make (once per photo) and list every file: originals, their variants, their flips."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    members: list[Member] = []
    for family, source in sources():
        folder = DATA_DIR / family
        done = folder / f".done-{LAYOUT_VERSION}"
        if not done.exists():
            _make_family(source, folder)
            done.touch()
            print(f"near: made the variants of {family}", flush=True)
        members.append(Member(folder / "original.jpg", family, "original"))
        for number, (name, (_, _, suffix)) in enumerate(VARIANTS.items()):
            members.append(Member(folder / f"v{number:02d}{suffix}", family, name))
        members.append(Member(folder / "flip.jpg", f"{family} (flipped)", FLIP))
    return members


def _make_family(source: Path, folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    image = _original(source, folder / "original.jpg")
    for number, (_, make, suffix) in enumerate(VARIANTS.values()):
        (folder / f"v{number:02d}{suffix}").write_bytes(make(image))
    (folder / "flip.jpg").write_bytes(_jpeg(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))


def group_of(variant: str) -> str:
    """The table row a variant is reported under."""
    return VARIANTS[variant][0] if variant in VARIANTS else variant
