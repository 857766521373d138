"""Benchmark harness: medianalysed's analysis against a naive loop, imagededup and a decode floor.

Every method reads the same file list (benchmarks/data/set/, built by fetch_photos.py) in its own
child process, so each gets a clean interpreter and its own peak-RSS figures:

- ``cli``        `medianalysed analyze FILES --out DIR` end to end, ``[processing] workers = 2``
- ``engine``     `analyse_file` in a 2-process pebble pool (engine cost without the CLI)
- ``engine-pillow`` the same with ``vips=False``: Pillow decodes every PNG and TIFF too
- ``naive``      one process: sha256, full decode, exif_transpose, five imagehash hashes
- ``imagededup`` `PHash().encode_images(image_dir=SET)` with its own multiprocessing
- ``floor``      2 processes: read the file and decode it as cheaply as possible
                 (JPEG: draft to 1/8 scale; PNG: plain load)

Usage: python benchmarks/run.py [--methods floor,engine,...] [--workers 2] [--repeat 3]
Writes benchmarks/results/latest.md and latest.json and prints the same table.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import hashlib
import importlib
import io
import json
import os
import platform
import resource
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from procs import process_tree

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
SET_DIR = BENCH_DIR / "data" / "set"
RESULTS_DIR = BENCH_DIR / "results"
METHODS = ("floor", "engine", "engine-pillow", "cli", "imagededup", "naive")
CHILD_TIMEOUT_SECONDS = 1800
RSS_SAMPLE_SECONDS = 0.05
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

TARGETS = {"floor": 0.85, "naive": 20.0, "imagededup": 2.5}
END_TO_END_TARGET = 0.9  # the CLI's wall time against the floor's whole process


# --------------------------------------------------------------------------- child side
# Each `run_*` below runs inside `run.py --child METHOD`; it returns the timed section's
# figures, and never includes interpreter start-up or module imports in `timed_seconds`.


def floor_one(path: str) -> tuple[str, bool]:
    """Read one file and decode it as cheaply as Pillow allows; (format, ok)."""
    from PIL import Image

    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format or "?"
            if fmt == "JPEG":
                width, height = image.size
                image.draft("RGB", (width // 8, height // 8))
            image.load()
    except (OSError, ValueError):
        return "error", False
    return fmt, True


def run_floor(files: list[str], workers: int, set_dir: Path) -> dict[str, Any]:
    """The floor: read + draft decode in a `workers`-process pool."""
    del set_dir
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(floor_one, files, chunksize=4))
    timed = time.perf_counter() - started
    formats = [fmt for fmt, ok in outcomes if ok]
    return {
        "timed_seconds": timed,
        "ok": len(formats),
        "errors": len(outcomes) - len(formats),
        "detail": {f: formats.count(f) for f in sorted(set(formats))},
    }


def run_engine(
    files: list[str], workers: int, set_dir: Path, *, vips: bool = True
) -> dict[str, Any]:
    """`analyse_file` with default settings in a `workers`-process pebble pool."""
    del set_dir
    pebble = importlib.import_module("pebble")
    analysis = importlib.import_module("medianalysed.analysis")
    settings = analysis.AnalysisSettings(vips=vips)
    task = functools.partial(analysis.analyse_file, settings=settings)
    started = time.perf_counter()
    errors: list[str] = []
    with pebble.ProcessPool(max_workers=workers) as pool:
        futures = [pool.schedule(task, args=(Path(f),)) for f in files]
        for future in futures:
            try:
                future.result()
            except Exception as exc:  # counted and reported, never hidden
                errors.append(f"{type(exc).__name__}: {exc}")
    timed = time.perf_counter() - started
    # The workers have exited and been reaped: their CPU time, steadier than wall time on a
    # machine other work shares (and fair to a worker that runs a second thread).
    workers_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "timed_seconds": timed,
        "ok": len(files) - len(errors),
        "errors": len(errors),
        "detail": {
            "first_errors": errors[:3],
            "workers_cpu_seconds": round(workers_cpu.ru_utime + workers_cpu.ru_stime, 2),
        },
    }


def naive_one(path: str) -> None:
    """The naive per-file work: sha256, full decode, exif_transpose, five hashes on it all."""
    import imagehash
    from PIL import Image, ImageOps

    hashlib.sha256(Path(path).read_bytes()).hexdigest()
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        image.load()
        for hash_function in (
            imagehash.average_hash,
            imagehash.phash,
            imagehash.dhash,
            imagehash.whash,
            imagehash.colorhash,
        ):
            hash_function(image)


def run_naive(files: list[str], workers: int, set_dir: Path) -> dict[str, Any]:
    """The naive baseline, single process, whatever `workers` says."""
    del workers, set_dir
    importlib.import_module("imagehash")
    started = time.perf_counter()
    errors = 0
    for path in files:
        try:
            naive_one(path)
        except (OSError, ValueError):
            errors += 1
    timed = time.perf_counter() - started
    return {"timed_seconds": timed, "ok": len(files) - errors, "errors": errors, "detail": {}}


def run_imagededup(files: list[str], workers: int, set_dir: Path) -> dict[str, Any]:
    """imagededup's PHash over the whole folder, with its default worker count."""
    del workers
    methods = importlib.import_module("imagededup.methods")
    hasher = methods.PHash(verbose=False)
    started = time.perf_counter()
    encodings = hasher.encode_images(image_dir=str(set_dir))
    timed = time.perf_counter() - started
    encoded = sum(1 for value in encodings.values() if value)
    return {
        "timed_seconds": timed,
        "ok": encoded,
        "errors": len(files) - encoded,
        "detail": {"num_enc_workers": os.cpu_count()},
    }


