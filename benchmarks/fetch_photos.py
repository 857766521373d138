"""Build the benchmark photo set from Debian wallpaper packages (cached under benchmarks/data/).

Only `apt-get download` touches the network, and only when a package's .deb is not cached yet.
The photographs are chosen by name (the packages also hold drawings and renders, which are left
out), checked with Pillow, and copied to data/photos/. data/set/ is the flat folder every method
reads: the photos, then byte-level variants of them (a comment added, pixels untouched) until it
holds --count files, each with its own sha256.

Usage: python benchmarks/fetch_photos.py [--count 200]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

from PIL import Image

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"
DEB_DIR = DATA_DIR / "debs"
EXTRACT_DIR = DATA_DIR / "extract"
PHOTO_DIR = DATA_DIR / "photos"
SET_DIR = DATA_DIR / "set"
MANIFEST = DATA_DIR / "set.json"
EXIF_SAMPLES = BENCH_DIR.parent.parent / "shared" / "corpora" / "exif-samples"

SET_VERSION = 2  # bump when the way data/set/ is built changes
MIN_MEGAPIXELS = 1.8
MAX_MEGAPIXELS = 25.0

# Real photographs only, by path inside each package (looked at one by one; the rest are art).
PHOTOS_BY_PACKAGE: dict[str, list[str]] = {
    "lomiri-wallpapers-16.04": [
        f"usr/share/backgrounds/{name}.jpg"
        for name in (
            "Bridge_by_Sander_Klootwijk",
            "Dragonfly_by_Bolly",
            "Picture_0B_by_freespace",
            "Wine_by_Jakkub_Mede",
            "aitzgorri_by_Aitzol_Berasategi",
            "analogpattern_by_Peter_Nerlich",
            "free_by_Peter_Nerlich",
            "friends_by_Aitzol_Berasategi",
            "greentock_by_Peter_Nerlich",
            "life_by_Aitzol_Berasategi",
            "picosdeeuropa_by_Aitzol_Berasategi",
            "seeding_by_Clements_Engelhardt",
            "sunset_by_Aitzol_Berasategi",
        )
    ],
    "lomiri-wallpapers-20.04": [
        "usr/share/backgrounds/Infinite-Sea_by_Aury88.jpg",
        "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg",
    ],
    "mate-backgrounds": [
        f"usr/share/backgrounds/mate/nature/{name}.jpg"
        for name in (
            "Aqua",
            "Blinds",
            "FreshFlower",
            "Garden",
            "LadyBird",
            "RainDrops",
            "Storm",
            "TwoWings",
            "Wood",
            "YellowFlower",
        )
    ],
    "plasma-workspace-wallpapers": [
        f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg"
        for name in (
            "BytheWater",
            "ColdRipple",
            "ColorfulCups",
            "DarkestHour",
            "EveningGlow",
            "FallenLeaf",
            "Grey",
            "Kite",
            "OneStandsOut",
            "Path",
            "summer_1am",
        )
    ],
}

# Camera and phone photographs from the shared corpus (corrupted.jpg is left out on purpose).
EXIF_SAMPLE_PHOTOS = [
    "jpg/Reconyx_HC500_Hyperfire.jpg",
    "jpg/hdr/canon_hdr_NO.jpg",
    "jpg/hdr/canon_hdr_YES.jpg",
    "jpg/hdr/iphone_hdr_NO.jpg",
    "jpg/hdr/iphone_hdr_YES.jpg",
    "jpg/mobile/HMD_Nokia_8.3_5G.jpg",
    "jpg/mobile/jolla.jpg",
    "jpg/tests/28-hex_value.jpg",
    "jpg/tests/30-type_error.jpg",
    "jpg/tests/33-type_error.jpg",
    "jpg/tests/35-empty.jpg",
    "jpg/tests/42_IndexError.jpg",
    "jpg/tests/67-0_length_string.jpg",
    "jpg/tests/87_OSError.jpg",
]


def cached_deb(package: str) -> Path | None:
    """The cached .deb of `package`, if one was downloaded before."""
    found = sorted(DEB_DIR.glob(f"{package}_*.deb"))
    return found[-1] if found else None


def download_debs(packages: list[str]) -> None:
    """`apt-get download` the packages not cached yet (after one `apt-get update`)."""
    missing = [p for p in packages if cached_deb(p) is None]
    if not missing:
        return
    DEB_DIR.mkdir(parents=True, exist_ok=True)
    print(f"fetch: apt-get download {' '.join(missing)}", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "download", *missing], check=True, cwd=DEB_DIR)


def extract_deb(package: str) -> Path:
    """Unpack the package's .deb once into data/extract/PACKAGE/ and return that folder."""
    target = EXTRACT_DIR / package
    stamp = target / ".extracted"
    if not stamp.exists():
        deb = cached_deb(package)
        assert deb is not None
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
        stamp.write_text(deb.name + "\n")
    return target


def photo_problem(path: Path) -> str | None:
    """Why `path` is not a usable photo (format, size), or None if it is one."""
    try:
        with Image.open(path) as image:
            fmt, (width, height) = image.format, image.size
            image.verify()
    except (OSError, SyntaxError) as exc:
        return f"unreadable: {exc}"
    megapixels = width * height / 1e6
    if fmt not in {"JPEG", "PNG"}:
        return f"format {fmt}"
    if not MIN_MEGAPIXELS <= megapixels <= MAX_MEGAPIXELS:
        return f"{megapixels:.1f} MP"
    return None


