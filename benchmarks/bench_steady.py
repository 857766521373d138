"""The daemon's steady state on large batches of real photos, against the decode floor.

Builds data/steady-N/ (git-ignored, kept): N files cycling through the bench photos
(fetch_photos.py), each a byte-level variant with its own sha256 so that no content cache
serves a repeat. Then alternates, --rounds times, on the same files:

- ``floor``: run.py's floor (read + JPEG draft 1/8 decode, --workers processes)
- ``daemon``: a running `medianalysed run` (ready before the drop), the folder dropped as one
  batch; timed from the drop to its summary.json (settling excluded: settle_seconds = 0)

and prints images/s of each and their ratio (SPEC target for large batches: >= 0.95x).

Usage: nice -n 19 .venv/bin/python benchmarks/bench_steady.py --images 1000 [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from fetch_photos import PHOTO_DIR, variant_bytes  # noqa: E402
from procs import cpu_seconds, start_daemon, wait_until  # noqa: E402
from run import run_floor  # noqa: E402

READY_DEADLINE_S = 120
BATCH_DEADLINE_S = 7200


def build_set(count: int) -> Path:
    """data/steady-COUNT/ with `count` distinct variants of the photos (made once)."""
    target = BENCH_DIR / "data" / f"steady-{count}"
    photos = sorted(PHOTO_DIR.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"steady: no photos in {PHOTO_DIR}; run fetch_photos.py first")
    if target.is_dir() and len(list(target.iterdir())) == count:
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for index in range(count):
        photo = photos[index % len(photos)]
        # Round 1 onwards: fetch_photos' own variants start at 1 (0 is the photo itself).
        data = variant_bytes(photo, 1000 + index // len(photos))
        (target / f"s{index:06d}-{photo.name}").write_bytes(data)
    return target


def daemon_round(files: Path, workers: int) -> tuple[float, float]:
    """Seconds from dropping `files` (as one batch) into a ready daemon to its summary, and
    the CPU seconds the daemon process itself (actors, state, outbox; not the workers) spent
    on it."""
    root = Path(tempfile.mkdtemp(prefix="medianalysed-steady-"))
    try:
        for name in ("inbox", "outbox", "archive", "staging"):
            (root / name).mkdir()
        batch = root / "staging" / "batch"
        batch.mkdir()
        for source in files.iterdir():
            os.link(source, batch / source.name)
        (batch / ".ready").touch()
        config = root / "medianalysed.toml"
        config.write_text(
            '[daemon]\nstate_dir = "state"\nlog_level = "info"\n'
            f"[processing]\nworkers = {workers}\n"
            '[metrics]\nlisten = ""\n[[inbox]]\npath = "inbox"\noutbox = "outbox"\n'
            'archive = "archive"\nsettle_seconds = 0\non_complete = "keep"\n',
            encoding="utf-8",
        )
        log_path = root / "daemon.log"
        with log_path.open("wb") as log:
            process = start_daemon(config, log)
            try:
                wait_until(lambda: b" ready" in log_path.read_bytes(), READY_DEADLINE_S, "ready")
                dropped, cpu_before = time.perf_counter(), cpu_seconds(process.pid)
                os.rename(batch, root / "inbox" / "batch")
                summary = root / "outbox" / "batch" / "summary.json"
                wait_until(summary.exists, BATCH_DEADLINE_S, "the batch's summary")
                elapsed = time.perf_counter() - dropped
                cpu = cpu_seconds(process.pid) - cpu_before
            finally:
                process.terminate()
                process.wait(timeout=120)
        counts = json.loads(summary.read_text())["counts"]
        if counts.get("done") != counts.get("total"):
            raise SystemExit(f"steady: not every image was analysed: {counts}")
        return elapsed, cpu
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    files = build_set(args.images)
    names = sorted(str(p) for p in files.iterdir())
    floors, daemons, cpus = [], [], []
    for round_index in range(args.rounds):
        floor = run_floor(names, args.workers, files)
        floors.append(floor["timed_seconds"])
        elapsed, cpu = daemon_round(files, args.workers)
        daemons.append(elapsed)
        cpus.append(cpu)
        print(
            f"steady: round {round_index + 1}: floor {floors[-1]:.1f} s, "
            f"daemon {daemons[-1]:.1f} s (daemon process CPU {cpu * 1000 / args.images:.2f} "
            "ms/image)",
            flush=True,
        )
    floor_s, daemon_s = statistics.median(floors), statistics.median(daemons)
    print(
        f"steady: {args.images} images, median of {args.rounds} alternated rounds: "
        f"floor {args.images / floor_s:.1f} img/s, daemon {args.images / daemon_s:.1f} img/s, "
        f"daemon / floor {floor_s / daemon_s:.2f}x (target >= 0.95x); daemon process CPU "
        f"{statistics.median(cpus) * 1000 / args.images:.2f} ms/image"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
