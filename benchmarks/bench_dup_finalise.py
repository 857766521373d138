"""Finalising a batch whose images all resemble each other (issue 15): time and outbox size.

    .venv/bin/python benchmarks/bench_dup_finalise.py --seeded 10000 100000
    .venv/bin/python benchmarks/bench_dup_finalise.py --daemon 10000

`--seeded N`: N analysed look-alikes are written into a fresh state store as a batch about to
finalise (as after a crash), then the real `BatchActor` finalises it (the code the daemon
runs: index, plan, results, summary). `--hashes identical` gives every image the pHash of a
blank page (solid colours: distinct files, distinct pixels, one pHash); `cluster` spreads them
over 1000 distinct pHashes within 3 bits of one centre (so all pairs are within 6).
"Before" is the per-image `HistoryIndex.find(limit=50)` of 0.1.0, timed on a sample of
images and extrapolated (its cost per image is the same for every image of such a batch),
with the size of its 50-match records.

`--daemon N`: N solid-colour PNGs dropped into the real daemon (`medianalysed run`): time to
analyse, time to finalise (status.json phase `finalizing` until summary.json), outbox sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pykka

from medianalysed.actors.batch import BatchActor
from medianalysed.batchwork.settings import BatchSettings
from medianalysed.config import InboxConfig, ProcessingConfig
from medianalysed.dupindex import HistoryIndex, ImageRef, IndexedImage
from medianalysed.messages import BatchFinished
from medianalysed.models import ANALYSIS_VERSION
from medianalysed.state import ImageRecord, StateStore
from procs import start_daemon

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.lookalikes import (
    BLANK_PHASH,
    analysed_lookalike,
    seed_finalising_batch,
    solid_png,
)

BEFORE_WORK = 2_000_000  # sampled (images x batch size) for the "before" timing
BEFORE_LIMIT = 50  # matches per record in 0.1.0


class _Inbox(pykka.ThreadingActor):
    def __init__(self, inbox: queue.Queue[Any]) -> None:
        super().__init__()
        self.inbox = inbox

    def on_receive(self, message: Any) -> None:
        self.inbox.put(message)


def phashes(count: int, kind: str, rng: random.Random) -> list[int]:
    if kind == "identical":
        return [BLANK_PHASH] * count
    values = [BLANK_PHASH]
    while len(values) < 1000:
        value = BLANK_PHASH
        for bit in rng.sample(range(64), rng.randint(1, 3)):
            value ^= 1 << bit
        values.append(value)
    return [rng.choice(values) for _ in range(count)]


def _sample_size(count: int) -> int:
    return max(10, min(200, BEFORE_WORK // count))


def _distinct_colorhash(index: int) -> str:
    return f"{index % 2**40:011x}"


def seed(root: Path, count: int, kind: str) -> list[ImageRecord]:
    """The batch seeded in state; the first images' records, to time 0.1.0's find on."""
    values = phashes(count, kind, random.Random(15))
    seed_finalising_batch(root, values, _distinct_colorhash)
    sample = range(min(count, _sample_size(count)))
    return [analysed_lookalike(i, values[i], _distinct_colorhash(i)) for i in sample]


def finalise(root: Path) -> float:
    """Run the real BatchActor on the seeded batch; seconds until BatchFinished."""
    store = StateStore(root / "state")
    history = HistoryIndex(store.history_dir, analysis_version=ANALYSIS_VERSION)
    replies: queue.Queue[Any] = queue.Queue()
    supervisor = _Inbox.start(replies)
    inbox = InboxConfig(path=root / "inbox", outbox=root / "outbox", archive=root / "archive")
    settings = BatchSettings(
        inbox=inbox,
        processing=ProcessingConfig(),
        near_duplicate_distance=6,
        config_fingerprint="bench",
        downloads_dir=root / "downloads",
    )
    record = store.get_batch("many")
    assert record is not None
    started = time.monotonic()
    BatchActor.start(
        record=record, settings=settings, store=store, history=history, supervisor=supervisor
    )
    while not isinstance(replies.get(timeout=3600), BatchFinished):
        pass
    elapsed = time.monotonic() - started
    pykka.ActorRegistry.stop_all()
    history.close()
    store.close()
    return elapsed


def before(root: Path, sample: list[ImageRecord]) -> tuple[float, float]:
    """0.1.0's per-image find on the now complete index: (seconds per image, bytes per record)."""
    history = HistoryIndex(root / "state" / "history", analysis_version=ANALYSIS_VERSION)
    try:
        started = time.monotonic()
        size = 0
        for image in sample:
            assert image.result is not None
            query = IndexedImage(
                ImageRef("many", image.path),
                image.result["file"]["sha256"],
                image.result["pixel_digest"],
                image.result["hashes"],
                ANALYSIS_VERSION,
            )
            matches = history.find(query, max_distance=6, limit=BEFORE_LIMIT)
            duplicates = [
                {"tier": m.tier, "path": m.ref.path, "seen_in": None, "distances": m.distances}
                for m in matches
            ]
            size += len(json.dumps({"duplicates": duplicates}, separators=(",", ":")))
        elapsed = time.monotonic() - started
    finally:
        history.close()
    return elapsed / len(sample), size / len(sample)


