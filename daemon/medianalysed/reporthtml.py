"""`report.html`: one self-contained page for a person (SPEC §4), rendered from the summary and
the `report.ReportData` of the same pass.

The standard library renders it (`html.escape` in one place, `_e`): the page is a few fixed
sections, and Jinja2 would add a dependency and ~65 ms of import to the daemon for no safety
we lack (every value goes through `_e`). No script, no external resource: a Content-Security-
Policy of `default-src 'none'` with inline styles and `data:` images only, so even a hostile
file name cannot make the page load anything.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from medianalysed.gexf import xml_text
from medianalysed.report import (
    GROUP_THUMBNAILS,
    PALETTE_SIZE,
    Closest,
    Failure,
    ReportData,
    Row,
)
from medianalysed.thumbnails import THUMBNAIL_SIDE, data_uri
from medianalysed.wording import plural

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.6em;margin:0 0 .2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.muted{color:#777}.tiles{display:flex;flex-wrap:wrap;gap:.6em}
.tile{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5em .9em;min-width:7em}
.tile b{display:block;font-size:1.5em}
.group{background:#fff;border:1px solid #ddd;border-radius:6px;margin:.8em 0;padding:.6em}
.group h3{margin:0 0 .4em;font-size:1em}.members{display:flex;flex-wrap:wrap;gap:.6em}
figure{margin:0;width:140px;font-size:12px;overflow-wrap:anywhere}
figure.keeper{outline:3px solid #2a8;outline-offset:2px}
.thumb{width:128px;height:128px;object-fit:contain;background:#eee;display:block}
.none{width:128px;height:128px;background:#eee;display:flex;align-items:center;
justify-content:center;text-align:center;color:#777}
.tier-exact{color:#b22}.tier-same_pixels{color:#c60}.tier-near{color:#26a}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:2px 6px;
text-align:left;vertical-align:top}td.n{text-align:right}
.bar{background:#6a9;height:12px;display:inline-block}
.hist{display:flex;align-items:flex-end;gap:2px;height:120px;border-bottom:1px solid #999}
.hist div{background:#6a9;min-width:8px;flex:1}
.sw{display:inline-block;width:14px;height:14px;border:1px solid #0003;vertical-align:middle}
.palette .sw{width:40px;height:40px}
table.rows{table-layout:fixed;width:100%}table.rows td{overflow-wrap:anywhere}
.chunk{content-visibility:auto;contain-intrinsic-size:auto 12000px}
.pal{display:inline-block;width:60px;height:14px;border:1px solid #0003}
"""


def _e(value: object) -> str:
    """Text for HTML: escaped, with characters XML forbids written as escapes."""
    return html.escape(xml_text(str(value)), quote=True)


def _tile(label: str, value: object) -> str:
    return f'<div class="tile"><b>{_e(value)}</b>{_e(label)}</div>'


