"""Benchmark the duplicate index at scale: inserts, reopen, near and exact lookups, memory.

    .venv/bin/python benchmarks/bench_index.py --n 1000000

Builds N random entries (plus planted near-duplicates of the query hashes) in a fresh
directory, then measures, in a fresh process so that RSS reflects a daemon and not the builder:
open from the snapshot, open by full rebuild, near-query latency at distances 6 and 10, exact
lookups, single adds, and the process's RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from medianalysed.dupindex import SNAPSHOT_NAME, HistoryIndex, ImageRef, IndexedImage
from medianalysed.dupsearch import hash_values
from medianalysed.nearrule import NearRule

BATCH_SIZE = 1000  # images per batch id
PLANTED_QUERIES = 500
CHUNK = 10_000


def rss_mib() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB.

    The peak is VmHWM where Linux has it: getrusage's ru_maxrss survives exec, so a child
    started by a big builder would report the builder's peak.
    """
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    if "VmRSS" in status and "VmHWM" in status:
        return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak, peak


def image(i: int, phash: int, batch_prefix: str = "b") -> IndexedImage:
    return IndexedImage(
        ref=ImageRef(f"{batch_prefix}{i // BATCH_SIZE:06d}", f"dir/img_{i % BATCH_SIZE:04d}.jpg"),
        sha256=f"{i:064x}",
        pixel_digest=f"{i:032x}",
        hashes={
            "phash": f"{phash:016x}",
            "dhash": f"{phash ^ 0xFF:016x}",
            "ahash": f"{phash ^ 0xF0F0:016x}",
            "whash": f"{phash:016x}",
            "colorhash": f"{phash & ((1 << 42) - 1):011x}",
        },
        analysis_version=1,
    )


def query_hashes(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**64, PLANTED_QUERIES, dtype=np.uint64)


def entries(n: int, seed: int) -> Iterator[IndexedImage]:
    """N random hashes; the first ones are planted neighbours of the query hashes."""
    rng = np.random.default_rng(seed + 1)
    queries = query_hashes(seed)
    planted = []
    for q in queries.tolist():
        for distance in (1, 3, 6, 8, 10):  # one neighbour at each distance, some at the bound
            bits = rng.choice(64, size=distance, replace=False)
            planted.append(q ^ sum(1 << int(b) for b in bits))
    randoms = rng.integers(0, 2**64, max(n - len(planted), 0), dtype=np.uint64).tolist()
    for i, value in enumerate((planted + randoms)[:n]):
        yield image(i, value)


def build(directory: Path, n: int, seed: int) -> dict[str, float]:
    index = HistoryIndex(directory, analysis_version=1)
    started = time.perf_counter()
    pending: list[IndexedImage] = []
    done = 0
    for entry in entries(n, seed):
        pending.append(entry)
        if len(pending) == CHUNK:
            index.add_many(pending)
            done += len(pending)
            pending.clear()
            if done % 100_000 == 0:
                rate = done / (time.perf_counter() - started)
                print(f"  {done:>9,} added ({rate:,.0f}/s)", file=sys.stderr)
    index.add_many(pending)
    elapsed = time.perf_counter() - started
    closing = time.perf_counter()
    index.close()
    close_s = time.perf_counter() - closing
    current, peak = rss_mib()
    return {
        "insert_per_s": n / elapsed,
        "build_s": elapsed,
        "close_s": close_s,
        "builder_rss_mib": current,
        "builder_peak_rss_mib": peak,
    }


def latencies(samples: list[float]) -> dict[str, float]:
    values = np.array(samples) * 1e3
    return {"mean_ms": float(values.mean()), "p99_ms": float(np.percentile(values, 99))}


def measure_rule(
    index: HistoryIndex, queries: list[int], random_probes: list[int]
) -> dict[str, object]:
    """The 0.3.0 near rule: `find` (records read) and `near_ids` (the batch planner's search:
    numpy only), for the planted queries and for random probes."""
    rule = NearRule.default()
    results: dict[str, object] = {}
    for name, probes in (("planted", queries), ("no_match", random_probes)):
        finds, searches, hits = [], [], 0
        for i, q in enumerate(probes):
            probe = image(3 * 10**9 + i, q, batch_prefix="query")
            t0 = time.perf_counter()
            hits += len(index.find(probe, rule=rule))
            finds.append(time.perf_counter() - t0)
            values = hash_values(probe.hashes)
            assert values is not None
            t0 = time.perf_counter()
            index.near_ids(values, rule=rule, limit=1 << 22)
            searches.append(time.perf_counter() - t0)
        results[f"rule_find_{name}"] = latencies(finds) | {"matches_per_query": hits / len(probes)}
        results[f"rule_near_ids_{name}"] = latencies(searches)
    return results


