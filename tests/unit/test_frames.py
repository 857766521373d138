"""Frame counts are counted in the file, up to a cap, never read from a header (issue 15)."""

from __future__ import annotations

import io
import time
from pathlib import Path

from PIL import Image

from medianalysed.analysis import AnalysisSettings, analyse_file
from medianalysed.frames import MAX_FRAMES, FrameCount, count_frames
from tests.pngs import apng

DEFAULTS = AnalysisSettings()


def frames_of(path: Path) -> tuple[int, bool, bool]:
    image = analyse_file(path, DEFAULTS)["image"]
    return image["frames"], image["frames_capped"], image["animated"]


def test_an_apng_claiming_two_to_the_31_frames_costs_nothing_and_reports_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "lie.png"
    path.write_bytes(apng(1, claimed=2**31))
    started = time.perf_counter()
    assert frames_of(path) == (1, False, False)
    assert time.perf_counter() - started < 5  # generous: a walk of 2**31 would take hours


def test_an_apng_claiming_fewer_frames_than_it_holds_reports_the_claim(tmp_path: Path) -> None:
    path = tmp_path / "short-claim.png"
    path.write_bytes(apng(5, claimed=3))
    assert frames_of(path) == (3, False, True)  # Pillow plays no more than acTL says


def test_an_apng_with_more_frames_than_the_cap_is_counted_to_the_cap_and_flagged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "many.png"
    path.write_bytes(apng(MAX_FRAMES + 5))
    assert frames_of(path) == (MAX_FRAMES, True, True)


def test_a_gif_with_more_frames_than_the_cap_is_counted_to_the_cap_and_flagged(
    tmp_path: Path,
) -> None:
    frames = [Image.new("L", (1, 1), colour % 2 * 255) for colour in range(MAX_FRAMES + 2)]
    path = tmp_path / "many.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], optimize=False, disposal=1)
    assert frames_of(path) == (MAX_FRAMES, True, True)


def test_a_tiff_counts_its_pages_and_an_apng_its_frames_exactly(tmp_path: Path) -> None:
    pages = [Image.new("RGB", (8, 8), (index, 0, 0)) for index in range(7)]
    tiff = tmp_path / "pages.tif"
    pages[0].save(tiff, save_all=True, append_images=pages[1:])
    assert frames_of(tiff) == (7, False, True)
    png = tmp_path / "three.png"
    png.write_bytes(apng(3))
    assert frames_of(png) == (3, False, True)


def test_counting_leaves_the_image_on_its_first_frame() -> None:
    pages = [Image.new("L", (4, 4), 10 * index) for index in range(3)]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
    with Image.open(buffer) as image:
        assert count_frames(image, len(buffer.getvalue())) == FrameCount(3, capped=False)
        assert image.tell() == 0
        assert image.getpixel((0, 0)) == 0


def test_a_later_frame_over_max_pixels_ends_the_count_not_the_analysis(tmp_path: Path) -> None:
    path = tmp_path / "pair.mpo"
    small, large = Image.new("RGB", (64, 64), "red"), Image.new("RGB", (3000, 3000), "blue")
    small.save(path, format="MPO", save_all=True, append_images=[large])
    image = analyse_file(path, AnalysisSettings(max_pixels=1_000_000))["image"]
    assert (image["width"], image["frames"], image["frames_capped"]) == (64, 1, False)
    assert frames_of(path) == (2, False, True)
