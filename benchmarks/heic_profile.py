"""Where the time of one HEIC/HEIF goes: container, HEVC decode, YCbCr to RGB, the rest.

pillow-heif decodes and converts in one call, so the stages are timed on the libheif that
pillow-heif bundles, through its C API (ctypes), one decoding thread: opening the container,
decoding the primary image to its native YCbCr planes (HEVC and the grid assembled), the same
to interleaved RGB (so the difference is the colour conversion), one grid tile, each embedded
thumbnail; then pillow-heif's own open + load, and `analyse_file` (whose excess over pillow-heif
is everything after decoding: reductions, hashes, colours, digest, report thumbnail; where
`analyse_file` takes an embedded thumbnail, shares are of the full decode instead).
CPU time (process_time), median of --repeat, stages alternated.

Usage: .venv/bin/python benchmarks/heic_profile.py FILE... [--repeat 5]
"""

from __future__ import annotations

import argparse
import ctypes
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pillow_heif
from PIL import Image

from medianalysed.analysis import AnalysisSettings, analyse_file

LIBS = Path(pillow_heif.__file__).resolve().parent.parent / "pillow_heif.libs"
COLORSPACE_UNDEFINED, CHROMA_UNDEFINED = 99, 99
COLORSPACE_RGB, CHROMA_INTERLEAVED_RGB = 1, 10


class HeifError(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("subcode", ctypes.c_int), ("message", ctypes.c_char_p)]


