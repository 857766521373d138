"""Generated hostile batches against one real daemon, checking the invariant for every input.

    nice -n 19 .venv/bin/python benchmarks/fuzz_daemon.py --cases 10000

Each batch is a tree of arbitrary byte names with real, damaged and hostile content, symlinks,
FIFOs, a `batch.toml` and a `urls.txt` pointing at a local server (tests/generated/). A case is
one input: a file or link of the tree or a `urls.txt` line that must get its own record. The
run keeps `--window` batches in flight, checks each one's outbox as it finishes (one record
per input, terminal, SPEC §3 errors, no leaked credential, nothing read outside the batch, the
daemon healthy), saves a reproducer for each batch that broke it, restarts the daemon if it
died (and counts it), and writes the figures: cases, batches, violations by kind, daemon
deaths, wall time, peak RSS of the daemon's process group (daemon + fork server + workers).
Not part of `make test`.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tests.generated import corpus, strategies  # noqa: E402
from tests.generated.drive import FuzzDaemon  # noqa: E402
from tests.generated.invariant import Violation  # noqa: E402

REPRODUCERS_PER_KIND = 5


def bench_batches() -> st.SearchStrategy[strategies.BatchSpec]:
    """Bigger batches than the e2e test's: more cases per batch, less per-batch overhead."""
    return strategies.batches(
        tree=strategies.trees(max_entries=16, max_leaves=48, min_entries=4),
        loose=strategies.loose_entries(folders_per_loose=12),
        urls=st.none() | strategies.urls_files(max_lines=24),
    )


@dataclass
class Figures:
    cases: int = 0
    batches: int = 0
    clean_batches: int = 0
    violations: collections.Counter[str] = field(default_factory=collections.Counter)
    batches_with_violations: int = 0
    daemon_deaths: int = 0
    reproducers: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    peak_daemon_rss_mb: float = 0.0
    generator_errors: int = 0
    log_tracebacks: int = 0  # unexpected exceptions the daemon logged (over all restarts)
    started: float = field(default_factory=time.monotonic)

    def to_json(self, args: argparse.Namespace) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        return {
            "cases": self.cases,
            "batches": self.batches,
            "clean_batches": self.clean_batches,
            "batches_with_violations": self.batches_with_violations,
            "violations_by_kind": dict(self.violations.most_common()),
            "daemon_deaths_and_restarts": self.daemon_deaths,
            "tracebacks_in_daemon_log": self.log_tracebacks,
            "generator_errors": self.generator_errors,
            "seconds": round(elapsed, 1),
            "cases_per_second": round(self.cases / elapsed, 2) if elapsed else None,
            "peak_rss_mb_process_group": round(self.peak_rss_mb, 1),
            "peak_rss_mb_daemon_process": round(self.peak_daemon_rss_mb, 1),
            "reproducers": self.reproducers,
            "window": args.window,
            "trees_per_batch": args.merge,
            "seed": args.seed,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        }


class RssSampler:
    """Peak resident memory of a process group, sampled from /proc in a thread."""

    def __init__(self, figures: Figures) -> None:
        self.figures = figures
        self.pgid = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            if self.pgid:
                total, leader = _group_rss_mb(self.pgid)
                self.figures.peak_rss_mb = max(self.figures.peak_rss_mb, total)
                self.figures.peak_daemon_rss_mb = max(self.figures.peak_daemon_rss_mb, leader)


def _group_rss_mb(pgid: int) -> tuple[float, float]:
    total = leader = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            rss = _vm_rss_mb(Path(entry.path, "status").read_text())
        except (OSError, IndexError, ValueError):
            continue
        total += rss
        if int(entry.name) == pgid:
            leader = rss
    return total, leader


