"""Fair and prompt batch starts, measured on the real daemon (issue 8 point 5).

Usage: .venv/bin/python benchmarks/bench_fairness.py [--big 10000] [--small 10]
       [--together 10] [--together-size 20] [--workers 2]

Scenarios, each on a fresh daemon (`python -m medianalysed run`, ready markers, so settling
is immediate):

- small alone: a `--small`-image batch; time from the drop to its summary.json;
- small behind big: a `--big`-image batch is dropped and running; then the small batch
  (normal priority) is dropped; time from that drop to the small batch's summary, and how
  much of the big batch was done meanwhile;
- high behind big: the same with `priority = "high"` in the small batch's batch.toml;
- together: `--together` batches of `--together-size` images renamed into the inbox at the
  same moment (`--together-side` pixels a side, so each batch takes a while); spread of
  their `started_at` and the drop-to-start delay of each.

Every image is distinct (random 24x24 PNGs), so the content cache never answers. Prints a
Markdown table and writes benchmarks/results/fairness.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from procs import start_daemon

REPO = Path(__file__).resolve().parents[1]
POLL_S = 0.02
DEADLINE_S = 1800.0
# The worker processes finish starting after READY; measure an idle daemon, not its start-up.
IDLE_AFTER_READY_S = 3.0


def make_images(folder: Path, count: int, seed: int, side: int = 24) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for index in range(count):
        sub = folder / f"g{index // 1000:03d}"
        sub.mkdir(exist_ok=True)
        pixels = rng.randbytes(side * side * 3)
        Image.frombytes("RGB", (side, side), pixels).save(sub / f"{index:06d}.png")
    (folder / ".ready").touch()


class Daemon:
    def __init__(self, workers: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="medianalysed-fair-"))
        for name in ("inbox", "outbox", "archive", "staging"):
            (self.root / name).mkdir()
        config = self.root / "medianalysed.toml"
        config.write_text(
            f'[daemon]\nstate_dir = "state"\n[processing]\nworkers = {workers}\n'
            '[metrics]\nlisten = ""\n[[inbox]]\npath = "inbox"\noutbox = "outbox"\n'
            'archive = "archive"\nsettle_seconds = 1\n',
            encoding="utf-8",
        )
        self._log = (self.root / "daemon.log").open("wb")
        self.process = start_daemon(config, self._log)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while b" ready" not in (self.root / "daemon.log").read_bytes():
            self._alive()
            if time.monotonic() > deadline:
                raise SystemExit("the daemon did not get ready")
            time.sleep(POLL_S)
        time.sleep(IDLE_AFTER_READY_S)

    def stage(self, name: str, count: int, seed: int, priority: str = "", side: int = 24) -> Path:
        folder = self.root / "staging" / name
        make_images(folder, count, seed, side)
        if priority:
            (folder / "batch.toml").write_text(f'priority = "{priority}"\n', encoding="utf-8")
        return folder

    def drop(self, staged: Path) -> float:
        os.rename(staged, self.root / "inbox" / staged.name)
        return time.time()

    def summary(self, name: str) -> tuple[dict[str, Any], float]:
        path = self.root / "outbox" / name / "summary.json"
        deadline = time.monotonic() + DEADLINE_S
        while not path.exists():
            self._alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"no summary for {name} after {DEADLINE_S:.0f} s")
            time.sleep(POLL_S)
        seen = time.time()
        return json.loads(path.read_text(encoding="utf-8")), seen

    def status(self, name: str) -> dict[str, Any] | None:
        try:
            text = (self.root / "outbox" / name / "status.json").read_text(encoding="utf-8")
            return json.loads(text)  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    def wait_running(self, name: str, at_least: int) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            self._alive()
            status = self.status(name)
            if status is not None and finished(status) >= at_least:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start")
            time.sleep(POLL_S)

    def _alive(self) -> None:
        if self.process.poll() is not None:
            log = (self.root / "daemon.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"daemon exited: {log}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()
        shutil.rmtree(self.root, ignore_errors=True)


def finished(status: dict[str, Any]) -> int:
    counts = status.get("counts", {})
    return int(counts.get("done", 0)) + int(counts.get("failed", 0)) + int(counts.get("skipped", 0))


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def small_alone(args: argparse.Namespace) -> dict[str, Any]:
    daemon = Daemon(args.workers)
    try:
        staged = daemon.stage("small", args.small, seed=1)
        dropped = daemon.drop(staged)
        summary, seen = daemon.summary("small")
        return {
            "scenario": f"{args.small} images alone",
            "drop_to_summary_s": round(seen - dropped, 2),
            "drop_to_start_s": round(epoch(summary["started_at"]) - dropped, 2),
            "done": summary["counts"]["done"],
        }
    finally:
        daemon.close()


def small_behind_big(args: argparse.Namespace, priority: str) -> dict[str, Any]:
    daemon = Daemon(args.workers)
    try:
        big = daemon.stage("big", args.big, seed=2)
        small = daemon.stage("small", args.small, seed=3, priority=priority)
        daemon.drop(big)
        daemon.wait_running("big", at_least=min(200, args.big // 10))
        dropped = daemon.drop(small)
        summary, seen = daemon.summary("small")
        big_status = daemon.status("big") or {}
        big_summary = (daemon.root / "outbox" / "big" / "summary.json").exists()
        return {
            "scenario": f"{args.small} images ({priority or 'normal'}) behind {args.big}",
            "drop_to_summary_s": round(seen - dropped, 2),
            "drop_to_start_s": round(epoch(summary["started_at"]) - dropped, 2),
            "done": summary["counts"]["done"],
            "big_done_at_small_summary": f"{finished(big_status)}/{args.big}",
            "big_finished_first": big_summary,
        }
    finally:
        daemon.close()


def together(args: argparse.Namespace) -> dict[str, Any]:
    daemon = Daemon(args.workers)
    try:
        staged = [
            daemon.stage(
                f"t{index:02d}", args.together_size, seed=10 + index, side=args.together_side
            )
            for index in range(args.together)
        ]
        dropped = [daemon.drop(folder) for folder in staged]
        starts = []
        ends = []
        for folder in staged:
            summary, seen = daemon.summary(folder.name)
            starts.append(epoch(summary["started_at"]))
            ends.append(seen)
        delays = [start - drop for start, drop in zip(starts, dropped, strict=True)]
        return {
            "scenario": (
                f"{args.together} x {args.together_size} images "
                f"({args.together_side} px) dropped together"
            ),
            "start_spread_s": round(max(starts) - min(starts), 2),
            "drop_to_start_max_s": round(max(delays), 2),
            "drop_to_start_min_s": round(min(delays), 2),
            "drop_to_last_summary_s": round(max(ends) - min(dropped), 2),
        }
    finally:
        daemon.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--together", type=int, default=10)
    parser.add_argument("--together-size", type=int, default=20)
    parser.add_argument("--together-side", type=int, default=256, help="pixels a side")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scenarios", default="alone,behind,high,together")
    parser.add_argument("--label", default="", help="suffix of the results file name")
    args = parser.parse_args()
    runners = {
        "alone": lambda: small_alone(args),
        "behind": lambda: small_behind_big(args, ""),
        "high": lambda: small_behind_big(args, "high"),
        "together": lambda: together(args),
    }
    rows = [runners[name]() for name in args.scenarios.split(",")]
    for row in rows:
        print(" | ".join(f"{key}: {value}" for key, value in row.items()))
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    name = f"fairness{'-' + args.label if args.label else ''}.json"
    (out / name).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
