"""libvips decodes an image to Pillow's pixels or not at all: whatever the file, damaged or not,
its analysis is the same with `vips` on as off (vipsdecode.py).

Each comparison also checks which decoder ran, so that a fast path that silently stopped
being taken fails here instead of passing by comparing Pillow with itself.
"""

from __future__ import annotations

import contextlib
import io
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pebble
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from medianalysed import vipsdecode
from medianalysed.analysis import AnalysisSettings, analyse_file
from medianalysed.config import config_from_dict, default_config
from medianalysed.errors import AnalysisError
from medianalysed.worker import WorkerJob, apply_memory_limit, run_job
from tests.corpora import ESSENTIAL_CORPUS, require_corpora
from tests.damage import (
    CASES,
    LIES,
    bit_flipped,
    field_lie,
    structural_lies,
    truncated,
    worker_pool,
)

SIZE = (600, 520)  # a short side over decoding.WORK_MAX_SIDE: the working image is reduced
VIPS_SUFFIXES = (".png", ".apng", ".tif", ".tiff", ".webp")
WORKER_MEMORY = 1_000_000_000
CASE_TIMEOUT_S = 30


@pytest.fixture(autouse=True, scope="module")
def _needs_pyvips() -> None:
    assert vipsdecode.pyvips_module() is not None, "pyvips (a dependency) does not load"


def photo_like(mode: str, seed: int = 0) -> Image.Image:
    """Smooth gradients under noise, in `mode`: what a photo's samples look like."""
    rng = np.random.default_rng(seed)
    width, height = SIZE
    ys, xs = np.mgrid[0:height, 0:width]
    bands = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "I;16": 1}[mode]
    planes = [(xs * (k + 1) + ys * (3 - k)) % 256 + rng.integers(0, 24, xs.shape) for k in range(4)]
    pixels = np.stack(planes[:bands], axis=-1).clip(0, 255)
    if mode == "I;16":
        return Image.fromarray((pixels[..., 0] * 257).astype(np.uint16))
    return Image.fromarray(pixels.astype(np.uint8).squeeze(), mode)


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def sixteen_bit_png(bands: int) -> bytes:
    pyvips = vipsdecode.pyvips_module()
    samples = np.asarray(photo_like("RGBA"))[..., :bands].astype(np.uint16) * 257 + 3
    return bytes(pyvips.Image.new_from_array(samples).copy(interpretation="rgb16").pngsave_buffer())


def with_late_exif(png: bytes) -> bytes:
    """An eXIf chunk (orientation 6) after the pixel data, which only a decode reaches."""
    exif = Image.Exif()
    exif[0x0112] = 6
    body = exif.tobytes()
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + body))
    end = png.rindex(b"IEND") - 4
    return png[:end] + chunk + png[end:]


def rotated_tiff() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(photo_like("RGB"), "TIFF", compression="tiff_lzw", exif=exif)


def two_page_tiff() -> bytes:
    buffer = io.BytesIO()
    first, second = photo_like("RGB", 1), photo_like("RGB", 2)
    first.save(buffer, "TIFF", save_all=True, append_images=[second], compression="packbits")
    return buffer.getvalue()


# What libvips decodes (each must be taken by the fast path), and what it leaves to Pillow.
DECODED_BY_VIPS: dict[str, Callable[[], bytes]] = {
    "L.png": lambda: encoded(photo_like("L"), "PNG"),
    "LA.png": lambda: encoded(photo_like("LA"), "PNG"),
    "RGB.png": lambda: encoded(photo_like("RGB"), "PNG", compress_level=1),
    "RGBA.png": lambda: encoded(photo_like("RGBA"), "PNG"),
    "I16.png": lambda: encoded(photo_like("I;16"), "PNG"),
    "RGB16.png": lambda: sixteen_bit_png(3),
    "RGBA16.png": lambda: sixteen_bit_png(4),
    "late-exif.png": lambda: with_late_exif(encoded(photo_like("RGB"), "PNG")),
    "raw-RGB.tiff": lambda: encoded(photo_like("RGB"), "TIFF"),
    "lzw-L.tiff": lambda: encoded(photo_like("L"), "TIFF", compression="tiff_lzw"),
    "deflate-LA.tiff": lambda: encoded(photo_like("LA"), "TIFF", compression="tiff_adobe_deflate"),
    "deflate-RGBA.tiff": lambda: encoded(
        photo_like("RGBA"), "TIFF", compression="tiff_adobe_deflate"
    ),
    "deflate-I16.tiff": lambda: encoded(
        photo_like("I;16"), "TIFF", compression="tiff_adobe_deflate"
    ),
    "tiled.tiff": lambda: encoded(
        photo_like("RGB"), "TIFF", compression="tiff_adobe_deflate", tile=(256, 256)
    ),
    "rotated.tiff": rotated_tiff,
    "two-pages.tiff": two_page_tiff,
}
LEFT_TO_PILLOW: dict[str, Callable[[], bytes]] = {
    "palette.png": lambda: encoded(photo_like("RGB").convert("P"), "PNG"),
    "bilevel.png": lambda: encoded(photo_like("L").convert("1"), "PNG"),
    "colour-key.png": lambda: encoded(photo_like("RGB"), "PNG", transparency=(1, 2, 3)),
    "jpeg.tiff": lambda: encoded(photo_like("RGB"), "TIFF", compression="jpeg"),
    "lossy.webp": lambda: encoded(photo_like("RGB"), "WEBP", quality=90),
    "lossless.webp": lambda: encoded(photo_like("RGBA"), "WEBP", lossless=True),
}


