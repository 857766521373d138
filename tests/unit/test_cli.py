"""The command line in-process: parsing, exit codes, config check/show, control verbs.

Control verbs only write to the durable state (the daemon picks them up); these tests read
that state back from a real StateStore in tmp_path.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from medianalysed import __version__, vipsdecode
from medianalysed.analyzeverb import (
    ANALYZE_ENDING_POLL_S,
    ANALYZE_ENDING_S,
    ANALYZE_POLL_S,
    BatchEnding,
    bar_wanted,
)
from medianalysed.cli import build_parser, main
from medianalysed.config import WebhookConfig
from medianalysed.lifecycle import BatchPhase
from medianalysed.models import BatchStatus, ImageStatus
from medianalysed.progress import BatchProgress, publish
from medianalysed.state import BatchRecord, ImageRecord, StateStore
from medianalysed.webhooks import WebhookDispatcher
from tests.seeding import seed_batch

SECRET = "s3cr3t-webhook-key"
CONFIG = f"""\
[daemon]
state_dir = "state"
[webhook]
url = "https://user:hunter2@hooks.example.com/medianalysed"
secret = "{SECRET}"
[[inbox]]
name = "default"
path = "inbox"
outbox = "outbox"
archive = "archive"
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MEDIANALYSED_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./medianalysed.toml here unless a test writes one
    path = tmp_path / "conf" / "medianalysed.toml"
    path.parent.mkdir()
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def store(config: Path) -> Iterator[StateStore]:
    state = StateStore(config.parent / "state")
    yield state
    state.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def add_batch(store: StateStore, config: Path, batch_id: str, *, phase: str) -> BatchRecord:
    """A batch with one done and one failed image; finished ones are in the archive."""
    root = config.parent
    done = phase == "done"
    input_dir = root / ("archive" if done else "inbox") / batch_id
    input_dir.mkdir(parents=True)
    outbox_dir = root / "outbox" / batch_id
    outbox_dir.mkdir(parents=True)
    counts = {"total": 2, "pending": 0, "processing": 0, "done": 1, "failed": 1, "skipped": 0}
    images = [
        ImageRecord(path="a.jpg", status=ImageStatus.DONE, attempts=1),
        ImageRecord(path="b.jpg", status=ImageStatus.FAILED, attempts=1),
    ]
    record = seed_batch(
        store,
        root,
        batch_id,
        images,
        status=BatchStatus.PARTIAL if done else BatchStatus.PROCESSING,
        phase=phase,
        final_counts=counts if done else {},
        archived_to=str(input_dir) if done else None,
    )
    publish(store, record, BatchProgress.running(record, counts))  # what `status` reads
    return record


def control_queue(store: StateStore) -> list[dict[str, object]]:
    return [dict(command) for command in store.control]


# -- parsing and exit codes ------------------------------------------------------------


def test_no_verb_prints_help_and_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys)
    assert code == 2
    assert "usage: medianalysed" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["frobnicate"],
        ["cancel"],
        ["retry"],
        ["explain"],
        ["config", "edit"],
        ["status", "--jsn"],
        ["retry", "b", "--dry-run"],  # only reprocess has a dry run
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "usage:" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    # This venv has the dev extra, so the [dask] extra too; the single binary has only local.
    # pyvips is a dependency, and pyvips-binary brings its libvips.
    vips = vipsdecode.libvips_version()
    assert vips is not None
    expected = (
        f"medianalysed {__version__} (executors: local, dask; decoders: pillow, vips {vips})\n"
    )
    assert run(capsys, "--version") == (0, expected, "")


def test_version_imports_neither_the_imaging_stack_nor_libvips() -> None:
    # `--version` has a start-up budget (issue 14): Pillow, pyvips and numpy are not loaded.
    probe = (
        "import sys\n"
        "from medianalysed import cli\n"
        "try:\n"
        "    cli.main(['--version'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'PIL', 'pyvips', 'numpy'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines()[-1] == "[]", done.stdout


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "reprocess", "--help")
    assert code == 0
    assert "--dry-run" in out
    assert "--force" in out


