"""The five imagehash hashes of the oriented image, computed from the reduced decode.

Where the image was reduced, ahash/dhash/phash redo imagehash's Lanczos resize of the
full-resolution image from the block averages the reduced decode holds (a 1/8 JPEG decode is
the DCT's DC term, i.e. 8x8 block means), in float and over the exact box the full image maps
to; whash's 8x8 Haar low band is the 8x8 area mean it amounts to; colorhash counts a regular
sample of the decoded pixels. Images decoded at full size go through imagehash itself.
``benchmarks/hash_accuracy.py`` measures the distance to imagehash on the full-resolution
oriented image (SPEC §4 allows 2 bits on ahash/phash/dhash for 99% of real photos).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final

import imagehash
import numpy as np
import numpy.typing as npt
from PIL import Image

from medianalysed.decoding import ORIENTATION_TRANSPOSE, SWAPS_AXES, Reduced, Working

FloatArray = npt.NDArray[np.float64]

COLORHASH_SAMPLE_SIDE: Final = 64  # colorhash counts a sample about this big on the short side

_HASH_SIZE: Final = 8
_SINGLE_THREAD_PRODUCT: Final = 4 * 65536  # OpenBLAS multithreads products above this

#
# imagehash resizes the whole image with Pillow's Lanczos filter (ahash 8x8, dhash 9x8, phash
# 32x32) or Haar-transforms it (whash: its 8x8 low band is the image's 8x8 area means). Each
# pixel of a reduced decode is the mean of a block x block square of the full image (a 1/8 JPEG
# decode keeps just the DCT's DC term), so the full image's filter weights summed per block,
# applied in float to the reduced image, land within a fraction of a grey level of Pillow's
# 8-bit resize of the full image; rounding once at the end then mostly agrees with it. The
# filters are separable and orientation only mirrors and swaps axes, so they run in the stored
# frame and the tiny results are oriented.

# ahash, dhash and phash grids as (width, height), displayed; phash's is hash_size * 4.
_HASH_GRIDS: Final = ((8, 8), (9, 8), (32, 32))


def hashes(working: Working, reduced: Reduced, orientation: int) -> dict[str, str]:
    """The five imagehash hashes of the oriented image, from the working decode."""
    colorhash = _bits_to_hex(_colorhash_bits(working.image))
    if working.scale == 1:
        return {**_exact_gray_hashes(working.image, orientation), "colorhash": colorhash}
    ahash, dhash, phash, whash = _gray_grids(reduced, working.full_size, orientation)
    return {
        "ahash": _bits_to_hex(ahash > float(ahash.mean())),
        "phash": _bits_to_hex(_phash_bits(phash)),
        "dhash": _bits_to_hex(dhash[:, 1:] > dhash[:, :-1]),
        "whash": _bits_to_hex(whash > float(np.median(whash))),
        "colorhash": colorhash,
    }


def _exact_gray_hashes(image: Image.Image, orientation: int) -> dict[str, str]:
    """Images decoded at full size (short side under WORK_MAX_SIDE): imagehash itself."""
    gray = image.convert("L")  # like imagehash: alpha is ignored, not flattened
    transpose = ORIENTATION_TRANSPOSE.get(orientation)
    if transpose is not None:
        gray = gray.transpose(transpose)
    return {
        "ahash": str(imagehash.average_hash(gray)),
        "phash": str(imagehash.phash(gray)),
        "dhash": str(imagehash.dhash(gray)),
        "whash": str(imagehash.whash(gray)),
    }


def _gray_grids(reduced: Reduced, full_size: tuple[int, int], orientation: int) -> list[FloatArray]:
    """ahash, dhash and phash's resizes (8-bit like Pillow's) and whash's 8x8 area means."""
    gray = np.asarray(reduced.image.convert("L"), dtype=np.float32)  # alpha ignored, as imagehash
    height, width = gray.shape
    full_width, full_height = full_size
    swap = orientation in SWAPS_AXES
    span_x, span_y = reduced.span
    columns, column_spans = _filter_bank(full_width, span_x, width, not swap)
    rows, row_spans = _filter_bank(full_height, span_y, height, swap)
    filtered = _product_on_this_thread(gray, columns.T)  # every column filter at once
    grids = []
    for index, (row_span, column_span) in enumerate(zip(row_spans, column_spans, strict=True)):
        grid = rows[slice(*row_span)] @ filtered[:, slice(*column_span)]
        if index < len(_HASH_GRIDS):
            grid = np.clip(np.floor(grid + 0.5), 0, 255)  # Pillow's resize yields 8-bit pixels
        else:  # float32 sums of equal pixels differ in the last bits: make flat areas tie
            grid = np.round(grid, 3)
        grids.append(_oriented(grid.astype(np.float64), orientation))
    return grids


