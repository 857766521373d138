"""End-to-end on the corpus that ships with the repository (tests/corpus/essential): every
decoder, EXIF orientation and GPS, the duplicate tiers, a truncated file and a non-image, so a
clone without the shared corpora still tests the core path through the real daemon."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.harness import DaemonProcess, write_config

pytestmark = pytest.mark.e2e


def test_the_essential_corpus_through_the_daemon(tmp_path: Path, essential_corpus: Path) -> None:
    daemon = DaemonProcess(tmp_path, write_config(tmp_path)).start()
    try:
        shutil.copytree(essential_corpus, tmp_path / "staging" / "essential")
        (tmp_path / "staging" / "essential").rename(daemon.inbox / "essential")
        summary = daemon.summary("essential")
        records = {record["path"]: record for record in daemon.results("essential")}
    finally:
        daemon.stop_quietly()

    assert summary["status"] == "partial"
    assert summary["counts"]["total"] == 11
    assert summary["failures"] == {"CORRUPT": 1, "UNSUPPORTED_FORMAT": 1}
    formats = {path: (r["image"] or {}).get("format") for path, r in records.items()}
    assert {formats[name] for name in ("city.tiff", "sunset.heic", "palette.gif")} == {
        "TIFF",
        "HEIF",
        "GIF",
    }
    assert formats["copies/harbour.webp"] == "WEBP"
    assert records["broken/truncated.jpg"]["error"]["code"] == "CORRUPT"
    assert records["notes.txt"]["status"] == "skipped"
    assert records["meadow-rotated.jpg"]["image"]["orientation"] == 6
    gps = records["harbour.jpg"]["exif"]["gps"]
    assert gps["lat"] == pytest.approx(43.4674, abs=1e-3)
    assert gps["lon"] == pytest.approx(11.8851, abs=1e-3)
    tiers = {d["path"]: d["tier"] for d in records["harbour.jpg"]["duplicates"]}
    assert tiers["copies/harbour-copy.jpg"] == "exact"
    assert tiers["copies/harbour-small.jpg"] == "near"
    assert "copies/harbour.webp" in tiers
    assert {d["path"] for d in records["city.png"]["duplicates"]} == {"city.tiff"}
    assert not records["sunset.heic"]["duplicates"]