def measure(directory: Path, n: int, seed: int) -> dict[str, object]:
    """Runs in a fresh process: open, query, add, and report RSS."""
    base_rss = rss_mib()[0]
    started = time.perf_counter()
    index = HistoryIndex(directory, analysis_version=1)
    open_snapshot_s = time.perf_counter() - started
    open_rss = rss_mib()[0]
    assert len(index) == n, (len(index), n)

    results: dict[str, object] = {
        "open_from_snapshot_s": open_snapshot_s,
        "rss_before_open_mib": base_rss,
        "rss_after_open_mib": open_rss,
    }
    rng = np.random.default_rng(seed + 2)
    queries = query_hashes(seed).tolist()
    for max_distance in (6, 10):
        samples = []
        hits = 0
        for i, q in enumerate(queries):
            probe = image(10**9 + i, q, batch_prefix="query")
            t0 = time.perf_counter()
            matches = index.find(probe, max_distance=max_distance)
            samples.append(time.perf_counter() - t0)
            hits += len(matches)
        results[f"near_d{max_distance}"] = latencies(samples) | {
            "matches_per_query": hits / len(queries)
        }
    random_probes = rng.integers(0, 2**64, 1000, dtype=np.uint64).tolist()
    samples = []
    for i, q in enumerate(random_probes):
        probe = image(2 * 10**9 + i, q, batch_prefix="query")
        t0 = time.perf_counter()
        index.find(probe, max_distance=6)
        samples.append(time.perf_counter() - t0)
    results["near_d6_no_match"] = latencies(samples)
    results |= measure_rule(index, queries, random_probes)

    samples = []
    for i in rng.integers(PLANTED_QUERIES * 5, n, 1000).tolist():
        stored = image(i, 0)  # same sha256 as entry i; its pHash differs, so the hit is exact only
        probe = IndexedImage(
            ImageRef("query", f"exact_{i}.jpg"),
            stored.sha256,
            None,
            {"phash": stored.hashes["phash"]},
            1,
        )
        t0 = time.perf_counter()
        matches = index.find(probe, max_distance=0)
        samples.append(time.perf_counter() - t0)
        assert [m.tier for m in matches][:1] == ["exact"], matches
    results["exact_find"] = latencies(samples)

    samples = []
    for i in range(1000):
        entry = replace(image(n + i, int(rng.integers(0, 2**63))), ref=ImageRef("extra", str(i)))
        t0 = time.perf_counter()
        index.add(entry)
        samples.append(time.perf_counter() - t0)
    results["single_add"] = latencies(samples)
    current, peak = rss_mib()
    results["rss_after_queries_mib"] = current
    results["peak_rss_mib"] = peak
    index.remove_batch("extra")
    index.close()

    (directory / SNAPSHOT_NAME).unlink()
    started = time.perf_counter()
    rebuilt = HistoryIndex(directory, analysis_version=1)
    results["open_full_rebuild_s"] = time.perf_counter() - started
    rebuilt.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, help="reuse this directory (built if empty)")
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure_only:
        print(json.dumps(measure(args.dir, args.n, args.seed)))
        return

    scratch = None
    directory = args.dir
    if directory is None:
        scratch = Path(tempfile.mkdtemp(prefix="bench-index-"))
        directory = scratch / "history"
    try:
        figures: dict[str, object] = {"n": args.n}
        if not (directory / SNAPSHOT_NAME).exists():
            print(f"building {args.n:,} entries in {directory}", file=sys.stderr)
            figures["build"] = build(directory, args.n, args.seed)
        command = [sys.executable, __file__, "--measure-only", "--dir", str(directory)]
        command += ["--n", str(args.n), "--seed", str(args.seed)]
        measured = subprocess.run(command, check=True, capture_output=True, text=True)
        figures["measure"] = json.loads(measured.stdout)
        print(json.dumps(figures, indent=2))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