def _product_on_this_thread(
    left: npt.NDArray[np.float32], right: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """left @ right, in row chunks small enough for OpenBLAS to keep on the calling thread.

    Bigger products wake its thread pool, which in worker processes that already share every
    core costs more than it saves.
    """
    rows_per_chunk = max(1, _SINGLE_THREAD_PRODUCT // max(1, left.shape[1] * right.shape[1]))
    out = np.empty((left.shape[0], right.shape[1]), dtype=np.float32)
    for start in range(0, left.shape[0], rows_per_chunk):
        np.matmul(
            left[start : start + rows_per_chunk], right, out=out[start : start + rows_per_chunk]
        )
    return out


@functools.lru_cache(maxsize=256)
def _filter_bank(
    full: int, block: float, blocks: int, displayed_width: bool
) -> tuple[npt.NDArray[np.float32], tuple[tuple[int, int], ...]]:
    """The hash filters along one stored axis, stacked, and the rows of each in the stack.

    Rows are weights over the reduced image's blocks: ahash's, dhash's and phash's Lanczos
    resizes of the full axis (`full` pixels), then whash's 8 equal areas. `displayed_width`
    says whether this stored axis is displayed horizontally (orientations 5-8 swap axes).
    """
    outs = [size[0 if displayed_width else 1] for size in _HASH_GRIDS]
    matrices = [_lanczos_matrix(full, out, block, blocks) for out in outs]
    matrices.append(_box_matrix(full, _HASH_SIZE, block, blocks))
    spans, start = [], 0
    for matrix in matrices:
        spans.append((start, start + matrix.shape[0]))
        start += matrix.shape[0]
    stacked = np.vstack(matrices).astype(np.float32)
    stacked.flags.writeable = False
    return stacked, tuple(spans)


def _lanczos_matrix(full: int, out: int, block: float, blocks: int) -> FloatArray:
    """Pillow's Lanczos-3 weights for resizing `full` pixels to `out`, summed per block.

    Same kernel, support and centres as Pillow's precompute_coeffs; each block's weight is its
    centre's times its length (the kernel is smooth across a block), then rows sum to 1.
    """
    x, lengths = _lanczos_positions(full, out, block, blocks)
    # The kernel only where it is not zero: a 32-pixel output's support covers a fifth of the
    # blocks, and misses of _filter_bank's cache (every new image size) were mostly np.sinc.
    inside = (x >= -3) & (x < 3)
    near = x[inside]
    weights = np.zeros_like(x)
    weights[inside] = np.sinc(near) * np.sinc(near / 3) * np.broadcast_to(lengths, x.shape)[inside]
    return _normalised_rows(weights)


def _lanczos_positions(
    full: int, out: int, block: float, blocks: int
) -> tuple[FloatArray, FloatArray]:
    """Each block centre's distance to each output pixel's, in kernel units; block lengths."""
    scale = full / out
    support_scale = max(scale, 1.0)
    starts = np.arange(blocks, dtype=np.float64) * block
    lengths = np.clip(np.minimum(starts + block, full) - starts, 1, None)
    centres = starts + lengths / 2
    targets = (np.arange(out, dtype=np.float64) + 0.5) * scale
    return (centres[None, :] - targets[:, None]) / support_scale, lengths


def _box_matrix(full: int, out: int, block: float, blocks: int) -> FloatArray:
    """Area weights: how much of each of `out` equal cells of the axis each block covers."""
    starts = np.arange(blocks, dtype=np.float64) * block
    ends = np.minimum(starts + block, full)
    edges = np.arange(out + 1, dtype=np.float64) * (full / out)
    overlap = np.minimum(ends[None, :], edges[1:, None]) - np.maximum(
        starts[None, :], edges[:-1, None]
    )
    return _normalised_rows(np.clip(overlap, 0, None))


def _normalised_rows(weights: FloatArray) -> FloatArray:
    totals = weights.sum(axis=1, keepdims=True)
    totals[totals == 0] = 1.0
    normalised: FloatArray = weights / totals
    return normalised


def _phash_bits(grid: FloatArray) -> npt.NDArray[np.bool_]:
    # imagehash.phash's DCT (scipy.fftpack's type II, both axes) as two products with its
    # matrix: importing scipy took most of a worker's start-up. Rounded so that coefficients
    # equal in exact arithmetic tie as scipy's do (flat and mirrored grids give exact zeros);
    # the bits matched scipy's on every grid of benchmarks/data/photos and on 600 synthetic
    # ones.
    matrix = _dct_matrix(grid.shape[0])
    low = np.round(matrix @ grid @ matrix.T, 6)[:_HASH_SIZE, :_HASH_SIZE]
    bits: npt.NDArray[np.bool_] = low > np.median(low)
    return bits


@functools.cache
def _dct_matrix(size: int) -> FloatArray:
    """scipy.fftpack.dct's unnormalised type-II DCT along an axis of `size`, as a matrix."""
    frequencies = np.arange(size, dtype=np.float64)[:, None]
    samples = np.arange(size, dtype=np.float64)[None, :]
    matrix: FloatArray = 2 * np.cos(np.pi * frequencies * (2 * samples + 1) / (2 * size))
    matrix.flags.writeable = False
    return matrix


def _colorhash_bits(working: Image.Image) -> npt.NDArray[np.bool_]:
    """imagehash.colorhash (binbits=3) of a regular sample of the decoded pixels.

    A sample, not a resize: averaging neighbours would change saturations and hues.
    """
    rgb = working if working.mode == "RGB" else working.convert("RGB")  # alpha ignored
    step = max(1, round(min(rgb.size) / COLORHASH_SAMPLE_SIDE))
    if step > 1:
        rgb = rgb.resize((rgb.width // step, rgb.height // step), Image.Resampling.NEAREST)
    intensity = np.asarray(rgb.convert("L"))
    hsv = np.asarray(rgb.convert("HSV"))
    hue, saturation = hsv[..., 0], hsv[..., 1]
    black = intensity < 256 // 8
    low_saturation = saturation < 256 // 3
    colours = ~black & ~low_saturation
    faint = colours & (saturation < 256 * 2 // 3)
    bright = colours & (saturation > 256 * 2 // 3)
    hue_bins = np.minimum(hue.astype(np.int32) * 2 // 85, 5)  # np.histogram, linspace(0, 255, 7)
    faint_counts = np.bincount(hue_bins[faint], minlength=6)
    bright_counts = np.bincount(hue_bins[bright], minlength=6)
    coloured = max(1, int(colours.sum()))
    fractions = [float(black.mean()), float((~black & low_saturation).mean())]
    fractions += [int(count) / coloured for count in (*faint_counts, *bright_counts)]
    values = [min(7, int(fraction * 8)) for fraction in fractions]
    return np.array([[value >= 4, value // 2 % 4 > 0, value % 2 > 0] for value in values])


def _oriented(values: FloatArray, orientation: int) -> FloatArray:
    """A stored-orientation array as displayed (numpy twin of ORIENTATION_TRANSPOSE)."""
    return _ARRAY_ORIENTATION.get(orientation, _identity)(values)


def _identity(values: FloatArray) -> FloatArray:
    return values


_ARRAY_ORIENTATION: Final[dict[int, Callable[[FloatArray], FloatArray]]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.T,
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].T,
    8: lambda a: np.rot90(a, 1),
}


def _bits_to_hex(bits: npt.NDArray[np.bool_]) -> str:
    """imagehash's hex form of a bit array (row-major, most significant bit first)."""
    flat = np.asarray(bits, dtype=bool).ravel()
    width = -(-flat.size // 4)
    padded = np.concatenate([np.zeros((-flat.size) % 8, dtype=bool), flat])
    return np.packbits(padded).tobytes().hex()[-width:]