def load_libheif() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(next(LIBS.glob("libheif*.so*"))))
    lib.heif_context_alloc.restype = ctypes.c_void_p
    for name in (
        "heif_context_read_from_memory_without_copy",
        "heif_context_get_primary_image_handle",
        "heif_decode_image",
        "heif_image_handle_decode_image_tile",
        "heif_image_handle_get_thumbnail",
    ):
        getattr(lib, name).restype = HeifError
    lib.heif_context_read_from_memory_without_copy.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_void_p,
    ]
    lib.heif_context_get_primary_image_handle.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.heif_context_set_max_decoding_threads.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.heif_decode_image.argtypes = (
        [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int] * 2 + [ctypes.c_void_p]
    )
    lib.heif_image_handle_decode_image_tile.argtypes = (
        [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int] * 2 + [ctypes.c_void_p]
    ) + [ctypes.c_uint32] * 2
    lib.heif_image_handle_get_number_of_thumbnails.argtypes = [ctypes.c_void_p]
    lib.heif_image_handle_get_list_of_thumbnail_IDs.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
    ]
    lib.heif_image_handle_get_thumbnail.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_void_p,
    ]
    for name in ("heif_image_handle_get_width", "heif_image_handle_get_height"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    for name in ("heif_image_release", "heif_image_handle_release", "heif_context_free"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    return lib


def check(error: HeifError) -> None:
    if error.code:
        raise RuntimeError(f"libheif: {error.message!r}")


class Container:
    """One file opened by libheif (single-threaded decoding), its primary handle."""

    def __init__(self, lib: ctypes.CDLL, data: bytes) -> None:
        self.lib, self.data = lib, data
        self.context = lib.heif_context_alloc()
        lib.heif_context_set_max_decoding_threads(self.context, 1)
        check(lib.heif_context_read_from_memory_without_copy(self.context, data, len(data), None))
        self.handle = ctypes.c_void_p()
        check(lib.heif_context_get_primary_image_handle(self.context, ctypes.byref(self.handle)))

    def close(self) -> None:
        self.lib.heif_image_handle_release(self.handle)
        self.lib.heif_context_free(self.context)

    def thumbnails(self) -> list[ctypes.c_void_p]:
        count = self.lib.heif_image_handle_get_number_of_thumbnails(self.handle)
        ids = (ctypes.c_uint32 * max(1, count))()
        self.lib.heif_image_handle_get_list_of_thumbnail_IDs(self.handle, ids, count)
        handles = []
        for item in ids[:count]:
            handle = ctypes.c_void_p()
            check(self.lib.heif_image_handle_get_thumbnail(self.handle, item, ctypes.byref(handle)))
            handles.append(handle)
        return handles

    def size(self, handle: ctypes.c_void_p) -> tuple[int, int]:
        lib = self.lib
        return lib.heif_image_handle_get_width(handle), lib.heif_image_handle_get_height(handle)

    def decode(self, handle: ctypes.c_void_p, *, rgb: bool) -> None:
        image = ctypes.c_void_p()
        space, chroma = (
            (COLORSPACE_RGB, CHROMA_INTERLEAVED_RGB) if rgb else (COLORSPACE_UNDEFINED, 99)
        )
        check(self.lib.heif_decode_image(handle, ctypes.byref(image), space, chroma, None))
        self.lib.heif_image_release(image)

    def decode_tile(self) -> None:
        image = ctypes.c_void_p()
        check(
            self.lib.heif_image_handle_decode_image_tile(
                self.handle, ctypes.byref(image), COLORSPACE_UNDEFINED, 99, None, 0, 0
            )
        )
        self.lib.heif_image_release(image)


def cpu_ms(function: Callable[[], object]) -> float:
    started = time.process_time()
    function()
    return 1000 * (time.process_time() - started)


def print_share(name: str, value: float, total: float) -> None:
    print(f"  {name:45s} {value:8.1f}  {100 * value / total:5.1f} %")


def profile(path: Path, lib: ctypes.CDLL, repeat: int) -> None:
    data = path.read_bytes()
    probe = Container(lib, data)
    full = probe.size(probe.handle)
    thumbs = {f"thumbnail {probe.size(t)[0]}x{probe.size(t)[1]}": t for t in probe.thumbnails()}
    with Image.open(io.BytesIO(data)) as opened:
        tiling = opened.info.get("tiling") or {}
    tiles = int(tiling.get("num_columns", 1)) * int(tiling.get("num_rows", 1))

    def opened_container() -> None:
        Container(lib, data).close()

    def pillow_heif_load() -> None:
        with Image.open(io.BytesIO(data)) as image:
            image.load()

    stages: dict[str, Callable[[], object]] = {
        "open container": opened_container,
        "decode to native YCbCr (HEVC)": lambda: probe.decode(probe.handle, rgb=False),
        "decode to RGB (HEVC + YCbCr->RGB)": lambda: probe.decode(probe.handle, rgb=True),
        "pillow-heif open + load (Pillow image)": pillow_heif_load,
        "analyse_file (everything)": lambda: analyse_file(path, AnalysisSettings()),
    }
    if tiles > 1:
        stages[f"one grid tile, native (of {tiles})"] = probe.decode_tile
    for name, handle in thumbs.items():
        stages[name + ", RGB"] = lambda handle=handle: probe.decode(handle, rgb=True)
    samples: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(repeat):
        for name, function in stages.items():
            samples[name].append(cpu_ms(function))
    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"\n{path.name}: {full[0]}x{full[1]}, {tiles} tile(s), CPU ms, median of {repeat}")
    total = median["analyse_file (everything)"]
    full_decode = median["pillow-heif open + load (Pillow image)"]
    if total < full_decode:  # analyse_file took an embedded thumbnail: shares of the full decode
        print(f"  (analyse_file used a thumbnail: {full_decode / total:.1f}x less CPU)")
        total = full_decode
    for name, value in median.items():
        print_share(name, value, total)
    native = median["decode to native YCbCr (HEVC)"]
    rgb = median["decode to RGB (HEVC + YCbCr->RGB)"]
    print_share("=> YCbCr->RGB (difference)", rgb - native, total)
    if total > full_decode:
        print_share("=> after decoding (analyse - pillow-heif)", total - full_decode, total)
    probe.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    pillow_heif.options.DECODE_THREADS = 1
    lib = load_libheif()
    for path in args.files:
        profile(path, lib, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
