"""The key declarations: the files written from them are current, and no input crashes reading."""

from __future__ import annotations

import re
import string
import tempfile
from collections.abc import Callable
from datetime import date, datetime, time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medianalysed import configdocs
from medianalysed.config import Config, config_from_dict, load_config
from medianalysed.configkeys import declared_keys
from medianalysed.configschema import SECTIONS, InboxConfig
from medianalysed.configtable import toml_key
from medianalysed.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE = Path("/base")
REGENERATE = "out of date: run `make config-docs`"
ALL_SECTIONS = {**SECTIONS, "inbox": InboxConfig}


def test_the_sample_file_is_the_one_written_from_the_declarations() -> None:
    sample = (REPO_ROOT / configdocs.SAMPLE_NAME).read_text(encoding="utf-8")

    assert sample == configdocs.sample_text(), REGENERATE


def test_the_readme_key_table_is_the_one_written_from_the_declarations() -> None:
    readme = (REPO_ROOT / configdocs.README_NAME).read_text(encoding="utf-8")

    assert configdocs.readme_block() in readme, REGENERATE


def test_every_key_is_documented_in_the_readme_under_its_section() -> None:
    readme = (REPO_ROOT / configdocs.README_NAME).read_text(encoding="utf-8")
    table = readme[readme.index(configdocs.README_BEGIN) : readme.index(configdocs.README_END)]
    parts = re.split(r"^`\[\[?(\w+)\]\]?`", table, flags=re.MULTILINE)
    documented = dict(zip(parts[1::2], parts[2::2], strict=True))

    assert set(documented) == set(ALL_SECTIONS)
    for name, section in ALL_SECTIONS.items():
        for declared in declared_keys(section):
            assert declared.spec.help, f"{name}.{declared.name} has no help"
            assert f"| `{declared.name}` |" in documented[name], f"{name}.{declared.name}"


def test_a_readme_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks the markers"):
        configdocs.readme_with_block("# no markers\n")


# --- any document gives a Config or a ConfigError naming a key ------------------------------------

_NAMES = sorted(
    {name for section in ALL_SECTIONS.values() for name in (d.name for d in declared_keys(section))}
)
_scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=20),
    st.sampled_from(["", "0", "200MB", "1.5GiB", "~", "~nobody_here/x", "a/../b", "[::1]:1"]),
    st.sampled_from(["http://h/x", "https://u:p@h:99999/", "x:1", "auto", "json", "/", "."]),
    st.datetimes().map(datetime.isoformat).map(datetime.fromisoformat),
    st.dates().map(date.isoformat).map(date.fromisoformat),
    st.times().map(time.isoformat).map(time.fromisoformat),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
_key_names = st.sampled_from(_NAMES) | st.text(string.ascii_lowercase + "_", max_size=12)
_tables = st.dictionaries(_key_names, _values, max_size=5)
_section_names = st.sampled_from([*ALL_SECTIONS, "deamon", "inboxes"]) | st.text(max_size=8)
_documents = st.dictionaries(
    _section_names,
    _tables | st.lists(_tables, max_size=3) | _values,
    max_size=5,
)


def _named_in(key: str, document: dict[str, object]) -> bool:
    """The issue's key starts with a top-level name of the document, written as TOML writes it."""
    return any(
        key == name or key.startswith((f"{name}.", f"{name}[")) for name in map(toml_key, document)
    )


def _failure(load: Callable[[], Config]) -> ConfigError | None:
    """The ConfigError `load` raises, or None when it gives a Config (any other error escapes)."""
    try:
        loaded = load()
    except ConfigError as exc:
        return exc
    assert isinstance(loaded, Config)
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents)
def test_any_document_gives_a_config_or_a_config_error_naming_its_keys(
    document: dict[str, object],
) -> None:
    error = _failure(lambda: config_from_dict(document, base_dir=BASE, source=BASE / "m.toml"))

    if error is not None:
        assert error.issues
        for issue in error.issues:
            assert issue.key, issue
            assert issue.message, issue
            assert "\n" not in issue.message, issue
            assert _named_in(issue.key, document), issue


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet='[]="\n .,#abdeiknoprstuwx0123456789_-', max_size=80))
def test_any_file_gives_a_config_or_a_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "m.toml"
        path.write_text(text, encoding="utf-8")
        error = _failure(lambda: load_config(path))

    if error is not None:
        assert error.source == str(path)
        assert all(issue.key for issue in error.issues)
