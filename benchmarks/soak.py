"""Soak: run the real daemon for a long time with batches arriving all the time, watch for leaks.

Usage: nice -n 19 .venv/bin/python benchmarks/soak.py [--minutes 30] [--interval-s 2]
       [--sample-s 15] [--workers 2] [--csv benchmarks/results/soak.csv]

Batches arrive every `--interval-s` seconds, cycling through kinds: good photos (each copy with
its own bytes, so the content cache does not answer), broken and hostile files from
/work/shared/corpora/pillow-edge, odd names (spaces, non-ASCII, a newline, invalid UTF-8,
200 characters, a leading dash), symlinks out of the batch, a FIFO, empty and truncated files,
a bad batch.toml, and loose files. Archived inputs are pruned as an operator would.

Every `--sample-s` seconds it records the daemon's RSS, open file descriptors, threads, the
worker processes' RSS, the SQLite files' sizes in the state directory, the batches finished
and in progress, and how long /healthz took, into a CSV. At the end it prints, per column,
the value after warm-up vs at the end and the least-squares slope per hour.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import random
import shutil
import signal
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from procs import descendants, free_port, open_fds, start_daemon, status_field

REPO = Path(__file__).resolve().parents[1]
CORPORA = Path(os.environ.get("MEDIANALYSED_CORPORA") or "/work/shared/corpora")
PHOTOS = CORPORA / "imagededup-testdata" / "base_images"
EDGE = CORPORA / "pillow-edge"
WARMUP_S = 60.0
ARCHIVE_KEEP_S = 30.0

COLUMNS = (
    "elapsed_s",
    "daemon_rss_mb",
    "workers_rss_mb",
    "fds",
    "threads",
    "sqlite_mb",
    "state_mb",
    "batches_dropped",
    "batches_finished",
    "batches_in_progress",
    "healthz_ms",
    "healthz_status",
)


# --- measuring ----------------------------------------------------------------------------


def tree_bytes(root: Path, keep: Callable[[Path], bool]) -> int:
    total = 0
    for path in root.rglob("*"):
        try:
            if path.is_file() and keep(path):
                total += path.stat().st_size
        except OSError:
            continue
    return total


def is_sqlite(path: Path) -> bool:
    return path.name.endswith((".db", ".db-wal", ".db-shm", ".sqlite", ".sqlite3"))


def scrape(port: int) -> dict[str, float]:
    wanted = ("medianalysed_batches_total", "medianalysed_batches_in_progress")
    values: dict[str, float] = dict.fromkeys(wanted, 0.0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    except OSError:
        return values
    for line in text.splitlines():
        for name in wanted:
            if line.startswith((name + "{", name + " ")):
                values[name] += float(line.rsplit(" ", 1)[1])
    return values


def healthz(port: int) -> tuple[float, int]:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
            status = reply.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        status = 0
    return (time.perf_counter() - started) * 1000, status


def sample(pid: int, port: int, state: Path, elapsed: float, dropped: int) -> dict[str, float]:
    metrics = scrape(port)
    took_ms, status = healthz(port)
    return {
        "elapsed_s": round(elapsed, 1),
        "daemon_rss_mb": round(status_field(pid, "VmRSS") / 1024, 1),
        "workers_rss_mb": round(sum(status_field(c, "VmRSS") for c in descendants(pid)) / 1024, 1),
        "fds": open_fds(pid),
        "threads": status_field(pid, "Threads"),
        "sqlite_mb": round(tree_bytes(state, is_sqlite) / 1e6, 2),
        "state_mb": round(tree_bytes(state, lambda _p: True) / 1e6, 2),
        "batches_dropped": dropped,
        "batches_finished": metrics["medianalysed_batches_total"],
        "batches_in_progress": metrics["medianalysed_batches_in_progress"],
        "healthz_ms": round(took_ms, 1),
        "healthz_status": status,
    }


# --- batches ------------------------------------------------------------------------------

ODD_NAMES = (
    "with space.jpg",
    "ünïcødé-名前.jpg",
    "-leading-dash.jpg",
    "a" * 200 + ".jpg",
    "new\nline.jpg",
    "tab\there.jpg",
    "quote'\"semi;colon.jpg",
)


def unique_copy(source: Path, target: Path, salt: int) -> None:
    # Bytes after the JPEG/PNG end marker: same picture, new sha256 (no content-cache hit).
    target.write_bytes(source.read_bytes() + b"soak%012d" % salt)


class BatchMaker:
    """Builds the next batch in a staging folder, cycling through the kinds."""

    KINDS = ("photos", "broken", "names", "junk", "loose")

    def __init__(self, staging: Path, kinds: tuple[str, ...] = KINDS, seed: int = 11) -> None:
        self._staging = staging
        self._rng = random.Random(seed)
        self._photos = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in {".jpg", ".png"})
        self._broken = sorted(p for p in (EDGE / "broken").rglob("*") if p.is_file())
        self._bombs = sorted(p for p in (EDGE / "bombs").rglob("*") if p.is_file())
        self._salt = itertools.count()
        order = ("photos", "broken", "names", "photos", "junk", "loose")
        self._kinds = itertools.cycle([getattr(self, kind) for kind in order if kind in kinds])

    def next(self, index: int) -> Path:
        return next(self._kinds)(index)

    def _folder(self, name: str) -> Path:
        folder = self._staging / name
        folder.mkdir(parents=True)
        return folder

    def _salted(self, folder: Path, count: int, names: Iterator[str] | None = None) -> None:
        for photo in self._rng.choices(self._photos, k=count):
            name = next(names) if names is not None else photo.name
            unique_copy(photo, folder / name, next(self._salt))

    def photos(self, index: int) -> Path:
        folder = self._folder(f"soak-{index:05d}-photos")
        self._salted(folder, 5)
        nested = folder / "sub" / "deeper"
        nested.mkdir(parents=True)
        self._salted(nested, 2)
        return folder

    def broken(self, index: int) -> Path:
        folder = self._folder(f"soak-{index:05d}-broken ünï")
        for path in self._rng.sample(self._broken, 6):
            shutil.copyfile(path, folder / f"{path.parent.name}-{path.name}")
        if index % 5 == 1:
            bomb = self._rng.choice(self._bombs)
            shutil.copyfile(bomb, folder / f"bomb-{bomb.name}")
        return folder

    def names(self, index: int) -> Path:
        folder = self._folder(f"soak-{index:05d}-names")
        self._salted(folder, len(ODD_NAMES), iter(ODD_NAMES))
        photo = self._rng.choice(self._photos)
        latin1 = Path(os.fsdecode(os.fsencode(folder) + b"/latin1-\xe9\xff.jpg"))
        unique_copy(photo, latin1, next(self._salt))
        os.symlink("/etc/passwd", folder / "outside.jpg")
        os.symlink("missing.jpg", folder / "dangling.jpg")
        os.mkfifo(folder / "fifo.jpg")
        return folder

    def junk(self, index: int) -> Path:
        folder = self._folder(f"soak-{index:05d}-junk")
        (folder / "empty.jpg").write_bytes(b"")
        (folder / "notes.txt").write_text("not an image\n")
        photo = self._rng.choice(self._photos).read_bytes()
        (folder / "truncated.jpg").write_bytes(photo[: len(photo) // 3])
        (folder / "random.png").write_bytes(self._rng.randbytes(5000))
        (folder / "batch.toml").write_text('priority = "high"\nunknown = 1\ntags = "x"\n')
        self._salted(folder, 2)
        return folder

    def loose(self, index: int) -> Path:
        folder = self._folder(f"loose-{index:05d}")
        photo = self._rng.choice(self._photos)
        unique_copy(photo, folder / f"loose-{index:05d} ö{photo.suffix}", next(self._salt))
        return folder  # the file inside is dropped on its own


def drop(built: Path, inbox: Path) -> None:
    if built.name.startswith("loose-"):
        (inside,) = built.iterdir()
        os.rename(inside, inbox / inside.name)
        built.rmdir()
        return
    (built / ".ready").touch()
    os.rename(built, inbox / built.name)


def prune_archive(archive: Path, keep_s: float) -> None:
    now = time.time()
    for entry in archive.iterdir():
        try:
            if now - entry.lstat().st_mtime < keep_s:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()
        except OSError:
            continue


# --- running ------------------------------------------------------------------------------


def write_config(root: Path, port: int, workers: int) -> Path:
    for name in ("inbox", "outbox", "archive", "staging"):
        (root / name).mkdir()
    config = root / "medianalysed.toml"
    config.write_text(
        f'[daemon]\nstate_dir = "state"\nlog_level = "info"\n'
        f"[processing]\nworkers = {workers}\nimage_timeout_seconds = 10\n"
        "retry_backoff_seconds = [1, 2, 4]\n"
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
        '[[inbox]]\npath = "inbox"\noutbox = "outbox"\narchive = "archive"\n'
        "settle_seconds = 1\nrescan_seconds = 30\n",
        encoding="utf-8",
    )
    return config


def slope_per_hour(rows: list[dict[str, float]], column: str) -> float:
    xs = [row["elapsed_s"] / 3600 for row in rows]
    ys = [float(row[column]) for row in rows]
    if len(xs) < 2:
        return 0.0
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var


def summarise(rows: list[dict[str, float]]) -> str:
    steady = [row for row in rows if row["elapsed_s"] >= WARMUP_S] or rows
    first, last = steady[0], steady[-1]
    parts = []
    for column in ("daemon_rss_mb", "workers_rss_mb", "fds", "threads", "sqlite_mb"):
        parts.append(
            f"{column} {first[column]} -> {last[column]} ({slope_per_hour(steady, column):+.1f}/h)"
        )
    worst = max(row["healthz_ms"] for row in rows)
    unhealthy = sum(1 for row in rows if row["healthz_status"] != 200)
    return (
        f"soak {rows[-1]['elapsed_s'] / 60:.1f} min, {int(last['batches_dropped'])} batches "
        f"dropped, {int(last['batches_finished'])} finished; after {WARMUP_S:.0f} s warm-up: "
        + "; ".join(parts)
        + f"; /healthz worst {worst:.0f} ms, {unhealthy} non-200 of {len(rows)}"
    )


def run(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="medianalysed-soak-"))
    port = free_port()
    config = write_config(root, port, args.workers)
    log = (root / "daemon.log").open("wb")
    process = start_daemon(config, log)
    maker = BatchMaker(root / "staging", tuple(args.kinds.split(",")))
    rows: list[dict[str, float]] = []
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    end = started + args.minutes * 60
    next_batch = next_sample = started + 2
    dropped = 0
    exit_note = ""
    try:
        with args.csv.open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=COLUMNS)
            writer.writeheader()
            while (now := time.monotonic()) < end:
                if process.poll() is not None:
                    exit_note = f"daemon exited with {process.returncode}"
                    break
                if now >= next_batch:
                    drop(maker.next(dropped), root / "inbox")
                    dropped += 1
                    next_batch += args.interval_s
                    prune_archive(root / "archive", ARCHIVE_KEEP_S)
                if now >= next_sample:
                    row = sample(process.pid, port, root / "state", now - started, dropped)
                    rows.append(row)
                    writer.writerow(row)
                    out.flush()
                    next_sample += args.sample_s
                time.sleep(max(0.0, min(next_batch, next_sample) - time.monotonic()))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
        log.close()
    errors = sum(1 for line in (root / "daemon.log").open("rb") if b" ERROR " in line)
    tracebacks = (root / "daemon.log").read_bytes().count(b"Traceback")
    print(
        f"csv: {args.csv}; log: {root / 'daemon.log'}; "
        f"{errors} ERROR lines, {tracebacks} tracebacks"
    )
    if exit_note:
        print(exit_note)
    if rows:
        line = summarise(rows)
        print(line)
        (args.csv.with_suffix(".summary.json")).write_text(
            json.dumps({"summary": line, "last": rows[-1]}, indent=2) + "\n", encoding="utf-8"
        )
    if not args.keep:
        shutil.rmtree(root / "archive", ignore_errors=True)
    return 1 if exit_note else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval-s", type=float, default=2.0, help="seconds between batches")
    parser.add_argument("--sample-s", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--csv", type=Path, default=REPO / "benchmarks" / "results" / "soak.csv")
    parser.add_argument("--keep", action="store_true", help="keep the archive of the run")
    parser.add_argument(
        "--kinds",
        default=",".join(BatchMaker.KINDS),
        help=f"batch kinds to cycle through (default: all of {', '.join(BatchMaker.KINDS)})",
    )
    raise SystemExit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