def seeded(count: int, kind: str) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-dup-"))
    try:
        sample = seed(root, count, kind)
        after_s = finalise(root)
        outbox = root / "outbox" / "many"
        results_bytes = (outbox / "results.jsonl").stat().st_size
        summary_bytes = (outbox / "summary.json").stat().st_size
        summary = json.loads((outbox / "summary.json").read_text(encoding="utf-8"))
        per_image_s, dup_bytes = before(root, sample)
        with (outbox / "results.jsonl").open(encoding="utf-8") as handle:
            first = json.loads(handle.readline())
        listed_bytes = len(json.dumps({"duplicates": first["duplicates"]}, separators=(",", ":")))
        return {
            "mode": "seeded",
            "images": count,
            "hashes": kind,
            "finalise_s": round(after_s, 1),
            "results_jsonl_bytes": results_bytes,
            "summary_json_bytes": summary_bytes,
            "groups": {tier: len(groups) for tier, groups in summary["duplicates"].items()},
            "duplicates_capped": summary["duplicates_capped"],
            "before_finalise_s_extrapolated": round(per_image_s * count, 1),
            "before_results_jsonl_bytes_extrapolated": int(
                results_bytes + count * (dup_bytes - listed_bytes)
            ),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def daemon(count: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-dup-daemon-"))
    try:
        for name in ("inbox", "outbox", "archive", "staging/blank"):
            (root / name).mkdir(parents=True)
        for index in range(count):
            (root / "staging" / "blank" / f"{index:06d}.png").write_bytes(solid_png(index))
        config = root / "medianalysed.toml"
        config.write_text(
            '[daemon]\nstate_dir = "state"\n[metrics]\nlisten = ""\n'
            '[[inbox]]\nname = "default"\npath = "inbox"\noutbox = "outbox"\n'
            'archive = "archive"\nsettle_seconds = 0.5\n',
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        with (root / "daemon.log").open("wb") as log:
            process = start_daemon(config, log, env=env)
            try:
                return _watch(root, count, process)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=120)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _watch(root: Path, count: int, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    os.rename(root / "staging" / "blank", root / "inbox" / "blank")
    outbox = root / "outbox" / "blank"
    dropped = time.monotonic()
    finalising_at = None
    while not (outbox / "summary.json").exists():
        if process.poll() is not None:
            raise RuntimeError((root / "daemon.log").read_text(errors="replace")[-3000:])
        if finalising_at is None:
            try:
                live = json.loads((outbox / "status.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                live = {}
            if live.get("phase") == "finalizing":
                finalising_at = time.monotonic()
        time.sleep(0.1)
    done = time.monotonic()
    summary = json.loads((outbox / "summary.json").read_text(encoding="utf-8"))
    assert summary["counts"]["done"] == count, summary["counts"]
    return {
        "mode": "daemon",
        "images": count,
        "analyse_s": round((finalising_at or done) - dropped, 1),
        "finalise_s": round(done - (finalising_at or done), 1),
        "results_jsonl_bytes": (outbox / "results.jsonl").stat().st_size,
        "summary_json_bytes": (outbox / "summary.json").stat().st_size,
        "groups": {tier: len(groups) for tier, groups in summary["duplicates"].items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeded", type=int, nargs="*", default=[])
    parser.add_argument("--hashes", choices=("identical", "cluster"), default="identical")
    parser.add_argument("--daemon", type=int, nargs="*", default=[])
    args = parser.parse_args()
    for count in args.seeded:
        print(json.dumps(seeded(count, args.hashes)), flush=True)
    for count in args.daemon:
        print(json.dumps(daemon(count)), flush=True)


if __name__ == "__main__":
    main()
