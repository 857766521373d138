"""The pure image analysis (SPEC §3, §4) on real photos, Pillow's edge cases and made-up files."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageOps
from PIL.TiffImagePlugin import IFDRational

from medianalysed.analysis import (
    AnalysisSettings,
    FileFacts,
    analyse_file,
    analyse_image,
    read_file_facts,
)
from medianalysed.config import AnalysisConfig, Config, ProcessingConfig
from medianalysed.dupindex import hamming
from medianalysed.errors import AnalysisError, ErrorCode

DEFAULTS = AnalysisSettings()
HEX64 = re.compile(r"^[0-9a-f]{16}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
HEX_COLOR = re.compile(r"^#[0-9a-f]{6}$")
CONTRACT_HASHES = ("ahash", "phash", "dhash")
# Formats whose decoding needs a program that is not installed here (EPS: Ghostscript).
NEEDS_EXTERNAL_TOOL = (".eps",)
# Plain Pillow cannot identify it, so Pillow's survey lists it as broken; pillow-heif decodes it.
DECODED_BY_PILLOW_HEIF = frozenset({"broken/avif/hopper.heif"})
# The declared 51-84 Mpx BLP/DDS "timeout" bombs would each fill a ~300 MB buffer before failing
# as truncated; under this limit they are refused from their header instead (broken/ still has
# 16-33 Mpx ones that fail as CORRUPT).
BOMB_TEST_MAX_PIXELS = 50_000_000
# Pillow's survey (LIST.tsv) reports the frames a header claims; `frames` counts those present.
FRAMES_IN_FILE = {
    "animated/apng/syntax_num_frames_high.png": 3,  # acTL says 4
    "animated/sugarshack_ifd_offset.mpo": 1,  # the second MP entry points at no JPEG
    "animated/sugarshack_no_data.mpo": 1,  # the second MP entry points past the end
}
# Damaged only past the first frame (here the PSD layer table): the first frame is analysed.
LATER_FRAMES_DAMAGED = frozenset({"broken/psd-oob-write-overflow.psd"})


@pytest.fixture
def exif_samples(corpora: Path) -> Path:
    return corpora / "exif-samples"


@pytest.fixture
def pillow_edge(corpora: Path) -> Path:
    return corpora / "pillow-edge"


def analysis_error(path: Path, settings: AnalysisSettings = DEFAULTS) -> AnalysisError:
    with pytest.raises(AnalysisError) as caught:
        analyse_file(path, settings)
    return caught.value


def outcome(path: Path, settings: AnalysisSettings = DEFAULTS) -> str:
    """ "ok" for a well-formed record, else the error code."""
    try:
        assert_record_shape(analyse_file(path, settings))
    except AnalysisError as error:
        return str(error.code)
    return "ok"


def edge_rows(pillow_edge: Path, category: str) -> list[dict[str, str]]:
    with (pillow_edge / "LIST.tsv").open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [row for row in rows if row["category"] == category]


def reference_hashes(path: Path, names: tuple[str, ...]) -> dict[str, str]:
    """imagehash on the full-resolution, EXIF-oriented image."""
    functions: dict[str, Callable[[Image.Image], object]] = {
        "ahash": imagehash.average_hash,
        "phash": imagehash.phash,
        "dhash": imagehash.dhash,
        "whash": imagehash.whash,
        "colorhash": imagehash.colorhash,
    }
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        return {name: str(functions[name](image)) for name in names}


def strip_app1(jpeg: bytes) -> bytes:
    """The same JPEG without its APP1 (EXIF/XMP) segments: metadata gone, codestream intact."""
    out, position = bytearray(jpeg[:2]), 2
    while jpeg[position] == 0xFF and jpeg[position + 1] not in (0xDA, 0xD9):
        length = int.from_bytes(jpeg[position + 2 : position + 4], "big")
        if jpeg[position + 1] != 0xE1:
            out += jpeg[position : position + 2 + length]
        position += 2 + length
    return bytes(out + jpeg[position:])


def assert_record_shape(record: dict[str, Any]) -> None:
    assert list(record) == [
        "file",
        "image",
        "exif",
        "colors",
        "hashes",
        "pixel_digest",
        "thumbnail",
    ]
    with Image.open(io.BytesIO(base64.b64decode(record["thumbnail"]))) as thumb:
        assert thumb.format == "JPEG"
        assert max(thumb.size) <= 128
    assert set(record["file"]) == {"size", "sha256", "mtime", "source_url"}
    assert set(record["image"]) == {
        "format",
        "mime",
        "width",
        "height",
        "mode",
        "orientation",
        "frames",
        "frames_capped",
        "animated",
        "has_alpha",
        "icc_profile",
        "dpi",
    }
    assert set(record["colors"]) == {"dominant", "average"}
    assert HEX_COLOR.match(record["colors"]["average"])
    ratios = [colour["ratio"] for colour in record["colors"]["dominant"]]
    assert ratios == sorted(ratios, reverse=True)
    assert all(HEX_COLOR.match(colour["hex"]) for colour in record["colors"]["dominant"])
    assert set(record["hashes"]) == {"ahash", "phash", "dhash", "whash", "colorhash"}
    assert all(HEX64.match(record["hashes"][name]) for name in ("ahash", "phash", "dhash", "whash"))
    assert re.match(r"^[0-9a-f]{11}$", record["hashes"]["colorhash"])
    assert SHA256.match(record["pixel_digest"])
    json.dumps(record, allow_nan=False)  # JSON-safe, EXIF included


# --------------------------------------------------------------------------- real photos


def test_real_photo_record(exif_samples: Path) -> None:
    path = exif_samples / "jpg" / "gps" / "DSCN0010.jpg"
    record = analyse_file(path, DEFAULTS, source_url="https://example.org/DSCN0010.jpg")
    assert_record_shape(record)
    data = path.read_bytes()
    assert record["file"]["size"] == len(data)
    assert record["file"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", record["file"]["mtime"])
    assert record["file"]["source_url"] == "https://example.org/DSCN0010.jpg"
    assert record["image"] == {
        "format": "JPEG",
        "mime": "image/jpeg",
        "width": 640,
        "height": 480,
        "mode": "RGB",
        "orientation": 1,
        "frames": 1,
        "frames_capped": False,
        "animated": False,
        "has_alpha": False,
        "icc_profile": None,
        "dpi": [300, 300],
    }
    exif = record["exif"]
    assert exif["make"] == "NIKON"
    assert exif["model"] == "COOLPIX P6000"
    assert exif["lens"] is None
    assert exif["datetime_original"] == "2008-10-22T16:28:39"
    assert exif["exposure_time"] == "1/75"
    assert exif["f_number"] == 5.9
    assert exif["iso"] == 64
    assert exif["focal_length_mm"] == 24.0
    assert exif["raw"]["Make"] == "NIKON"
    assert exif["raw"]["ExifVersion"] == "0220"
    assert exif["raw"]["GPSLatitudeRef"] == "N"
    assert len(record["colors"]["dominant"]) == DEFAULTS.dominant_colors


# DMS as stored in the files (exiftool shows the same), northern and eastern hemispheres.
GPS_SAMPLES = {
    "DSCN0010.jpg": (43 + 28 / 60 + 2.814 / 3600, 11 + 53 / 60 + 6.45599999 / 3600),
    "DSCN0021.jpg": (43 + 28 / 60 + 1.49399999 / 3600, 11 + 53 / 60 + 4.33799999 / 3600),
    "DSCN0040.jpg": (43 + 27 / 60 + 57.6419999 / 3600, 11 + 52 / 60 + 44.8019999 / 3600),
}


@pytest.mark.parametrize(("name", "expected"), sorted(GPS_SAMPLES.items()))
def test_gps_in_decimal_degrees(
    exif_samples: Path, name: str, expected: tuple[float, float]
) -> None:
    gps = analyse_file(exif_samples / "jpg" / "gps" / name, DEFAULTS)["exif"]["gps"]
    assert gps["lat"] == pytest.approx(expected[0], abs=1e-6)
    assert gps["lon"] == pytest.approx(expected[1], abs=1e-6)
    assert gps["alt_m"] is None


def test_gps_signed_by_references(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "TestMake"
    exif[0x8825] = {
        1: "S",
        2: (IFDRational(33, 1), IFDRational(51, 1), IFDRational(2154, 100)),
        3: "W",
        4: (IFDRational(151, 1), IFDRational(12, 1), IFDRational(3, 1)),
        5: b"\x01",
        6: IFDRational(125, 10),
    }
    path = tmp_path / "south.jpg"
    Image.new("RGB", (64, 48), (10, 120, 200)).save(path, exif=exif)
    gps = analyse_file(path, DEFAULTS)["exif"]["gps"]
    assert gps == {
        "lat": pytest.approx(-(33 + 51 / 60 + 21.54 / 3600), abs=1e-6),
        "lon": pytest.approx(-(151 + 12 / 60 + 3 / 3600), abs=1e-6),
        "alt_m": -12.5,
    }


def test_gps_false_drops_gps_entirely(exif_samples: Path) -> None:
    path = exif_samples / "jpg" / "gps" / "DSCN0010.jpg"
    exif = analyse_file(path, AnalysisSettings(gps=False))["exif"]
    assert exif["gps"] is None
    assert exif["make"] == "NIKON"
    assert not [key for key in exif["raw"] if key.startswith("GPS")]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_gives_displayed_size(exif_samples: Path, orientation: int) -> None:
    folder = exif_samples / "jpg" / "orientation"
    upright = analyse_file(folder / "landscape_1.jpg", DEFAULTS)
    for name, size in (("landscape", (600, 450)), ("portrait", (450, 600))):
        image = analyse_file(folder / f"{name}_{orientation}.jpg", DEFAULTS)
        assert image["image"]["orientation"] == orientation
        assert (image["image"]["width"], image["image"]["height"]) == size
        if name == "landscape":  # the same scene once oriented: near-identical hashes
            assert hamming(image["hashes"]["phash"], upright["hashes"]["phash"]) <= 4


def test_heic_decodes_with_its_orientation(exif_samples: Path) -> None:
    record = analyse_file(exif_samples / "heic" / "mobile" / "iphone_13_pro_max.HEIC", DEFAULTS)
    assert_record_shape(record)
    image = record["image"]
    assert (image["format"], image["mime"]) == ("HEIF", "image/heif")
    # pillow-heif rotates while decoding; the file says 6 and the record is as displayed
    assert (image["width"], image["height"], image["orientation"]) == (3024, 4032, 6)
    assert image["icc_profile"] == "Display P3"
    assert record["exif"]["make"] == "Apple"
    assert record["exif"]["lens"] == "iPhone 13 Pro Max back triple camera 5.7mm f/1.5"


def test_small_heif(exif_samples: Path) -> None:
    record = analyse_file(exif_samples / "heic" / "samplefilehub.heif", DEFAULTS)
    assert (record["image"]["format"], record["image"]["width"]) == ("HEIF", 640)


@pytest.mark.parametrize("name", ["hdr/canon_hdr_NO.jpg", "mobile/jolla.jpg"])
def test_fast_hashes_match_imagehash_on_full_image(exif_samples: Path, name: str) -> None:
    path = exif_samples / "jpg" / name
    ours = analyse_file(path, DEFAULTS)["hashes"]
    reference = reference_hashes(path, CONTRACT_HASHES)
    for hash_name in CONTRACT_HASHES:
        assert hamming(ours[hash_name], reference[hash_name]) <= 2, hash_name


def test_unreduced_image_hashes_are_imagehash_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    gradient = np.linspace(0, 255, 90, dtype=np.float64)[None, :, None]
    pixels = np.clip(gradient + rng.normal(0, 40, (70, 90, 3)), 0, 255).astype(np.uint8)
    path = tmp_path / "small.png"
    Image.fromarray(pixels, "RGB").save(path)
    ours = analyse_file(path, DEFAULTS)["hashes"]
    assert ours == reference_hashes(path, ("ahash", "phash", "dhash", "whash", "colorhash"))


def test_broken_exif_never_fails_the_image(exif_samples: Path) -> None:
    for path in sorted((exif_samples / "jpg" / "invalid").glob("*.jpg")):
        record = analyse_file(path, DEFAULTS)
        assert_record_shape(record)


def test_svg_named_jpeg_is_analysed_by_content(corpora: Path) -> None:
    path = corpora / "imagededup-testdata" / "formats_images" / "ukbench09380.svg"
    assert analyse_file(path, DEFAULTS)["image"]["format"] == "JPEG"


# --------------------------------------------------------------------------- Pillow's edge cases


@pytest.mark.parametrize(
    "category", ["animated", "exif", "high-bit", "icc", "modes", "orientation"]
)
def test_every_readable_edge_case_analyses(pillow_edge: Path, category: str) -> None:
    for row in edge_rows(pillow_edge, category):
        assert row["pillow13_result"] == "ok", row["path"]
        path = pillow_edge / row["path"]
        if path.suffix in NEEDS_EXTERNAL_TOOL:
            continue
        record = analyse_file(path, DEFAULTS)
        assert_record_shape(record)
        image = record["image"]
        width, height = (int(side) for side in row["size"].split("x"))
        assert {image["width"], image["height"]} == {width, height}, row["path"]
        assert image["mode"] == row["mode"], row["path"]
        frames = FRAMES_IN_FILE.get(row["path"], int(row["frames"]))
        assert (image["frames"], image["frames_capped"]) == (frames, False), row["path"]
        assert image["animated"] == (frames > 1), row["path"]
        assert image["orientation"] == int(row["exif_orientation"] or 1), row["path"]


def test_every_broken_file_fails_cleanly(pillow_edge: Path) -> None:
    for row in edge_rows(pillow_edge, "broken"):
        if row["path"] in DECODED_BY_PILLOW_HEIF:
            assert analyse_file(pillow_edge / row["path"], DEFAULTS)["image"]["format"] == "HEIF"
            continue
        if row["path"] in LATER_FRAMES_DAMAGED:
            assert analyse_file(pillow_edge / row["path"], DEFAULTS)["image"]["frames"] == 1
            continue
        error = analysis_error(pillow_edge / row["path"])
        assert error.code in (ErrorCode.CORRUPT, ErrorCode.UNSUPPORTED_FORMAT), row["path"]
        assert len(error.message) <= 200


def test_bombs_are_refused_or_corrupt(pillow_edge: Path) -> None:
    settings = AnalysisSettings(max_pixels=BOMB_TEST_MAX_PIXELS)
    for row in edge_rows(pillow_edge, "bombs"):
        path = pillow_edge / row["path"]
        if row["pillow13_result"] == "ok":
            assert_record_shape(analyse_file(path, settings))
            continue
        declared = [int(side) for side in row["size"].split("x")] if row["size"] else [0, 0]
        bomb = (
            "DecompressionBomb" in row["pillow13_result"]
            or "Decompressed data too large" in row["pillow13_result"]  # PNG text chunk
            or declared[0] * declared[1] > BOMB_TEST_MAX_PIXELS
        )
        expected = ErrorCode.DECOMPRESSION_BOMB if bomb else ErrorCode.CORRUPT
        assert analysis_error(path, settings).code == expected, row["path"]


def test_max_pixels_is_checked_from_the_header(exif_samples: Path) -> None:
    path = exif_samples / "jpg" / "gps" / "DSCN0010.jpg"  # 640x480 = 307200 pixels
    for max_pixels in (1000, 200_000, 307_199):  # Pillow's own error, its warning, ours
        error = analysis_error(path, AnalysisSettings(max_pixels=max_pixels))
        assert error.code == ErrorCode.DECOMPRESSION_BOMB
        assert not error.retryable
    assert analyse_file(path, AnalysisSettings(max_pixels=307_200))["image"]["width"] == 640


def test_animated_first_frame_and_frame_count(pillow_edge: Path) -> None:
    record = analyse_file(pillow_edge / "animated" / "iss634.gif", DEFAULTS)
    assert (record["image"]["frames"], record["image"]["animated"]) == (42, True)


# --------------------------------------------------------------------------- filters and errors


def test_too_small_uses_displayed_size(exif_samples: Path) -> None:
    rotated = exif_samples / "jpg" / "orientation" / "landscape_6.jpg"  # stored 450x600
    error = analysis_error(rotated, AnalysisSettings(min_height=500))
    assert error.code == ErrorCode.TOO_SMALL
    assert error.code.skips
    assert "600x450" in error.message
    assert analyse_file(rotated, AnalysisSettings(min_width=600, min_height=450))
    assert analysis_error(rotated, AnalysisSettings(min_width=601)).code == ErrorCode.TOO_SMALL


def test_too_large_is_refused_before_reading(exif_samples: Path) -> None:
    path = exif_samples / "jpg" / "gps" / "DSCN0010.jpg"
    settings = AnalysisSettings(max_file_size=1000)
    with pytest.raises(AnalysisError) as caught:
        read_file_facts(path, settings)
    assert caught.value.code == ErrorCode.TOO_LARGE
    assert analysis_error(path, settings).code == ErrorCode.TOO_LARGE


def test_text_file_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not an image at all\n" * 20)
    assert analysis_error(path).code == ErrorCode.UNSUPPORTED_FORMAT


def test_svg_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "drawing.svg"
    path.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        '<rect width="10" height="10" fill="red"/></svg>'
    )
    assert analysis_error(path).code == ErrorCode.UNSUPPORTED_FORMAT


def test_text_named_like_a_jpeg_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_text("not really a photo\n")
    assert analysis_error(path).code == ErrorCode.CORRUPT


def test_imagededup_corrupt_file(corpora: Path) -> None:
    path = corpora / "imagededup-testdata" / "mixed_images" / "ukbench09268_corrupt.jpg"
    assert analysis_error(path).code == ErrorCode.CORRUPT


def test_missing_file_is_a_retryable_io_error(tmp_path: Path) -> None:
    error = analysis_error(tmp_path / "vanished.jpg")
    assert error.code == ErrorCode.IO_ERROR
    assert error.retryable
    assert "No such file or directory" in error.message
    assert "Traceback" not in error.message


def test_directory_is_an_io_error(tmp_path: Path) -> None:
    assert analysis_error(tmp_path).code == ErrorCode.IO_ERROR


def test_file_vanishing_after_its_facts_is_an_io_error(tmp_path: Path) -> None:
    path = tmp_path / "gone.png"
    Image.new("RGB", (8, 8)).save(path)
    facts = FileFacts(size=1, sha256="0" * 64, mtime="2025-01-01T00:00:00Z", data=None)
    path.unlink()
    with pytest.raises(AnalysisError) as caught:
        analyse_image(path, facts, DEFAULTS)
    assert caught.value.code == ErrorCode.IO_ERROR


def test_large_files_are_streamed_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200), (200, 30, 30)).save(path)
    monkeypatch.setattr("medianalysed.analysis.IN_MEMORY_LIMIT", 100)
    facts = read_file_facts(path, DEFAULTS)
    assert facts.data is None
    assert facts.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert analyse_image(path, facts, DEFAULTS)["image"]["width"] == 300


# --------------------------------------------------------------------------- modes and colours


def test_transparent_pixels_are_flattened_onto_white(tmp_path: Path) -> None:
    path = tmp_path / "clear.png"
    Image.new("RGBA", (100, 80), (0, 0, 0, 0)).save(path)
    record = analyse_file(path, DEFAULTS)
    assert record["image"]["has_alpha"] is True
    assert record["colors"]["average"] == "#ffffff"
    assert record["colors"]["dominant"] == [{"hex": "#ffffff", "ratio": 1.0}]


def test_dominant_colours_ratios(tmp_path: Path) -> None:
    image = Image.new("RGB", (512, 256), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 128, 256))  # a quarter blue, on block boundaries
    path = tmp_path / "two.png"
    image.save(path)
    colors = analyse_file(path, AnalysisSettings(dominant_colors=3))["colors"]
    assert colors["dominant"] == [
        {"hex": "#ff0000", "ratio": 0.75},
        {"hex": "#0000ff", "ratio": 0.25},
    ]
    assert colors["average"] == "#bf0040"
    assert analyse_file(path, AnalysisSettings(dominant_colors=0))["colors"]["dominant"] == []


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 300).astype(np.uint16), (200, 1))
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)  # uint16: mode I;16
    record = analyse_file(path, DEFAULTS)
    assert record["image"]["mode"] in ("I;16", "I")
    assert record["colors"]["average"] in ("#7f7f7f", "#808080")  # clipping would give white
    assert record["hashes"]["ahash"] not in ("0" * 16, "f" * 16)


# --------------------------------------------------------------------------- pixel digest


def test_same_pixels_other_metadata_same_digest(exif_samples: Path, tmp_path: Path) -> None:
    original = exif_samples / "jpg" / "tests" / "42_IndexError.jpg"
    stripped = tmp_path / "stripped.jpg"
    stripped.write_bytes(strip_app1(original.read_bytes()))
    with_exif, without_exif = analyse_file(original, DEFAULTS), analyse_file(stripped, DEFAULTS)
    assert without_exif["exif"] is None
    assert with_exif["file"]["sha256"] != without_exif["file"]["sha256"]
    assert with_exif["pixel_digest"] == without_exif["pixel_digest"]
    assert with_exif["hashes"] == without_exif["hashes"]


def test_png_saved_again_keeps_its_digest(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (600, 700, 3), dtype=np.uint8), "RGB")
    fast, small, other = tmp_path / "fast.png", tmp_path / "small.png", tmp_path / "other.png"
    image.save(fast, compress_level=1)
    image.save(small, compress_level=9)
    image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(other)
    digests = [analyse_file(path, DEFAULTS)["pixel_digest"] for path in (fast, small, other)]
    assert fast.read_bytes() != small.read_bytes()
    assert digests[0] == digests[1] != digests[2]


# --------------------------------------------------------------------------- API details


def test_settings_fingerprint_and_config() -> None:
    assert AnalysisSettings().fingerprint() == AnalysisSettings().fingerprint()
    assert re.match(r"^[0-9a-f]{16}$", DEFAULTS.fingerprint())
    changed = [
        AnalysisSettings(dominant_colors=4),
        AnalysisSettings(gps=False),
        AnalysisSettings(max_file_size=1),
        AnalysisSettings(max_pixels=1),
        AnalysisSettings(min_width=1),
        AnalysisSettings(min_height=1),
    ]
    fingerprints = {settings.fingerprint() for settings in [DEFAULTS, *changed]}
    assert len(fingerprints) == len(changed) + 1
    config = Config(
        processing=ProcessingConfig(max_file_size=5, max_pixels=6, min_width=7, min_height=8),
        analysis=AnalysisConfig(dominant_colors=3, gps=False),
    )
    assert AnalysisSettings.from_config(config) == AnalysisSettings(
        dominant_colors=3, gps=False, max_file_size=5, max_pixels=6, min_width=7, min_height=8
    )


def test_everything_crosses_process_boundaries(exif_samples: Path) -> None:
    path = exif_samples / "jpg" / "gps" / "DSCN0012.jpg"
    facts = read_file_facts(path, DEFAULTS)
    assert pickle.loads(pickle.dumps(DEFAULTS)) == DEFAULTS
    assert pickle.loads(pickle.dumps(facts)) == facts
    assert pickle.loads(pickle.dumps(analyse_file)) is analyse_file
    record = analyse_image(path, facts, DEFAULTS)
    assert pickle.loads(pickle.dumps(record)) == record


def test_files_that_make_pillow_warn_do_not_leak_warnings(pillow_edge: Path) -> None:
    # pytest turns warnings into errors: one escaping from Pillow would fail this test.
    categories = ("broken", "exif", "modes")
    rows = [row for category in categories for row in edge_rows(pillow_edge, category)]
    warned = [row for row in rows if row["warnings"]]
    assert warned
    for row in warned:
        assert outcome(pillow_edge / row["path"]) in ("ok", "CORRUPT", "UNSUPPORTED_FORMAT")


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("README", b"# holiday photos\n", ErrorCode.UNSUPPORTED_FORMAT),
        ("model.pkl", pickle.dumps({"weights": [1, 2, 3]}), ErrorCode.UNSUPPORTED_FORMAT),
        (
            "IMG_0001.xmp",
            b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta/>',
            ErrorCode.UNSUPPORTED_FORMAT,
        ),
        ("IMG_0001.jpg", b"not a jpeg at all", ErrorCode.CORRUPT),
        ("no-extension", b"\xff\xd8\xff\xe0" + b"\0" * 64, ErrorCode.CORRUPT),
    ],
)
def test_files_that_are_no_image_are_unsupported_and_claimed_images_are_corrupt(
    tmp_path: Path, name: str, content: bytes, code: ErrorCode
):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AnalysisError) as raised:
        analyse_file(path, DEFAULTS)
    assert raised.value.code == code
