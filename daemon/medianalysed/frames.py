"""Counting the frames an image file really holds (SPEC §4: `frames` counted).

A header's frame count is a claim: an APNG's acTL chunk may say 2**31 frames over one image,
an IM or SPIDER header any number. So frames are counted by walking what is in the file, up to
MAX_FRAMES, each step reading a few bytes and decoding nothing: an APNG's fcTL chunks, a FLI's
frame chunks, a GIF's image blocks; other multi-frame formats (TIFF, MPO, WebP, HEIF, PSD...)
by seeking frame after frame, each frame's data having to start inside the file. The walk
leaves the image on the frame it was on.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import IO, Final

from PIL import FliImagePlugin, GifImagePlugin, Image, ImageFile, PngImagePlugin

MAX_FRAMES: Final = 10_000  # counting stops here: `frames_capped` says there may be more
_MAX_CHUNKS: Final = 1_000_000  # PNG/FLI chunks walked at most, whatever they are
_FLI_HEADER: Final = 128
_FLI_FRAME: Final = 0xF1FA
_FLI_PREFIX: Final = 0xF100

# What a damaged (or oversized) frame past the first raises while seeking to it; counting
# stops there, and the first frame, already analysed, stands.
_DAMAGED_FRAME_ERRORS: Final = (
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
    EOFError,
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    struct.error,
)


@dataclass(frozen=True, slots=True)
class FrameCount:
    frames: int  # at least 1
    capped: bool  # counting stopped at MAX_FRAMES


def count_frames(image: Image.Image, file_size: int) -> FrameCount:
    """The frames present in the file, counted up to MAX_FRAMES; never a header's claim."""
    if isinstance(image, PngImagePlugin.PngImageFile):
        counted = _png_frames(image)
    elif isinstance(image, GifImagePlugin.GifImageFile):
        counted = _gif_frames(image)
    elif isinstance(image, FliImagePlugin.FliImageFile):
        counted = _fli_frames(image)
    else:
        counted = _seekable_frames(image, file_size)
    counted = max(1, counted)
    return FrameCount(frames=min(counted, MAX_FRAMES), capped=counted > MAX_FRAMES)


def _png_frames(image: PngImagePlugin.PngImageFile) -> int:
    """An APNG's fcTL chunks (plus its default image when that is not a frame)."""
    fp = _file_of(image)
    if image.n_frames <= 1 or fp is None:  # no acTL: a still PNG, whatever follows
        return 1
    controls = _walk_chunks(fp, start=8, size_first=True, wanted=b"fcTL")
    frames = controls + (1 if image.default_image else 0)
    return min(frames, image.n_frames)  # Pillow plays no more than acTL says


def _fli_frames(image: FliImagePlugin.FliImageFile) -> int:
    """A FLI/FLC's frame chunks, no more than its header's count (a ring frame follows)."""
    fp = _file_of(image)
    if fp is None:
        return 1
    chunks = _walk_chunks(fp, start=_FLI_HEADER, size_first=False, wanted=_FLI_FRAME)
    return min(chunks, image.n_frames)


def _file_of(image: ImageFile.ImageFile) -> IO[bytes] | None:
    """The image's open file: multi-frame plugins keep it in `_fp` once a frame is loaded."""
    for fp in (getattr(image, "_fp", None), image.fp):
        if (
            fp is not None
            and callable(getattr(fp, "seek", None))
            and not getattr(fp, "closed", True)
        ):
            return fp
    return None


def _walk_chunks(fp: IO[bytes], *, start: int, size_first: bool, wanted: bytes | int) -> int:
    """Chunks of type `wanted`, reading only chunk headers, up to MAX_FRAMES + 1.

    PNG chunks are (length, type, data, crc); FLI chunks (size including its header, type).
    """
    position = fp.tell()
    count = 0
    try:
        fp.seek(start)
        for _ in range(_MAX_CHUNKS):
            head = fp.read(8 if size_first else 6)
            if len(head) < (8 if size_first else 6):
                break
            if size_first:
                length, kind = struct.unpack(">I4s", head)
                skip = length + 4
            else:
                length, kind = struct.unpack("<IH", head)
                skip = length - 6
            count += kind == wanted
            if kind == b"IEND" or count > MAX_FRAMES or skip < 0:
                break
            fp.seek(skip, os.SEEK_CUR)
    except (OSError, ValueError, OverflowError):
        pass  # a chunk length past anything seekable: the walk ends there
    finally:
        fp.seek(position)
    return count


def _gif_frames(image: GifImagePlugin.GifImageFile) -> int:
    """A GIF's image blocks, walked as Pillow's n_frames does (no decoding), but capped."""
    start = image.tell()
    count = 1
    try:
        while count <= MAX_FRAMES:
            image._seek(image.tell() + 1, False)  # private, but the only walk that decodes nothing
            count += 1
    except _DAMAGED_FRAME_ERRORS:
        pass
    image.seek(start)
    return count


def _seekable_frames(image: Image.Image, file_size: int) -> int:
    """Frames reached by seeking one after the other, each one's data inside the file."""
    start = image.tell()
    count = 1
    try:
        while count <= MAX_FRAMES:
            image.seek(start + count)
            if not _frame_in_file(image, file_size):
                break
            count += 1
    except _DAMAGED_FRAME_ERRORS:
        pass
    if image.tell() != start:
        image.seek(start)
    return count


def _frame_in_file(image: Image.Image, file_size: int) -> bool:
    if not isinstance(image, ImageFile.ImageFile):
        return True
    return all(0 <= tile.offset < file_size for tile in image.tile)
