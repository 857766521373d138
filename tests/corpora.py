"""Where the shared corpora of real images are, and what a test does when they are missing.

A missing corpus fails the tests that need it, loudly: a clone without ../shared/corpora must
not show a green run that tested nothing. `MEDIANALYSED_SKIP_CORPORA=1` turns the failures
into skips for people who know they have no copy; it is ignored under CI.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP_ENV = "MEDIANALYSED_SKIP_CORPORA"


def _find_corpora() -> Path:
    # Where MEDIANALYSED_CORPORA says, else shared/corpora beside the checkout or one of its
    # parents (/work/main -> /work/shared; git worktrees live a level deeper).
    override = os.environ.get("MEDIANALYSED_CORPORA")
    if override:
        return Path(override)
    candidates = [parent / "shared" / "corpora" for parent in REPO.parents]
    return next((path for path in candidates if path.is_dir()), candidates[0])


CORPORA = _find_corpora()
# Ours, in the repository (tests/corpus/make_corpus.py, CC0): always there.
ESSENTIAL_CORPUS = REPO / "tests" / "corpus" / "essential"


def available() -> bool:
    return CORPORA.is_dir()


def require_corpora() -> Path:
    """The corpora; fails the calling test where they are missing (skips where opted out)."""
    if available():
        return CORPORA
    message = (
        f"the shared corpora are missing at {CORPORA}: put them there (README, 'Test corpora') "
        f"or point MEDIANALYSED_CORPORA at them; {SKIP_ENV}=1 skips these tests instead "
        f"(ignored under CI)"
    )
    if os.environ.get(SKIP_ENV) == "1" and not os.environ.get("CI"):
        pytest.skip(message)
    pytest.fail(message, pytrace=False)