CHILD_RUNNERS: dict[str, Callable[[list[str], int, Path], dict[str, Any]]] = {
    "floor": run_floor,
    "engine": run_engine,
    "engine-pillow": functools.partial(run_engine, vips=False),
    "naive": run_naive,
    "imagededup": run_imagededup,
}


def child_main(method: str, list_file: Path, result_file: Path, workers: int) -> int:
    """Entry point of `run.py --child`: run one method and write its figures as JSON."""
    files = list_file.read_text().splitlines()
    figures = CHILD_RUNNERS[method](files, workers, Path(files[0]).parent)
    result_file.write_text(json.dumps(figures))
    return 0


# --------------------------------------------------------------------------- parent side


@dataclass
class Row:
    """One method's line in the results table."""

    method: str
    description: str
    available: bool = True
    reason: str = ""
    images: int = 0
    ok: int = 0
    errors: int = 0
    timed_seconds: float = 0.0
    process_seconds: float = 0.0
    peak_tree_rss_mb: float = 0.0
    max_process_rss_mb: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        """Throughput over the timed section."""
        return self.ok / self.timed_seconds if self.timed_seconds else 0.0


def tree_rss_bytes(root: int) -> int:
    """Summed resident memory of a process tree (RSS pages from /proc/PID/statm)."""
    total = 0
    for pid in process_tree(root):
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            continue
    return total