# -- config check / show ---------------------------------------------------------------


def test_config_check_names_the_file(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    assert run(capsys, "config", "check", "--config", str(config)) == (
        0,
        f"configuration ok: {config}\n",
        "",
    )


def test_config_check_without_any_file_uses_the_defaults(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    code, out, _ = run(capsys, "config", "check")
    assert (code, out) == (0, "configuration ok: built-in defaults\n")


def test_config_search_order_env_then_local_file(
    capsys: pytest.CaptureFixture[str],
    config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = tmp_path / "medianalysed.toml"
    local.write_text("", encoding="utf-8")
    assert run(capsys, "config", "check")[1] == "configuration ok: medianalysed.toml\n"
    monkeypatch.setenv("MEDIANALYSED_CONFIG", str(config))
    assert run(capsys, "config", "check")[1] == f"configuration ok: {config}\n"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[processing]\nworkrs = 2\n", "processing.workrs: unknown key; did you mean 'workers'?"),
        ('[processing]\nmax_retries = "x"\n', "processing.max_retries: expected an integer"),
        ('[[inbox]]\nname = "a"\non_complete = "burn"\n', "inbox[0].on_complete"),
        ("[daemon\n", "<file>: not valid toml"),
    ],
)
def test_bad_configuration_exits_78_naming_the_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, named: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text, encoding="utf-8")
    for argv in (["config", "check"], ["status"], ["pause"], ["run"]):
        code, out, err = run(capsys, *argv, "--config", str(bad))
        assert code == 78, argv
        assert named in err
        assert out == ""


def test_a_missing_config_file_exits_78(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "status", "--config", str(tmp_path / "nope.toml"))
    assert code == 78
    assert "cannot read" in err


