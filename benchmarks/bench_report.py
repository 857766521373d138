"""report.html and duplicates.gexf for a large batch: size, render time, Chromium load time.

    nice -n 19 .venv/bin/python benchmarks/bench_report.py --images 10000 --duplicates 0.1

N final records are synthesised the way the outbox writer sees them: a share `--duplicates` of
the images in groups of three (exact, same_pixels and near members), 1 % failed, the rest
alone; every record carries a real thumbnail (`thumbnails.thumbnail` of a corpus photo's
reduced decode, as the worker makes it, cycled) so the thumbnail bytes are those of photos.
The records go through the real `SummaryBuilder`, `ReportCollector`, `reporthtml` and `gexf`
code; the page is then loaded in headless Chromium (`tests/chromium.py`) and the time to its
load event is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from medianalysed import gexf, report, reporthtml
from medianalysed.decoding import decode_working, reduce_for_hashes
from medianalysed.dupactions import duplicate_fields
from medianalysed.outbox import write_lines_atomic
from medianalysed.outboxsummary import SummaryBuilder
from medianalysed.thumbnails import thumbnail

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests import chromium  # noqa: E402 - after the path is set

CORPUS = ROOT.parent / "shared" / "corpora" / "exif-samples" / "jpg"
_TIERS = ("exact", "same_pixels", "near")


def _thumbnails(count: int) -> list[str]:
    photos = sorted(CORPUS.rglob("*.jpg"))[:count]
    made = []
    for photo in photos:
        with Image.open(photo) as image:  # the worker's own path: one reduced decode
            made.append(thumbnail(reduce_for_hashes(decode_working(image)).image, 1))
    return made


def _record(index: int, group: int | None, member: int) -> dict[str, Any]:
    path = f"folder-{index // 500:03d}/IMG_{index:06d}.jpg"
    matches = None
    keeper = None
    if group is not None:
        base = index - member
        matches = [
            {
                "tier": _TIERS[(member + other) % 3],
                "path": f"folder-{(base + other) // 500:03d}/IMG_{base + other:06d}.jpg",
                "seen_in": None,
                "distances": {"phash": 2, "dhash": 4, "ahash": 1, "whash": 3, "colorhash": 0},
            }
            for other in range(3)
            if other != member
        ]
        keeper = None if member == 0 else f"folder-{base // 500:03d}/IMG_{base:06d}.jpg"
    return {
        "path": path,
        "status": "done",
        "error": None,
        "attempts": 1,
        "duration_ms": 20.0,
        "file": {"size": 3_000_000 + index, "sha256": "0" * 64, "mtime": "2025-01-01T00:00:00Z"},
        "image": {"format": "JPEG", "width": 4000, "height": 3000 - member},
        "exif": {
            "make": "Canon",
            "model": f"Canon EOS R{index % 4}",
            "datetime_original": f"20{20 + index % 5}-{1 + index % 12:02d}-01T10:00:00",
        },
        "colors": {
            "dominant": [{"hex": f"#{index % 256:02x}8040", "ratio": 0.4}] * 5,
            "average": "#808080",
        },
        "duplicates": matches,
        "duplicate_group": None if keeper is None and matches is None else (keeper or path),
        **duplicate_fields(matches, keeper),
    }


def _failed(index: int) -> dict[str, Any]:
    return {
        "path": f"broken/{index:06d}.jpg",
        "status": "failed",
        "error": {"code": "CORRUPT", "message": "cannot decode: image file is truncated"},
        "attempts": 3,
        "duration_ms": 4.0,
        "file": {"size": 1000},
    }


def run(images: int, share: float) -> dict[str, Any]:
    thumbs = _thumbnails(40)
    grouped = int(images * share) // 3 * 3
    failed = images // 100
    builder = SummaryBuilder()
    collector = report.ReportCollector()
    started = time.perf_counter()
    for index in range(images - failed):
        in_group = index < grouped
        record = _record(index, index // 3 if in_group else None, index % 3)
        builder.add(record)
        collector.add(record, thumbs[index % len(thumbs)])
    for index in range(failed):
        record = _failed(index)
        builder.add(record)
        collector.add(record, None)
    collected = time.perf_counter() - started
    summary = builder.build(
        status_fields={"batch_id": "bench", "status": "partial", "counts": {"total": images}},
        config_fingerprint="bench",
    )
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory)
        started = time.perf_counter()
        write_lines_atomic(out / "report.html", reporthtml.lines(summary, collector.data))
        rendered = time.perf_counter() - started
        started = time.perf_counter()
        write_lines_atomic(out / "duplicates.gexf", gexf.lines(builder.duplicate_groups, "bench"))
        graphed = time.perf_counter() - started
        started = time.perf_counter()
        loaded = chromium.load(
            out / "report.html", {"imgs": "document.images.length"}, screenshot=False
        )
        browser = time.perf_counter() - started
        return {
            "images": images,
            "grouped": grouped,
            "failed": failed,
            "report_bytes": (out / "report.html").stat().st_size,
            "gexf_bytes": (out / "duplicates.gexf").stat().st_size,
            "summary_bytes": len(json.dumps(summary)),
            "thumbnails_in_page": loaded.values["imgs"],
            "mean_thumbnail_bytes": sum(len(t) for t in thumbs) // len(thumbs),
            "collect_s": round(collected, 3),
            "render_s": round(rendered, 3),
            "gexf_s": round(graphed, 3),
            "chromium_load_s": round(browser, 2),
            "console_messages": len(loaded.console),
            "requests_off_page": [
                u for u in loaded.requests if not u.startswith(("file:", "data:"))
            ],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10_000, help="batch size (default 10000)")
    parser.add_argument(
        "--duplicates", type=float, default=0.1, help="share of images in groups (default 0.1)"
    )
    args = parser.parse_args()
    print(json.dumps(run(args.images, args.duplicates), indent=2))


if __name__ == "__main__":
    main()
