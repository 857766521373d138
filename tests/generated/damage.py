"""Damaged copies of real image bytes: truncations, bit flips and header fields that lie.

Every function is pure (bytes in, bytes out) and deterministic given its arguments, so a
hypothesis example or a saved reproducer rebuilds the exact same file. A header lie edits one
field the decoder trusts before it has seen the pixels (dimensions, chunk and box lengths,
offsets, counts) and leaves the rest of the file intact, which is what real-world damage and
hostile files look like. When the format's field is absent the input comes back unchanged
(still a valid case: the undamaged image must be analysed).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

# Values that break decoders most often: zero, one, the top of each width, just past a
# power of two, and "larger than the file".
LIES: tuple[int, ...] = (
    0,
    1,
    2,
    0x7F,
    0xFF,
    0x100,
    0x7FFF,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0xFFFFFFFF,
)


def truncate(data: bytes, keep: int) -> bytes:
    """The first `keep` bytes (clamped to the file)."""
    return data[: max(0, min(keep, len(data)))]


def flip_bits(data: bytes, positions: list[int]) -> bytes:
    """Flip one bit per position (a position is a bit index, taken modulo the file's bits)."""
    if not data:
        return data
    damaged = bytearray(data)
    for position in positions:
        bit = position % (len(data) * 8)
        damaged[bit // 8] ^= 1 << (bit % 8)
    return bytes(damaged)


def splice(data: bytes, offset: int, junk: bytes) -> bytes:
    """Overwrite bytes at `offset` (modulo the length) with `junk`, same length overall."""
    if not data:
        return junk
    start = offset % len(data)
    end = min(len(data), start + len(junk))
    return data[:start] + junk[: end - start] + data[end:]


def format_of(data: bytes) -> str | None:
    """The container a file's magic bytes claim, for choosing a header lie."""
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[4:8] == b"ftyp":
        return "isobmff"  # HEIC, HEIF, AVIF
    return None


def lie(data: bytes, field: int, value: int) -> bytes:
    """Make header field number `field` (modulo the format's fields) claim `value`."""
    kind = format_of(data)
    if kind is None:
        return data
    fields = HEADER_FIELDS[kind]
    return fields[field % len(fields)](data, value)


# --- JPEG -------------------------------------------------------------------------------------

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(offset of the marker byte after 0xFF, marker) for each header segment before SOS."""
    segments: list[tuple[int, int]] = []
    index = 2
    while index + 4 <= len(data) and data[index] == 0xFF:
        marker = data[index + 1]
        segments.append((index + 1, marker))
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        (length,) = struct.unpack_from(">H", data, index + 2)
        index += 2 + length
    return segments


def _jpeg_sof_field(offset_in_sof: int, size: int) -> Callable[[bytes, int], bytes]:
    def edit(data: bytes, value: int) -> bytes:
        for marker_at, marker in _jpeg_segments(data):
            if marker in _SOF_MARKERS:
                return _put(data, marker_at + 3 + offset_in_sof, size, value)
        return data

    return edit


def _jpeg_segment_length(data: bytes, value: int) -> bytes:
    segments = _jpeg_segments(data)
    if not segments:
        return data
    marker_at, _ = segments[value % len(segments)]
    return _put(data, marker_at + 1, 2, value)


# --- PNG --------------------------------------------------------------------------------------


def _png_chunks(data: bytes) -> list[tuple[int, bytes]]:
    """(offset of the length field, type) of each chunk."""
    chunks: list[tuple[int, bytes]] = []
    index = 8
    while index + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, index)
        chunks.append((index, data[index + 4 : index + 8]))
        index += 12 + length
    return chunks


def _png_ihdr_field(
    offset_in_ihdr: int, size: int, *, fix_crc: bool
) -> Callable[[bytes, int], bytes]:
    def edit(data: bytes, value: int) -> bytes:
        for at, kind in _png_chunks(data):
            if kind == b"IHDR":
                edited = _put(data, at + 8 + offset_in_ihdr, size, value)
                return _png_fix_crc(edited, at) if fix_crc else edited
        return data

    return edit


def _png_fix_crc(data: bytes, at: int) -> bytes:
    (length,) = struct.unpack_from(">I", data, at)
    body = data[at + 4 : at + 8 + length]
    if len(body) != length + 4 or at + 12 + length > len(data):
        return data
    return _put(data, at + 8 + length, 4, zlib.crc32(body))


def _png_chunk_length(data: bytes, value: int) -> bytes:
    chunks = _png_chunks(data)
    if not chunks:
        return data
    at, _ = chunks[value % len(chunks)]
    return _put(data, at, 4, value)


# --- GIF --------------------------------------------------------------------------------------


def _gif_field(offset: int, size: int) -> Callable[[bytes, int], bytes]:
    def edit(data: bytes, value: int) -> bytes:
        return _put(data, offset, size, value, little=True)

    return edit


def _gif_first_descriptor(data: bytes, value: int) -> bytes:
    """The first image descriptor's width (after the global colour table, if any)."""
    if len(data) < 13:
        return data
    flags = data[10]
    index = 13 + (3 * (2 ** ((flags & 7) + 1)) if flags & 0x80 else 0)
    while index < len(data) and data[index] == 0x21:  # extension blocks
        index += 2
        while index < len(data) and data[index]:
            index += data[index] + 1
        index += 1
    if index < len(data) and data[index] == 0x2C:
        return _put(data, index + 5, 2, value, little=True)
    return data


# --- WebP -------------------------------------------------------------------------------------


def _webp_riff_size(data: bytes, value: int) -> bytes:
    return _put(data, 4, 4, value, little=True)


def _webp_chunk_size(data: bytes, value: int) -> bytes:
    return _put(data, 16, 4, value, little=True)


def _webp_dimensions(data: bytes, value: int) -> bytes:
    chunk = data[12:16]
    if chunk == b"VP8X":  # 24-bit canvas width minus one
        return _put(data, 24, 3, value & 0xFFFFFF, little=True)
    if chunk == b"VP8 ":  # 14-bit frame width after the start code
        return _put(data, 26, 2, value & 0x3FFF, little=True)
    if chunk == b"VP8L":  # 14-bit width minus one after the signature byte
        return _put(data, 21, 2, value & 0x3FFF, little=True)
    return data


# --- TIFF -------------------------------------------------------------------------------------


def _tiff_order(data: bytes) -> str:
    return "<" if data.startswith(b"II") else ">"


def _tiff_ifd0(data: bytes, value: int) -> bytes:
    return _put(data, 4, 4, value, little=_tiff_order(data) == "<")


def _tiff_entry_count(data: bytes, value: int) -> bytes:
    order = _tiff_order(data)
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    if ifd + 2 > len(data):
        return data
    return _put(data, ifd, 2, value, little=order == "<")


def _tiff_tag(tags: frozenset[int]) -> Callable[[bytes, int], bytes]:
    """Set the value (or offset) of the first IFD0 entry whose tag is in `tags`."""

    def edit(data: bytes, value: int) -> bytes:
        order = _tiff_order(data)
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        if ifd + 2 > len(data):
            return data
        (count,) = struct.unpack_from(order + "H", data, ifd)
        for number in range(count):
            entry = ifd + 2 + 12 * number
            if entry + 12 > len(data):
                break
            tag, kind = struct.unpack_from(order + "HH", data, entry)
            if tag in tags:
                size = 2 if kind == 3 else 4
                return _put(data, entry + 8, size, value, little=order == "<")
        return data

    return edit


def _tiff_next_ifd_loop(data: bytes, _value: int) -> bytes:
    """IFD0's "next IFD" points back at IFD0: a reader that follows it never ends."""
    order = _tiff_order(data)
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    if ifd + 2 > len(data):
        return data
    (count,) = struct.unpack_from(order + "H", data, ifd)
    return _put(data, ifd + 2 + 12 * count, 4, ifd, little=order == "<")


# --- ISOBMFF (HEIC, HEIF, AVIF) ---------------------------------------------------------------

_CONTAINERS = frozenset({b"meta", b"iprp", b"ipco", b"moov", b"trak", b"mdia", b"minf", b"stbl"})


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[int, bytes]]:
    """(offset, type) of every box, descending into the containers that hold the header."""
    end = len(data) if end is None else end
    found: list[tuple[int, bytes]] = []
    index = start
    while index + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, index)
        found.append((index, kind))
        if size < 8:
            break
        if kind in _CONTAINERS:
            body = index + (12 if kind == b"meta" else 8)  # meta is a full box
            found.extend(_boxes(data, body, min(end, index + size)))
        index += size
    return found


