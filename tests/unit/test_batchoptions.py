"""batch.toml cannot hurt: capped, shallow, typed; every problem is a note, never an exception."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medianalysed.batchoptions import (
    MAX_BATCH_TOML_BYTES,
    MAX_NESTING,
    BatchOptions,
    max_nesting,
    parse_batch_options,
    read_batch_options,
)
from medianalysed.models import Priority


def write(folder: Path, data: bytes) -> Path:
    (folder / "batch.toml").write_bytes(data)
    return folder


def test_valid_options_are_read(tmp_path: Path) -> None:
    text = b'priority = "high"\ntags = ["a", "b"]\ncallback_url = "https://hooks.example/x"\n'
    assert read_batch_options(write(tmp_path, text)) == BatchOptions(
        priority=Priority.HIGH, tags=("a", "b"), callback_url="https://hooks.example/x"
    )


def test_no_file_means_defaults(tmp_path: Path) -> None:
    assert read_batch_options(tmp_path) == BatchOptions()


def test_2000_deep_nesting_is_a_note_not_a_recursion_error(tmp_path: Path) -> None:
    # The reproduction: 4 KB of `tags = [[[…]]]` killed the supervisor in tomllib.
    text = b"tags = " + b"[" * 2000 + b"]" * 2000 + b"\n"
    assert len(text) < 4200
    options = read_batch_options(write(tmp_path, text))
    assert options.tags == ()
    assert "nested 2000 deep" in options.note
    assert options.note.startswith("batch.toml ignored")


def test_deep_inline_tables_are_measured_too() -> None:
    text = "x = " + "{a = " * 500 + "1" + "}" * 500
    assert "nested 500 deep" in parse_batch_options(text.encode()).note


def test_brackets_in_strings_and_comments_do_not_count() -> None:
    text = (
        "tags = [\"[[[[\", '{{{{', \"\"\"]]]\n[[[\"\"\", '''[[[''']  # [[[[[[[[[[[[[[[[[[[[\n"
        'priority = "low"\n'
    )
    assert max_nesting(text) == 1
    options = parse_batch_options(text.encode())
    assert options.note == ""
    assert options.tags == ("[[[[", "{{{{", "]]]\n[[[", "[[[")


def test_a_closing_quote_run_does_not_hide_nesting() -> None:
    # `""""` ends a multi-line string whose content ends with a quote; what follows counts.
    text = 'a = """x""""\nb = ' + "[" * 40 + "]" * 40
    assert max_nesting(text) == 40


def test_an_oversized_file_is_ignored_with_a_note(tmp_path: Path) -> None:
    text = b'priority = "high"\n' + b"# padding\n" * (MAX_BATCH_TOML_BYTES // 10)
    options = read_batch_options(write(tmp_path, text))
    assert options.priority == Priority.NORMAL
    assert "larger than 64 KB" in options.note


def test_invalid_utf8_and_syntax_errors_are_notes() -> None:
    assert "not UTF-8" in parse_batch_options(b'tags = ["\xff"]').note
    assert "batch.toml ignored" in parse_batch_options(b"tags = [").note


def test_wrong_types_keep_the_valid_options() -> None:
    text = b'priority = 3\ntags = "one"\ncallback_url = "ftp://x/y"\ncolour = "red"\n'
    options = parse_batch_options(text)
    assert options == BatchOptions(note=options.note)
    for words in ("priority must be", "tags must be", "callback_url ignored", "'colour'"):
        assert words in options.note
    both = parse_batch_options(b'priority = "low"\ntags = [1]\n')
    assert both.priority == Priority.LOW
    assert "tags must be" in both.note


def test_a_callback_url_token_never_reaches_the_note() -> None:
    note = parse_batch_options(b'callback_url = "https://h..x/hook/T0KEN123"').note
    assert "callback_url ignored" in note
    assert "T0KEN123" not in note


def test_a_fifo_or_a_symlink_is_not_read(tmp_path: Path) -> None:
    fifo_dir = tmp_path / "fifo"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "batch.toml")  # a blocking read would wait for a writer forever
    assert "not a regular file" in read_batch_options(fifo_dir).note

    link_dir = tmp_path / "link"
    link_dir.mkdir()
    (tmp_path / "elsewhere.toml").write_text('priority = "high"\n')
    (link_dir / "batch.toml").symlink_to(tmp_path / "elsewhere.toml")
    options = read_batch_options(link_dir)
    assert options.priority == Priority.NORMAL
    assert "symbolic link" in options.note


def stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1  # type: ignore[assignment]
    return depth


toml_fragments = st.sampled_from(
    ["[", "]", "{", "}", '"', "'", '"""', "'''", "#", "\n", "=", ",", "\\", "a", "1", " ", "tags"]
)


@settings(deadline=None, max_examples=300)
@given(
    st.one_of(
        st.binary(max_size=400),
        st.lists(toml_fragments, max_size=300).map(lambda parts: "".join(parts).encode()),
        st.integers(1, 5000).map(lambda n: b"tags = " + b"[" * n + b"]" * n),
        st.integers(1, 3000).map(lambda n: b"t = " + b"{a=" * n + b"1" + b"}" * n),
        st.text(max_size=200).map(lambda text: f"tags = [{text!r}]".encode()),
    )
)
def test_any_bytes_give_options_and_never_raise(data: bytes) -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(stack_depth() + 120)  # a little stack left must suffice
    try:
        options = parse_batch_options(data)
    finally:
        sys.setrecursionlimit(limit)
    assert isinstance(options.priority, Priority)
    assert all(isinstance(tag, str) for tag in options.tags)
    assert len(options.note) <= 1000
    if max_nesting(data.decode("utf-8", errors="replace")) > MAX_NESTING:
        assert options == BatchOptions(note=options.note)


@pytest.mark.parametrize("depth", [MAX_NESTING, MAX_NESTING + 1])
def test_the_nesting_limit_is_exact(depth: int) -> None:
    text = b"tags = " + b"[" * depth + b"]" * depth
    note = parse_batch_options(text).note
    assert ("nested" in note) == (depth > MAX_NESTING)
