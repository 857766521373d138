"""The engine row of `make bench`, before and after a change, measured in one run.

Usage: .venv/bin/python benchmarks/engine_ab.py --before REV [--after REV] [--rounds 5]
       [--workers 2] [DIR...]   (default DIRs: exif-samples and imagededup-testdata)

Each revision's `daemon/` is exported with `git archive` (--after defaults to the working
tree) and timed in alternation, round after round, so that both see the same machine load:
`analyse_file` with default settings in a `--workers`-process pebble pool over every file of
DIRs, as benchmarks/run.py's engine row does. Prints the median seconds of each side and the
after/before ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPORA = Path("/work/shared/corpora")
DEFAULT_DIRS = (CORPORA / "exif-samples", CORPORA / "imagededup-testdata")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".heic", ".heif", ".tiff", ".tif", ".webp"})

CHILD = """
import functools, json, resource, sys, time
from pathlib import Path
import pebble
from medianalysed import analysis
files = json.loads(sys.stdin.read())
task = functools.partial(analysis.analyse_file, settings=analysis.AnalysisSettings())
with pebble.ProcessPool(max_workers=int(sys.argv[1])) as pool:
    pool.schedule(task, args=(Path(files[0]),)).exception()  # workers up before the clock
    started = time.perf_counter()
    for future in [pool.schedule(task, args=(Path(f),)) for f in files]:
        future.exception()
    wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, once the pool has ended
print(json.dumps([wall, usage.ru_utime + usage.ru_stime]))
"""


def export(revision: str, into: Path) -> Path:
    archive = into / f"{revision.replace('/', '_')}.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", revision, "daemon"], cwd=REPO, stdout=out, check=True)
    target = into / revision.replace("/", "_")
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target / "daemon"


def timed(source: Path, files: list[str], workers: int) -> tuple[float, float]:
    """Wall seconds of the run, and CPU seconds its workers spent (steadier on a busy host)."""
    env = {**os.environ, "PYTHONPATH": str(source), "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, "-c", CHILD, str(workers)]
    output = subprocess.run(
        command, input=json.dumps(files), env=env, capture_output=True, text=True, check=False
    )
    if output.returncode != 0:
        raise SystemExit(f"timing {source} failed:\n{output.stderr[-2000:]}")
    wall, cpu = json.loads(output.stdout.strip().splitlines()[-1])
    return float(wall), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", default="")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("dirs", nargs="*", type=Path, default=list(DEFAULT_DIRS))
    args = parser.parse_args()
    files = sorted(
        str(path)
        for folder in args.dirs
        for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )
    with tempfile.TemporaryDirectory() as scratch:
        before = export(args.before, Path(scratch))
        after = export(args.after, Path(scratch)) if args.after else REPO / "daemon"
        runs: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        for round_ in range(args.rounds):
            for side, source in (("before", before), ("after", after)):
                runs[side].append(timed(source, files, args.workers))
            (wall_b, cpu_b), (wall_a, cpu_a) = runs["before"][-1], runs["after"][-1]
            print(f"  round {round_ + 1}: wall {wall_b:.2f} / {wall_a:.2f} s", end="")
            print(f", workers' CPU {cpu_b:.2f} / {cpu_a:.2f} s")
    print(f"{len(files)} files, {args.workers} workers, {args.rounds} rounds (medians)")
    for index, what in ((0, "wall"), (1, "workers' CPU")):
        before_s = statistics.median(run[index] for run in runs["before"])
        after_s = statistics.median(run[index] for run in runs["after"])
        ratio = after_s / before_s
        print(f"{what}: before {before_s:.2f} s, after {after_s:.2f} s, ratio {ratio:.3f}")
    print(f"(before = {args.before}, after = {args.after or 'the working tree'})")


if __name__ == "__main__":
    main()