def photo_name(package: str, member: str) -> str:
    """A flat, unique file name: PACKAGE__NAME.jpg (Plasma names its files by size only)."""
    parts = member.split("/")
    stem = parts[3] + ".jpg" if "contents" in parts else parts[-1]
    return f"{package}__{stem}"


def collect_sources() -> list[tuple[str, Path]]:
    """(unique name, source path) of every chosen photo that exists and passes the checks."""
    sources: list[tuple[str, Path]] = []
    for package, members in PHOTOS_BY_PACKAGE.items():
        root = extract_deb(package)
        for member in members:
            sources.append((photo_name(package, member), root / member))
    if EXIF_SAMPLES.is_dir():
        sources += [
            (f"exif-samples__{m.replace('/', '_')}", EXIF_SAMPLES / m) for m in EXIF_SAMPLE_PHOTOS
        ]
    usable: list[tuple[str, Path]] = []
    for name, path in sources:
        problem = "missing" if not path.is_file() else photo_problem(path)
        if problem:
            print(f"fetch: skipping {path}: {problem}", file=sys.stderr)
        else:
            usable.append((name, path))
    return usable


def copy_photos(sources: list[tuple[str, Path]]) -> list[Path]:
    """Copy the photos into data/photos/ (kept if already there) and return their paths."""
    PHOTO_DIR.mkdir(parents=True, exist_ok=True)
    photos = []
    for name, source in sources:
        target = PHOTO_DIR / name
        if not target.exists() or target.stat().st_size != source.stat().st_size:
            shutil.copyfile(source, target)
        photos.append(target)
    return photos


def jpeg_with_comment(data: bytes, comment: bytes) -> bytes:
    """The same JPEG with a COM segment inserted after its APPn segments (pixels unchanged)."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    offset = 2
    while data[offset] == 0xFF and 0xE0 <= data[offset + 1] <= 0xEF:
        offset += 2 + int.from_bytes(data[offset + 2 : offset + 4], "big")
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    return data[:offset] + segment + data[offset:]


def png_with_comment(data: bytes, comment: bytes) -> bytes:
    """The same PNG with a tEXt chunk inserted after IHDR (pixels unchanged)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    ihdr_end = 8 + 8 + int.from_bytes(data[8:12], "big") + 4
    body = b"tEXt" + b"Comment\x00" + comment
    chunk = (len(body) - 4).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    return data[:ihdr_end] + chunk + data[ihdr_end:]


def variant_bytes(photo: Path, round_index: int) -> bytes:
    """The photo's bytes with a comment naming `round_index`, so every file hashes differently."""
    data = photo.read_bytes()
    comment = f"medianalysed benchmark copy {round_index}".encode()
    if data[:2] == b"\xff\xd8":
        return jpeg_with_comment(data, comment)
    return png_with_comment(data, comment)


def build_set(photos: list[Path], count: int) -> list[Path]:
    """Fill data/set/ with `count` files cycling through the photos.

    Round 0 links the photos as they are; later rounds are byte-level variants carrying a
    comment, so no two files share a sha256 (the daemon caches analyses by content hash,
    and exact copies would be served from that cache instead of being analysed).
    """
    shutil.rmtree(SET_DIR, ignore_errors=True)
    SET_DIR.mkdir(parents=True)
    members = []
    for index in range(max(count, len(photos))):
        photo = photos[index % len(photos)]
        round_index = index // len(photos)
        member = SET_DIR / f"r{round_index}-{photo.name}"
        if round_index == 0:
            os.link(photo, member)
        else:
            member.write_bytes(variant_bytes(photo, round_index))
        members.append(member)
    return members


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def set_is_current(count: int) -> bool:
    """True when data/set/ already holds the manifest's files for this `count`."""
    if not MANIFEST.exists():
        return False
    manifest = json.loads(MANIFEST.read_text())
    files = [SET_DIR / name for name in manifest["files"]]
    return (
        manifest.get("version") == SET_VERSION
        and manifest["count"] == count
        and all(f.is_file() for f in files)
    )


def main() -> int:
    """Fetch (if needed), check and lay out the photo set; print a one-line summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="files in data/set/")
    args = parser.parse_args()
    if set_is_current(args.count):
        print(f"fetch: photo set cached in {SET_DIR}")
        return 0
    download_debs(list(PHOTOS_BY_PACKAGE))
    photos = copy_photos(collect_sources())
    if len(photos) < 20:
        print(f"fetch: only {len(photos)} photos found; refusing to benchmark", file=sys.stderr)
        return 1
    members = build_set(photos, args.count)
    manifest = {
        "version": SET_VERSION,
        "count": args.count,
        "unique": len(photos),
        "photos": {p.name: sha256_of(p) for p in photos},
        "files": [m.name for m in members],
    }
    MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    size_mb = sum(p.stat().st_size for p in photos) / 1e6
    print(
        f"fetch: {len(photos)} unique photos ({size_mb:.0f} MB), {len(members)} files in set "
        f"(sha256 all distinct: {len({sha256_of(m) for m in members}) == len(members)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