class TreeRssSampler(threading.Thread):
    """Polls a process tree's summed RSS until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        """Sample until `stopped` is set."""
        while not self.stopped.wait(RSS_SAMPLE_SECONDS):
            self.peak = max(self.peak, tree_rss_bytes(self.pid))


@dataclass
class Measured:
    """What the parent sees of one child process."""

    returncode: int
    wall_seconds: float
    peak_tree_rss: int
    max_rss: int
    stderr_tail: str
    first_open_seconds: float | None = None  # first file of `watch` opened, from the start


class FirstOpen(threading.Thread):
    """inotify on one folder: when a file in it is first opened (the first image a worker
    takes: enumeration lists and stats, only workers open)."""

    IN_OPEN, IN_ISDIR, IN_NONBLOCK, IN_CLOEXEC = 0x20, 0x40000000, 0o4000, 0o2000000

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.inotify_init1(self.IN_NONBLOCK | self.IN_CLOEXEC)
        if (
            self._fd < 0
            or self._libc.inotify_add_watch(self._fd, str(folder).encode(), self.IN_OPEN) < 0
        ):
            raise OSError(ctypes.get_errno(), f"inotify on {folder}")
        self.at: float | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        """Poll until a file is opened or `stopped` is set."""
        try:
            while self.at is None and not self.stopped.is_set():
                if not select.select([self._fd], [], [], 0.05)[0]:
                    continue
                now = time.perf_counter()
                data = os.read(self._fd, 65536)
                offset = 0
                while offset < len(data):
                    _wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                    offset += 16 + length
                    if not mask & self.IN_ISDIR:
                        self.at = now
        finally:
            os.close(self._fd)


def measure(
    command: list[str], env: dict[str, str], log: Path, watch: Path | None = None
) -> Measured:
    """Run `command`, timing it and tracking its tree's peak RSS and its max single RSS
    (and, with `watch`, when the first file of that folder was opened)."""
    first_open = FirstOpen(watch) if watch is not None else None
    if first_open is not None:
        first_open.start()
    with log.open("wb") as log_file:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        sampler = TreeRssSampler(process.pid)
        sampler.start()
        deadline = started + CHILD_TIMEOUT_SECONDS
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
            time.sleep(0.02)
        wall = time.perf_counter() - started
        sampler.stopped.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)  # already reaped by wait4
    tail = log.read_text(errors="replace")[-1500:]
    opened = None
    if first_open is not None:
        first_open.stopped.set()
        first_open.join()
        opened = None if first_open.at is None else first_open.at - started
    # ru_maxrss is in KiB on Linux and covers the child and its waited-for descendants.
    return Measured(process.returncode, wall, sampler.peak, usage.ru_maxrss * 1024, tail, opened)


def command_works(command: list[str]) -> tuple[bool, str]:
    """Run a quick probe command; (worked, last line of its output if it did not)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if done.returncode == 0:
        return True, ""
    lines = (done.stderr or done.stdout).strip().splitlines()
    return False, lines[-1] if lines else f"exit {done.returncode}"


def medianalysed_executable() -> Path:
    """The `medianalysed` script installed beside this interpreter."""
    return Path(sys.executable).parent / "medianalysed"


def availability(method: str) -> tuple[bool, str]:
    """Whether a method can run in this environment, and why not."""
    probe_import = {
        "engine": "from medianalysed.analysis import analyse_file, AnalysisSettings",
        "engine-pillow": "from medianalysed.analysis import analyse_file, AnalysisSettings",
        "imagededup": "from imagededup.methods import PHash",
        "naive": "import imagehash",
        "floor": "import PIL",
    }
    if method == "cli":
        works, reason = command_works([str(medianalysed_executable()), "analyze", "--help"])
        if not works:
            return works, reason
        # `analyze --help` does not import the engine; the daemon it starts does.
        return command_works([sys.executable, "-c", "import medianalysed.app"])
    return command_works([sys.executable, "-c", probe_import[method]])


def cli_config(workdir: Path, workers: int) -> Path:
    """A minimal config for `medianalysed analyze`: the worker count and a private state dir."""
    config = workdir / "bench.toml"
    state = workdir / "state"
    state.mkdir()
    config.write_text(f'[daemon]\nstate_dir = "{state}"\n\n[processing]\nworkers = {workers}\n')
    return config


def cli_command(set_dir: Path, out: Path, config: Path) -> list[str]:
    """`medianalysed analyze SET --out OUT` (one batch, as a dropped folder), with --config."""
    exe = str(medianalysed_executable())
    help_text = subprocess.run(
        [exe, "analyze", "--help"], capture_output=True, text=True, check=False
    ).stdout
    config_args = ["--config", str(config)] if "--config" in help_text else []
    return [exe, "analyze", str(set_dir), "--out", str(out), *config_args]


def cli_outcomes(out: Path) -> dict[str, int]:
    """Count the per-image statuses in the results.jsonl files the CLI wrote."""
    statuses: dict[str, int] = {}
    for results in out.glob("*/results.jsonl"):
        for line in results.read_text().splitlines():
            status = json.loads(line).get("status", "?")
            statuses[status] = statuses.get(status, 0) + 1
    return statuses


