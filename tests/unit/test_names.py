"""names.py: every Linux name survives the round trip through each text form, without collisions."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medianalysed import names
from medianalysed.readiness import iter_batch_entries
from medianalysed.state import BatchRecord, ImageRecord, StateStore

# Any name Linux allows: 1-255 bytes, no "/" and no NUL.
NAME_BYTES = st.binary(min_size=1, max_size=255).filter(
    lambda raw: b"/" not in raw and b"\0" not in raw and raw not in {b".", b".."}
)
# A relative path of 1-4 such names (what a record's path stands for).
REL_PATHS = st.lists(NAME_BYTES, min_size=1, max_size=4).map(b"/".join)
EXAMPLES = settings(deadline=None, max_examples=300)

_CONTROL_CHARS = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}


def _record_key(fields: dict[str, str]) -> str:
    return names.key_of_record(fields["path"], fields.get("path_bytes"))


@EXAMPLES
@given(REL_PATHS)
def test_bytes_and_keys_round_trip(raw: bytes) -> None:
    key = names.from_bytes(raw)
    assert names.to_bytes(key) == raw
    assert names.from_os(raw) == key
    assert names.from_os(os.fsdecode(raw)) == key


@EXAMPLES
@given(REL_PATHS)
def test_record_fields_are_utf8_text_and_give_back_the_exact_bytes(raw: bytes) -> None:
    key = names.from_bytes(raw)
    fields = names.path_fields(key)
    fields["path"].encode("utf-8")  # valid text: JSON, CSV and spreadsheets take it
    json.dumps(fields, ensure_ascii=False).encode("utf-8")
    if "path_bytes" in fields:
        assert base64.b64decode(fields["path_bytes"]) == raw
        assert "\\x" in fields["path"]
    else:
        assert fields["path"].encode("utf-8") == raw, "a valid UTF-8 name is shown as it is"
        assert b"\\x" not in raw
    assert names.to_bytes(_record_key(fields)) == raw


@EXAMPLES
@given(REL_PATHS, REL_PATHS)
def test_two_distinct_names_never_share_path_and_path_bytes(one: bytes, other: bytes) -> None:
    first = names.path_fields(names.from_bytes(one))
    second = names.path_fields(names.from_bytes(other))
    assert (first == second) == (one == other)


def test_the_escape_lookalike_gets_a_path_of_its_own() -> None:
    literal = names.path_fields(names.from_bytes(b"IMG\\xff.jpg"))  # backslash, x, f, f
    undecodable = names.path_fields(names.from_bytes(b"IMG\xff.jpg"))
    assert undecodable["path"] == "IMG\\xff.jpg"
    assert literal["path"] == "IMG\\x5cxff.jpg"
    assert literal["path_bytes"] == base64.b64encode(b"IMG\\xff.jpg").decode()
    assert undecodable["path_bytes"] == base64.b64encode(b"IMG\xff.jpg").decode()
    # A backslash that starts no escape look-alike stays as it is.
    assert names.path_fields(names.from_bytes(b"a\\b.jpg")) == {"path": "a\\b.jpg"}


# Names built from the pieces that make escapes and their look-alikes.
ESCAPE_PIECES = (
    st.lists(
        st.sampled_from([b"\\", b"x", b"5", b"c", b"f", b"\xff", b"\xc3", b"a", b"/"]),
        min_size=1,
        max_size=10,
    )
    .map(b"".join)
    .filter(lambda raw: not raw.startswith(b"/") and not raw.endswith(b"/"))
)


@EXAMPLES
@given(st.one_of(REL_PATHS, ESCAPE_PIECES), st.one_of(REL_PATHS, ESCAPE_PIECES))
def test_two_distinct_names_never_share_a_path(one: bytes, other: bytes) -> None:
    first = names.path_fields(names.from_bytes(one))
    second = names.path_fields(names.from_bytes(other))
    assert (first["path"] == second["path"]) == (one == other)
    assert names.to_bytes(_record_key(first)) == one


@EXAMPLES
@given(st.text())
def test_log_text_is_one_printable_line(text: str) -> None:
    shown = names.log_text(text)
    shown.encode("utf-8")
    assert not _CONTROL_CHARS & set(shown)
    assert len(shown.splitlines()) <= 1


def test_log_text_escapes_line_breaks_and_terminal_sequences() -> None:
    assert names.log_text("a\nb\r\x1b[31mc\x00\u2028") == "a\\nb\\r\\x1b[31mc\\x00\\u2028"


@EXAMPLES
@given(NAME_BYTES, st.integers(min_value=8, max_value=255))
def test_folder_names_fit_their_limit_and_never_repeat(raw: bytes, limit: int) -> None:
    candidates = names.suffixed_names(names.from_bytes(raw), limit)
    first = [next(candidates) for _ in range(12)]
    assert len(set(first)) == len(first)
    for candidate in first:
        encoded = candidate.encode("utf-8")
        assert 0 < len(encoded) <= limit
        assert b"/" not in encoded
        assert b"\0" not in encoded
        assert candidate not in {".", ".."}
        assert names.log_text(candidate) == candidate, "printable, single line"


def test_a_255_byte_name_dropped_twice_gets_a_shortened_suffixed_name() -> None:
    name = "n" * 255
    candidates = names.suffixed_names(name)
    assert next(candidates) == name
    second = next(candidates)
    assert second == "n" * 253 + "-2"
    assert len(second.encode()) == 255


def test_shortening_never_cuts_a_character_or_an_escape() -> None:
    key = names.from_bytes("é".encode() * 100 + b"\xff" * 10)  # 200 bytes, then 10 escapes
    shown = names.safe_folder_name(key)
    assert names.shortened(shown, 201) == "é" * 100
    assert names.shortened(shown, 206) == "é" * 100 + "\\xff"
    assert names.shortened(shown, 205) == "é" * 100 + "\\xff"


def test_storable_json_keeps_text_unescaped_unless_a_name_holds_undecodable_bytes() -> None:
    assert names.storable_json({"p": "café"}) == '{"p":"café"}'
    key = names.from_bytes(b"caf\xe9")
    text = names.storable_json({"p": key})
    text.encode("utf-8")
    assert json.loads(text) == {"p": key}


@settings(deadline=None, max_examples=25)
@given(st.lists(REL_PATHS, min_size=1, max_size=8, unique=True))
def test_state_keys_hold_any_name_and_keep_them_apart(tmp_path_factory, raws: list[bytes]) -> None:
    # The real diskcache/SQLite store: a key with undecodable bytes used to raise
    # UnicodeEncodeError here, which crashed the batch actor until the batch was given up.
    store = StateStore(Path(tmp_path_factory.mktemp("state")))
    try:
        keys = [names.from_bytes(raw) for raw in raws]
        for index, key in enumerate(keys):
            store.put_image("b", ImageRecord(path=key, attempts=index))
            store.create_batch(_batch(f"id{index}"), f"default\0{key}", f"{index}")
        for index, key in enumerate(keys):
            stored = store.get_image("b", key)
            assert stored is not None
            assert (stored.path, stored.attempts) == (key, index)
            assert store.claim_for(f"default\0{key}") == (f"id{index}", f"{index}")
        assert sorted(r.batch_id for r in store.iter_batches()) == sorted(
            f"id{i}" for i in range(len(keys))
        )
    finally:
        store.close()


def _batch(batch_id: str) -> BatchRecord:
    return BatchRecord(batch_id=batch_id, inbox="default", source="/x", outbox_dir="/o")


def test_valid_text_keys_are_stored_as_before(tmp_path: Path) -> None:
    """State written by earlier versions (text keys) is found again."""
    assert names.storage_key("trip\0i\0kitchen/é.jpg") == "trip\0i\0kitchen/é.jpg"
    assert names.storage_key(names.from_bytes(b"\xff")) == b"\xff"


@pytest.mark.parametrize("bad", ["not base64!", "=="])
def test_key_of_record_rejects_broken_path_bytes(bad: str) -> None:
    with pytest.raises(ValueError, match="base64"):
        names.key_of_record("x", bad)


# Names made visible (not hidden, not junk, not a control file) by a leading "n".
VISIBLE = NAME_BYTES.map(lambda raw: (b"n" + raw)[:255])
TREES = st.dictionaries(
    st.lists(VISIBLE, min_size=1, max_size=3).map(tuple), st.just(b""), max_size=12
)


@settings(deadline=None, max_examples=40)
@given(TREES)
def test_any_tree_of_byte_names_enumerates_exactly_in_key_order(tmp_path_factory, tree) -> None:
    root = os.fsencode(tmp_path_factory.mktemp("batch"))
    files: set[bytes] = set()
    for parts in tree:
        *folders, leaf = parts
        prefix = root
        ok = True
        for folder in folders:
            prefix += b"/" + folder
            if os.path.isfile(prefix):
                ok = False  # a file already holds that name
                break
            os.makedirs(prefix, exist_ok=True)
        target = prefix + b"/" + leaf
        if ok and not os.path.isdir(target):
            with open(target, "wb"):
                pass
            files.add(b"/".join(parts))
    got = [entry.relpath for entry in iter_batch_entries(Path(os.fsdecode(root)), ".ready")]
    assert got == sorted(got), "streamed in key order (the order results.jsonl is written in)"
    assert {names.to_bytes(key) for key in got} == files
    assert len(got) == len(files)
