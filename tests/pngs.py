"""PNG and APNG files written chunk by chunk: huge images that cost the test no memory,
and headers that lie (frame counts, dimensions, chunk lengths)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRAY, RGB, PALETTE, RGBA = 0, 2, 3, 6
_CHANNELS = {GRAY: 1, RGB: 3, PALETTE: 1, RGBA: 4}


def chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def ihdr(width: int, height: int, depth: int = 8, colour: int = GRAY) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))


def flat_idat(width: int, height: int, depth: int = 8, colour: int = GRAY) -> bytes:
    """One IDAT of a flat (all-zero) image, compressed row by row: any size, little memory."""
    row = b"\x00" * (1 + width * _CHANNELS[colour] * depth // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
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
