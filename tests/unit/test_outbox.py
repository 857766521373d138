"""Outbox: atomic, durable writes; readers see no file or a whole one."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from medianalysed.errors import OutboxError
from medianalysed.outbox import write_atomic, write_json_atomic


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# --- atomic writes ---------------------------------------------------------------------------


def test_write_atomic_writes_and_replaces_leaving_no_temp(tmp_path):
    target = tmp_path / "status.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert temp_files(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_write_json_atomic_format(tmp_path):
    target = tmp_path / "summary.json"
    write_json_atomic(target, {"z": 1, "a": "café", "n": None})
    assert target.read_text(encoding="utf-8") == '{\n  "z": 1,\n  "a": "café",\n  "n": null\n}\n'


def test_undecodable_file_names_round_trip_through_json(tmp_path):
    name = b"IMG_\xff.jpg".decode("utf-8", "surrogateescape")
    target = tmp_path / "s.json"
    write_json_atomic(target, {"path": name})
    raw = target.read_bytes()
    raw.decode("utf-8")  # the file itself is valid UTF-8
    assert json.loads(raw) == {"path": name}


def test_readers_never_see_a_partial_file(tmp_path):
    target = tmp_path / "summary.json"
    payloads = [
        json.dumps({"round": n, "blob": str(n) * 4_000_000}).encode() + b"\n" for n in range(6)
    ]

    def write_all() -> None:
        for payload in payloads:
            write_atomic(target, payload)

    writer = threading.Thread(target=write_all)
    observed: set[int] = set()
    writer.start()
    try:
        deadline = time.monotonic() + 60
        while writer.is_alive() and time.monotonic() < deadline:
            for entry in tmp_path.iterdir():
                if entry.name == target.name:
                    observed.add(json.loads(entry.read_bytes())["round"])
                else:
                    assert entry.name.startswith(".summary.json.")
                    assert entry.name.endswith(".tmp")
    finally:
        writer.join(timeout=60)
    assert not writer.is_alive()
    assert json.loads(target.read_bytes())["round"] == 5
    assert observed <= set(range(6))
    assert temp_files(tmp_path) == []


def test_write_into_a_missing_directory_raises_outbox_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("file")
    with pytest.raises(OutboxError, match=r"not-a-dir/status\.json.*Not a directory"):
        write_atomic(blocker / "status.json", b"{}")
    assert temp_files(tmp_path) == []


def test_failed_rename_removes_the_temp_file(tmp_path):
    target = tmp_path / "results.jsonl"
    target.mkdir()
    (target / "occupied").write_text("x")  # rename over a non-empty directory fails
    with pytest.raises(OutboxError, match=r"results\.jsonl"):
        write_atomic(target, b"data")
    assert temp_files(tmp_path) == []


def test_non_serialisable_json_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "s.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


# --- results ---------------------------------------------------------------------------------
