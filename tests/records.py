"""Per-image records as `results.jsonl` holds them, built small for the outbox tests."""

from __future__ import annotations


def record(path: str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "path": path,
        "group": path.partition("/")[0] if "/" in path else None,
        "status": "done",
        "error": None,
        "attempts": 1,
        "duration_ms": 1.5,
        "file": None,
        "image": None,
        "exif": None,
        "colors": None,
        "hashes": None,
        "duplicates": [],
        "analysis_version": 1,
    }
    base.update(fields)
    return base


def dup(tier: str, path: str, seen_in: str | None = None) -> dict[str, object]:
    return {"tier": tier, "path": path, "seen_in": seen_in, "distances": {}}


def error(code: str) -> dict[str, object]:
    return {"code": code, "message": "m", "retryable": False}
