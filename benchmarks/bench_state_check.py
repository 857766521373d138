"""What the start-up integrity check and a rebuild cost (issue 8: corrupt state is survived).

Usage: .venv/bin/python benchmarks/bench_state_check.py [--images 100000] [--batches 1000]
       [--dir DIR]

Builds a state directory with `--images` image records (one batch) and an outbox with
`--batches` finished batch folders (each with a summary.json), then times, on that real
state: `check_and_repair` on undamaged databases (the cost every start pays), and the same
after the batches database was damaged (move aside + rebuild from the outbox summaries).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from medianalysed.config import InboxConfig
from medianalysed.state import BatchRecord, ImageRecord, StateStore
from medianalysed.staterepair import DATABASES, check_and_repair

CHUNK = 1000


def build(root: Path, images: int, batches: int) -> tuple[Path, InboxConfig]:
    state = root / "state"
    store = StateStore(state)
    batch = BatchRecord(batch_id="big", inbox="default", source="", outbox_dir="")
    store.put_batch(batch)
    for start in range(0, images, CHUNK):
        records = [
            ImageRecord(path=f"dir/{index:08d}.jpg", result={"file": {"sha256": "0" * 64}})
            for index in range(start, min(images, start + CHUNK))
        ]
        store.put_images("big", records)
    store.close()
    for name in DATABASES:
        db = state / name / "cache.db"
        if db.exists():
            connection = sqlite3.connect(str(db))
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.close()
    outbox = root / "outbox"
    for index in range(batches):
        folder = outbox / f"batch{index:05d}"
        folder.mkdir(parents=True)
        summary = {"batch_id": folder.name, "status": "completed", "counts": {"total": 1}}
        (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    inbox = InboxConfig(name="default", path=root / "inbox", outbox=outbox, archive=root / "a")
    (root / "inbox").mkdir()
    return state, inbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-state-"))
    try:
        started = time.perf_counter()
        state, inbox = build(root, args.images, args.batches)
        built = time.perf_counter() - started
        size = sum(p.stat().st_size for p in state.rglob("*") if p.is_file())

        started = time.perf_counter()
        assert check_and_repair(state, [inbox]) == []
        check = time.perf_counter() - started

        with (state / "batches" / "cache.db").open("r+b") as handle:
            handle.write(b"\0" * 100)
        started = time.perf_counter()
        damage = check_and_repair(state, [inbox])
        rebuild = time.perf_counter() - started
        assert [found.name for found in damage] == ["batches"]
        store = StateStore(state)
        restored = sum(1 for _ in store.iter_batches())
        store.close()
        assert restored == args.batches, restored
        print(
            json.dumps(
                {
                    "images": args.images,
                    "state_mb": round(size / 2**20, 1),
                    "build_s": round(built, 2),
                    "check_s": round(check, 3),
                    "batches_restored": restored,
                    "rebuild_s": round(rebuild, 3),
                }
            )
        )
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