def run_cli(row: Row, files: list[str], workers: int, workdir: Path) -> None:
    """Time the CLI end to end (its wall time is the timed section)."""
    out = workdir / "cli-out"
    config = cli_config(workdir, workers)
    env = {**os.environ, "MEDIANALYSED_CONFIG": str(config)}
    command = cli_command(Path(files[0]).parent, out, config)
    measured = measure(command, env, workdir / "cli.log", watch=Path(files[0]).parent)
    statuses = cli_outcomes(out)
    row.timed_seconds = row.process_seconds = measured.wall_seconds
    row.peak_tree_rss_mb = measured.peak_tree_rss / 1e6
    row.max_process_rss_mb = measured.max_rss / 1e6
    row.detail = {
        "exit": measured.returncode,
        "statuses": statuses,
        "first_image_s": measured.first_open_seconds,
    }
    row.ok = statuses.get("done", 0)
    row.errors = len(files) - row.ok
    if measured.returncode != 0:
        row.reason = f"exit {measured.returncode}: {measured.stderr_tail.strip()[-300:]}"


def run_child(row: Row, list_file: Path, workers: int, workdir: Path) -> None:
    """Time one in-process method in its own `run.py --child` process."""
    result_file = workdir / f"{row.method}.json"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        row.method,
        "--list",
        str(list_file),
        "--result",
        str(result_file),
        "--workers",
        str(workers),
    ]
    measured = measure(command, dict(os.environ), workdir / f"{row.method}.log")
    row.process_seconds = measured.wall_seconds
    row.peak_tree_rss_mb = measured.peak_tree_rss / 1e6
    row.max_process_rss_mb = measured.max_rss / 1e6
    if measured.returncode != 0 or not result_file.exists():
        row.available = False
        row.reason = f"failed (exit {measured.returncode}): {measured.stderr_tail.strip()[-300:]}"
        return
    figures = json.loads(result_file.read_text())
    row.timed_seconds = figures["timed_seconds"]
    row.ok, row.errors, row.detail = figures["ok"], figures["errors"], figures["detail"]


DESCRIPTIONS = {
    "cli": "medianalysed analyze SET (CLI end to end, {w} workers)",
    "engine": "analyse_file in a {w}-process pebble pool",
    "engine-pillow": "the same, [processing] vips = false (Pillow decodes every file)",
    "naive": "naive: 1 process, full decode + 5 imagehash + sha256",
    "imagededup": "imagededup PHash.encode_images (own multiprocessing)",
    "floor": "floor: read + JPEG draft 1/8 decode, {w} processes",
}


def benchmark(
    methods: Iterable[str], files: list[str], workers: int, repeat: int, naive_repeat: int
) -> list[Row]:
    """Run the methods in alternation, `repeat` rounds (naive: its first `naive_repeat`), on
    `files`; keep each method's median run. Alternating spreads the machine's noise evenly."""
    available: dict[str, str] = {}
    unavailable: dict[str, Row] = {}
    for method in methods:
        description = DESCRIPTIONS[method].format(w=workers)
        works, reason = availability(method)
        if works:
            available[method] = description
        else:
            unavailable[method] = Row(method, description, available=False, reason=reason)
            print(f"bench: {method:<10} not available: {reason}", flush=True)
    runs: dict[str, list[Row]] = {method: [] for method in available}
    with tempfile.TemporaryDirectory(prefix="medianalysed-bench-") as tmp:
        list_file = Path(tmp) / "files.txt"
        list_file.write_text("\n".join(files) + "\n")
        for attempt in range(max(repeat, naive_repeat)):
            for method, description in available.items():
                if attempt >= (naive_repeat if method == "naive" else repeat):
                    continue
                workdir = Path(tmp) / f"{method}-{attempt}"
                workdir.mkdir()
                row = Row(method, description, images=len(files))
                if method == "cli":
                    run_cli(row, files, workers, workdir)
                else:
                    run_child(row, list_file, workers, workdir)
                runs[method].append(row)
                print(f"bench: {method:<10} {summary(row)}", flush=True)
    rows = []
    for method in methods:
        if method in unavailable:
            rows.append(unavailable[method])
            continue
        ordered = sorted(runs[method], key=lambda r: r.timed_seconds)
        rows.append(ordered[len(ordered) // 2])
    return rows


def summary(row: Row) -> str:
    """One progress line for a finished run."""
    if not row.available:
        return f"FAILED {row.reason}"
    first = row.detail.get("first_image_s")
    return (
        f"{row.ok}/{row.images} ok in {row.timed_seconds:.2f} s "
        f"({row.images_per_second:.1f} img/s; process {row.process_seconds:.2f} s"
        + (f", first image at {first:.3f} s" if first is not None else "")
        + f"), peak tree RSS {row.peak_tree_rss_mb:.0f} MB"
    )


def warm_page_cache(files: list[str]) -> dict[str, float]:
    """Read every file once so no method pays for the first disk read."""
    started = time.perf_counter()
    total = sum(len(Path(f).read_bytes()) for f in files)
    return {"seconds": time.perf_counter() - started, "megabytes": total / 1e6}


def describe_set(files: list[str]) -> dict[str, Any]:
    """Counts, formats, sizes and megapixels of the photo set."""
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()  # a HEIC set (heic_set.py)

    formats: dict[str, int] = {}
    megapixels = []
    for path in files:
        with Image.open(path) as image:
            formats[image.format or "?"] = formats.get(image.format or "?", 0) + 1
            megapixels.append(image.size[0] * image.size[1] / 1e6)
    manifest = Path(files[0]).parent.parent / "set.json"
    photos = json.loads(manifest.read_text())["unique"] if manifest.exists() else len(files)
    return {
        "files": len(files),
        "unique_photos": photos,
        "formats": formats,
        "megabytes": sum(os.path.getsize(p) for p in files) / 1e6,
        "megapixels_min": min(megapixels),
        "megapixels_median": statistics.median(megapixels),
        "megapixels_max": max(megapixels),
    }


def package_version(name: str) -> str:
    """Installed version of a distribution, or 'not installed'."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, Python, Pillow and friends."""
    from PIL import features

    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    return {
        "cpu_model": cpu_model,
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gb": round(os.sysconf("SC_PHYS_PAGES") * PAGE_SIZE / 2**30, 1),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "pillow": package_version("pillow"),
        "libjpeg_turbo": features.version("libjpeg_turbo") or "no",
        "imagehash": package_version("ImageHash"),
        "numpy": package_version("numpy"),
        "pebble": package_version("Pebble"),
        "imagededup": package_version("imagededup"),
        "torch": package_version("torch"),
        "medianalysed": package_version("medianalysed"),
        "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")},
    }


