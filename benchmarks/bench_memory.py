"""Peak memory of the daemon on large batches of small images (issue: bounded memory).

Usage: .venv/bin/python benchmarks/bench_memory.py [--sizes 1000,10000,100000] [--workers 2]

For each size it writes that many distinct small PNGs into one folder, starts the real daemon
(`python -m medianalysed run`) on a fresh state directory, drops the folder with a ready
marker, waits for summary.json, and reports throughput and the peak RSS (VmHWM) of the
daemon process and of its worker processes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import tempfile
import time
from pathlib import Path

from PIL import Image

from procs import descendants, start_daemon, status_field

REPO = Path(__file__).resolve().parents[1]


def make_images(folder: Path, count: int, seed: int = 7) -> None:
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    for index in range(count):
        sub = folder / f"g{index // 1000:03d}"
        if index % 1000 == 0:
            sub.mkdir()
        pixels = bytes(rng.getrandbits(8) for _ in range(24 * 24 * 3))
        Image.frombytes("RGB", (24, 24), pixels).save(sub / f"{index:06d}.png")


def run_one(count: int, workers: int) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix=f"medianalysed-mem-{count}-"))
    try:
        staging = root / "staging" / "batch"
        started = time.perf_counter()
        make_images(staging, count)
        generated_s = time.perf_counter() - started
        for name in ("inbox", "outbox", "archive"):
            (root / name).mkdir()
        config = root / "medianalysed.toml"
        config.write_text(
            f'[daemon]\nstate_dir = "state"\n[processing]\nworkers = {workers}\n'
            '[metrics]\nlisten = ""\n[[inbox]]\npath = "inbox"\noutbox = "outbox"\n'
            'archive = "archive"\nsettle_seconds = 1\n',
            encoding="utf-8",
        )
        log = (root / "daemon.log").open("wb")
        process = start_daemon(config, log)
        (staging / ".ready").touch()
        os.rename(staging, root / "inbox" / "batch")
        dropped = time.perf_counter()
        summary = root / "outbox" / "batch" / "summary.json"
        worker_peak = 0
        while not summary.exists():
            if process.poll() is not None:
                raise SystemExit(f"daemon exited: {(root / 'daemon.log').read_text()[-2000:]}")
            worker_peak = max(
                [worker_peak, *(status_field(p, "VmHWM") for p in descendants(process.pid))]
            )
            time.sleep(0.5)
        elapsed = time.perf_counter() - dropped
        daemon_peak = status_field(process.pid, "VmHWM")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
        log.close()
        counts = json.loads(summary.read_text())["counts"]
        assert counts["total"] == count, counts
        return {
            "images": count,
            "generate_s": round(generated_s, 1),
            "elapsed_s": round(elapsed, 1),
            "images_per_s": round(count / elapsed, 1),
            "daemon_peak_rss_mb": round(daemon_peak / 1024, 1),
            "worker_peak_rss_mb": round(worker_peak / 1024, 1),
            "done": counts["done"],
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = [run_one(int(size), args.workers) for size in args.sizes.split(",")]
    print(
        "| images | generate s | analyse s | images/s | daemon peak RSS MB | worker peak RSS MB |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['images']} | {row['generate_s']} | {row['elapsed_s']} | {row['images_per_s']} "
            f"| {row['daemon_peak_rss_mb']} | {row['worker_peak_rss_mb']} |"
        )
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "memory.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
