"""`--version` wall time of built binaries and the venv, alternated in one run (median of N).

    .venv/bin/python benchmarks/bench_binary_startup.py dist/medianalysed/medianalysed \
        /tmp/onefile/medianalysed .venv/bin/medianalysed --rounds 15

Each round runs every command once, in turn, so machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time


def once(command: str) -> float:
    started = time.perf_counter()
    subprocess.run([command, "--version"], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("commands", nargs="+")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    times: dict[str, list[float]] = {command: [] for command in args.commands}
    for command in args.commands:
        once(command)  # page cache
    for _ in range(args.rounds):
        for command in args.commands:
            times[command].append(once(command))
    for command, values in times.items():
        print(f"{statistics.median(values):6.3f} s  min {min(values):6.3f} s  {command}")


if __name__ == "__main__":
    main()