def ratios(rows: list[Row]) -> list[dict[str, Any]]:
    """Each analysis row's throughput against floor, naive and imagededup, with targets."""
    by_method = {r.method: r for r in rows if r.available and r.ok and not r.errors}
    found = []
    for full in ("cli", "engine"):
        if full not in by_method:
            continue
        for other, target in TARGETS.items():
            if other not in by_method:
                continue
            value = by_method[full].images_per_second / by_method[other].images_per_second
            found.append(
                {"full": full, "versus": other, "ratio": value, "target": target}
                | {"met": value >= target}
            )
    if "cli" in by_method and "floor" in by_method:
        # Both whole processes: interpreter start-up, imports and pool start included.
        value = by_method["floor"].process_seconds / by_method["cli"].timed_seconds
        found.append(
            {"full": "cli", "versus": "floor end to end", "ratio": value}
            | {"target": END_TO_END_TARGET, "met": value >= END_TO_END_TARGET}
        )
    return found


def markdown(report: dict[str, Any], rows: list[Row]) -> str:
    """The results as a Markdown document."""
    machine, photo_set = report["machine"], report["photo_set"]
    lines = [
        "# medianalysed benchmark",
        "",
        f"Run {report['date']} with `{report['command']}`.",
        "",
        f"Machine: {machine['cpu_model']}, nproc {machine['nproc']}, {machine['memory_gb']} GiB, "
        f"Linux {machine['kernel']}, load average at start {machine['load_average_at_start']}; "
        f"Python {machine['python']}, Pillow {machine['pillow']} "
        f"(libjpeg-turbo {machine['libjpeg_turbo']}), ImageHash {machine['imagehash']}, "
        f"numpy {machine['numpy']}, imagededup {machine['imagededup']}, torch {machine['torch']}, "
        f"medianalysed {machine['medianalysed']}.",
        "",
        f"Photo set: {photo_set['files']} files ({photo_set['formats']}, "
        f"{photo_set['megabytes']:.0f} MB, {photo_set['megapixels_min']:.1f}/"
        f"{photo_set['megapixels_median']:.1f}/{photo_set['megapixels_max']:.1f} MP "
        f"min/median/max) from {photo_set['unique_photos']} real photographs (Debian wallpaper "
        "packages + the exif-samples corpus), each present as itself and as byte-level variants "
        "with a JPEG comment added (same pixels, distinct sha256, so no content cache can serve "
        "a repeat).",
        "",
        f"Warm-up: every file read once into the page cache before timing "
        f"({report['warmup']['megabytes']:.0f} MB in {report['warmup']['seconds']:.2f} s). "
        f"Each method then ran {report['repeat']}x (naive: {report['naive_repeat']}x), median "
        "run kept, on the same file list.",
        "",
        "| method | ok/files | timed s | images/s | process s | peak tree RSS MB "
        "| max 1-proc RSS MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        if not row.available:
            lines.append(f"| {row.description} | not available | | | | | |")
            continue
        lines.append(
            f"| {row.description} | {row.ok}/{row.images} | {row.timed_seconds:.2f} "
            f"| {row.images_per_second:.1f} | {row.process_seconds:.2f} "
            f"| {row.peak_tree_rss_mb:.0f} | {row.max_process_rss_mb:.0f} |"
        )
    lines += ["", "| ratio (images/s) | value | target | met |", "| --- | ---: | ---: | --- |"]
    for ratio in report["ratios"]:
        lines.append(
            f"| {ratio['full']} / {ratio['versus']} | {ratio['ratio']:.2f}x "
            f"| >= {ratio['target']}x | {'yes' if ratio['met'] else 'NO'} |"
        )
    if not report["ratios"]:
        lines.append("| (no analysis row available) | | | |")
    lines += [
        "",
        "timed s: the measured section (CLI: the whole command; others: from pool start to the "
        "last result, without interpreter start-up and imports). process s: the whole child "
        "process. peak tree RSS: summed RSS of the process and its descendants, sampled every "
        f"{RSS_SAMPLE_SECONDS * 1000:.0f} ms from /proc. max 1-proc RSS: ru_maxrss from wait4 "
        "(largest single process in the tree).",
    ]
    notes = [f"- {r.method}: {r.reason}" for r in rows if r.reason]
    notes += [f"- {r.method} detail: {json.dumps(r.detail)}" for r in rows if r.detail]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def limited_set(set_dir: Path, limit: int) -> Path:
    """A folder beside `set_dir` holding hard links to its first `limit` files (sorted)."""
    target = set_dir.parent / f"{set_dir.name}-first{limit}"
    if target.exists():
        for old in target.iterdir():
            old.unlink()
    target.mkdir(exist_ok=True)
    for source in sorted(p for p in set_dir.iterdir() if p.is_file())[:limit]:
        os.link(source, target / source.name)
    return target


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options (the --child ones are internal)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="runs per method (median kept)")
    parser.add_argument("--naive-repeat", type=int, default=1, help="runs of the slow naive row")
    parser.add_argument("--set", type=Path, default=SET_DIR, help="folder of photos")
    parser.add_argument(
        "--limit", type=int, default=0, help="only the first N files of the set (a folder of links)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--child", choices=sorted(CHILD_RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--list", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """Run the benchmark (or, with --child, one method inside a child process)."""
    args = parse_args(argv)
    if args.child:
        return child_main(args.child, args.list, args.result, args.workers)
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        print(f"bench: unknown methods {sorted(unknown)}; known: {METHODS}", file=sys.stderr)
        return 2
    set_dir = limited_set(args.set, args.limit) if args.limit else args.set
    files = sorted(str(p) for p in set_dir.iterdir() if p.is_file())
    if not files:
        print(f"bench: no photos in {args.set}; run fetch_photos.py first", file=sys.stderr)
        return 1
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["benchmarks/run.py", *argv]),
        "machine": machine_info(),
        "photo_set": describe_set(files),
        "warmup": warm_page_cache(files),
        "repeat": args.repeat,
        "naive_repeat": args.naive_repeat,
        "workers": args.workers,
    }
    rows = benchmark(methods, files, args.workers, args.repeat, args.naive_repeat)
    report["rows"] = [{**asdict(r), "images_per_second": r.images_per_second} for r in rows]
    report["ratios"] = ratios(rows)
    text = markdown(report, rows)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "latest.md").write_text(text)
    (args.results / "latest.json").write_text(json.dumps(report, indent=1) + "\n")
    print()
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
