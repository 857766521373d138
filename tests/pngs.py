"""PNG and APNG files written chunk by chunk: huge images that cost the test no memory,
and headers that lie (frame counts, dimensions, chunk lengths)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRAY, RGB, PALETTE, RGBA = 0, 2, 3, 6
_CHANNELS = {GRAY: 1, RGB: 3, PALETTE: 1, RGBA: 4}
_ZERO_BLOCK = 1 << 20
_ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, fastest compression


def chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def ihdr(width: int, height: int, depth: int = 8, colour: int = GRAY) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))


def flat_idat(width: int, height: int, depth: int = 8, colour: int = GRAY) -> bytes:
    """One IDAT of a flat (all-zero) image: any size, in milliseconds and little memory.

    Every scanline (filter byte 0, then zeros) is zeros, so the zlib stream is one megabyte
    of zeros deflated once and repeated (each copy ends in a full flush: no back-reference
    reaches before it), the rest, and the Adler-32 of that many zeros (a = 1, b = size).
    Level 1, as Pillow writes with `compress_level=1`: it inflates 3 times faster than level 9.
    """
    size = height * (1 + width * _CHANNELS[colour] * depth // 8)
    copies, rest = divmod(size, _ZERO_BLOCK)
    block = zlib.compressobj(1, zlib.DEFLATED, -15)
    repeated = block.compress(bytes(_ZERO_BLOCK)) + block.flush(zlib.Z_FULL_FLUSH)
    last = zlib.compressobj(1, zlib.DEFLATED, -15)
    tail = last.compress(bytes(rest)) + last.flush()
    adler32 = (size % 65521) << 16 | 1
    data = _ZLIB_HEADER + repeated * copies + tail + struct.pack(">I", adler32)
    return chunk(b"IDAT", data)


def write_flat_png(path: Path, width: int, height: int, depth: int = 8, colour: int = GRAY) -> Path:
    path.write_bytes(
        SIGNATURE
        + ihdr(width, height, depth, colour)
        + flat_idat(width, height, depth, colour)
        + chunk(b"IEND", b"")
    )
    return path


def fctl(sequence: int, width: int, height: int) -> bytes:
    payload = struct.pack(">IIIIIHHBB", sequence, width, height, 0, 0, 1, 10, 0, 0)
    return chunk(b"fcTL", payload)


def apng(frames: int, *, claimed: int | None = None, size: int = 1) -> bytes:
    """An APNG of `frames` frames of size x size grey pixels, whose acTL says `claimed`."""
    pixels = zlib.compress(b"\x00" * (1 + size) * size)
    parts = [SIGNATURE, ihdr(size, size)]
    parts.append(chunk(b"acTL", struct.pack(">II", frames if claimed is None else claimed, 0)))
    sequence = 0
    for index in range(frames):
        parts.append(fctl(sequence, size, size))
        sequence += 1
        if index == 0:
            parts.append(chunk(b"IDAT", pixels))
        else:
            parts.append(chunk(b"fdAT", struct.pack(">I", sequence) + pixels))
            sequence += 1
    parts.append(chunk(b"IEND", b""))
    return b"".join(parts)
