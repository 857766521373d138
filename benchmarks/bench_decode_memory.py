"""Peak memory of one analysis per hostile image kind (issue 15: decodes stay bounded).

Usage: .venv/bin/python benchmarks/bench_decode_memory.py [--side 10000] [--kinds a,b]
       [--dir DIR] [--max-worker-memory 2GB]

It writes each image once into DIR (default benchmarks/data/hostile/, reused by later runs),
then analyses each one in a fresh Python process with `run_job`, as a worker would (the same
memory limit the daemon's workers get), and reports that process's peak RSS (VmHWM), the
time, and the outcome (the error code, or the frames counted). The `baseline` row is a process
that only imports the analysis modules.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STRIP_ROWS = 256

CHILD = """
import json, sys, time
from pathlib import Path
from medianalysed.analysis import AnalysisSettings
from medianalysed.worker import WorkerJob, run_job
try:
    from medianalysed.worker import apply_memory_limit
except ImportError:  # code from before the limit existed, for "before" figures
    pass
else:
    apply_memory_limit(int(sys.argv[2]))
started = time.perf_counter()
path = sys.argv[1]
if path == "-":
    outcome = "imports only"
else:
    where = Path(path)
    if "file_path" in WorkerJob.__dataclass_fields__:  # code from before names by root/relpath
        job = WorkerJob(file_path=path, settings=AnalysisSettings(), content_dir=None)
    else:
        job = WorkerJob(root=str(where.parent), relpath=where.name,
                        settings=AnalysisSettings(), content_dir=None)
    done = run_job(job)
    if "result" in done:
        image = done["result"]["image"]
        capped = " (capped)" if image.get("frames_capped") else ""
        outcome = f"ok {image['mode']} frames={image['frames']}{capped}"
    else:
        outcome = f"{done['error']['code']}: {done['error']['message']}"
status = Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]
seconds = time.perf_counter() - started
print(json.dumps({"outcome": outcome, "seconds": seconds, "peak_kb": int(status)}))
"""


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def write_png(
    path: Path,
    size: tuple[int, int],
    header: tuple[int, int],
    rows: Callable[[int, int], bytes],
    extra: bytes = b"",
) -> None:
    """A PNG streamed strip by strip: (bit depth, colour type), rows(y0, y1) -> raw samples."""
    width, height = size
    depth, colour = header
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    compressor = zlib.compressobj(1)
    with path.open("wb") as out:
        out.write(PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + extra)
        for start in range(0, height, STRIP_ROWS):
            stop = min(height, start + STRIP_ROWS)
            strip = rows(start, stop)
            line = len(strip) // (stop - start)
            filtered = b"".join(
                b"\x00" + strip[i * line : (i + 1) * line] for i in range(stop - start)
            )
            out.write(png_chunk(b"IDAT", compressor.compress(filtered)))
        out.write(png_chunk(b"IDAT", compressor.flush()) + png_chunk(b"IEND", b""))


def gradient(width: int, channels: int, dtype: type[np.generic]) -> Callable[[int, int], bytes]:
    top = float(np.iinfo(dtype).max)  # type: ignore[type-var]

    def rows(start: int, stop: int) -> bytes:
        y, x = np.mgrid[start:stop, 0:width]
        values = ((x + y) % 4096) * (top / 4096)
        samples = np.repeat(values[..., None], channels, axis=2).astype(dtype)
        return samples.astype(samples.dtype.newbyteorder(">")).tobytes()

    return rows


def make_png16_gray(path: Path, side: int) -> None:
    write_png(path, (side, side), (16, 0), gradient(side, 1, np.uint16))


def make_png16_rgba(path: Path, side: int) -> None:
    write_png(path, (side, side), (16, 6), gradient(side, 4, np.uint16))


def make_png_palette(path: Path, side: int) -> None:
    palette = png_chunk(b"PLTE", bytes(range(256)) * 3)
    write_png(path, (side, side), (8, 3), gradient(side, 1, np.uint8), extra=palette)


def make_apng_frame_lie(path: Path, side: int) -> None:
    del side
    actl = png_chunk(b"acTL", struct.pack(">II", 2**31, 0))
    write_png(path, (64, 64), (8, 0), gradient(64, 1, np.uint8), extra=actl)


def make_tiff(mode: str) -> Callable[[Path, int], None]:
    def make(path: Path, side: int) -> None:
        height = side // 2  # TIFF kinds are half the area: Pillow builds them in memory
        if mode == "F":
            values = np.linspace(0, 1, side * height, dtype=np.float32).reshape(height, side)
            image = Image.fromarray(values, mode="F")
        elif mode == "I":
            values = np.arange(side * height, dtype=np.int32).reshape(height, side)
            image = Image.fromarray(values, mode="I")
        else:
            image = Image.linear_gradient("L").resize((side, height)).convert(mode)
        image.save(path, format="TIFF", compression="tiff_deflate")

    return make


KINDS: dict[str, tuple[str, Callable[[Path, int], None]]] = {
    "png16_gray": ("png", make_png16_gray),
    "png16_rgba": ("png", make_png16_rgba),
    "png_palette": ("png", make_png_palette),
    "apng_2e31_frames": ("png", make_apng_frame_lie),
    "tiff_float": ("tif", make_tiff("F")),
    "tiff_int32": ("tif", make_tiff("I")),
    "tiff_cmyk": ("tif", make_tiff("CMYK")),
    "tiff_lab": ("tif", make_tiff("LAB")),
}


def ensure(directory: Path, kind: str, side: int) -> Path:
    suffix, make = KINDS[kind]
    path = directory / f"{kind}-{side}.{suffix}"
    if not path.exists():
        started = time.perf_counter()
        partial = path.with_suffix(".part")
        make(partial, side)
        partial.rename(path)
        print(f"  wrote {path.name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return path


def measure(target: str, limit: int) -> tuple[int, dict[str, object]]:
    """Peak RSS (kB, its own VmHWM: ru_maxrss would count the parent's pages before exec) of a
    fresh process analysing `target`, and what it printed."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", CHILD, target, str(limit)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, cwd=REPO)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        return usage.ru_maxrss, {"outcome": f"exit {child.returncode}", "seconds": 0.0}
    report = dict(json.loads(output))
    return int(report["peak_kb"]), report


def rows_of(kinds: list[str], directory: Path, side: int, limit: int) -> Iterator[str]:
    peak, report = measure("-", limit)
    yield f"| baseline | - | {peak / 1024:.0f} | - | {report['outcome']} |"
    for kind in kinds:
        path = ensure(directory, kind, side)
        peak, report = measure(str(path), limit)
        size = path.stat().st_size / 2**20
        seconds = float(report["seconds"])  # type: ignore[arg-type]
        yield f"| {kind} | {size:.1f} | {peak / 1024:.0f} | {seconds:.2f} | {report['outcome']} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=10000)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--dir", type=Path, default=REPO / "benchmarks" / "data" / "hostile")
    parser.add_argument("--max-worker-memory", default="2GB")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "daemon"))
    from medianalysed.config import parse_size

    limit = parse_size(args.max_worker_memory) if args.max_worker_memory not in ("", "0") else 0
    args.dir.mkdir(parents=True, exist_ok=True)
    kinds = [kind for kind in args.kinds.split(",") if kind]
    print(f"side {args.side}, max_worker_memory {args.max_worker_memory}")
    print("| image | file MB | peak RSS MB | seconds | outcome |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows_of(kinds, args.dir, args.side, limit):
        print(row, flush=True)


if __name__ == "__main__":
    main()
