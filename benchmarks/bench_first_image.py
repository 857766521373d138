"""`medianalysed analyze` start-up: when the first image reaches a worker, before and after.

Runs, --rounds times and alternated within each round (the before/after order swaps every
round, so the machine's noise falls on both alike):

- ``floor``: run.py's floor as a whole process (read + JPEG draft 1/8 decode, 2 processes)
- ``before``: `medianalysed analyze SET` with the package as it is at --before (a git ref,
  exported with `git archive` and put first on PYTHONPATH; same venv, same console script)
- ``after``: the same command with this working tree's package (or --after REF's)

Both packages are byte-compiled first (`compileall`), as an installed package is: under
PYTHONDONTWRITEBYTECODE (set on this machine) every run would compile the ~90 modules again,
0.17 s of CPU in the daemon alone. Prints the median of each: the whole command's wall time,
and the moment a worker first opened an image of SET (inotify on the folder: enumeration only
lists and stats, only workers open), both from the command's start; plus `floor / cli` end to
end, as `make bench` prints it.

Usage: nice -n 19 .venv/bin/python benchmarks/bench_first_image.py [--before main]
           [--rounds 5] [--limit 100 | --one]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from run import (  # noqa: E402
    SET_DIR,
    cli_config,
    cli_outcomes,
    limited_set,
    measure,
    medianalysed_executable,
)

PROJECT_DIR = BENCH_DIR.parent


def export_package(ref: str, target: Path) -> Path:
    """`daemon/` as it is at `ref`, extracted below `target`; the folder to put on PYTHONPATH."""
    archive = subprocess.run(
        ["git", "-C", str(PROJECT_DIR), "archive", "--format=tar", ref, "daemon"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target / "daemon"


def byte_compile(package: Path) -> None:
    """Write `package`'s .pyc files, as `pip install` does (quiet; errors are the import's)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=False)


def one_photo_set(set_dir: Path) -> Path:
    """A folder beside `set_dir` holding a hard link to its first file only."""
    return limited_set(set_dir, 1)


def run_cli(set_dir: Path, workdir: Path, package: Path) -> tuple[float, float | None, int]:
    """One `analyze` of `set_dir` with `package` first on PYTHONPATH: (wall, first open, done)."""
    workdir.mkdir()
    config = cli_config(workdir, workers=2)
    out = workdir / "out"
    env = {**os.environ, "MEDIANALYSED_CONFIG": str(config), "PYTHONPATH": str(package)}
    command = [str(medianalysed_executable()), "analyze", str(set_dir), "--out", str(out)]
    measured = measure(command, env, workdir / "cli.log", watch=set_dir)
    if measured.returncode != 0:
        raise SystemExit(f"first-image: analyze failed: {measured.stderr_tail}")
    return measured.wall_seconds, measured.first_open_seconds, cli_outcomes(out).get("done", 0)


def run_floor(set_dir: Path, workdir: Path) -> float:
    """run.py's floor child on every file of `set_dir`: the whole process's wall time."""
    workdir.mkdir()
    files = workdir / "files.txt"
    files.write_text("\n".join(sorted(str(p) for p in set_dir.iterdir() if p.is_file())) + "\n")
    command = [
        sys.executable,
        str(BENCH_DIR / "run.py"),
        "--child",
        "floor",
        "--list",
        str(files),
        "--result",
        str(workdir / "floor.json"),
        "--workers",
        "2",
    ]
    measured = measure(command, dict(os.environ), workdir / "floor.log")
    if measured.returncode != 0:
        raise SystemExit(f"first-image: floor failed: {measured.stderr_tail}")
    return measured.wall_seconds


def median_text(values: list[float]) -> str:
    """`median (min-max)` in seconds."""
    return f"{statistics.median(values):6.3f} s ({min(values):.3f}-{max(values):.3f})"


def main() -> int:
    """Alternate floor, before and after; print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="git ref of the 'before' package")
    parser.add_argument("--after", help="git ref of the 'after' package (default: the work tree)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--set", type=Path, default=SET_DIR)
    parser.add_argument("--limit", type=int, default=100, help="the first N files of the set")
    parser.add_argument("--one", action="store_true", help="one photo instead of --limit")
    args = parser.parse_args()
    set_dir = one_photo_set(args.set) if args.one else limited_set(args.set, args.limit)
    files = sum(1 for p in set_dir.iterdir() if p.is_file())
    walls: dict[str, list[float]] = {"floor": [], "before": [], "after": []}
    firsts: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="medianalysed-first-image-") as tmp:
        packages = {
            "before": export_package(args.before, Path(tmp) / "before"),
            "after": PROJECT_DIR / "daemon"
            if args.after is None
            else export_package(args.after, Path(tmp) / "after"),
        }
        for package in packages.values():
            byte_compile(package)
        for cache_warming in ("before", "after"):  # bytecode and page cache, not timed
            run_cli(set_dir, Path(tmp) / f"warm-{cache_warming}", packages[cache_warming])
        for round_index in range(args.rounds):
            walls["floor"].append(run_floor(set_dir, Path(tmp) / f"floor-{round_index}"))
            order = ("before", "after") if round_index % 2 == 0 else ("after", "before")
            for name in order:
                workdir = Path(tmp) / f"{name}-{round_index}"
                wall, first, done = run_cli(set_dir, workdir, packages[name])
                if done != files:
                    raise SystemExit(f"first-image: {name} analysed {done}/{files} images")
                walls[name].append(wall)
                if first is not None:
                    firsts[name].append(first)
                print(
                    f"round {round_index + 1}: {name:<6} wall {wall:.3f} s, first image "
                    + ("not seen" if first is None else f"{first:.3f} s"),
                    flush=True,
                )
    print(f"\n{files} file(s) of {set_dir}, {args.rounds} rounds, load {os.getloadavg()}")
    print(f"floor whole process    {median_text(walls['floor'])}")
    for name in ("before", "after"):
        ref = args.before if name == "before" else args.after or "work tree"
        label = f"{name} ({ref})"
        print(f"{label:<22} wall {median_text(walls[name])}")
        if firsts[name]:
            print(f"{'':<22} first image {median_text(firsts[name])}")
        ratio = statistics.median(walls["floor"]) / statistics.median(walls[name])
        print(f"{'':<22} floor / cli end to end {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