def _percent(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{value * 100:.1f} %"


def _counts(summary: Mapping[str, Any]) -> Iterator[str]:
    counts = summary.get("counts") or {}
    durations = summary.get("duration_ms") or {}
    yield '<section id="counts"><h2>Counts</h2><div class="tiles">'
    for key in ("total", "done", "failed", "skipped"):
        yield _tile(key, counts.get(key, 0))
    yield _tile("success rate", _percent(summary.get("success_rate")))
    yield _tile("failed ratio", summary.get("failed_ratio", "-"))
    yield _tile("retries", summary.get("retries", 0))
    for key in ("p50", "p95", "max"):
        value = durations.get(key)
        yield _tile(f"analysis {key}", "-" if value is None else f"{value} ms")
    yield "</div></section>\n"


def _distances(distances: Mapping[str, int | None]) -> str:
    shown = [f"{name} {value}" for name, value in distances.items() if value is not None]
    return ", ".join(shown)


def _figure(
    member: Mapping[str, Any],
    row: Row | None,
    closest: Closest | None,
    thumb: str | None,
    *,
    keeper: bool,
) -> str:
    path, seen_in, tier = member["path"], member.get("seen_in"), str(member.get("tier"))
    if thumb is not None:
        image = (
            f'<img class="thumb" src="{data_uri(thumb)}" alt="{_e(path)}"'
            f' width="{THUMBNAIL_SIDE}" height="{THUMBNAIL_SIDE}">'
        )
    else:
        image = f'<div class="none">{_e("in " + seen_in if seen_in else "no thumbnail")}</div>'
    lines = [f"<b>{_e(path)}</b>", f'<span class="tier-{_e(tier)}">{_e(tier)}</span>']
    if keeper:
        lines.append("<b>keep</b>")
    if seen_in:
        lines.append(f"seen in {_e(seen_in)}")
    if row is not None:
        lines.extend(_e(part) for part in (row.size, _bytes(row.bytes), row.date) if part)
    if closest is not None and closest.path != path:
        where = f" ({closest.seen_in})" if closest.seen_in else ""
        lines.append(
            f"closest: {_e(closest.path + where)} · {_e(closest.tier)}"
            f" · {_e(_distances(closest.distances))}"
        )
    kind = "member keeper" if keeper else "member"
    caption = "<br>".join(lines)
    return (
        f'<figure class="{kind}" data-path="{_e(path)}" data-seen-in="{_e(seen_in or "")}">'
        f"{image}<figcaption>{caption}</figcaption></figure>"
    )


def _groups(summary: Mapping[str, Any], data: ReportData) -> Iterator[str]:
    groups: Sequence[Mapping[str, Any]] = summary.get("duplicate_groups") or []
    yield f'<section id="duplicates"><h2>Duplicates: {plural(len(groups), "group")}</h2>'
    if not groups:
        yield '<p class="muted">No duplicates.</p>'
    yield (
        '<p class="muted">The suggested keeper (outlined) has the most pixels, then the earliest'
        " date, then the shortest path. Tiers: exact (same bytes), same_pixels (same decoded"
        " pixels), near (similar pHash; distances in bits).</p>"
    )
    for group in groups:
        members = group["members"]
        yield (
            f'<div class="group" data-group="{_e(group["id"])}" data-size="{len(members)}">'
            f"<h3>{_e(group['id'])} · {plural(len(members), 'file')} · keep"
            f' {_e(group["keeper"])}</h3><div class="members">'
        )
        shown = 0
        for member in members:
            thumb = None if member.get("seen_in") else data.thumbnail(group["id"], member["path"])
            if shown >= GROUP_THUMBNAILS and member["path"] != group["keeper"]:
                continue
            shown += 1
            row = None if member.get("seen_in") else data.members.get(member["path"])
            closest = None if member.get("seen_in") else data.closest.get(member["path"])
            keeper = member["path"] == group["keeper"] and not member.get("seen_in")
            yield _figure(member, row, closest, thumb, keeper=keeper)
        if shown < len(members):
            yield f'<p class="muted">and {len(members) - shown} more in summary.json</p>'
        yield "</div></div>\n"
    yield "</section>\n"


def _failures(data: ReportData) -> Iterator[str]:
    yield f'<section id="failures"><h2>Failures: {data.failures_seen}</h2>'
    if not data.failures:
        yield '<p class="muted">Every image was analysed.</p></section>\n'
        return
    yield "<table><tr><th></th><th>path</th><th>status</th><th>code</th><th>message</th></tr>"
    for failure in data.failures:
        yield _failure_row(failure)
    yield "</table>"
    if data.failures_seen > len(data.failures):
        left = data.failures_seen - len(data.failures)
        yield f'<p class="muted">and {left} more in results.csv</p>'
    yield "</section>\n"


def _failure_row(failure: Failure) -> str:
    thumb = (
        f'<img class="thumb" src="{data_uri(failure.thumbnail)}" alt="">'
        if failure.thumbnail
        else ""
    )
    return (
        f'<tr class="failure"><td>{thumb}</td><td>{_e(failure.path)}</td>'
        f"<td>{_e(failure.status)}</td><td>{_e(failure.code)}</td>"
        f"<td>{_e(failure.message)}</td></tr>"
    )


def _bars(title: str, anchor: str, counts: Mapping[str, int]) -> Iterator[str]:
    yield f'<section id="{anchor}"><h2>{_e(title)}</h2>'
    if not counts:
        yield '<p class="muted">None recorded.</p></section>\n'
        return
    top = max(counts.values())
    yield "<table>"
    for name, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        width = max(1, round(200 * count / top))
        yield (
            f'<tr><td>{_e(name)}</td><td class="n">{count}</td>'
            f'<td><span class="bar" style="width:{width}px"></span></td></tr>'
        )
    yield "</table></section>\n"


def _buckets(months: Mapping[str, int]) -> tuple[list[tuple[str, int]], str]:
    """Every month from the first to the last (empty ones too), or every year past 10 years."""
    parsed = sorted((int(m[:4]), int(m[5:7])) for m in months if _is_month(m))
    if not parsed:
        return [], ""
    (first_year, first_month), (last_year, last_month) = parsed[0], parsed[-1]
    if last_year - first_year >= 10:
        years: dict[str, int] = {str(y): 0 for y in range(first_year, last_year + 1)}
        for key, count in months.items():
            if _is_month(key):
                years[key[:4]] += count
        return list(years.items()), "per year"
    buckets = []
    year, month = first_year, first_month
    while (year, month) <= (last_year, last_month):
        key = f"{year:04d}-{month:02d}"
        buckets.append((key, months.get(key, 0)))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return buckets, "per month"


def _is_month(text: str) -> bool:
    return len(text) == 7 and text[:4].isdigit() and text[4] == "-" and text[5:].isdigit()


def _dates(data: ReportData) -> Iterator[str]:
    yield '<section id="dates"><h2>Dates taken</h2>'
    buckets, unit = _buckets(data.months)
    if not buckets:
        yield '<p class="muted">No image has an EXIF date.</p></section>\n'
        return
    top = max(count for _, count in buckets) or 1
    yield '<div class="hist">'
    for label, count in buckets:
        height = round(100 * count / top)
        yield f'<div title="{_e(label)}: {count}" style="height:{height}%"></div>'
    first, last = buckets[0][0], buckets[-1][0]
    yield f'</div><p class="muted">{_e(first)} … {_e(last)}, {unit}</p></section>\n'


def _palette(data: ReportData) -> Iterator[str]:
    yield '<section id="colours"><h2>Colours</h2><div class="palette">'
    ranked = sorted(data.palette.items(), key=lambda item: (-item[1], item[0]))
    for colour, _weight in ranked[:PALETTE_SIZE]:
        yield f'<span class="sw" title="{_e(colour)}" style="background:{_e(colour)}"></span>'
    yield "</div></section>\n"


def _bytes(size: int | None) -> str | None:
    if size is None:
        return None
    for unit in ("B", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return None  # pragma: no cover


def _strip(colours: Sequence[str]) -> str:
    """The dominant colours as one element (a hard-stop gradient): 10,000 rows stay light."""
    if not colours:
        return ""
    step = 100 / len(colours)
    stops = ",".join(
        f"{_e(colour)} {index * step:.0f}% {(index + 1) * step:.0f}%"
        for index, colour in enumerate(colours)
    )
    return f'<span class="pal" style="background:linear-gradient(90deg,{stops})"></span>'


_TABLE_HEAD = (
    '<table class="rows"><colgroup><col style="width:34%"><col style="width:6%">'
    '<col style="width:6%"><col style="width:9%"><col style="width:8%"><col style="width:14%">'
    '<col style="width:14%"><col style="width:9%"></colgroup>'
    "<tr><th>path</th><th>status</th><th>format</th><th>size</th><th>bytes</th>"
    "<th>camera</th><th>date</th><th>colours</th></tr>\n"
)
_CHUNK_ROWS = 500  # rows per table: the browser lays out only the chunks on screen


def _table(data: ReportData) -> Iterator[str]:
    yield f'<section id="images"><h2>Images: {data.records}</h2>'
    for start in range(0, len(data.rows), _CHUNK_ROWS):
        yield f'<div class="chunk">{_TABLE_HEAD}'
        for row in data.rows[start : start + _CHUNK_ROWS]:
            cells = (row.path, row.status, row.format, row.size, _bytes(row.bytes), row.camera)
            yield (
                "<tr>"
                + "".join(f"<td>{_e(cell or '')}</td>" for cell in cells)
                + f"<td>{_e(row.date or '')}</td><td>{_strip(row.dominant[:5])}</td></tr>\n"
            )
        yield "</table></div>"
    if data.records > len(data.rows):
        yield f'<p class="muted">and {data.records - len(data.rows)} more in results.csv</p>'
    yield "</section>\n"


def lines(summary: Mapping[str, Any], data: ReportData) -> Iterator[str]:
    """The page, piece by piece (write them in order)."""
    batch_id = str(summary.get("batch_id", ""))
    yield '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
    yield f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
    yield '<meta name="viewport" content="width=device-width,initial-scale=1">'
    yield f"<title>medianalysed: {_e(batch_id)}</title><style>{_CSS}</style></head><body>\n"
    yield f"<header><h1>{_e(batch_id)}</h1><p>{_e(summary.get('status', ''))}"
    if summary.get("completed_at"):
        yield f" · completed {_e(summary['completed_at'])}"
    if summary.get("duration_seconds") is not None:
        yield f" · {_e(summary['duration_seconds'])} s"
    yield "</p></header>\n"
    yield from _counts(summary)
    yield from _groups(summary, data)
    yield from _failures(data)
    yield from _bars("Cameras", "cameras", summary.get("cameras") or {})
    yield from _dates(data)
    yield from _palette(data)
    yield from _table(data)
    yield "</body></html>\n"
