"""report.html: what it holds, its bounds, and how a real headless Chromium loads it."""

from __future__ import annotations

import html.parser
from pathlib import Path
from typing import Any

from PIL import Image

from medianalysed import report, reporthtml
from medianalysed.dupactions import duplicate_fields
from medianalysed.outbox import write_lines_atomic
from medianalysed.outboxsummary import SummaryBuilder
from medianalysed.thumbnails import thumbnail
from tests import chromium

ARTEFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artefacts"
HOSTILE = 'x/<img src="http://127.0.0.1:9/leak.png">\x01".jpg'


def _thumb(colour: str) -> str:
    return thumbnail(Image.new("RGB", (256, 192), colour), 1)


def _match(tier: str, path: str, seen_in: str | None = None) -> dict[str, Any]:
    return {"tier": tier, "path": path, "seen_in": seen_in, "distances": {"phash": 2, "dhash": 5}}


def _done(path: str, matches: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    keeper = fields.pop("keeper", None)
    width = fields.pop("width", 400)
    return {
        "path": path,
        "status": "done",
        "error": None,
        "attempts": 1,
        "duration_ms": 12.0,
        "file": {"size": 123_456},
        "image": {"format": "JPEG", "width": width, "height": 300},
        "exif": {"make": "Canon", "model": "Canon EOS R5", "datetime_original": fields.pop("date")},
        "colors": {"dominant": [{"hex": "#aa3322", "ratio": 0.6}], "average": "#884433"},
        "duplicates": matches,
        "duplicate_count": len(matches or []),
        **duplicate_fields(matches, keeper),
        **fields,
    }


def _batch() -> list[tuple[dict[str, Any], str | None]]:
    """A batch of six: a group of three, one image seen before, one failure, one alone."""
    return [
        (
            _done(
                "a.jpg",
                [_match("exact", "sub/c.jpg"), _match("near", "b.jpg")],
                duplicate_group="a.jpg",
                date="2024-05-01T10:00:00",
                width=800,
            ),
            _thumb("red"),
        ),
        (_done("alone.jpg", date="2023-01-02T00:00:00"), _thumb("white")),
        (
            _done(
                "b.jpg",
                [_match("near", "a.jpg")],
                duplicate_group="a.jpg",
                keeper="a.jpg",
                date="2024-06-01T10:00:00",
            ),
            _thumb("green"),
        ),
        (
            {
                "path": "broken.jpg",
                "status": "failed",
                "error": {
                    "code": "CORRUPT",
                    "message": "cannot decode: truncated",
                    "retryable": False,
                },
                "attempts": 1,
                "duration_ms": 3.0,
                "file": {"size": 10},
            },
            None,
        ),
        (
            _done(
                "sub/c.jpg",
                [_match("exact", "a.jpg")],
                duplicate_group="a.jpg",
                keeper="a.jpg",
                date="2024-05-01T10:00:00",
            ),
            _thumb("blue"),
        ),
        (
            _done(HOSTILE, [_match("exact", "old.jpg", "holiday")], date="2022-12-24T18:00:00"),
            _thumb("yellow"),
        ),
    ]


def _render(tmp_path: Path, batch: list[tuple[dict[str, Any], str | None]]) -> Path:
    builder = SummaryBuilder()
    collector = report.ReportCollector()
    for record, thumb in batch:
        builder.add(record)
        collector.add(record, thumb)
    counts = {"total": len(batch), "done": len(batch) - 1, "failed": 1, "skipped": 0}
    fields = {"batch_id": "trip <2024>", "status": "partial", "counts": counts}
    summary = builder.build(status_fields=fields, config_fingerprint="f")
    page = tmp_path / report.REPORT_FILE
    write_lines_atomic(page, reporthtml.lines(summary, collector.data))
    return page


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(page: Path) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.tags


def test_the_page_is_self_contained_and_escapes_names(tmp_path: Path):
    page = _render(tmp_path, _batch())
    tags = _tags(page)
    assert not [t for t, _ in tags if t in {"script", "link", "iframe", "object"}]
    sources = [attrs["src"] or "" for tag, attrs in tags if tag == "img"]
    assert len(sources) == 4  # a, b, c of the group and the one seen before; none for the failure
    assert all(src.startswith("data:image/jpeg;base64,") for src in sources)
    text = page.read_text(encoding="utf-8")
    assert "http://127.0.0.1:9" in text  # shown as text...
    assert '<img src="http' not in text  # ...never as markup
    assert "\x01" not in text
    assert "CORRUPT" in text
    assert "cannot decode: truncated" in text
    assert "trip &lt;2024&gt;" in text
    groups = [attrs for tag, attrs in tags if tag == "div" and "data-group" in attrs]
    assert [g["data-group"] for g in groups] == ["a.jpg", HOSTILE.replace("\x01", "\\x01")]
    keepers = [attrs["data-path"] for tag, attrs in tags if attrs.get("class") == "member keeper"]
    assert keepers[0] == "a.jpg"


def test_thumbnails_are_bounded_per_group_and_the_keeper_is_always_shown(monkeypatch):
    monkeypatch.setattr(report, "GROUP_THUMBNAILS", 2)
    collector = report.ReportCollector()
    thumb = _thumb("red")
    # The largest image comes last in path order, after the quota is used up.
    for index, width in enumerate((100, 100, 100, 900)):
        record = _done(
            f"{index}.jpg", [_match("near", "0.jpg")], duplicate_group="0.jpg", date="2024-01-01"
        )
        record["image"]["width"] = width
        collector.add(record, thumb)
    shown = collector.data.groups["0.jpg"].thumbnails
    assert "3.jpg" in shown
    assert len(shown) == 2
    assert collector.data.thumbnails_kept == 2


def test_the_table_and_the_thumbnails_have_a_ceiling(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(report, "MAX_ROWS", 3)
    monkeypatch.setattr(report, "MAX_THUMBNAILS", 1)
    page = _render(tmp_path, _batch())
    text = page.read_text(encoding="utf-8")
    assert "and 3 more in results.csv" in text
    assert text.count("data:image/jpeg") == 1


def test_chromium_loads_it_with_no_console_error_no_request_and_one_image_per_member(
    tmp_path: Path,
):
    page = _render(tmp_path, _batch())
    loaded = chromium.load(
        page,
        {
            "groups": "document.querySelectorAll('#duplicates .group').length",
            "members": "[...document.querySelectorAll('.group')].map(g => [g.dataset.size,"
            " g.querySelectorAll('figure').length, g.querySelectorAll('img').length,"
            " [...g.querySelectorAll('img')].filter(i => i.complete && i.naturalWidth > 0)"
            ".length])",
            "failures": "document.querySelectorAll('#failures tr.failure').length",
            "rows": "document.querySelectorAll('#images tr').length - 1",
            "hist": "document.querySelectorAll('#dates .hist div').length",
        },
    )
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTEFACTS / "report-html.png"
    screenshot.write_bytes(loaded.screenshot)
    print(f"report.html screenshot: {screenshot}")

    assert loaded.console == []
    assert [url for url in loaded.requests if not url.startswith(("file:", "data:"))] == []
    assert loaded.values["groups"] == 2
    # Group a.jpg: 3 files, 3 decoded images; the one seen before: itself and its earlier copy.
    assert loaded.values["members"] == [["3", 3, 3, 3], ["2", 2, 1, 1]]
    assert loaded.values["failures"] == 1
    assert loaded.values["rows"] == 6
    assert loaded.values["hist"] == 19  # every month from 2022-12 to 2024-06
    assert loaded.screenshot.startswith(b"\x89PNG")


def test_the_chromium_check_sees_a_request_and_a_console_error(tmp_path: Path):
    # The control: a page that does what report.html must not is caught.
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><body><img src='http://127.0.0.1:9/x.png'>"
        "<script>console.error('boom')</script></body></html>",
        encoding="utf-8",
    )
    loaded = chromium.load(page, {})
    assert "http://127.0.0.1:9/x.png" in loaded.requests
    assert any(entry.get("type") == "error" for entry in loaded.console)


def test_dates_are_every_month_between_the_first_and_the_last_or_years_past_ten():
    months, unit = reporthtml._buckets({"2024-11": 2, "2025-02": 1, "junk": 9})
    assert unit == "per month"
    assert months == [("2024-11", 2), ("2024-12", 0), ("2025-01", 0), ("2025-02", 1)]
    years, unit = reporthtml._buckets({"2001-03": 1, "2001-07": 2, "2012-01": 4})
    assert unit == "per year"
    assert years[0] == ("2001", 3)
    assert years[-1] == ("2012", 4)
    assert len(years) == 12
    assert reporthtml._buckets({}) == ([], "")