def _box_size(data: bytes, value: int) -> bytes:
    boxes = _boxes(data)
    if not boxes:
        return data
    at, _ = boxes[value % len(boxes)]
    return _put(data, at, 4, value)


def _box_field(kind: bytes, offset_in_box: int, size: int) -> Callable[[bytes, int], bytes]:
    def edit(data: bytes, value: int) -> bytes:
        for at, found in _boxes(data):
            if found == kind:
                return _put(data, at + offset_in_box, size, value)
        return data

    return edit


def _ftyp_brand(data: bytes, value: int) -> bytes:
    brands = (b"heic", b"avif", b"mif1", b"msf1", b"isom", b"\x00\x00\x00\x00", b"jpeg", b"zzzz")
    return data[:8] + brands[value % len(brands)] + data[12:]


# --- shared -----------------------------------------------------------------------------------


def _put(data: bytes, offset: int, size: int, value: int, *, little: bool = False) -> bytes:
    """`data` with the `size`-byte unsigned integer at `offset` set to `value` (masked)."""
    if offset < 0 or offset + size > len(data):
        return data
    masked = value & ((1 << (8 * size)) - 1)
    return (
        data[:offset] + masked.to_bytes(size, "little" if little else "big") + data[offset + size :]
    )


HEADER_FIELDS: dict[str, tuple[Callable[[bytes, int], bytes], ...]] = {
    "jpeg": (
        _jpeg_sof_field(1, 2),  # height
        _jpeg_sof_field(3, 2),  # width
        _jpeg_sof_field(5, 1),  # component count
        _jpeg_sof_field(0, 1),  # sample precision
        _jpeg_segment_length,
    ),
    "png": (
        _png_ihdr_field(0, 4, fix_crc=True),  # width
        _png_ihdr_field(4, 4, fix_crc=True),  # height
        _png_ihdr_field(8, 1, fix_crc=True),  # bit depth
        _png_ihdr_field(9, 1, fix_crc=True),  # colour type
        _png_ihdr_field(0, 4, fix_crc=False),
        _png_chunk_length,
    ),
    "gif": (
        _gif_field(6, 2),  # logical screen width
        _gif_field(8, 2),  # logical screen height
        _gif_field(10, 1),  # flags: global colour table size
        _gif_first_descriptor,
    ),
    "webp": (_webp_riff_size, _webp_chunk_size, _webp_dimensions),
    "tiff": (
        _tiff_ifd0,
        _tiff_entry_count,
        _tiff_tag(frozenset({256})),  # ImageWidth
        _tiff_tag(frozenset({257})),  # ImageLength
        _tiff_tag(frozenset({258})),  # BitsPerSample
        _tiff_tag(frozenset({273})),  # StripOffsets
        _tiff_tag(frozenset({279})),  # StripByteCounts
        _tiff_next_ifd_loop,
    ),
    "isobmff": (
        _box_size,
        _box_field(b"ispe", 12, 4),  # image width
        _box_field(b"ispe", 16, 4),  # image height
        _box_field(b"iloc", 8, 1),  # offset/length size nibbles
        _box_field(b"pitm", 12, 2),  # primary item id
        _ftyp_brand,
    ),
}