def _vm_rss_mb(status: str) -> float:
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Run:
    """Feeds generated batches to the daemon, `window` at a time, until `cases` are checked."""

    def __init__(
        self, fuzz: FuzzDaemon, args: argparse.Namespace, figures: Figures, sampler: RssSampler
    ) -> None:
        self.fuzz = fuzz
        self.sampler = sampler
        self.args = args
        self.figures = figures
        self.in_flight: list[Any] = []
        self.dropped_cases = 0
        self.saved: collections.Counter[str] = collections.Counter()

    def feed(self, spec: strategies.BatchSpec) -> None:
        try:
            self.in_flight.append(self.fuzz.drop(spec))
        except OSError as exc:  # a bug of the generator, not of the daemon: counted apart
            self.figures.generator_errors += 1
            print(f"  could not build a batch: {exc!r}", file=sys.stderr)
            return
        self.dropped_cases += self.in_flight[-1].expected.total
        while len(self.in_flight) >= self.args.window:
            self.collect()

    def collect(self) -> None:
        """Check every in-flight batch once; wait a little if none finished."""
        finished = False
        for dropped in list(self.in_flight):
            violations = self.fuzz.poll(dropped, self.args.deadline)
            if violations is None:
                continue
            finished = True
            self.in_flight.remove(dropped)
            self.account(dropped, violations)
            if any(v.kind == "daemon-died" for v in violations):
                self.figures.daemon_deaths += 1
                self.fuzz.restart()
                self.sampler.pgid = self.fuzz.process.pid
        if not finished:
            threading.Event().wait(0.05)

    def account(self, dropped: Any, violations: list[Violation]) -> None:
        figures = self.figures
        figures.batches += 1
        figures.cases += dropped.expected.total
        if not violations:
            figures.clean_batches += 1
            self.fuzz.discard_input(dropped)
            return
        figures.batches_with_violations += 1
        kinds = sorted({v.kind for v in violations})
        figures.violations.update(v.kind for v in violations)
        print(f"  batch {dropped.prefix} ({dropped.expected.total} cases): {', '.join(kinds)}")
        if any(self.saved[kind] < REPRODUCERS_PER_KIND for kind in kinds):
            self.saved.update(kinds)
            path = self.fuzz.save_reproducer(dropped, violations, self.args.reproducers)
            figures.reproducers.append(str(path))
        else:
            self.fuzz.discard_input(dropped)

    def drain(self) -> None:
        while self.in_flight:
            self.collect()


def merged(specs: list[strategies.BatchSpec]) -> strategies.BatchSpec:
    """One batch holding every spec's tree as a group (fewer, bigger batches: less overhead).

    The first spec gives the batch its name, control files and marker; a loose spec stays
    loose (the others are dropped with it only when it is not).
    """
    first = specs[0]
    if first.loose is not None:
        return first
    taken = {name for name, _ in first.root.entries}
    groups = tuple(
        (b"merged-%d" % index, spec.root)
        for index, spec in enumerate(specs[1:], start=1)
        if spec.loose is None and b"merged-%d" % index not in taken
    )
    return dataclasses.replace(first, root=strategies.Folder(first.root.entries + groups))


class _Enough(Exception):  # noqa: N818 - a signal to stop generating, not an error
    pass


def run(args: argparse.Namespace) -> dict[str, Any]:
    figures = Figures()
    root = Path(tempfile.mkdtemp(prefix="fuzz-daemon-"))
    fuzz = FuzzDaemon(root).start()
    sampler = RssSampler(figures)
    sampler.pgid = fuzz.process.pid
    sampler.start()
    feeder = Run(fuzz, args, figures, sampler)
    pending: list[strategies.BatchSpec] = []

    @seed(args.seed)
    @settings(
        max_examples=10**6,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(bench_batches())
    def generate(spec: strategies.BatchSpec) -> None:
        if feeder.dropped_cases >= args.cases:
            raise _Enough
        pending.append(spec)
        if len(pending) >= args.merge:
            feeder.feed(merged(pending))
            pending.clear()
        if figures.batches and figures.batches % 25 == 0:
            print(f"{figures.cases} cases, {figures.batches} batches, {dict(figures.violations)}")

    try:
        generate()
    except _Enough:
        feeder.drain()
    except KeyboardInterrupt:
        print("interrupted: batches in flight are not waited for", file=sys.stderr)
    finally:
        sampler.stop()
        fuzz.stop()
        log = root / "daemon.log"
        if log.is_file():
            # At a line start (the log indents them by one space): a name may hold the words.
            pattern = re.compile(rb"^ ?Traceback \(most recent call last\)", re.MULTILINE)
            figures.log_tracebacks = len(pattern.findall(log.read_bytes()))
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return figures.to_json(args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="inputs to check (default 10000)")
    parser.add_argument("--window", type=int, default=3, help="batches in flight at once")
    parser.add_argument("--merge", type=int, default=6, help="generated trees per batch")
    parser.add_argument("--deadline", type=float, default=90.0, help="seconds a batch may take")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument(
        "--reproducers", type=Path, default=REPO / "var" / "fuzz-reproducers", help="folder"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "fuzz_daemon.json"
    )
    parser.add_argument("--keep", action="store_true", help="keep the test root (inbox, outbox)")
    args = parser.parse_args()
    if not corpus.available():
        print(f"corpora not found at {corpus.CORPORA}", file=sys.stderr)
        return 2
    args.reproducers.mkdir(parents=True, exist_ok=True)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "reproducers"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
