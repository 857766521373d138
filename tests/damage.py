"""Damaging real image files: truncations, bit flips and header lies (issue 15).

Shared by tests/unit/test_damaged_images.py (hypothesis, a few dozen cases per run) and
benchmarks/fuzz_images.py (thousands). Every damage is a pure function of the original bytes
and a few integers, so a failing case is reproduced from its arguments alone.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pebble
from hypothesis import HealthCheck, settings

from medianalysed.errors import MAX_MESSAGE_LENGTH, ErrorCode
from medianalysed.worker import pool_context, worker_initializer

# Real files, one or more per container format; all small so that a case stays fast.
SEEDS = (
    "exif-samples/jpg/gps/DSCN0010.jpg",
    "pillow-edge/orientation/hopper.jpg",
    "pillow-edge/modes/pil_sample_cmyk.jpg",
    "pillow-edge/high-bit/tiff_16bit_RGB_target.png",
    "pillow-edge/high-bit/i_trns.png",
    "pillow-edge/animated/apng/num_plays.png",
    "pillow-edge/animated/dispose_bgnd.gif",
    "pillow-edge/animated/iss634.gif",
    "pillow-edge/modes/hopper.webp",
    "pillow-edge/animated/iss634.webp",
    "pillow-edge/animated/multipage.tiff",
    "pillow-edge/modes/lab.tif",
    "pillow-edge/modes/tiff_strip_cmyk_jpeg.tif",
    "pillow-edge/broken/avif/hopper.heif",
    "pillow-edge/orientation/avif/rot0mir0.avif",
)
# What a damaged file may end as (besides a record): never INTERNAL, never retryable.
ACCEPTED_CODES = frozenset(
    {
        ErrorCode.CORRUPT,
        ErrorCode.UNSUPPORTED_FORMAT,
        ErrorCode.DECOMPRESSION_BOMB,
        ErrorCode.TOO_SMALL,
    }
)
LIES = (0, 1, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 2**31, 100_000, 65_535, 1 << 24)


# A few dozen damaged cases per test and run; each may start a worker.
CASES = settings(
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def worker_pool(memory: int) -> Iterator[pebble.ProcessPool]:
    """One worker as the daemon runs it (fork server, memory limit): for a module fixture, so
    that a crash or a hang of a decoder is seen as one instead of taking pytest with it."""
    workers = pebble.ProcessPool(
        max_workers=1,
        context=pool_context(),
        initializer=worker_initializer,
        initargs=(memory,),
    )
    yield workers
    workers.stop()  # type: ignore[no-untyped-call]
    workers.join(timeout=10)


def seeds(corpora: Path) -> list[Path]:
    return [corpora / seed for seed in SEEDS if (corpora / seed).is_file()]


def truncated(data: bytes, at: int) -> bytes:
    return data[: at % max(1, len(data))]


def bit_flipped(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    """`flips` are (position, bit); positions wrap, and most land in the first 4 kB (headers)."""
    damaged = bytearray(data)
    for position, bit in flips:
        index = position % min(len(damaged), 4096) if position % 2 else position % len(damaged)
        damaged[index] ^= 1 << (bit % 8)
    return bytes(damaged)


def field_lie(data: bytes, position: int, lie: int, width: int, big_endian: bool) -> bytes:
    """A `width`-byte integer in the first 1 kB overwritten with `lie` (sizes, counts, offsets)."""
    span = min(len(data), 1024) - width
    if span <= 0:
        return data
    start = position % span
    order = ">" if big_endian else "<"
    packed = struct.pack(order + {2: "H", 4: "I"}[width], lie % (1 << (8 * width)))
    return data[:start] + packed + data[start + width :]


def structural_lies(data: bytes, lie: int) -> Iterator[tuple[str, bytes]]:
    """Format-aware lies: the fields decoders trust (dimensions, frame counts, lengths)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        yield from _png_lies(data, lie)
    elif data.startswith(b"\xff\xd8"):
        yield from _jpeg_lies(data, lie)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        for offset, name in ((6, "screen width"), (8, "screen height")):
            yield name, data[:offset] + struct.pack("<H", lie & 0xFFFF) + data[offset + 2 :]
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        yield "riff size", data[:4] + struct.pack("<I", lie & 0xFFFFFFFF) + data[8:]
        if data[12:16] == b"VP8X":
            canvas = struct.pack("<I", lie & 0xFFFFFF)[:3]
            yield "canvas width", data[:24] + canvas + data[27:]
            yield "canvas height", data[:27] + canvas + data[30:]
    elif data[:4] in (b"II*\x00", b"MM\x00*"):
        yield from _tiff_lies(data, lie)
    elif data[4:8] == b"ftyp":
        yield from _isobmff_lies(data, lie)