def outcome(path: Path, *, vips: bool) -> tuple[str, Any]:
    """The record's sections, or the error's code and message."""
    try:
        return "record", analyse_file(path, AnalysisSettings(vips=vips))
    except AnalysisError as exc:
        return "error", (exc.code, exc.message)


def decoded_by_vips(action: Callable[[], object]) -> bool:
    before = vipsdecode.counts.decoded
    action()
    return vipsdecode.counts.decoded > before


@pytest.mark.parametrize("name", sorted(DECODED_BY_VIPS))
def test_libvips_decodes_to_the_same_analysis(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(DECODED_BY_VIPS[name]())
    found: list[tuple[str, Any]] = []
    assert decoded_by_vips(lambda: found.append(outcome(path, vips=True)))
    assert not decoded_by_vips(lambda: found.append(outcome(path, vips=False)))
    assert found[0][0] == "record"
    assert found[0] == found[1]


@pytest.mark.parametrize("name", sorted(LEFT_TO_PILLOW))
def test_what_libvips_would_decode_otherwise_is_left_to_pillow(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(LEFT_TO_PILLOW[name]())
    found: list[tuple[str, Any]] = []
    assert not decoded_by_vips(lambda: found.append(outcome(path, vips=True)))
    assert found[0][0] == "record"


def with_bad_pixel_crc(png: bytes) -> bytes:
    """A wrong CRC on the pixel data: libspng refuses it, Pillow never checks it."""
    damaged = bytearray(png)
    idat = damaged.index(b"IDAT")
    (length,) = struct.unpack(">I", damaged[idat - 4 : idat])
    damaged[idat + 4 + length] ^= 0xFF
    return bytes(damaged)


def test_a_file_libvips_rejects_is_decoded_by_pillow(tmp_path: Path) -> None:
    path = tmp_path / "bad-crc.png"
    path.write_bytes(with_bad_pixel_crc(encoded(photo_like("RGB"), "PNG")))
    fallbacks = vipsdecode.counts.fallbacks
    with_vips = outcome(path, vips=True)
    assert vipsdecode.counts.fallbacks == fallbacks + 1
    assert with_vips[0] == "record"
    assert with_vips == outcome(path, vips=False)


def test_the_worker_says_which_decoder_ran_for_the_metric(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(encoded(photo_like("RGB"), "PNG"))
    (tmp_path / "bad-crc.png").write_bytes(with_bad_pixel_crc(encoded(photo_like("L"), "PNG")))
    (tmp_path / "a.webp").write_bytes(LEFT_TO_PILLOW["lossy.webp"]())

    def job(name: str, *, vips: bool = True) -> dict[str, Any]:
        settings_ = AnalysisSettings(vips=vips)
        return run_job(WorkerJob(str(tmp_path), name, settings_, content_dir=None))

    assert job("a.png")["vips"] == "decoded"
    assert job("bad-crc.png")["vips"] == "fallback"
    assert "vips" not in job("a.png", vips=False)
    assert "vips" not in job("a.webp")


def test_the_vips_key_reaches_the_workers_but_not_the_content_cache_key(tmp_path: Path) -> None:
    off = config_from_dict({"processing": {"vips": False}}, base_dir=tmp_path, source=None)
    settings_off = AnalysisSettings.from_config(off)
    settings_on = AnalysisSettings.from_config(default_config())
    assert (settings_off.vips, settings_on.vips) == (False, True)
    # The same results either way: a cached analysis serves both.
    assert settings_off.fingerprint() == settings_on.fingerprint()


def test_near_the_memory_limit_pillow_decodes(tmp_path: Path) -> None:
    """libvips needs ~50 MB more than Pillow at its peak: where that would not fit under
    max_worker_memory, Pillow decodes, so the limit fails no image that Pillow alone fits."""
    big = Image.new("L", (4000, 4000))
    big.save(tmp_path / "big.png")
    core_estimate = 4000 * 4000 * 4
    for headroom, used in ((32 << 20, None), (512 << 20, "decoded")):
        with contextlib.contextmanager(worker_pool)(0) as pool:
            in_use = pool.schedule(vipsdecode._data_in_use).result(timeout=CASE_TIMEOUT_S)
            limit = in_use + core_estimate + headroom
            pool.schedule(apply_memory_limit, args=(limit,)).result(timeout=CASE_TIMEOUT_S)
            job = WorkerJob(str(tmp_path), "big.png", AnalysisSettings(), content_dir=None)
            found = pool.schedule(run_job, args=(job,)).result(timeout=CASE_TIMEOUT_S)
        assert "result" in found
        assert found.get("vips") == used


def corpus_files() -> list[Path]:
    roots = [require_corpora(), ESSENTIAL_CORPUS]
    return sorted(
        path
        for root in roots
        for path in root.rglob("*")
        if path.is_file() and path.suffix.lower() in VIPS_SUFFIXES
    )


def test_every_corpus_file_analyses_alike_with_and_without_libvips() -> None:
    """The damaged-input survey: every PNG, TIFF and WebP of the corpora, broken or not."""
    differing: list[tuple[Path, Any, Any]] = []
    decoded = 0
    for path in corpus_files():
        found: list[tuple[str, Any]] = []
        decoded += decoded_by_vips(lambda: found.append(outcome(path, vips=True)))  # noqa: B023
        found.append(outcome(path, vips=False))
        if found[0] != found[1]:
            differing.append((path, found[0], found[1]))
    assert differing == []
    assert decoded >= 25  # 33 of the corpora's 0.3.0 files are ones libvips decodes


# --------------------------------------------------------------------------- damaged bytes


@pytest.fixture(scope="module")
def pool() -> Iterator[pebble.ProcessPool]:
    yield from worker_pool(WORKER_MEMORY)


SEEDS = {name: make() for name, make in DECODED_BY_VIPS.items()} | {
    "lossy.webp": LEFT_TO_PILLOW["lossy.webp"](),
    "lossless.webp": LEFT_TO_PILLOW["lossless.webp"](),
}
seed_names = st.sampled_from(sorted(SEEDS))


def job_outcome(pool: pebble.ProcessPool, directory: str, name: str, *, vips: bool) -> Any:
    job = WorkerJob(
        root=directory, relpath=name, settings=AnalysisSettings(vips=vips), content_dir=None
    )
    found = pool.schedule(run_job, args=(job,), timeout=CASE_TIMEOUT_S).result()
    found.pop("elapsed_ms")
    found.pop("vips", None)  # which decoder ran: the one thing allowed to differ
    return found


def check_alike(pool: pebble.ProcessPool, name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / name).write_bytes(data)
        with_vips = job_outcome(pool, directory, name, vips=True)
        assert with_vips == job_outcome(pool, directory, name, vips=False)


def damaged(data: bytes, damage: str, at: int, flips: list[tuple[int, int]], lie: int) -> bytes:
    """`data` damaged one of tests/damage.py's ways, every argument drawn by hypothesis."""
    if damage == "truncated":
        return truncated(data, at)
    if damage == "bits flipped":
        return bit_flipped(data, flips)
    lies = [lied for _, lied in structural_lies(data, lie)] if damage == "structure lies" else []
    if lies:
        return lies[at % len(lies)]
    return field_lie(data, at, lie, 2 + 2 * (at % 2), big_endian=at % 3 == 0)


@settings(CASES, max_examples=60)  # one test for four kinds of damage
@given(
    name=seed_names,
    damage=st.sampled_from(["truncated", "bits flipped", "a field lies", "structure lies"]),
    at=st.integers(0, 2**32),
    flips=st.lists(st.tuples(st.integers(0, 2**32), st.integers(0, 7)), min_size=1, max_size=8),
    lie=st.sampled_from(LIES) | st.integers(0, 2**32 - 1),
)
def test_damaged_bytes_analyse_alike(
    pool: pebble.ProcessPool,
    *,
    name: str,
    damage: str,
    at: int,
    flips: list[tuple[int, int]],
    lie: int,
) -> None:
    check_alike(pool, name, damaged(SEEDS[name], damage, at, flips, lie))
