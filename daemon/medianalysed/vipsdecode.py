"""libvips as a faster `Image.load()` for the PNG and TIFF variants it decodes to Pillow's pixels.

Pillow stays the authority: it opened the file, read its header and checked every limit, and
the image still ends up a loaded Pillow image whose pixels, mode, metadata (PNG chunks after
the pixel data, TIFF orientation and IFDs) and later behaviour are exactly those of
`image.load()`. Only the decoding of the pixels is done by libvips (libspng, libtiff), which
is 1.3-1.7x faster there (README, "PNG, WebP, TIFF").

Used only where the decoded samples are known to be identical, byte for byte (measured, and
checked on every file of the corpora by tests/unit/test_vipsdecode.py): single-frame PNGs and
lossless TIFFs of 8 or 16 bits per sample in L, LA, RGB or RGBA (16-bit grey: I;16), without
a tRNS colour key (libvips turns that into an alpha band). WebP is not: libvips decodes it to
the same pixels but no faster; its scaled decode is faster but not the same pixels.

Any failure of libvips (an exception, another size or band layout than Pillow's header
promised, or too slow a decode) leaves the image untouched for Pillow to decode, so damaged
files fail with Pillow's error codes. libvips runs single-threaded (one worker process per
core already), with its operation cache off, sequential access and fail_on="warning".
"""

from __future__ import annotations

import ctypes
import functools
import io
import logging
import os
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any, Final

from PIL import Image, PngImagePlugin, TiffImagePlugin, _imaging

logger = logging.getLogger(__name__)

# A decode this much slower than expected is given up for Pillow's (a pathological file):
# ~20x the 20 MP photo's time on a busy machine, and never less than a few seconds.
_SECONDS_PER_MEGAPIXEL: Final = 1.0
_MIN_SECONDS: Final = 5.0

_CORE_BYTES_PER_PIXEL: Final = 4  # Pillow's image memory, at most (L: 1, I;16: 2, others 4)
_LIBVIPS_HEADROOM: Final = 128 * 1024 * 1024  # its peak beyond that: ~50 MB at 100 MP

