"""Generate tests/corpus/essential/, the small corpus of our own that ships with the repository.

    .venv/bin/python tests/corpus/make_corpus.py      # rewrites tests/corpus/essential/

Every picture is drawn here from a fixed seed (no third-party content: the files are CC0, see
tests/corpus/LICENSE), so a clone without ../shared/corpora still tests the core paths: each
decoder (JPEG, PNG, WebP, TIFF, GIF, HEIC), EXIF orientation and GPS, an exact copy, a resized
and a re-encoded near duplicate, a truncated file, and a file that is not an image.
MANIFEST.json says what each one is for; tests/e2e/test_essential_corpus.py runs it through the
daemon. Encoders differ across library versions, so a rerun may change bytes, not meaning.
"""

from __future__ import annotations

import io
import json
import random
import sys
from pathlib import Path

import pillow_heif
from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent / "essential"
SIZE = (640, 480)


def scene(seed: int) -> Image.Image:
    """A photo-like picture: a sky gradient, hills, and shapes placed from `seed`."""
    rng = random.Random(seed)
    top = tuple(rng.randrange(40, 120) for _ in range(3))
    bottom = tuple(rng.randrange(150, 255) for _ in range(3))
    image = Image.new("RGB", SIZE)
    draw = ImageDraw.Draw(image)
    for y in range(SIZE[1]):
        mix = y / (SIZE[1] - 1)
        colour = tuple(round(a + (b - a) * mix) for a, b in zip(top, bottom, strict=True))
        draw.line([(0, y), (SIZE[0], y)], fill=colour)
    for _ in range(12):
        x, y = rng.randrange(SIZE[0]), rng.randrange(SIZE[1])
        r = rng.randrange(15, 90)
        fill = tuple(rng.randrange(256) for _ in range(3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x - r, y - r, x + r, y + r], fill=fill)
    hills = [(0, SIZE[1])] + [
        (x, round(SIZE[1] * 0.7 + rng.randrange(-40, 40))) for x in range(0, SIZE[0] + 64, 64)
    ]
    draw.polygon([*hills, (SIZE[0], SIZE[1])], fill=(40, rng.randrange(90, 160), 50))
    return image


def exif(orientation: int, *, gps: tuple[float, float] | None = None) -> bytes:
    data = Image.Exif()
    data[0x010F] = "medianalysed"  # Make
    data[0x0110] = "essential corpus"  # Model
    data[0x0112] = orientation
    data[0x0132] = "2024:06:01 12:00:00"  # DateTime
    if gps is not None:
        lat, lon = gps
        gps_ifd = data.get_ifd(0x8825)
        gps_ifd[1] = "N" if lat >= 0 else "S"
        gps_ifd[2] = _dms(abs(lat))
        gps_ifd[3] = "E" if lon >= 0 else "W"
        gps_ifd[4] = _dms(abs(lon))
    return data.tobytes()


def _dms(value: float) -> tuple[float, float, float]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = round(((value - degrees) * 60 - minutes) * 60, 2)
    return (float(degrees), float(minutes), seconds)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def files() -> dict[str, tuple[bytes, str]]:
    """File name -> (bytes, what it is for)."""
    pillow_heif.register_heif_opener()
    harbour, meadow, city = scene(1), scene(2), scene(3)
    harbour_jpeg = encode(harbour, "JPEG", quality=88, exif=exif(1, gps=(43.4674, 11.8851)))
    return {
        "harbour.jpg": (harbour_jpeg, "JPEG with EXIF camera, date and GPS"),
        "copies/harbour-copy.jpg": (harbour_jpeg, "exact duplicate of harbour.jpg"),
        "copies/harbour-small.jpg": (
            encode(harbour.resize((320, 240), Image.Resampling.LANCZOS), "JPEG", quality=80),
            "resized near duplicate of harbour.jpg",
        ),
        "copies/harbour.webp": (
            encode(harbour, "WEBP", quality=80),
            "WebP re-encoding of harbour.jpg (same pixels tier at most, near at least)",
        ),
        "meadow-rotated.jpg": (
            encode(meadow.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=88, exif=exif(6)),
            "JPEG stored rotated with EXIF orientation 6",
        ),
        "city.png": (encode(city, "PNG", optimize=True), "PNG, lossless"),
        "city.tiff": (
            encode(city.resize((320, 240)), "TIFF", compression="tiff_lzw"),
            "TIFF (LZW), a resized copy of city.png",
        ),
        "sunset.heic": (encode(scene(4), "HEIF", quality=70), "HEIC (libheif via pillow-heif)"),
        "palette.gif": (
            encode(scene(5).convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
            "GIF with a palette",
        ),
        "broken/truncated.jpg": (
            encode(scene(6), "JPEG", quality=85)[:4000],
            "JPEG cut after 4000 bytes: CORRUPT",
        ),
        "notes.txt": (b"not an image\n", "text: skipped as UNSUPPORTED_FORMAT"),
    }


def main() -> int:
    manifest = {}
    for name, (data, purpose) in files().items():
        path = OUT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        manifest[name] = purpose
    manifest_text = json.dumps(manifest, indent=2) + "\n"
    (OUT.parent / "MANIFEST.json").write_text(manifest_text, encoding="utf-8")
    print(f"wrote {len(manifest)} files to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
