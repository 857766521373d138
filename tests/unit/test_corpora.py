"""A missing shared corpus fails its tests loudly; the opt-out skips them, except under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import corpora


@pytest.fixture
def missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(corpora, "CORPORA", tmp_path / "absent")
    monkeypatch.delenv(corpora.SKIP_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)


@pytest.mark.usefixtures("missing")
def test_a_missing_corpus_fails_the_test_and_says_what_to_do() -> None:
    with pytest.raises(pytest.fail.Exception, match="MEDIANALYSED_CORPORA"):
        corpora.require_corpora()


@pytest.mark.usefixtures("missing")
def test_the_opt_out_skips_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(corpora.SKIP_ENV, "1")

    with pytest.raises(pytest.skip.Exception):
        corpora.require_corpora()


@pytest.mark.usefixtures("missing")
def test_ci_ignores_the_opt_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(corpora.SKIP_ENV, "1")
    monkeypatch.setenv("CI", "true")

    with pytest.raises(pytest.fail.Exception):
        corpora.require_corpora()


def test_the_essential_corpus_is_in_the_repository() -> None:
    names = {path.name for path in corpora.ESSENTIAL_CORPUS.rglob("*") if path.is_file()}

    assert {"harbour.jpg", "sunset.heic", "city.tiff", "truncated.jpg", "notes.txt"} <= names
    assert (corpora.ESSENTIAL_CORPUS.parent / "LICENSE").read_text().count("CC0") == 1
