"""Batches whose images all resemble each other (issue 15), for the e2e tests and the benchmark.

Solid-colour PNGs to drop into a daemon (distinct files, distinct pixels, one pHash), and
analysed look-alikes seeded in a state store as a batch about to finalise, as after a crash:
the daemon (or a `BatchActor`) resumes it without analysing thousands of images first.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from medianalysed.models import BatchStatus, ImageStatus
from medianalysed.state import ImageRecord, StateStore
from tests.seeding import seed_batch

BATCH_ID = "many"
BLANK_PHASH = 0x8000000000000000  # a blank page's pHash, and every solid colour's but black's
ONE_COLORHASH = "00000000000"


def solid_png(index: int) -> bytes:
    """A 24x24 PNG of one colour, a different colour for every index below 65,536."""
    colour = (index % 256, (index // 256) % 256, (index * 7) % 256)
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(buffer, "PNG")
    return buffer.getvalue()


def seeded_path(index: int) -> str:
    return f"scan-{index:06d}.png"


def analysed_lookalike(index: int, phash: int, colorhash: str) -> ImageRecord:
    """The done record of a seeded 24x24 white PNG: its own sha256 and pixels, given hashes."""
    result = {
        "file": {
            "size": 100,
            "sha256": f"{index:064x}",
            "mtime": "2026-01-01T00:00:00Z",
            "source_url": None,
        },
        "image": {"format": "PNG", "mime": "image/png", "width": 24, "height": 24, "mode": "RGB"},
        "exif": None,
        "colors": {"dominant": [{"hex": "#ffffff", "ratio": 1.0}], "average": "#ffffff"},
        "hashes": {
            "ahash": "0000000000000000",
            "phash": f"{phash:016x}",
            "dhash": "0000000000000000",
            "whash": "0000000000000000",
            "colorhash": colorhash,
        },
        "pixel_digest": f"px{index}",
    }
    return ImageRecord(
        path=seeded_path(index), status=ImageStatus.DONE, attempts=1, result=result, duration_ms=1.0
    )


def seed_finalising_batch(
    root: Path,
    phashes: Sequence[int],
    colorhash: Callable[[int], str] = lambda _index: ONE_COLORHASH,
) -> None:
    """Batch `many` of one analysed look-alike per pHash, stopped just before finalising, in
    the state store under `root / "state"`; its input is gone (nothing to archive)."""
    count = len(phashes)
    images = (
        analysed_lookalike(index, phash, colorhash(index)) for index, phash in enumerate(phashes)
    )
    counts = {"total": count, "pending": 0, "processing": 0, "done": count}
    store = StateStore(root / "state")
    try:
        seed_batch(
            store,
            root,
            BATCH_ID,
            images,
            status=BatchStatus.COMPLETED,
            phase="finalizing",
            created_at="2026-01-01T00:00:00.000Z",
            started_at="2026-01-01T00:00:00.000Z",
            completed_at="2026-01-01T00:10:00.000Z",
            final_counts={**counts, "failed": 0, "skipped": 0},
        )
    finally:
        store.close()
