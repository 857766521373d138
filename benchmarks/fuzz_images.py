"""Damaged real images by the thousand: does every one end as a record or a SPEC §3 error?

Usage: .venv/bin/python benchmarks/fuzz_images.py [--cases 10000] [--workers 2] [--seed 1]
       [--timeout 30] [--max-worker-memory 1GB] [--keep DIR]

Each case takes a seed file (tests/damage.py SEEDS, from /work/shared/corpora), damages it
(truncation, bit flips, a lying header field, or a format-aware lie about dimensions, frame
counts or chunk lengths) and runs `run_job` on it in a pebble pool of worker processes set up
as the daemon sets them up. A finding is a case that raised out of run_job, crashed its worker,
ran past --timeout, or ended with an error outside CORRUPT / UNSUPPORTED_FORMAT /
DECOMPRESSION_BOMB / TOO_SMALL or a message over 200 characters. Findings are written to
--keep (default benchmarks/data/fuzz-findings/) as the damaged file plus a .txt of why.
Prints cases, outcomes per code, findings, time and the workers' peak RSS.
"""

from __future__ import annotations

import argparse
import collections
import random
import resource
import sys
import tempfile
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pebble

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.damage import (  # noqa: E402
    LIES,
    bit_flipped,
    field_lie,
    outcome_problem,
    seeds,
    structural_lies,
    truncated,
)

from medianalysed.analysis import AnalysisSettings  # noqa: E402
from medianalysed.config import parse_size  # noqa: E402
from medianalysed.worker import WorkerJob, pool_context, run_job, worker_initializer  # noqa: E402

CORPORA = Path("/work/shared/corpora")
BATCH = 200  # cases scheduled at once


def damage(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    kind = rng.choice(("truncate", "flip", "field", "structure", "structure"))
    if kind == "truncate":
        at = rng.randrange(len(data))
        return f"truncated at {at}", truncated(data, at)
    if kind == "flip":
        flips = [(rng.randrange(2**32), rng.randrange(8)) for _ in range(rng.randint(1, 8))]
        return f"bits flipped {flips}", bit_flipped(data, flips)
    lie = rng.choice(LIES) if rng.random() < 0.7 else rng.randrange(2**32)
    if kind == "field":
        position, width, big = rng.randrange(2**16), rng.choice((2, 4)), rng.random() < 0.5
        lied = field_lie(data, position, lie, width, big)
        return f"field lie {position} {lie} {width} {big}", lied
    lies = list(structural_lies(data, lie))
    if not lies:
        return "truncated at 0", truncated(data, 0)
    name, lied = rng.choice(lies)
    return f"{name} = {lie}", lied


def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@dataclass
class Tally:
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    findings: list[str] = field(default_factory=list)


def verdict(future: Any, timeout: float) -> tuple[str, str | None]:
    """(outcome code, problem or None) of one scheduled run_job."""
    try:
        outcome = future.result()
    except FutureTimeout:
        return "(timeout)", f"ran past {timeout} s"
    except pebble.ProcessExpired as exc:
        return "(crash)", f"worker died: {exc}"
    except Exception as exc:
        return "(raised)", f"raised {type(exc).__name__}: {exc}"
    error = outcome.get("error")
    return (error["code"] if isinstance(error, dict) else "ok"), outcome_problem(outcome)


def run_cases(args: argparse.Namespace, pool: pebble.ProcessPool, scratch: Path) -> Tally:
    files = seeds(CORPORA)
    originals = {path: path.read_bytes() for path in files}
    rng = random.Random(args.seed)
    tally = Tally()
    for first in range(0, args.cases, BATCH):
        pending = []
        for index in range(first, min(args.cases, first + BATCH)):
            source = rng.choice(files)
            how, data = damage(rng, originals[source])
            path = scratch / f"{index:06d}{source.suffix}"
            path.write_bytes(data)
            job = WorkerJob(
                root=str(scratch), relpath=path.name, settings=AnalysisSettings(), content_dir=None
            )
            future = pool.schedule(run_job, args=(job,), timeout=args.timeout)
            pending.append((index, f"{source.name}, {how}", path, future))
        for index, case, path, future in pending:
            code, problem = verdict(future, args.timeout)
            tally.codes[code] += 1
            if problem is not None:
                keep(args.keep, index, case, problem, path)
                tally.findings.append(f"case {index}: {case}: {problem}")
            path.unlink(missing_ok=True)
        done = min(args.cases, first + BATCH)
        print(f"  {done} cases, {len(tally.findings)} findings", flush=True)
    return tally


def keep(folder: Path, index: int, case: str, problem: str, path: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    kept = folder / f"case{index:06d}{path.suffix}"
    kept.write_bytes(path.read_bytes())
    kept.with_suffix(".txt").write_text(f"{case}: {problem}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=30)
    parser.add_argument("--max-worker-memory", default="1GB")
    parser.add_argument("--keep", type=Path, default=REPO / "benchmarks" / "data" / "fuzz-findings")
    args = parser.parse_args()
    pool = pebble.ProcessPool(
        max_workers=args.workers,
        context=pool_context(),
        initializer=worker_initializer,
        initargs=(parse_size(args.max_worker_memory),),
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        tally = run_cases(args, pool, Path(scratch))
    elapsed = time.perf_counter() - started
    peaks = [pool.schedule(peak_rss_kb).result(timeout=30) for _ in range(args.workers * 2)]
    pool.stop()  # type: ignore[no-untyped-call]
    pool.join(timeout=10)
    print(
        f"cases {args.cases}, seeds {len(seeds(CORPORA))}, workers {args.workers}, seed {args.seed}"
    )
    print(f"time {elapsed:.1f} s ({args.cases / elapsed:.1f} cases/s)")
    print("outcomes -- " + ", ".join(f"{code} {n}" for code, n in sorted(tally.codes.items())))
    print(f"findings {len(tally.findings)}; worker peak RSS {max(peaks) / 1024:.0f} MB")
    for finding in tally.findings[:50]:
        print("  " + finding)


if __name__ == "__main__":
    main()
