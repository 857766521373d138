"""The invariant checker itself: it sees every kind of broken outbox it claims to see.

Each test builds a small outbox by hand (a correct one, then one thing wrong) so a checker that
silently passed everything would fail here.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.generated.invariant import Expected, check_outbox, expected_inputs


def _record(path: str, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"path": path, "status": "done", "error": None, "file": None}
    record.update(extra)
    return record


def _good_records() -> list[dict[str, Any]]:
    return [
        _record("a.jpg"),
        _record("sub/\\xff.png", path_bytes=base64.b64encode(b"sub/\xff.png").decode()),
        _record("urls.txt#L0001"),
        _record("urls.txt#L0002/", status="failed", error=_error("NETWORK_ERROR", True)),
    ]


def _error(code: str, retryable: bool) -> dict[str, Any]:
    return {"code": code, "message": "what went wrong", "retryable": retryable}


def _write(outbox: Path, records: list[dict[str, Any]], *, status: str = "partial") -> Path:
    outbox.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(record) + "\n" for record in records)
    (outbox / "results.jsonl").write_text(lines, encoding="utf-8")
    rows = "path\n" + "".join(f'"{record["path"]}"\n' for record in records)
    (outbox / "results.csv").write_bytes(rows.encode())
    counts = {"total": len(records), "done": 0, "failed": 0, "skipped": 0}
    for record in records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    summary = {"status": status, "counts": counts}
    (outbox / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return outbox


EXPECTED = Expected(
    local=frozenset({b"a.jpg", b"sub/\xff.png", b"urls.txt#L0001"}),
    url_lines=1,
    secrets=frozenset({"Zq9SeCrEtabcdefabcdef"}),
    forbidden_hashes=frozenset({"f" * 64}),
)


def _kinds(outbox: Path, expected: Expected = EXPECTED) -> set[str]:
    return {violation.kind for violation in check_outbox(expected, outbox)}


def test_a_correct_outbox_has_no_violation(tmp_path):
    assert _kinds(_write(tmp_path / "o", _good_records())) == set()


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        (lambda r: r.pop(0), "missing-record"),
        (lambda r: r.append(_record("a.jpg")), "duplicate-path"),
        (lambda r: r.append(_record("stray.jpg")), "unknown-record"),
        (lambda r: r[1].pop("path_bytes"), "missing-record"),
        (lambda r: r[0].update(status="failed"), "error-missing"),
        (lambda r: r[0].update(status="failed", error=_error("NOPE", False)), "error-code"),
        (lambda r: r[0].update(status="failed", error=_error("CORRUPT", True)), "error-retryable"),
        (lambda r: r[0].update(status="failed", error=_error("TOO_LARGE", False)), "error-status"),
        (lambda r: r[0].update(status="skipped", error=_error("INTERNAL", False)), "error-status"),
        (lambda r: r[3]["error"].update(message="x" * 201), "error-message"),
        (lambda r: r[3]["error"].update(message="two\nlines"), "error-message"),
        (lambda r: r[0].update(status="failed", error=_error("CORRUPT", False)), "file-missing"),
        (lambda r: r[0].update(status="pending"), "image-status"),
        (
            lambda r: r[0].update(file={"source_url": "http://u:Zq9SeCrEtabcdefabcdef@h/"}),
            "secret-leak",
        ),
        (lambda r: r[0].update(file={"sha256": "f" * 64}), "outside-read"),
    ],
)
def test_each_broken_record_is_reported(tmp_path, change, kind):
    records = _good_records()
    change(records)
    assert kind in _kinds(_write(tmp_path / "o", records))


def test_a_non_terminal_summary_and_a_missing_results_file_are_reported(tmp_path):
    outbox = _write(tmp_path / "o", _good_records(), status="processing")
    assert "not-terminal" in _kinds(outbox)
    (outbox / "results.jsonl").unlink()
    assert "missing-file" in _kinds(outbox)


def test_a_csv_row_split_by_a_bare_carriage_return_is_told_apart(tmp_path):
    outbox = _write(tmp_path / "o", _good_records())
    (outbox / "results.csv").write_bytes(b"path\na\rb\nc\nd\ne\n")
    assert "csv-rows-cr" in _kinds(outbox)
    (outbox / "results.csv").write_bytes(b"path\na\n")
    assert "csv-rows" in _kinds(outbox)


def test_the_input_model_follows_spec_section_1(tmp_path):
    root = tmp_path / "batch"
    (root / "sub" / "@eaDir").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for name in (b"a.jpg", b"Thumbs.DB", b"._a.jpg", b".ready", b"batch.toml", b"sub/urls.txt"):
        Path(os.fsdecode(os.fsencode(root) + b"/" + name)).write_bytes(b"x")
    (root / "sub" / "@eaDir" / "x.jpg").write_bytes(b"x")
    (root / ".hidden" / "x.jpg").write_bytes(b"x")
    os.symlink("/etc/passwd", root / "link")
    os.mkfifo(root / "fifo")
    (root / "urls.txt").write_bytes(b"\xef\xbb\xbf# c\n\n  \t\nhttp://a/\r\n\xff\nnot a url\n#x")

    expected = expected_inputs(root)

    assert expected.local == {b"a.jpg", b"sub/urls.txt", b"link", b"fifo"}
    assert expected.url_lines == 3
    os.unlink(root / "urls.txt")
    os.symlink("/etc/passwd", root / "urls.txt")
    assert expected_inputs(root).url_lines == 1  # one REFUSED record for the link itself


def test_a_tree_holding_a_ready_entry_is_built_with_its_marker(tmp_path):
    from tests.generated.materialise import Materialiser
    from tests.generated.spec import BatchSpec, Blob, Folder

    tree = Folder(((b".ready", Blob(b"not empty", "marker-like")), (b"a.jpg", Blob(b"x", "x"))))
    spec = BatchSpec(b"", tree, None, None, b"\n", final_newline=True, ready_marker=True)
    planted = Materialiser(tmp_path / "s", tmp_path / "o", server=None).build(spec, b"b")
    assert (planted.path / ".ready").read_bytes() == b"not empty"
    assert expected_inputs(planted.path).local == {b"a.jpg"}