def test_config_show_masks_secrets_and_marks_defaults(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    code, out, _ = run(capsys, "config", "show", "--config", str(config))
    assert code == 0
    assert SECRET not in out
    assert "hunter2" not in out
    assert 'secret = "********"' in out
    assert "https://user:********@hooks.example.com/medianalysed" in out
    assert "max_retries = 3  # default" in out
    assert f'path = "{config.parent / "inbox"}"' in out


# -- status ----------------------------------------------------------------------------


def test_status_with_nothing(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    assert run(capsys, "status", "--config", str(config)) == (0, "no batches\n", "")
    code, out, _ = run(capsys, "status", "--json", "--config", str(config))
    assert code == 0
    assert json.loads(out) == {"batches": [], "paused": False, "dead_letters": [], "set_aside": []}


def test_status_text_and_json(
    capsys: pytest.CaptureFixture[str], config: Path, store: StateStore
) -> None:
    add_batch(store, config, "house", phase="done")
    code, out, _ = run(capsys, "status", "--config", str(config))
    assert (code, out) == (0, "house: partial 2/2 (1 failed)\n")
    code, out, _ = run(capsys, "status", "house", "--json", "--config", str(config))
    document = json.loads(out)
    assert set(document) == {"batches", "paused", "dead_letters", "set_aside"}
    assert [b["batch_id"] for b in document["batches"]] == ["house"]
    assert document["batches"][0]["counts"]["failed"] == 1


def test_status_of_an_unknown_batch_exits_1(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    code, _, err = run(capsys, "status", "nope", "--config", str(config))
    assert code == 1
    assert "no batch named 'nope'" in err


# -- control verbs -----------------------------------------------------------------------


def test_pause_and_resume_are_durable(
    capsys: pytest.CaptureFixture[str], config: Path, store: StateStore
) -> None:
    assert run(capsys, "pause", "--config", str(config))[0] == 0
    assert store.is_paused()
    assert run(capsys, "status", "--config", str(config))[1].startswith("paused:")
    assert run(capsys, "resume", "--config", str(config))[0] == 0
    assert not store.is_paused()
    assert control_queue(store) == [{"verb": "pause"}, {"verb": "resume"}]


def test_status_reads_a_running_batch_from_state_not_from_the_outbox(
    capsys: pytest.CaptureFixture[str], config: Path, store: StateStore
) -> None:
    record = add_batch(store, config, "running", phase="running")
    (Path(record.outbox_dir) / "status.json").unlink()
    code, out, _ = run(capsys, "status", "--config", str(config))
    assert (code, out) == (0, "running: processing 2/2 (1 failed)\n")


def test_cancel_queues_a_command_for_a_running_batch_only(
    capsys: pytest.CaptureFixture[str], config: Path, store: StateStore
) -> None:
    add_batch(store, config, "running", phase="running")
    add_batch(store, config, "finished", phase="done")
    code, out, _ = run(capsys, "cancel", "running", "--config", str(config))
    assert code == 0
    assert "within 2 s" in out
    code, _, err = run(capsys, "cancel", "finished", "--config", str(config))
    assert code == 1
    assert "already finished (partial)" in err
    code, _, err = run(capsys, "cancel", "nope", "--config", str(config))
    assert code == 1
    assert control_queue(store) == [{"verb": "cancel", "batch_id": "running"}]


def test_retry_and_reprocess_queue_commands(
    capsys: pytest.CaptureFixture[str], config: Path, store: StateStore
) -> None:
    add_batch(store, config, "house", phase="done")
    code, out, _ = run(capsys, "retry", "house", "--config", str(config))
    assert code == 0
    assert "will analyse 1 failed or unfinished image" in out
    code, out, _ = run(capsys, "reprocess", "house", "--force", "--config", str(config))
    assert code == 0
    assert "will analyse 2 images" in out
    assert control_queue(store) == [
        {"verb": "retry", "batch_id": "house", "force": False},
        {"verb": "reprocess", "batch_id": "house", "force": True},
    ]


def test_reprocess_dry_run_prints_the_plan_and_queues_nothing(
    capsys: pytest.CaptureFixture[str], config: Path, store: StateStore
) -> None:
    record = add_batch(store, config, "house", phase="done")
    code, out, _ = run(capsys, "reprocess", "house", "--dry-run", "--config", str(config))
    assert (code, out) == (0, f"house: would analyse 2 images from {record.archived_to}\n")
    assert control_queue(store) == []
    assert store.get_batch("house") == record


@pytest.mark.parametrize("verb", ["retry", "reprocess"])
def test_rerun_refusals_exit_1(
    capsys: pytest.CaptureFixture[str], config: Path, store: StateStore, verb: str
) -> None:
    add_batch(store, config, "running", phase="running")
    record = add_batch(store, config, "deleted", phase="done")
    Path(str(record.archived_to)).rmdir()
    for batch, reason in [
        ("nope", "no batch named 'nope'"),
        ("running", "wait for it to finish or cancel it first"),
        ("deleted", "is gone"),
    ]:
        code, _, err = run(capsys, verb, batch, "--config", str(config))
        assert code == 1, batch
        assert reason in err
    assert control_queue(store) == []


def test_rerun_of_a_batch_from_an_inbox_no_longer_configured_is_refused(
    capsys: pytest.CaptureFixture[str], config: Path, store: StateStore
) -> None:
    add_batch(store, config, "house", phase="done")
    config.write_text(CONFIG.replace('name = "default"', 'name = "photos"'), encoding="utf-8")
    code, _, err = run(capsys, "reprocess", "house", "--config", str(config))
    assert code == 1
    assert "inbox 'default', which is no longer configured" in err
    assert control_queue(store) == []


def test_retry_with_nothing_failed_is_ok_and_queues_nothing(
    capsys: pytest.CaptureFixture[str], config: Path, store: StateStore
) -> None:
    add_batch(store, config, "house", phase="done")
    store.put_image("house", ImageRecord(path="b.jpg", status=ImageStatus.DONE, attempts=2))
    code, out, _ = run(capsys, "retry", "house", "--config", str(config))
    assert (code, out) == (0, "house: no failed images to retry\n")
    assert control_queue(store) == []


def test_explain_prints_its_lines(
    capsys: pytest.CaptureFixture[str], config: Path, store: StateStore
) -> None:
    (config.parent / "inbox").mkdir()
    (config.parent / "inbox" / ".DS_Store").write_bytes(b"junk")
    code, out, _ = run(
        capsys, "explain", str(config.parent / "inbox" / ".DS_Store"), "--config", str(config)
    )
    assert code == 0
    assert "is ignored: '.DS_Store'" in out


def test_explain_on_a_missing_path_exits_1(
    capsys: pytest.CaptureFixture[str], config: Path, store: StateStore
) -> None:
    missing = config.parent / "inbox" / "nothing-here.jpg"
    code, out, err = run(capsys, "explain", str(missing), "--config", str(config))
    assert (code, out) == (1, "")
    assert f"no such file or directory: {missing}" in err


def test_status_lists_dead_letters(
    capsys: pytest.CaptureFixture[str], config: Path, store: StateStore
) -> None:
    with WebhookDispatcher(WebhookConfig(), config.parent / "state" / "webhooks") as webhooks:
        webhooks.enqueue(
            batch_id="house", event="batch.completed", payload={}, callback_url="ftp://x.example/"
        )
        webhooks.deliver_due()
    code, out, _ = run(capsys, "status", "--config", str(config))
    assert code == 0
    (line,) = [line for line in out.splitlines() if line.startswith("dead letter:")]
    assert line.startswith(
        "dead letter: house batch.completed -> ftp://x.example/: gave up after 1"
    )
    assert "not an http(s) URL" in line
    document = json.loads(run(capsys, "status", "--json", "--config", str(config))[1])
    assert [letter["batch_id"] for letter in document["dead_letters"]] == ["house"]


# -- manners -----------------------------------------------------------------------------


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (verbs,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(verbs.choices)


def test_every_argument_is_described_in_help_with_its_default():
    for verb, sub in _subparsers().items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{verb} {action.dest}: no help"
            if action.option_strings:
                assert "default" in action.help, f"{verb} {action.option_strings}: no default"
        assert "default: ./outbox" in sub.format_help() or verb != "analyze"


def test_the_progress_bar_is_shown_only_on_a_terminal(tmp_path: Path):
    leader, follower = os.openpty()
    try:
        with open(follower, "w", closefd=False) as terminal:
            assert bar_wanted(True, terminal)
            assert not bar_wanted(False, terminal)
    finally:
        os.close(leader)
        os.close(follower)
    with (tmp_path / "stderr.txt").open("w") as redirected:
        assert not bar_wanted(True, redirected)


def test_status_lists_the_newest_batch_first(
    capsys: pytest.CaptureFixture[str], config: Path, store: StateStore
) -> None:
    for batch_id, created in (("b-old", "2026-01-01T00:00:00Z"), ("a-new", "2026-03-01T00:00:00Z")):
        record = add_batch(store, config, batch_id, phase="done")
        store.put_batch(dataclasses.replace(record, created_at=created))
    code, out, _ = run(capsys, "status", "--config", str(config))
    assert code == 0
    assert [line.split(":")[0] for line in out.splitlines()] == ["a-new", "b-old"]


def _with_failures(store: StateStore, config: Path) -> BatchRecord:
    record = add_batch(store, config, "house", phase="done")
    store.put_path_chunk("house", 0, ["a.jpg", "b.jpg", "notes.txt"])
    store.put_images(
        "house",
        [
            ImageRecord(
                path="b.jpg",
                status=ImageStatus.FAILED,
                attempts=1,
                error={"code": "CORRUPT", "message": "cannot decode", "retryable": False},
            ),
            ImageRecord(
                path="notes.txt",
                status=ImageStatus.SKIPPED,
                attempts=1,
                error={
                    "code": "UNSUPPORTED_FORMAT",
                    "message": "not an image format we decode",
                    "retryable": False,
                },
            ),
        ],
    )
    return record


def test_status_failed_lists_failed_and_skipped_files_with_code_and_message(
    capsys: pytest.CaptureFixture[str], config: Path, store: StateStore
) -> None:
    _with_failures(store, config)
    code, out, _ = run(capsys, "status", "house", "--failed", "--config", str(config))
    assert code == 0
    assert out.splitlines() == [
        "house: 2 failed or skipped files",
        "b.jpg: failed CORRUPT: cannot decode",
        "notes.txt: skipped UNSUPPORTED_FORMAT: not an image format we decode",
    ]
    code, out, _ = run(capsys, "status", "house", "--failed", "--json", "--config", str(config))
    document = json.loads(out)
    assert document["batch_id"] == "house"
    assert [(f["path"], f["status"], f["code"]) for f in document["failed"]] == [
        ("b.jpg", "failed", "CORRUPT"),
        ("notes.txt", "skipped", "UNSUPPORTED_FORMAT"),
    ]
    code, _, err = run(capsys, "status", "--failed", "--config", str(config))
    assert code == 2
    assert "needs a BATCH" in err


def test_status_failed_reads_the_outbox_once_the_images_are_disposed_of(
    capsys: pytest.CaptureFixture[str], config: Path, store: StateStore
) -> None:
    record = _with_failures(store, config)
    failed = {
        "path": "b.jpg",
        "status": "failed",
        "error": {"code": "CORRUPT", "message": "cannot decode", "retryable": False},
        "attempts": 3,
    }
    done = {"path": "a.jpg", "status": "done", "error": None, "attempts": 1}
    lines = [json.dumps(r, separators=(",", ":")) for r in (done, failed)]
    (Path(record.outbox_dir) / "results.jsonl").write_text("\n".join(lines) + "\n")
    store.delete_batch_images(record)
    code, out, _ = run(capsys, "status", "house", "--failed", "--config", str(config))
    assert (code, out) == (
        0,
        "house: 1 failed or skipped file\nb.jpg: failed CORRUPT: cannot decode\n",
    )


def test_explain_on_a_batch_folder_lists_its_failures(
    capsys: pytest.CaptureFixture[str], config: Path, store: StateStore
) -> None:
    record = _with_failures(store, config)
    assert record.archived_to is not None
    code, out, _ = run(capsys, "explain", record.archived_to, "--config", str(config))
    assert code == 0
    assert "2 files failed or skipped:" in out
    assert "  b.jpg: failed CORRUPT: cannot decode" in out
    assert "  notes.txt: skipped UNSUPPORTED_FORMAT" in out


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ended_progress(phase: BatchPhase) -> tuple[BatchRecord, BatchProgress]:
    record = BatchRecord(batch_id="b", inbox="in", source="/in/b", outbox_dir="/out/b")
    return record, BatchProgress.ended(record, phase=phase)


def test_analyze_looks_often_only_for_a_while_after_a_batch_published_its_end() -> None:
    clock = FakeClock()
    ending = BatchEnding(clock)
    assert ending.poll_interval() == ANALYZE_POLL_S
    ending.observe(*ended_progress(BatchPhase.WRITTEN))  # not the end yet
    assert ending.poll_interval() == ANALYZE_POLL_S
    ending.observe(*ended_progress(BatchPhase.DONE))
    assert ending.poll_interval() == ANALYZE_ENDING_POLL_S < ANALYZE_POLL_S
    clock.now += ANALYZE_ENDING_S
    assert ending.poll_interval() == ANALYZE_POLL_S


def test_a_batch_ending_wakes_the_wait_of_analyze(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "medianalysed.analyzeverb.ANALYZE_POLL_S", 3600.0
    )  # only the end can wake it
    ending = BatchEnding()
    waiting = threading.Thread(target=ending.wait)
    waiting.start()
    ending.observe(*ended_progress(BatchPhase.DONE))
    waiting.join(timeout=60)
    assert not waiting.is_alive()
