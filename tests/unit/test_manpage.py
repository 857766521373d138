"""medianalysed(1) is generated from the argparse parser and is valid roff."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from medianalysed.cli import build_parser
from medianalysed.manpage import escape, render

DATE = datetime(2026, 12, 2, tzinfo=UTC)


def test_every_verb_and_option_of_the_parser_is_in_the_page() -> None:
    page = render(build_parser(), DATE)

    assert page.startswith('.TH MEDIANALYSED 1 "2026-12-02" "medianalysed ')
    for verb in ("run", "analyze", "status", "cancel", "retry", "reprocess", "explain", "config"):
        assert f".SS {verb}\n" in page
    for option in ("\\-\\-config", "\\-\\-dry\\-run", "\\-\\-json", "\\-\\-version"):
        assert f"\\fB{option}\\fR" in page
    assert "{check,show}" in page
    assert "\\fI/etc/medianalysed/medianalysed.toml\\fR" in page


def test_escape_protects_roff_control_characters() -> None:
    assert escape(".hidden") == "\\&.hidden"
    assert escape("a-b\\c") == "a\\-b\\ec"


def test_groff_renders_the_page_without_a_warning() -> None:
    groff = shutil.which("groff")
    if groff is None:
        pytest.fail("groff is missing: it comes with man-db (groff-base)")
    rendered = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", "-z"],
        input=render(build_parser(), DATE),
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )

    assert rendered.returncode == 0
    assert rendered.stderr == ""