# Pillow mode -> (bands, formats libvips may load it as).
_LAYOUTS: Final[dict[str, tuple[int, frozenset[str]]]] = {
    "L": (1, frozenset({"uchar"})),
    "LA": (2, frozenset({"uchar"})),
    "RGB": (3, frozenset({"uchar", "ushort"})),  # Pillow keeps the high byte of 16-bit samples
    "RGBA": (4, frozenset({"uchar", "ushort"})),
    "I;16": (1, frozenset({"ushort"})),  # little-endian in Pillow's memory, as libvips' here
}
# TIFF compressions whose decode is exact whatever the codec library's version.
_LOSSLESS_TIFF: Final = frozenset(
    {"raw", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits", "zstd", "lzma"}
)
_Plugin = PngImagePlugin.PngImageFile | TiffImagePlugin.TiffImageFile
_PLUGINS: Final = (PngImagePlugin.PngImageFile, TiffImagePlugin.TiffImageFile)
_TIFF_BITS_PER_SAMPLE: Final = 258
_TIFF_PHOTOMETRIC: Final = 262
_TIFF_PLANAR: Final = 284
_TIFF_SAMPLE_FORMAT: Final = 339
_TIFF_EXTRA_SAMPLES: Final = 338
_BLACK_IS_ZERO, _RGB = 1, 2
_UNASSOCIATED_ALPHA: Final = 2


@dataclass(slots=True)
class Counts:
    """What this process's libvips did: images it decoded, and attempts Pillow took over."""

    decoded: int = 0
    fallbacks: int = 0


counts = Counts()


@functools.cache
def pyvips_module() -> Any | None:
    """pyvips with libvips set up for hostile input in a worker, or None when not installed."""
    os.environ.setdefault("VIPS_CONCURRENCY", "1")  # read when libvips starts
    try:
        import pyvips  # noqa: PLC0415 - optional: Pillow decodes everything without it
    except (ImportError, OSError) as exc:  # not installed, or its libvips does not load
        logger.debug("pyvips unavailable: %s", exc)
        return None
    pyvips.concurrency_set(1)
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    pyvips.cache_set_max_files(0)
    pyvips.block_untrusted_set(True)
    # Its warnings are about files Pillow then decodes (a debug line here says so), and its
    # debug output names every operation: neither belongs in the daemon's log.
    logging.getLogger("pyvips").setLevel(logging.ERROR)
    return pyvips


def libvips_version() -> str | None:
    """The libvips version pyvips loaded ("8.18.7"), or None without it."""
    pyvips = pyvips_module()
    if pyvips is None:
        return None
    return ".".join(str(pyvips.version(part)) for part in range(3))


def load(image: Image.Image) -> bool:
    """Load `image` (opened by Pillow, not loaded yet) through libvips when that gives
    Pillow's pixels; False, with `image` untouched, when Pillow has to decode it."""
    if not isinstance(image, _PLUGINS):
        return False
    loader = _loader_for(image)
    if loader is None:
        return False
    pyvips = pyvips_module()
    if pyvips is None or not _memory_allows(_stored_size(image)):
        return False
    try:
        core = _decoded(pyvips, loader, image)
    except Exception as exc:  # anything libvips raises: Pillow decodes the file instead
        counts.fallbacks += 1
        logger.debug("libvips did not decode the %s image, Pillow does: %s", image.format, exc)
        return False
    finally:
        _release_freed_memory()
    _finish_as_pillow_load(image, core)
    counts.decoded += 1
    return True


@functools.cache
def _malloc_trim() -> Any | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc's
    except (OSError, AttributeError):
        return None


def _release_freed_memory() -> None:
    """Hand back what libvips' thread freed: glibc keeps it in that thread's heap otherwise
    (~20 MB a worker after a few photos), memory Pillow's decodes cannot use."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _loader_for(image: _Plugin) -> str | None:
    """The libvips loader ("png", "tiff") for an image it decodes exactly as Pillow, or None."""
    if image.mode not in _LAYOUTS or (image.mode == "I;16" and sys.byteorder != "little"):
        return None
    if not image.tile or image.fp is None:
        return None
    if isinstance(image, PngImagePlugin.PngImageFile):
        single = image.n_frames == 1 and "default_image" not in image.info
        return "png" if single and "transparency" not in image.info else None
    if isinstance(image, TiffImagePlugin.TiffImageFile) and _plain_tiff(image):
        return "tiff"
    return None


def _as_tuple(value: object) -> tuple[object, ...]:
    """A TIFF tag's value as a tuple: Pillow gives one-value tags as the bare value."""
    if value is None:
        return ()
    return value if isinstance(value, tuple) else (value,)


def _memory_allows(size: tuple[int, int]) -> bool:
    """Whether the worker's memory limit (RLIMIT_DATA, max_worker_memory) holds libvips'
    decode with room to spare. Near the limit Pillow decodes: libvips needs ~50 MB more at
    its peak, and what its thread's heap keeps after a failure would fail Pillow's decode
    too, where Pillow alone would have fitted."""
    soft, _ = resource.getrlimit(resource.RLIMIT_DATA)
    if soft == resource.RLIM_INFINITY:
        return True
    width, height = size
    needed = width * height * _CORE_BYTES_PER_PIXEL + _LIBVIPS_HEADROOM
    return _data_in_use() + needed <= soft


def _data_in_use() -> int:
    """This process's data segment as RLIMIT_DATA counts it (VmData), 0 where unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _plain_tiff(image: TiffImagePlugin.TiffImageFile) -> bool:
    """Contiguous unsigned grey or RGB samples of 8 or 16 bits, losslessly compressed, alpha
    unassociated."""
    tags = image.tag_v2
    extra_samples = _as_tuple(tags.get(_TIFF_EXTRA_SAMPLES))
    bits = set(_as_tuple(tags.get(_TIFF_BITS_PER_SAMPLE, 1)))
    return (
        bits in ({8}, {16})
        and image.info.get("compression") in _LOSSLESS_TIFF
        and tags.get(_TIFF_PHOTOMETRIC) in (_BLACK_IS_ZERO, _RGB)
        and tags.get(_TIFF_PLANAR, 1) == 1
        and tags.get(_TIFF_SAMPLE_FORMAT, 1) in (1, (1,) * len(image.getbands()))
        and all(sample == _UNASSOCIATED_ALPHA for sample in extra_samples)
        and "transparency" not in image.info
    )


def _decoded(pyvips: Any, loader: str, image: _Plugin) -> Any:
    """The full-resolution pixels as a Pillow core image of `image`'s mode and size."""
    vips_image = _open(pyvips, loader, image.fp)
    width, height = _stored_size(image)
    bands, formats = _LAYOUTS[image.mode]
    if (vips_image.width, vips_image.height) != (width, height):
        raise ValueError(f"libvips reads {vips_image.width}x{vips_image.height}")
    if vips_image.bands != bands or vips_image.format not in formats:
        raise ValueError(f"libvips reads {vips_image.bands} bands of {vips_image.format}")
    if image.mode != "I;16" and vips_image.format == "ushort":
        vips_image = vips_image.cast("uchar", shift=True)  # as Pillow's RGB;16B: the high byte
    core = _imaging.new(image.mode, (width, height))
    unpack = _Unpacker(core, image.mode, deadline=_deadline(width * height))
    target = pyvips.TargetCustom()
    target.on_write(unpack.write)
    vips_image.rawsave_target(target)  # libvips' own sink: rows in order, as it decodes them
    unpack.finish()
    return core


def _deadline(pixels: int) -> float:
    return time.monotonic() + max(_MIN_SECONDS, pixels / 1e6 * _SECONDS_PER_MEGAPIXEL)


class _Unpacker:
    """Pillow's raw unpacker fed the rows libvips writes, straight into a Pillow image (as
    Pillow's own decoders write theirs): no other full-resolution copy is made."""

    def __init__(self, core: Any, mode: str, *, deadline: float) -> None:
        self._decoder = Image._getdecoder(mode, "raw", (mode, 0, 1))
        self._decoder.setimage(core, (0, 0, *core.size))
        self._pending = b""
        self._deadline = deadline
        self.problem: str | None = None

    def write(self, chunk: bytes) -> int:
        """libvips' write callback: the bytes taken, or -1 to stop it (it then raises)."""
        if time.monotonic() > self._deadline:
            self.problem = "libvips decodes too slowly"
            return -1
        data = self._pending + chunk if self._pending else chunk
        consumed, error = self._decoder.decode(data)
        if error < 0:
            self.problem = f"unpacking libvips' pixels failed ({error})"
            return -1
        self._pending = data[consumed:] if consumed >= 0 else b""
        return len(chunk)

    def finish(self) -> None:
        self._decoder.cleanup()
        if self.problem is not None or self._pending:
            raise ValueError(self.problem or "libvips wrote more pixels than the image has")


def _stored_size(image: _Plugin) -> tuple[int, int]:
    """The size of the pixel data: a TIFF's `size` is already the size once oriented."""
    if isinstance(image, TiffImagePlugin.TiffImageFile):
        return image._tile_size
    return image.size


def _open(pyvips: Any, loader: str, fp: Any) -> Any:
    """A sequential libvips image of the file Pillow reads, with that loader only."""
    options = {"access": "sequential", "fail_on": "warning"}
    if isinstance(fp, io.BytesIO):  # the file's bytes, read once (analysis.IN_MEMORY_LIMIT)
        # A source over them, not a copy (a *_buffer loader copies its argument).
        source = pyvips.Source.new_from_memory(fp.getbuffer())
        return getattr(pyvips.Image, f"{loader}load_source")(source, **options)
    # A file of its own: the same file through a new description, so Pillow's offset stays.
    return getattr(pyvips.Image, f"{loader}load")(f"/proc/self/fd/{fp.fileno()}", **options)


def _finish_as_pillow_load(image: _Plugin, core: Any) -> None:
    """Leave `image` as ImageFile.load() would have: pixels in place, then whatever the
    plugin does once the pixel data is read (PNG: the chunks after it, among them a late
    eXIf; TIFF: its IFDs and the orientation it applies)."""
    image.im = core
    image.load_prepare()  # keeps `core`; PNG: where its pixel data ends
    if isinstance(image, PngImagePlugin.PngImageFile):
        assert image.fp is not None
        image.fp.seek(image.tile[0].offset)  # where Pillow's decoder would have started
    image.tile = []
    image.readonly = 0
    image.load_end()
    assert image.fp is not None
    if isinstance(image, TiffImagePlugin.TiffImageFile) and image.use_load_libtiff:
        if image._exclusive_fp and not image.is_animated:  # as TiffImageFile._load_libtiff
            image.fp.close()
            image.fp = None
    else:  # as ImageFile.load
        if image._exclusive_fp and image._close_exclusive_fp_after_loading:
            image.fp.close()
        image.fp = None
    Image.Image.load(image)
