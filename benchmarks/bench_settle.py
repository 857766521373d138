"""Settling a huge dropped folder: walk cost, and the daemon's responsiveness meanwhile.

Usage: .venv/bin/python benchmarks/bench_settle.py [--files 1000000] [--layout nested|flat]
       [--settle 5]

1. Builds `--files` empty files (nested: 1000 per directory; flat: all in one directory).
2. Times one `readiness.snapshot_tree` walk in a fresh process and reports its peak RSS.
3. Starts the real daemon (systemd notify socket bound here, WATCHDOG_USEC = 2 s so it
   pings every second while healthy, /healthz on 127.0.0.1), drops the folder without a
   ready marker and, until the batch is queued (settled), records: the largest gap between
   watchdog pings, STATUS lines saying the supervisor is "not answering" (each status line
   asks the supervisor with a 1 s timeout), /healthz latency and non-200 answers, and the
   daemon's peak RSS.

Prints one line per figure and writes benchmarks/results/settle.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from procs import free_port, start_daemon, status_field

REPO = Path(__file__).resolve().parents[1]
PER_DIR = 1000
WATCHDOG_USEC = 2_000_000
HEALTH_POLL_S = 0.25
DEADLINE_S = 1800.0

WALK_CHILD = """
import json, sys, time
from pathlib import Path
from medianalysed.readiness import snapshot_tree
started = time.perf_counter()
snap = snapshot_tree(Path(sys.argv[1]), ".ready")
seconds = time.perf_counter() - started
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"walk_s": seconds, "files": snap.file_count, "peak_rss_mb": hwm / 1024}))
"""


def build_tree(root: Path, files: int, layout: str) -> float:
    started = time.perf_counter()
    root.mkdir(parents=True)
    directory = root
    for index in range(files):
        if layout == "nested" and index % PER_DIR == 0:
            directory = root / f"d{index // PER_DIR:05d}"
            directory.mkdir()
        os.close(os.open(directory / f"f{index:07d}", os.O_CREAT | os.O_WRONLY, 0o644))
    return time.perf_counter() - started


def walk_in_child(root: Path) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "-c", WALK_CHILD, str(root)],
        capture_output=True,
        text=True,
        check=True,
        timeout=DEADLINE_S,
    ).stdout
    return json.loads(output)  # type: ignore[no-any-return]


class Observer:
    """Collects notify datagrams and /healthz answers on background threads."""

    def __init__(self, notify: socket.socket, port: int) -> None:
        self.notify = notify
        self.port = port
        self.pings: list[float] = []
        self.not_answering = 0
        self.status_lines = 0
        self.health_ms: list[float] = []
        self.health_bad = 0
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._read_notify, daemon=True),
            threading.Thread(target=self._poll_health, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _read_notify(self) -> None:
        self.notify.settimeout(0.2)
        while not self.stop.is_set():
            try:
                data = self.notify.recv(65536).decode(errors="replace")
            except TimeoutError:
                continue
            for line in data.splitlines():
                if line == "WATCHDOG=1":
                    self.pings.append(time.monotonic())
                elif line.startswith("STATUS="):
                    self.status_lines += 1
                    self.not_answering += line == "STATUS=not answering"

    def _poll_health(self) -> None:
        while not self.stop.wait(HEALTH_POLL_S):
            started = time.perf_counter()
            try:
                url = f"http://127.0.0.1:{self.port}/healthz"
                with urllib.request.urlopen(url, timeout=30) as reply:
                    ok = reply.status == 200
            except urllib.error.HTTPError:
                ok = False
            except OSError:
                ok = False
            self.health_ms.append((time.perf_counter() - started) * 1000)
            self.health_bad += not ok

    def reset(self) -> None:
        self.pings.clear()
        self.health_ms.clear()
        self.not_answering = self.status_lines = self.health_bad = 0

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def settle_in_daemon(root: Path, tree: Path, settle: float) -> dict[str, Any]:
    port = free_port()
    for name in ("inbox", "outbox", "archive"):
        (root / name).mkdir(exist_ok=True)
    config = root / "medianalysed.toml"
    config.write_text(
        f'[daemon]\nstate_dir = "state"\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
        '[[inbox]]\npath = "inbox"\noutbox = "outbox"\narchive = "archive"\n'
        f"settle_seconds = {settle}\n",
        encoding="utf-8",
    )
    notify_path = root / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    env.pop("WATCHDOG_PID", None)
    log_path = root / "daemon.log"
    with log_path.open("wb") as log:
        process = start_daemon(config, log, env=env)
    observer = Observer(notify, port)
    try:
        wait_log(process, log_path, b" ready")
        time.sleep(3)  # let the worker processes finish starting
        observer.reset()
        dropped = time.monotonic()
        os.rename(tree, root / "inbox" / tree.name)
        peak_kb = 0
        while b"batch huge queued" not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() - dropped > DEADLINE_S:
                raise SystemExit(f"daemon gone or too slow: {log_path.read_text()[-2000:]}")
            peak_kb = max(peak_kb, status_field(process.pid, "VmRSS"))
            time.sleep(0.1)
        settled_s = time.monotonic() - dropped
        pings = [dropped, *observer.pings, time.monotonic()]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        health = sorted(observer.health_ms)
        return {
            "drop_to_queued_s": round(settled_s, 1),
            "watchdog_max_gap_s": round(max(gaps), 2),
            "watchdog_pings": len(observer.pings),
            "status_lines": observer.status_lines,
            "status_not_answering": observer.not_answering,
            "healthz_answers": len(health),
            "healthz_non_200": observer.health_bad,
            "healthz_p50_ms": round(statistics.median(health), 1) if health else None,
            "healthz_max_ms": round(health[-1], 1) if health else None,
            "daemon_peak_rss_mb_while_settling": round(peak_kb / 1024, 1),
        }
    finally:
        observer.close()
        notify.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_log(process: subprocess.Popen[bytes], log: Path, text: bytes) -> None:
    deadline = time.monotonic() + 120
    while text not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the daemon did not get ready: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--layout", choices=("nested", "flat"), default="nested")
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--dir", type=Path, default=None, help="where to build (e.g. a tmpfs)")
    parser.add_argument("--label", default="", help="suffix of the results file name")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="medianalysed-settle-", dir=args.dir))
    try:
        tree = root / "staging" / "huge"
        result: dict[str, Any] = {"files": args.files, "layout": args.layout, "dir": str(root)}
        result["build_s"] = round(build_tree(tree, args.files, args.layout), 1)
        walk = walk_in_child(tree)
        result["walk_s"] = round(walk["walk_s"], 2)
        result["walk_files_per_s"] = round(walk["files"] / walk["walk_s"])
        result["walk_peak_rss_mb"] = round(walk["peak_rss_mb"], 1)
        result.update(settle_in_daemon(root, tree, args.settle))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for key, value in result.items():
        print(f"{key}: {value}")
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    name = f"settle-{args.layout}{'-' + args.label if args.label else ''}.json"
    (out / name).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
