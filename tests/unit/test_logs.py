"""Log formats, redaction of secrets and idempotent set-up."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from medianalysed.logs import MASK, clear_secrets, redact, register_secret, setup_logging

SECRET = "whsec-7f3a9c-not-for-logs"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Logging is process-wide: put back what setup_logging changes."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in ("pykka", "PIL", "httpx", "httpcore")}
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)
    clear_secrets()


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_standard_and_extra_fields() -> None:
    stream = io.StringIO()
    setup_logging("info", "json", stream)

    logging.getLogger("medianalysed.actors.batch").info(
        "image %s failed",
        "a.jpg",
        extra={
            "batch_id": "b-1",
            "path": Path("/srv/in/a.jpg"),
            "attempt": 2,
            "inbox": "default",
            "code": "CORRUPT",
            "unrelated": "dropped",
        },
    )

    [entry] = json_lines(stream)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "medianalysed.actors.batch"
    assert entry["message"] == "image a.jpg failed"
    assert entry["batch_id"] == "b-1"
    assert entry["path"] == "/srv/in/a.jpg"
    assert entry["attempt"] == 2
    assert entry["inbox"] == "default"
    assert entry["code"] == "CORRUPT"
    assert "unrelated" not in entry
    assert isinstance(entry["ts"], str)
    assert entry["ts"].endswith("Z")
    assert datetime.fromisoformat(entry["ts"]).tzinfo is not None


def test_json_exceptions_go_in_an_exc_field_on_the_same_line() -> None:
    stream = io.StringIO()
    setup_logging("info", "json", stream)

    try:
        raise ValueError("bad pixel")
    except ValueError:
        logging.getLogger("medianalysed.x").exception("analysis crashed")

    [entry] = json_lines(stream)
    assert entry["message"] == "analysis crashed"
    assert isinstance(entry["exc"], str)
    assert "Traceback" in entry["exc"]
    assert "ValueError: bad pixel" in entry["exc"]


def test_text_lines_are_human_and_colour_free() -> None:
    stream = io.StringIO()
    setup_logging("info", "text", stream)

    logging.getLogger("medianalysed.actors.batch").info("batch %s done", "b-1")

    line = stream.getvalue()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO medianalysed.actors.batch: batch b-1 done\n",
        line,
    )


def test_level_filters_records() -> None:
    stream = io.StringIO()
    setup_logging("warning", "text", stream)

    logging.getLogger("medianalysed.x").info("quiet")
    logging.getLogger("medianalysed.x").warning("loud")

    assert "quiet" not in stream.getvalue()
    assert "loud" in stream.getvalue()


def test_pykka_is_held_at_warning_unless_debugging() -> None:
    setup_logging("info", "text", io.StringIO())
    assert logging.getLogger("pykka").getEffectiveLevel() == logging.WARNING

    setup_logging("debug", "text", io.StringIO())
    assert logging.getLogger("pykka").getEffectiveLevel() == logging.DEBUG


def test_calling_twice_replaces_the_handler_instead_of_adding_one() -> None:
    first, second = io.StringIO(), io.StringIO()
    before = len(logging.getLogger().handlers)

    setup_logging("info", "text", first)
    setup_logging("info", "json", second)
    logging.getLogger("medianalysed.x").info("once")

    assert len(logging.getLogger().handlers) == before + 1
    assert first.getvalue() == ""
    assert [entry["message"] for entry in json_lines(second)] == ["once"]


def test_unknown_level_or_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        setup_logging("loud", "text", io.StringIO())
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        setup_logging("info", "xml", io.StringIO())  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_are_masked_in_message_extras_and_exceptions(fmt: str) -> None:
    stream = io.StringIO()
    register_secret(SECRET)
    setup_logging("info", "json" if fmt == "json" else "text", stream)
    log = logging.getLogger("medianalysed.webhook")

    log.warning("signing with %s", SECRET, extra={"path": f"/x/{SECRET}"})
    try:
        raise RuntimeError(f"handshake failed for {SECRET}")
    except RuntimeError:
        log.exception("delivery failed")

    output = stream.getvalue()
    assert SECRET not in output
    assert f"signing with {MASK}" in output
    assert f"handshake failed for {MASK}" in output


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Authorization: Bearer abc.def", "Authorization: ***"),
        ("{'authorization': 'Basic dXNlcjpwdw==', 'a': 1}", "{'authorization': '***', 'a': 1}"),
        ('{"X-Medianalysed-Signature": "sha256=ab12"}', '{"X-Medianalysed-Signature": "***"}'),
        ("x-medianalysed-signature=sha256=ab12", "x-medianalysed-signature=***"),
        ("POST https://hook:pa55@example.com/x", "POST https://***@example.com/x"),
        ("GET https://ghp_T0KEN@example.com/x", "GET https://***@example.com/x"),
        ("GET http://example.com:8080/a@b", "GET http://example.com:8080/a@b"),
        ("authorization failed for batch b-1", "authorization failed for batch b-1"),
    ],
)
def test_redact_masks_headers_and_url_passwords(line: str, expected: str) -> None:
    assert redact(line) == expected.replace("***", MASK)


def test_registered_secrets_are_masked_longest_first() -> None:
    register_secret("abc")
    register_secret("abcdef")
    register_secret("")

    assert redact("x abcdef y abc") == f"x {MASK} y {MASK}"


def test_cleared_secrets_are_no_longer_masked() -> None:
    register_secret(SECRET)
    clear_secrets()

    assert redact(SECRET) == SECRET


# --- names never forge a line (SPEC §1) ------------------------------------------------------

FORGING_NAME = (
    b"trip\n2026-01-01 00:00:00,000 ERROR medianalysed: forged\r\x1b[2K\xff\xfe\xe2\x80\xa8x"
).decode("utf-8", "surrogateescape")
_RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def test_a_name_with_line_breaks_and_escapes_stays_on_its_text_line() -> None:
    stream = io.StringIO()
    setup_logging("info", "text", stream)

    logging.getLogger("medianalysed.actors.supervisor").info("batch queued from %s", FORGING_NAME)

    text = stream.getvalue()
    text.encode("utf-8")  # undecodable bytes are shown as \xNN, not written as surrogates
    [line] = text.splitlines()
    assert line.endswith(
        r"batch queued from trip\n2026-01-01 00:00:00,000 ERROR medianalysed: forged"
        r"\r\x1b[2K\xff\xfe\u2028x"
    )


def test_a_traceback_cannot_forge_a_record_either() -> None:
    stream = io.StringIO()
    setup_logging("info", "text", stream)
    try:
        raise FileNotFoundError(2, "gone", FORGING_NAME)
    except FileNotFoundError as exc:
        logging.getLogger("medianalysed.x").exception("cannot open: %s", exc.strerror)
    try:
        raise ValueError(f"bad name {FORGING_NAME}")
    except ValueError:
        logging.getLogger("medianalysed.x").exception("analysis crashed")

    lines = stream.getvalue().splitlines()
    starts = [line for line in lines if not line.startswith(" ")]
    assert len(starts) == 2, lines
    assert all(_RECORD_START.match(line) for line in starts)
    assert any("Traceback (most recent call last):" in line for line in lines)
    assert not any("forged" in line and _RECORD_START.match(line) for line in lines[1:])


def test_json_lines_stay_one_object_per_line_whatever_the_name() -> None:
    stream = io.StringIO()
    setup_logging("info", "json", stream)

    logging.getLogger("medianalysed.x").info(
        "image %s\x85failed", FORGING_NAME, extra={"path": FORGING_NAME}
    )

    raw = stream.getvalue()
    raw.encode("utf-8")
    assert len(raw.splitlines()) == 1  # also splits on U+2028, U+0085, \x1c...
    [entry] = json_lines(stream)
    assert entry["path"] == (
        "trip\n2026-01-01 00:00:00,000 ERROR medianalysed: forged\r\x1b[2K\\xff\\xfe\u2028x"
    )
