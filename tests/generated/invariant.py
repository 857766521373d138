"""The whole-system invariant: one record per input, batch terminal, nothing leaked.

`expected_inputs` reads a materialised batch folder and applies the SPEC §1 rules on its own
(it does not call the daemon's enumeration, so the two can disagree); `check_outbox` compares
the batch's outbox with it. Both return plain data, so the same checker serves the pure tests,
the end-to-end test and the benchmark.

The SPEC §1 rules as modelled here:
- hidden names (leading `.`) and NAS/OS junk (`@eaDir`, `.DS_Store`, `._*`, `Thumbs.db`,
  `desktop.ini`, `__MACOSX`, any ASCII case) are ignored; an ignored folder is ignored whole;
- at the top of the batch, a non-folder named `batch.toml` or `urls.txt` (or the ready marker)
  is a control file, not an input; anywhere else those are ordinary inputs;
- every other non-folder entry is one input: regular files, symlinks (wherever they point) and
  FIFOs, sockets, devices;
- a top-level `urls.txt` adds one input per line, lines being separated by `\\n`, except
  lines that are blank or start with `#` once whitespace is stripped; one that is a symlink or
  not a regular file is one input (refused), a folder of that name is a group.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import os
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JUNK_NAMES = frozenset({b"@eadir", b".ds_store", b"thumbs.db", b"desktop.ini", b"__macosx"})
CONTROL_FILES = frozenset({b"batch.toml", b"urls.txt"})
READY_MARKER = b".ready"
TERMINAL_BATCH = frozenset({"completed", "partial", "failed", "cancelled"})
IMAGE_STATUSES = frozenset({"done", "failed", "skipped"})
MAX_MESSAGE = 200
# Codes that mean the bytes were read (and hashed) before the failure: the record keeps `file`.
FILE_WAS_READ = frozenset({"CORRUPT", "UNSUPPORTED_FORMAT", "DECOMPRESSION_BOMB", "TOO_SMALL"})

# SPEC §3: code -> (retryable, status the image ends in).
ERROR_TABLE: dict[str, tuple[bool, str]] = {
    "CORRUPT": (False, "failed"),
    "UNSUPPORTED_FORMAT": (False, "skipped"),
    "DECOMPRESSION_BOMB": (False, "failed"),
    "TOO_LARGE": (False, "skipped"),
    "TOO_SMALL": (False, "skipped"),
    "TIMEOUT": (True, "failed"),
    "IO_ERROR": (True, "failed"),
    "NETWORK_ERROR": (True, "failed"),
    "RATE_LIMITED": (True, "failed"),
    "REMOTE_ERROR": (True, "failed"),
    "BAD_REQUEST": (False, "failed"),
    "REFUSED": (False, "failed"),
    "INTERNAL": (False, "failed"),
}


@dataclass(frozen=True, slots=True)
class Violation:
    """One way a batch broke the invariant. `kind` is stable, for counting and reproducers."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Expected:
    """What the outbox of one batch must account for."""

    local: frozenset[bytes]  # batch-relative names of the local inputs
    url_lines: int
    secrets: frozenset[str] = frozenset()
    forbidden_hashes: frozenset[str] = frozenset()

    @property
    def total(self) -> int:
        return len(self.local) + self.url_lines


# --- what the inputs are ------------------------------------------------------------------


def is_ignored(name: bytes) -> bool:
    folded = name.lower()  # ASCII-only lowering: the junk names are ASCII
    return name.startswith(b".") or folded.startswith(b"._") or folded in JUNK_NAMES


def local_inputs(root: Path) -> frozenset[bytes]:
    """Every batch-relative name under `root` that is an input (see the module docstring)."""
    fd = os.open(os.fsencode(root), os.O_RDONLY | os.O_DIRECTORY)
    try:
        return frozenset(_walk(fd, b""))
    finally:
        os.close(fd)


def _walk(fd: int, prefix: bytes) -> Iterator[bytes]:
    for entry in os.listdir(fd):
        name = os.fsencode(entry)
        if is_ignored(name):
            continue
        mode = os.lstat(name, dir_fd=fd).st_mode
        if stat.S_ISDIR(mode):
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            try:
                yield from _walk(child, prefix + name + b"/")
            finally:
                os.close(child)
        elif prefix or name not in CONTROL_FILES:
            yield prefix + name


def url_line_count(root: Path) -> int:
    """How many inputs the top-level `urls.txt` adds.

    None when absent or a folder (then a group); one (REFUSED) when it is a symlink or not a
    regular file; else one per line that is not blank or a comment.
    """
    path = os.path.join(os.fsencode(root), b"urls.txt")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return 0
    if stat.S_ISDIR(mode):
        return 0
    if not stat.S_ISREG(mode):
        return 1
    with open(path, "rb") as handle:
        content = handle.read()
    lines = content.split(b"\n")
    return sum(1 for number, line in enumerate(lines) if is_url_input(line, first=number == 0))