def _png_chunks(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 8
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        yield offset, kind
        offset += 12 + length


def _png_lies(data: bytes, lie: int) -> Iterator[tuple[str, bytes]]:
    for offset, kind in _png_chunks(data):
        if kind == b"IHDR":
            for field, name in ((8, "width"), (12, "height")):
                at = offset + field
                lied = data[:at] + struct.pack(">I", lie & 0xFFFFFFFF) + data[at + 4 :]
                yield f"IHDR {name}", _png_fix_crc(lied, offset)
        if kind == b"acTL":
            at = offset + 8
            lied = data[:at] + struct.pack(">I", lie & 0xFFFFFFFF) + data[at + 4 :]
            yield "acTL num_frames", _png_fix_crc(lied, offset)
        if kind in (b"IDAT", b"fdAT", b"fcTL", b"iCCP", b"zTXt"):
            lied = data[:offset] + struct.pack(">I", lie & 0xFFFFFFFF) + data[offset + 4 :]
            yield f"{kind.decode()} length", lied


def _png_fix_crc(data: bytes, offset: int) -> bytes:
    """A lie with a valid CRC, so that decoders believe it rather than reject the chunk."""
    length = struct.unpack(">I", data[offset : offset + 4])[0]
    end = offset + 8 + length
    crc = zlib.crc32(data[offset + 4 : end])
    return data[:end] + struct.pack(">I", crc) + data[end + 4 :]


def _jpeg_lies(data: bytes, lie: int) -> Iterator[tuple[str, bytes]]:
    offset = 2
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        length = struct.unpack(">H", data[offset + 2 : offset + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            for field, name in ((5, "height"), (7, "width")):
                at = offset + field
                yield f"SOF {name}", data[:at] + struct.pack(">H", lie & 0xFFFF) + data[at + 2 :]
        if marker in (0xE1, 0xDB, 0xC4, 0xE2):
            at = offset + 2
            lied = data[:at] + struct.pack(">H", lie & 0xFFFF) + data[at + 2 :]
            yield f"segment {marker:02X} length", lied
        if marker == 0xDA:
            return
        offset += 2 + length


def _tiff_lies(data: bytes, lie: int) -> Iterator[tuple[str, bytes]]:
    order = "<" if data[:2] == b"II" else ">"
    first = struct.unpack(order + "I", data[4:8])[0]
    if first + 2 > len(data):
        return
    count = struct.unpack(order + "H", data[first : first + 2])[0]
    entries = struct.pack(order + "H", lie & 0xFFFF)
    yield "IFD entry count", data[:first] + entries + data[first + 2 :]
    for index in range(min(count, 64)):
        entry = first + 2 + 12 * index
        if entry + 12 > len(data):
            return
        tag = struct.unpack(order + "H", data[entry : entry + 2])[0]
        if tag in (256, 257, 273, 277, 278, 279, 322, 323, 324, 325):
            at = entry + 8
            value = struct.pack(order + "I", lie & 0xFFFFFFFF)
            yield f"tag {tag} value", data[:at] + value + data[at + 4 :]
    after = first + 2 + 12 * count
    if after + 4 <= len(data):
        loop = struct.pack(order + "I", first)
        yield "next IFD loops to the first", data[:after] + loop + data[after + 4 :]


def _isobmff_lies(data: bytes, lie: int) -> Iterator[tuple[str, bytes]]:
    for name in (b"ispe", b"iloc", b"meta", b"mdat", b"pitm", b"iinf"):
        at = data.find(name)
        if at >= 4:
            size = struct.pack(">I", lie & 0xFFFFFFFF)
            yield f"{name.decode()} box size", data[: at - 4] + size + data[at:]
            if name == b"ispe" and at + 16 <= len(data):
                dims = struct.pack(">II", lie & 0xFFFFFFFF, lie & 0xFFFFFFFF)
                yield "ispe dimensions", data[: at + 8] + dims + data[at + 16 :]


def outcome_problem(outcome: dict[str, object]) -> str | None:
    """Why a run_job outcome breaks the contract for a damaged file, or None."""
    if "result" in outcome:
        return None
    error = outcome.get("error")
    if not isinstance(error, dict):
        return f"neither result nor error: {sorted(outcome)}"
    message = str(error.get("message", ""))
    if len(message) > MAX_MESSAGE_LENGTH:
        return f"message of {len(message)} characters"
    if error.get("code") not in ACCEPTED_CODES:
        return f"{error.get('code')}: {message}"
    if error.get("retryable"):
        return f"retryable {error.get('code')}"
    return None
