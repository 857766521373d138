"""Config loading, validation messages, rendering and the sample files (SPEC §6)."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from medianalysed import config as config_module
from medianalysed.config import (
    MASKED,
    AnalysisConfig,
    Config,
    InboxConfig,
    ProcessingConfig,
    WebhookConfig,
    config_fingerprint,
    config_from_dict,
    default_config,
    format_size,
    load_config,
    parse_size,
    render_config,
    resolve_config,
    split_listen,
)
from medianalysed.errors import ConfigError, ConfigIssue
from medianalysed.redaction import mask_url

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE = Path("/base")


def issues_of(data: dict[str, object], base_dir: Path = BASE) -> tuple[ConfigIssue, ...]:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, base_dir=base_dir, source=base_dir / "medianalysed.toml")
    return caught.value.issues


def only_issue(data: dict[str, object]) -> ConfigIssue:
    issues = issues_of(data)
    assert len(issues) == 1, issues
    return issues[0]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- valid input ---------------------------------------------------------------------------------


def test_empty_file_is_valid_and_gives_the_defaults_resolved_next_to_it(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path / "empty.toml", ""))

    assert loaded.source == tmp_path / "empty.toml"
    assert loaded.processing == ProcessingConfig()
    assert loaded.webhook == WebhookConfig()
    assert loaded.daemon.state_dir == tmp_path / "var" / "state"
    assert len(loaded.inboxes) == 1
    assert loaded.inboxes[0].name == "default"
    assert loaded.inboxes[0].path == tmp_path / "var" / "inbox"
    assert loaded.inboxes[0].failed is None


def test_default_config_resolves_against_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    defaults = default_config()

    assert defaults.source is None
    assert defaults.inboxes[0].outbox == tmp_path / "var" / "outbox"
    assert defaults.daemon.state_dir == tmp_path / "var" / "state"


def test_values_are_read_into_their_types() -> None:
    loaded = config_from_dict(
        {
            "processing": {
                "workers": 4,
                "image_timeout_seconds": 2.5,
                "max_file_size": "1.5GiB",
                "stall_seconds": 90,
            },
            "analysis": {
                "gps": False,
                "dominant_colors": 32,
                "near_duplicate_distance": 0,
                "max_duplicates_listed": 0,
            },
            "metrics": {"listen": "[::1]:9464"},
            "webhook": {"url": "https://hooks.example.com/x", "backoff_seconds": [0, 1.5]},
            "inbox": [
                {"name": "photos", "path": "in", "failed": "bad", "ignore": ["*.xmp"]},
                {"name": "scans", "path": "in2", "ready_marker": ""},
            ],
        },
        base_dir=BASE,
        source=None,
    )

    assert loaded.processing.workers == 4
    assert loaded.processing.image_timeout_seconds == 2.5
    assert loaded.processing.max_file_size == 1_610_612_736
    assert loaded.processing.stall_seconds == 90
    assert loaded.analysis == AnalysisConfig(
        gps=False, dominant_colors=32, near_duplicate_distance=0, max_duplicates_listed=0
    )
    assert loaded.metrics.listen == "[::1]:9464"
    assert loaded.webhook.backoff_seconds == (0.0, 1.5)
    assert [inbox.name for inbox in loaded.inboxes] == ["photos", "scans"]
    assert loaded.inboxes[0].failed == BASE / "bad"
    assert loaded.inboxes[0].ignore == ("*.xmp",)
    assert loaded.inboxes[1].ready_marker == ""
    # Both inboxes share the default outbox and archive: allowed across inboxes.
    assert loaded.inboxes[0].outbox == loaded.inboxes[1].outbox == BASE / "var" / "outbox"


# --- one error of each kind, with its exact key --------------------------------------------------

ERROR_CASES: list[tuple[dict[str, object], str, str]] = [
    # unknown names, with suggestions
    ({"deamon": {}}, "deamon", "unknown section; did you mean 'daemon'?"),
    ({"Processing": {}}, "Processing", "unknown section; did you mean 'processing'?"),
    ({"inboxes": []}, "inboxes", "unknown section; did you mean 'inbox'?"),
    ({"workers": 4}, "workers", "unknown top-level key; it belongs in [processing]"),
    ({"processing": {"workres": 2}}, "processing.workres", "unknown key; did you mean 'workers'?"),
    ({"daemon": {"workers": 2}}, "daemon.workers", "unknown key; it belongs in [processing]"),
    ({"daemon": {"colour": 2}}, "daemon.colour", "unknown key"),
    (
        {"inbox": [{"setle_seconds": 1}]},
        "inbox[0].setle_seconds",
        "unknown key; did you mean 'settle_seconds'?",
    ),
    # wrong types
    ({"daemon": 5}, "daemon", "expected a table [daemon], got integer 5"),
    (
        {"processing": {"workers": "5s"}},
        "processing.workers",
        "expected an integer, got string '5s'",
    ),
    (
        {"processing": {"workers": True}},
        "processing.workers",
        "expected an integer, got boolean true",
    ),
    (
        {"processing": {"min_width": 1.5}},
        "processing.min_width",
        "expected an integer, got float 1.5",
    ),
    (
        {"processing": {"image_timeout_seconds": "60s"}},
        "processing.image_timeout_seconds",
        "expected a number, got string '60s'",
    ),
    (
        {"processing": {"image_timeout_seconds": float("inf")}},
        "processing.image_timeout_seconds",
        "expected a number, got float inf",
    ),
    ({"analysis": {"gps": "yes"}}, "analysis.gps", "expected true or false, got string 'yes'"),
    ({"metrics": {"listen": 9464}}, "metrics.listen", "expected a string, got integer 9464"),
    ({"daemon": {"state_dir": 3}}, "daemon.state_dir", "expected a directory path, got integer 3"),
    (
        {"webhook": {"backoff_seconds": 5}},
        "webhook.backoff_seconds",
        "expected an array of numbers, got integer 5",
    ),
    (
        {"processing": {"retry_backoff_seconds": [5, "x"]}},
        "processing.retry_backoff_seconds[1]",
        "expected a number, got string 'x'",
    ),
    (
        {"inbox": [{"ignore": ["*.xmp", ""]}]},
        "inbox[0].ignore[1]",
        "expected a glob pattern, got string ''",
    ),
    ({"inbox": {"path": "in"}}, "inbox", "expected one or more [[inbox]], got a table [inbox]"),
    ({"inbox": []}, "inbox", "expected one or more [[inbox]], got array"),
    ({"inbox": [3]}, "inbox[0]", "expected a table, got integer 3"),
    # choices
    (
        {"daemon": {"log_format": "jsno"}},
        "daemon.log_format",
        "must be one of text, json; got 'jsno'; did you mean 'json'?",
    ),
    (
        {"daemon": {"log_level": "verbose"}},
        "daemon.log_level",
        "must be one of debug, info, warning, error; got 'verbose'",
    ),
    (
        {"inbox": [{"on_complete": "move"}]},
        "inbox[0].on_complete",
        "must be one of archive, delete, keep; got 'move'",
    ),
    (
        {"inbox": [{"watch": "poll"}]},
        "inbox[0].watch",
        "must be one of auto, events, polling; got 'poll'; did you mean 'polling'?",
    ),
    # ranges
    ({"processing": {"workers": -1}}, "processing.workers", "must be >= 0, got -1"),
    ({"processing": {"max_retries": -1}}, "processing.max_retries", "must be >= 0, got -1"),
    (
        {"processing": {"image_timeout_seconds": 0}},
        "processing.image_timeout_seconds",
        "must be > 0, got 0",
    ),
    ({"processing": {"max_pixels": 0}}, "processing.max_pixels", "must be >= 1, got 0"),
    ({"processing": {"stall_seconds": 0}}, "processing.stall_seconds", "must be > 0, got 0"),
    ({"webhook": {"timeout_seconds": -1}}, "webhook.timeout_seconds", "must be > 0, got -1"),
    ({"downloads": {"timeout_seconds": 0}}, "downloads.timeout_seconds", "must be > 0, got 0"),
    ({"webhook": {"max_attempts": 0}}, "webhook.max_attempts", "must be >= 1, got 0"),
    ({"webhook": {"backoff_seconds": []}}, "webhook.backoff_seconds", "must not be empty"),
    (
        {"webhook": {"backoff_seconds": [1, -0.5]}},
        "webhook.backoff_seconds[1]",
        "must be >= 0, got -0.5",
    ),
    (
        {"analysis": {"dominant_colors": 0}},
        "analysis.dominant_colors",
        "must be between 1 and 32, got 0",
    ),
    (
        {"analysis": {"dominant_colors": 33}},
        "analysis.dominant_colors",
        "must be between 1 and 32, got 33",
    ),
    (
        {"analysis": {"near_duplicate_distance": 33}},
        "analysis.near_duplicate_distance",
        "must be between 0 and 32, got 33",
    ),
    (
        {"analysis": {"max_duplicates_listed": -1}},
        "analysis.max_duplicates_listed",
        "must be between 0 and 1000, got -1",
    ),
    (
        {"analysis": {"max_duplicates_listed": "ten"}},
        "analysis.max_duplicates_listed",
        "expected an integer, got string 'ten'",
    ),
    ({"inbox": [{"settle_seconds": -1}]}, "inbox[0].settle_seconds", "must be >= 0, got -1"),
    ({"inbox": [{"rescan_seconds": 0}]}, "inbox[0].rescan_seconds", "must be > 0, got 0"),
    # sizes
    (
        {"processing": {"max_file_size": "200 megs"}},
        "processing.max_file_size",
        "expected a size such as 200MB, 1.5GiB or 512kB (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB), "
        "got string '200 megs'",
    ),
    ({"downloads": {"max_bytes": 0}}, "downloads.max_bytes", "must be > 0, got 0"),
    (
        {"processing": {"max_worker_memory": -1}},
        "processing.max_worker_memory",
        "must be >= 0 (0 = no limit), got -1",
    ),
    (
        {"processing": {"max_worker_memory": "2 gigs"}},
        "processing.max_worker_memory",
        "expected a size such as 200MB, 1.5GiB or 512kB (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB), "
        "got string '2 gigs'",
    ),
    ({"downloads": {"max_bytes": -5}}, "downloads.max_bytes", "must be > 0, got -5"),
    # listen and url
    (
        {"metrics": {"listen": "localhost"}},
        "metrics.listen",
        "missing ':port'; expected 'host:port' or '' to disable, got 'localhost'",
    ),
    (
        {"metrics": {"listen": "127.0.0.1:70000"}},
        "metrics.listen",
        "port must be 0..65535; expected 'host:port' or '' to disable, got '127.0.0.1:70000'",
    ),
    (
        {"metrics": {"listen": "::1:9464"}},
        "metrics.listen",
        "an ipv6 address needs brackets, e.g. '[::1]:9464'; expected 'host:port' or '' to "
        "disable, got '::1:9464'",
    ),
    (
        {"metrics": {"listen": ":9464"}},
        "metrics.listen",
        "missing or invalid host; expected 'host:port' or '' to disable, got ':9464'",
    ),
    (
        {"webhook": {"url": "ftp://example.com/hook"}},
        "webhook.url",
        "must be an http:// or https:// url, got 'ftp://example.com/hook'",
    ),
    ({"webhook": {"url": "https://"}}, "webhook.url", "must name a host, got 'https://'"),
    (
        {"webhook": {"url": "https://example.com:99999/"}},
        "webhook.url",
        "not a valid url, got 'https://example.com:99999/'",
    ),
    # inbox names and paths
    ({"inbox": [{"name": ""}]}, "inbox[0].name", "must not be empty"),
    (
        {"inbox": [{"name": "my photos"}]},
        "inbox[0].name",
        "must be letters, digits, '_' or '-' only, got 'my photos'",
    ),
    ({"inbox": [{"path": ""}]}, "inbox[0].path", "must not be empty"),
    (
        {"inbox": [{"ready_marker": "sub/.ready"}]},
        "inbox[0].ready_marker",
        "must be a file name without '/', got 'sub/.ready'",
    ),
]


@pytest.mark.parametrize(("data", "key", "message"), ERROR_CASES)
def test_each_error_names_its_key_and_the_problem(
    data: dict[str, object], key: str, message: str
) -> None:
    assert only_issue(data) == ConfigIssue(key, message)


def test_messages_are_short_lower_case_and_single_line() -> None:
    for data, _key, _message in ERROR_CASES:
        for issue in issues_of(data):
            assert issue.message[0].islower() or issue.message[0] in "'[", issue
            assert "\n" not in issue.message
            assert "Traceback" not in issue.message


def test_duplicate_inbox_names_name_the_first_one() -> None:
    issue = only_issue(
        {
            "inbox": [
                {"name": "a", "path": "in1"},
                {"name": "b", "path": "in2"},
                {"name": "a", "path": "in3"},
            ]
        }
    )

    assert issue == ConfigIssue("inbox[2].name", "duplicate inbox name 'a' (also inbox[0].name)")


def test_secrets_never_appear_in_messages() -> None:
    issues = issues_of(
        {"webhook": {"secret": 123456789, "url": "ftp://alice:hunter2@example.com/"}}
    )

    assert issues == (
        ConfigIssue(
            "webhook.url",
            f"must be an http:// or https:// url, got 'ftp://alice:{MASKED}@example.com/'",
        ),
        ConfigIssue("webhook.secret", "expected a string, got integer"),
    )


def test_every_problem_is_reported_at_once() -> None:
    issues = issues_of(
        {
            "deamon": {},
            "daemon": {"log_format": "xml"},
            "processing": {"workers": "4", "max_file_size": "lots"},
            "analysis": {"dominant_colors": 99},
            "inbox": [{"name": "a", "settle_seconds": "5s", "colour": 1}],
        }
    )

    assert [issue.key for issue in issues] == [
        "deamon",
        "daemon.log_format",
        "processing.workers",
        "processing.max_file_size",
        "analysis.dominant_colors",
        "inbox[0].colour",
        "inbox[0].settle_seconds",
    ]
    rendered = str(ConfigError("my.toml", issues))
    assert rendered.startswith("invalid configuration in my.toml:\n")
    assert "  processing.workers: expected an integer, got string '4'" in rendered


# --- sizes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (0, 0),
        (1234, 1234),
        ("1234", 1234),
        ("512B", 512),
        ("512kB", 512_000),
        ("512KB", 512_000),
        ("512kb", 512_000),
        ("200MB", 200_000_000),
        ("200mb", 200_000_000),
        ("200 MB", 200_000_000),
        ("1GB", 1_000_000_000),
        ("2TB", 2_000_000_000_000),
        ("1KiB", 1024),
        ("1kib", 1024),
        ("64MiB", 64 * 1024**2),
        ("1.5GiB", 1_610_612_736),
        ("1TiB", 1024**4),
        ("0.5MB", 500_000),
    ],
)
def test_sizes_accept_si_and_iec_units_in_any_case(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["", "MB", "200 megs", "1,5GB", "-5MB", "1e6", "0.5B", "1.5", "5 M B", "3XB"]
)
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"size|bytes"):
        parse_size(text)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (200_000_000, "200MB"),
        (100_000_000, "100MB"),
        (1024, "1KiB"),
        (1_610_612_736, "1536MiB"),
        (1536, "1536B"),
        (1, "1B"),
        (0, "0B"),
        (1024**4, "1TiB"),
        (3 * 1000**4, "3TB"),
    ],
)
def test_sizes_format_exactly_and_parse_back(size: int, text: str) -> None:
    assert format_size(size) == text
    assert parse_size(text) == size


def test_a_size_in_the_config_accepts_int_or_string() -> None:
    loaded = config_from_dict(
        {"processing": {"max_file_size": 5000}, "downloads": {"max_bytes": "512kB"}},
        base_dir=BASE,
        source=None,
    )

    assert loaded.processing.max_file_size == 5000
    assert loaded.downloads.max_bytes == 512_000


# --- paths ---------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config_file = write(
        tmp_path / "etc" / "m.toml",
        '[daemon]\nstate_dir = "state"\n'
        '[[inbox]]\npath = "drop"\noutbox = "../out"\n'
        'archive = "/abs/archive"\nfailed = "x/../failed"\n',
    )

    loaded = load_config(Path("etc/m.toml"))

    assert loaded.source == Path("etc/m.toml")
    assert loaded.daemon.state_dir == tmp_path / "etc" / "state"
    inbox = loaded.inboxes[0]
    assert inbox.path == config_file.parent / "drop"
    assert inbox.outbox == tmp_path / "out"
    assert inbox.archive == Path("/abs/archive")
    assert inbox.failed == tmp_path / "etc" / "failed"


def test_tilde_expands_to_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    loaded = config_from_dict({"daemon": {"state_dir": "~/state"}}, base_dir=BASE, source=None)

    assert loaded.daemon.state_dir == tmp_path / "home" / "state"


def test_failed_empty_means_none_and_a_path_means_a_directory() -> None:
    assert (
        config_from_dict({"inbox": [{"failed": ""}]}, base_dir=BASE, source=None).inboxes[0].failed
        is None
    )
    assert (
        config_from_dict({"inbox": [{"failed": "f"}]}, base_dir=BASE, source=None).inboxes[0].failed
        == BASE / "f"
    )


@pytest.mark.parametrize(
    ("inbox", "issue"),
    [
        (
            {"path": "in", "outbox": "in/out"},
            ConfigIssue("inbox[0].outbox", "must not be inside inbox[0].path (/base/in)"),
        ),
        (
            {"path": "in/sub", "outbox": "out", "archive": "in"},
            ConfigIssue("inbox[0].path", "must not be inside inbox[0].archive (/base/in)"),
        ),
        (
            {"path": "in", "outbox": "in"},
            ConfigIssue(
                "inbox[0].outbox", "must not be the same directory as inbox[0].path (/base/in)"
            ),
        ),
        (
            {"path": "in", "outbox": "x/../in"},
            ConfigIssue(
                "inbox[0].outbox", "must not be the same directory as inbox[0].path (/base/in)"
            ),
        ),
        (
            {"archive": "done", "failed": "done"},
            ConfigIssue(
                "inbox[0].failed", "must not be the same directory as inbox[0].archive (/base/done)"
            ),
        ),
        (
            {"outbox": "results", "failed": "results/failed"},
            ConfigIssue("inbox[0].failed", "must not be inside inbox[0].outbox (/base/results)"),
        ),
    ],
)
def test_overlapping_directories_of_one_inbox_are_refused(
    inbox: dict[str, object], issue: ConfigIssue
) -> None:
    assert only_issue({"inbox": [inbox]}) == issue


def test_one_inbox_may_not_sit_inside_another() -> None:
    issue = only_issue({"inbox": [{"name": "a", "path": "in"}, {"name": "b", "path": "in/b"}]})

    assert issue == ConfigIssue("inbox[1].path", "must not be inside inbox[0].path (/base/in)")


def test_two_inboxes_may_not_watch_the_same_directory() -> None:
    issue = only_issue({"inbox": [{"name": "a"}, {"name": "b"}]})

    assert issue == ConfigIssue(
        "inbox[1].path", "must not be the same directory as inbox[0].path (/base/var/inbox)"
    )


def test_state_dir_may_not_be_inside_an_inbox() -> None:
    issue = only_issue({"daemon": {"state_dir": "var/inbox/.state"}})

    assert issue == ConfigIssue(
        "daemon.state_dir", "must not be inside inbox[0].path (/base/var/inbox)"
    )


def test_a_bad_path_does_not_also_report_a_spurious_overlap() -> None:
    # inbox[0].outbox is invalid, so its default (var/outbox) stands in; no overlap is invented.
    issues = issues_of({"inbox": [{"outbox": 7, "archive": "var/outbox"}]})

    assert issues == (ConfigIssue("inbox[0].outbox", "expected a directory path, got integer 7"),)


# --- the file layer -------------------------------------------------------------------------------


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", '[daemon]\nlog_level = "info"\nlog_format = = "json"\n')

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.source == str(path)
    assert str(path) in str(caught.value)
    (issue,) = caught.value.issues
    assert issue.key == "<file>"
    assert issue.message.startswith("not valid toml: ")
    assert "line 3" in issue.message


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml")

    assert caught.value.issues == (ConfigIssue("<file>", "cannot read: no such file or directory"),)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[daemon]\nlog_level = "\xe9"\n')

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.issues == (ConfigIssue("<file>", "not valid utf-8 (at byte 22)"),)


def test_load_errors_carry_the_file_as_source(tmp_path: Path) -> None:
    path = write(tmp_path / "m.toml", "[processing]\nworkers = -2\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.source == str(path)
    assert caught.value.issues == (ConfigIssue("processing.workers", "must be >= 0, got -2"),)


# --- search order ---------------------------------------------------------------------------------


@pytest.fixture
def isolated_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(config_module.CONFIG_ENV_VAR, raising=False)
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG", tmp_path / "etc" / "medianalysed.toml")
    return tmp_path


def test_resolve_config_without_any_file_gives_the_defaults(isolated_search: Path) -> None:
    assert resolve_config(None) == default_config()
    assert resolve_config(None).inboxes[0].path == isolated_search / "var" / "inbox"


def test_resolve_config_search_order(
    isolated_search: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = write(config_module.SYSTEM_CONFIG, "[processing]\nworkers = 1\n")
    assert resolve_config(None).source == system

    write(isolated_search / "medianalysed.toml", "[processing]\nworkers = 2\n")
    assert resolve_config(None).processing.workers == 2

    from_env = write(isolated_search / "env.toml", "[processing]\nworkers = 3\n")
    monkeypatch.setenv(config_module.CONFIG_ENV_VAR, str(from_env))
    assert resolve_config(None).processing.workers == 3

    explicit = write(isolated_search / "explicit.toml", "[processing]\nworkers = 4\n")
    assert resolve_config(explicit).processing.workers == 4


def test_resolve_config_with_a_missing_explicit_file_fails(isolated_search: Path) -> None:
    with pytest.raises(ConfigError):
        resolve_config(isolated_search / "missing.toml")


# --- rendering ------------------------------------------------------------------------------------


def unusual_config(tmp_path: Path) -> Config:
    return config_from_dict(
        {
            "daemon": {"state_dir": 'st"ate\\dir', "log_format": "json"},
            "processing": {
                "workers": 3,
                "retry_backoff_seconds": [0.25, 1e-3, 7],
                "image_timeout_seconds": 12.5,
                "max_file_size": 1536,
            },
            "analysis": {"gps": False},
            "metrics": {"listen": ""},
            "webhook": {
                "url": "https://alice:pa%40ss@hooks.example.com:8443/h?x=1",
                "secret": 'se"cr\\et\n',
            },
            "downloads": {"max_bytes": "1.5GiB", "allow_private_networks": True},
            "inbox": [
                {
                    "name": "photos",
                    "path": "Fotos été",
                    "failed": "bad",
                    "ignore": ["*.xmp", "a\tb"],
                },
                {"name": "scans", "path": "scans", "watch": "polling", "settle_seconds": 0.5},
            ],
        },
        base_dir=tmp_path,
        source=tmp_path / "m.toml",
    )


def test_render_round_trips_to_an_equal_config(tmp_path: Path) -> None:
    original = unusual_config(tmp_path)

    text = render_config(original, mask_secrets=False)
    parsed = config_from_dict(
        tomllib.loads(text), base_dir=Path("/elsewhere"), source=original.source
    )

    assert parsed == original


def test_render_round_trips_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    defaults = default_config()

    text = render_config(defaults)

    assert (
        config_from_dict(tomllib.loads(text), base_dir=Path("/elsewhere"), source=None) == defaults
    )
    key_lines = [line for line in text.splitlines() if " = " in line and not line.startswith("#")]
    assert len(key_lines) == 3 + 11 + 4 + 1 + 6 + 3 + 2 + 5 + 11 + 11  # the last: [near]
    assert all(line.endswith("  # default") for line in key_lines)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("512MiB", 512 * 2**20),
        ("3GB", 3_000_000_000),
        (1_000_000, 1_000_000),
        ("0", 0),
        ("", 0),
        (0, 0),
        ("0B", 0),
    ],
)
def test_max_worker_memory_is_a_size_and_zero_or_empty_means_no_limit(
    given: str | int, expected: int
) -> None:
    loaded = config_from_dict(
        {"processing": {"max_worker_memory": given}}, base_dir=BASE, source=None
    )
    assert loaded.processing.max_worker_memory == expected
    rendered = tomllib.loads(render_config(loaded))["processing"]["max_worker_memory"]
    again = config_from_dict(
        {"processing": {"max_worker_memory": rendered}}, base_dir=BASE, source=None
    )
    assert again.processing == loaded.processing


def test_render_masks_secrets_and_marks_only_defaults(tmp_path: Path) -> None:
    text = render_config(unusual_config(tmp_path))

    lines = text.splitlines()
    assert f'secret = "{MASKED}"' in lines
    assert f'url = "https://alice:{MASKED}@hooks.example.com:8443/h?x=1"' in lines
    assert 'se\\"cr' not in text
    assert "pa%40ss" not in text
    assert "workers = 3" in lines
    assert 'max_file_size = "1536B"' in lines
    assert 'max_bytes = "1536MiB"' in lines
    assert "max_retries = 3  # default" in lines
    assert 'log_format = "json"' in lines
    assert 'log_level = "info"  # default' in lines
    assert 'name = "photos"' in lines
    assert 'failed = ""  # default' in lines  # the second inbox
    # The masked text is still valid TOML.
    assert tomllib.loads(text)["webhook"]["secret"] == MASKED


def test_an_empty_secret_is_shown_as_empty() -> None:
    assert 'secret = ""  # default' in render_config(default_config()).splitlines()


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://example.com/h", "https://example.com/h"),
        ("https://bob@example.com/h", "https://bob@example.com/h"),
        ("https://bob:pw@example.com/h", f"https://bob:{MASKED}@example.com/h"),
        ("http://:pw@example.com:80/", f"http://:{MASKED}@example.com:80/"),
        ("", ""),
    ],
)
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("localhost:0", ("localhost", 0)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("[::1]:9464", ("::1", 9464)),
        ("[::]:80", ("::", 80)),
    ],
)
def test_split_listen(listen: str, expected: tuple[str, int]) -> None:
    assert split_listen(listen) == expected


@pytest.mark.parametrize(
    "listen", ["[::1]", "[nothex]:80", "host:", "host:-1", "host:\uff18\uff10", "a b:1"]
)
def test_split_listen_refuses(listen: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        split_listen(listen)


# --- fingerprint ----------------------------------------------------------------------------------


def test_fingerprint_is_short_hex_and_stable() -> None:
    fingerprint = config_fingerprint(default_config())

    assert fingerprint == "bf555a96edc9e92e"  # changing it invalidates stored fingerprints
    assert len(fingerprint) == 16
    int(fingerprint, 16)


@pytest.mark.parametrize(
    "change",
    [
        {"processing": {"max_file_size": "1MB"}},
        {"processing": {"max_pixels": 1000}},
        {"processing": {"min_width": 10}},
        {"processing": {"min_height": 10}},
        {"analysis": {"dominant_colors": 6}},
        {"analysis": {"near_duplicate_distance": 5}},
        {"analysis": {"gps": False}},
    ],
)
def test_fingerprint_changes_with_settings_that_change_results(change: dict[str, object]) -> None:
    changed = config_from_dict(change, base_dir=BASE, source=None)

    assert config_fingerprint(changed) != config_fingerprint(default_config())


def test_fingerprint_ignores_operational_settings() -> None:
    changed = config_from_dict(
        {
            "daemon": {"log_level": "debug"},
            "processing": {"workers": 7, "max_retries": 0, "image_timeout_seconds": 5},
            "analysis": {"max_duplicates_listed": 3},
            "metrics": {"listen": ""},
            "inbox": [{"path": "/elsewhere/in", "settle_seconds": 1}],
        },
        base_dir=BASE,
        source=None,
    )

    assert config_fingerprint(changed) == config_fingerprint(default_config())


# --- the shipped files ----------------------------------------------------------------------------


def test_sample_file_equals_the_built_in_defaults_field_for_field() -> None:
    sample = load_config(REPO_ROOT / "medianalysed.toml")
    defaults = config_from_dict({}, base_dir=REPO_ROOT, source=None)

    for section in dataclasses.fields(Config):
        if section.name == "source":
            continue
        assert getattr(sample, section.name) == getattr(defaults, section.name), section.name
    assert sample.inboxes[0] == dataclasses.replace(
        defaults.inboxes[0],
        path=REPO_ROOT / "var" / "inbox",
        outbox=REPO_ROOT / "var" / "outbox",
        archive=REPO_ROOT / "var" / "archive",
    )
    assert sample.daemon.state_dir == REPO_ROOT / "var" / "state"


def test_sample_file_sets_every_key_explicitly() -> None:
    data = tomllib.loads((REPO_ROOT / "medianalysed.toml").read_text(encoding="utf-8"))

    for section, cls in {**config_module._SECTIONS, "inbox": InboxConfig}.items():
        table = data[section][0] if section == "inbox" else data[section]
        assert set(table) == {f.name for f in dataclasses.fields(cls)}, section
    assert set(data) == {*config_module._SECTIONS, "inbox"}


def test_sample_file_documents_every_key_with_a_comment_above_it() -> None:
    lines = (REPO_ROOT / "medianalysed.toml").read_text(encoding="utf-8").splitlines()

    for index, line in enumerate(lines):
        if " = " in line and not line.startswith("#"):
            above = lines[index - 1]
            # min_width/min_height share one comment.
            assert above.startswith(("#", "min_width")), line


def test_development_profile_loads() -> None:
    loaded = load_config(REPO_ROOT / "config" / "development.toml")

    assert loaded.daemon.log_level == "debug"
    assert loaded.metrics.listen == "127.0.0.1:9464"
    assert loaded.inboxes[0].settle_seconds <= 2
    assert loaded.inboxes[0].path == REPO_ROOT / "var" / "inbox"
    assert loaded.daemon.state_dir == REPO_ROOT / "var" / "state"


def test_production_profile_loads() -> None:
    loaded = load_config(REPO_ROOT / "config" / "production.toml")

    assert loaded.daemon.log_format == "json"
    assert loaded.daemon.state_dir == Path("/var/lib/medianalysed")
    (inbox,) = loaded.inboxes
    assert (inbox.path, inbox.outbox, inbox.archive, inbox.failed) == (
        Path("/srv/medianalysed/inbox"),
        Path("/srv/medianalysed/outbox"),
        Path("/srv/medianalysed/archive"),
        Path("/srv/medianalysed/failed"),
    )
    assert loaded.webhook == WebhookConfig()


def test_executor_errors_name_their_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(
            {"executor": {"kind": "ray", "address": "scheduler:8786"}},
            base_dir=tmp_path,
            source=None,
        )
    keys = {issue.key: issue.message for issue in caught.value.issues}
    assert "local, dask" in keys["executor.kind"]
    assert "tcp://host:8786" in keys["executor.address"]


def test_a_dask_executor_reads_its_scheduler_address(tmp_path: Path) -> None:
    config = config_from_dict(
        {"executor": {"kind": "dask", "address": "tcp://10.0.0.5:8786"}},
        base_dir=tmp_path,
        source=None,
    )
    assert (config.executor.kind, config.executor.address) == ("dask", "tcp://10.0.0.5:8786")