def is_url_input(line: bytes, *, first: bool = False) -> bool:
    """Whether a `urls.txt` line is an input: not blank (Unicode whitespace) nor a `#` comment.

    A line that is not UTF-8 is an input (a malformed one); a byte-order mark before the first
    line is not part of it.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return True
    text = (text.removeprefix("\ufeff") if first else text).strip()
    return bool(text) and not text.startswith("#")


def expected_inputs(
    root: Path, *, secrets: frozenset[str] = frozenset(), forbidden: frozenset[str] = frozenset()
) -> Expected:
    """The inputs of a dropped folder, or of a loose entry (a batch of that one entry)."""
    if not stat.S_ISDIR(os.lstat(os.fsencode(root)).st_mode):
        return Expected(frozenset({os.fsencode(root.name)}), 0, secrets, forbidden)
    return Expected(local_inputs(root), url_line_count(root), secrets, forbidden)


# --- what the outbox says -----------------------------------------------------------------


@dataclass
class _Checker:
    expected: Expected
    outbox: Path
    violations: list[Violation] = field(default_factory=list)

    def fail(self, kind: str, detail: str) -> None:
        self.violations.append(Violation(kind, detail[:600]))


def check_outbox(expected: Expected, outbox: Path) -> list[Violation]:
    """Every way the batch outbox `outbox` breaks the invariant for `expected` (empty = holds)."""
    checker = _Checker(expected, outbox)
    summary = _read_json(checker, outbox / "summary.json")
    records = _read_records(checker)
    if summary is not None:
        _check_summary(checker, summary, records)
    if records is not None:
        _check_records(checker, records)
        _check_csv(checker, len(records))
    _check_leaks(checker)
    return checker.violations


def _read_json(checker: _Checker, path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        checker.fail("missing-file", f"{path.name} does not exist")
        return None
    except (OSError, ValueError) as exc:
        checker.fail("unreadable-file", f"{path.name}: {exc}")
        return None
    if not isinstance(document, dict):
        checker.fail("unreadable-file", f"{path.name} is not a JSON object")
        return None
    return document


def _read_records(checker: _Checker) -> list[dict[str, Any]] | None:
    path = checker.outbox / "results.jsonl"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        checker.fail("missing-file", f"results.jsonl: {exc}")
        return None
    records: list[dict[str, Any]] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            checker.fail("bad-jsonl", f"results.jsonl line {number}: {exc}")
            continue
        if not isinstance(record, dict):
            checker.fail("bad-jsonl", f"results.jsonl line {number} is not an object")
            continue
        records.append(record)
    return records


def _check_summary(
    checker: _Checker, summary: dict[str, Any], records: list[dict[str, Any]] | None
) -> None:
    status = summary.get("status")
    if status not in TERMINAL_BATCH:
        checker.fail("not-terminal", f"summary.json status {status!r}")
    counts = summary.get("counts") if isinstance(summary.get("counts"), dict) else {}
    assert isinstance(counts, dict)
    total = counts.get("total")
    if total != checker.expected.total:
        checker.fail("summary-total", f"counts.total {total!r}, expected {checker.expected.total}")
    if records is None:
        return
    by_status = Counter(str(record.get("status")) for record in records)
    for name in IMAGE_STATUSES:
        if counts.get(name) != by_status.get(name, 0):
            checker.fail(
                "summary-counts",
                f"counts.{name} {counts.get(name)!r} but {by_status.get(name, 0)} records",
            )


def _check_records(checker: _Checker, records: list[dict[str, Any]]) -> None:
    expected = checker.expected
    if len(records) != expected.total:
        checker.fail(
            "record-count",
            f"{len(records)} records for {expected.total} inputs "
            f"({len(expected.local)} files + {expected.url_lines} urls.txt lines)",
        )
    paths = Counter(str(record.get("path")) for record in records)
    for path, seen in paths.items():
        if seen > 1:
            checker.fail("duplicate-path", f"{_shown(path)} appears {seen} times")
    matched: Counter[bytes] = Counter()
    remote = 0
    for record in records:
        name = _record_name(checker, record)
        if name is not None and name in expected.local:
            matched[name] += 1
            _check_path_text(checker, record, name)
        else:
            remote += 1
            path = str(record.get("path", ""))
            if not path.startswith("urls.txt#L") and path != "urls.txt":
                checker.fail("unknown-record", f"record {record.get('path')!r} matches no input")
        _check_status(checker, record)
    for name in expected.local - set(matched):
        checker.fail("missing-record", f"no record for input {name!r}")
    for name, seen in matched.items():
        if seen > 1:
            checker.fail("duplicate-record", f"{seen} records for input {name!r}")
    if remote != expected.url_lines:
        checker.fail("url-records", f"{remote} urls.txt records for {expected.url_lines} lines")


def _record_name(checker: _Checker, record: dict[str, Any]) -> bytes | None:
    """The exact name bytes a record stands for: `path_bytes` when present, else `path`."""
    path = record.get("path")
    encoded = record.get("path_bytes")
    if not isinstance(path, str):
        checker.fail("bad-path", f"path is {path!r}")
        return None
    if encoded is not None:
        try:
            return base64.b64decode(str(encoded), validate=True)
        except (binascii.Error, ValueError):
            checker.fail("bad-path-bytes", f"path_bytes {encoded!r} of {path!r} is not base64")
            return None
    try:
        return path.encode("utf-8")
    except UnicodeEncodeError:
        checker.fail("bad-path", f"path {path!r} is not UTF-8 text and has no path_bytes")
        return None


def exact_text(name: bytes) -> str | None:
    """The name as text when `path` can show it as it is: valid UTF-8 without a literal `\\x`."""
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\\x" in text else text


def wanted_path(name: bytes) -> str:
    """SPEC §1 `path`: the name as UTF-8 text, each undecodable byte written `\\xNN`.

    So that no two names share a path, a name that is not exact also has each literal
    backslash written `\\x5c` (G8), and carries `path_bytes`.
    """
    exact = exact_text(name)
    if exact is not None:
        return exact
    escaped = name.decode("utf-8", errors="surrogateescape").replace("\\", "\\x5c")
    return "".join(
        f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in escaped
    )


def _check_path_text(checker: _Checker, record: dict[str, Any], name: bytes) -> None:
    wanted = wanted_path(name)
    if record.get("path") != wanted:
        checker.fail("path-text", f"path {record.get('path')!r} for name {name!r}, want {wanted!r}")
    if exact_text(name) is None and record.get("path_bytes") is None:
        checker.fail("path-bytes-missing", f"{wanted!r} is not exact text but has no path_bytes")


def _check_status(checker: _Checker, record: dict[str, Any]) -> None:
    path = record.get("path")
    status = record.get("status")
    error = record.get("error")
    if status not in IMAGE_STATUSES:
        checker.fail("image-status", f"{_shown(path)} has status {status!r}")
        return
    if status == "done":
        if error is not None:
            checker.fail("error-on-done", f"{_shown(path)} is done with error {error!r}")
        return
    if not isinstance(error, dict):
        checker.fail("error-missing", f"{_shown(path)} is {status} without an error object")
        return
    code, message, retryable = error.get("code"), error.get("message"), error.get("retryable")
    if code not in ERROR_TABLE:
        checker.fail("error-code", f"{_shown(path)}: code {code!r} is not in SPEC §3")
        return
    wanted_retryable, wanted_status = ERROR_TABLE[code]
    if retryable is not wanted_retryable:
        checker.fail("error-retryable", f"{_shown(path)}: {code} with retryable {retryable!r}")
    if status != wanted_status:
        checker.fail("error-status", f"{code} but status {status}: {_shown(path)}")
    if not isinstance(message, str) or not message or len(message) > MAX_MESSAGE:
        checker.fail("error-message", f"{_shown(path)}: message {message!r}")
    elif any(ord(c) < 32 for c in message):
        checker.fail("error-message", f"{_shown(path)}: control characters in {message!r}")
    if code == "INTERNAL":
        checker.fail("internal-error", f"{_shown(path)}: {message!r}")
    if code in FILE_WAS_READ and not (record.get("file") or {}).get("sha256"):
        checker.fail("file-missing", f"{_shown(path)}: {code} but no file.sha256 (SPEC §4)")


def _shown(path: object) -> str:
    text = repr(path)
    return text if len(text) <= 160 else text[:80] + "…" + text[-80:]


def check_record_status(record: dict[str, Any]) -> list[Violation]:
    """The SPEC §3 checks of one record alone (status, error code, retryable, message)."""
    checker = _Checker(Expected(frozenset(), 0), Path())
    _check_status(checker, record)
    return checker.violations


def _check_csv(checker: _Checker, count: int) -> None:
    path = checker.outbox / "results.csv"
    try:
        text = path.read_bytes().decode("utf-8")  # no newline translation: "\r" stays
    except (OSError, UnicodeDecodeError) as exc:
        checker.fail("missing-file", f"results.csv: {exc}")
        return
    rows = len(list(csv.reader(io.StringIO(text, newline="")))) - 1
    if rows == count:
        return
    # A bare "\r" in a cell ends the row for every CSV reader: told apart, it is one bug.
    without_cr = len(list(csv.reader(io.StringIO(text.replace("\r", " "), newline="")))) - 1
    kind = "csv-rows-cr" if without_cr == count else "csv-rows"
    checker.fail(kind, f"results.csv has {rows} rows for {count} records")


def _check_leaks(checker: _Checker) -> None:
    """No credential from urls.txt and no hash of a file outside the batch in any outbox file."""
    needles = [(secret.encode(), "secret-leak") for secret in checker.expected.secrets]
    needles += [(digest.encode(), "outside-read") for digest in checker.expected.forbidden_hashes]
    if not needles:
        return
    for path in sorted(checker.outbox.rglob("*")):
        if not path.is_file():
            continue
        content = path.read_bytes()
        for needle, kind in needles:
            if needle in content:
                checker.fail(kind, f"{needle.decode()!r} in {path.name}")


def scan_text_for_secrets(text: bytes, secrets: frozenset[str]) -> list[Violation]:
    """Credentials found in a log or any other text the daemon wrote."""
    return [Violation("secret-in-log", secret) for secret in secrets if secret.encode() in text]
