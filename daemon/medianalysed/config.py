"""Configuration: typed, frozen settings loaded from TOML (SPEC §6).

The dataclass defaults below are the single source of truth for defaults;
`medianalysed.toml` at the project root is their commented copy, and a test keeps the
two equal. Loading never stops at the first problem: every issue is collected, each
naming its dotted key (`processing.workers`, `inbox[0].settle_seconds`), and raised
together as one `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.util
import ipaddress
import itertools
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar, get_args
from urllib.parse import urlsplit, urlunsplit

from medianalysed.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

WatchMode = Literal["auto", "events", "polling"]
OnComplete = Literal["archive", "delete", "keep"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
ExecutorKind = Literal["local", "dask"]

CONFIG_ENV_VAR = "MEDIANALYSED_CONFIG"
SYSTEM_CONFIG = Path("/etc/medianalysed/medianalysed.toml")
MASKED = "********"


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    state_dir: Path = Path("var/state")
    log_format: LogFormat = "text"
    log_level: LogLevel = "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessingConfig:
    workers: int = 0
    max_retries: int = 3
    retry_backoff_seconds: tuple[float, ...] = (5, 20, 80)
    image_timeout_seconds: float = 60
    max_file_size: int = 200_000_000
    max_pixels: int = 178_956_970
    min_width: int = 0
    min_height: int = 0
    # Per worker process; 0 = no limit. The largest image max_pixels admits takes 4 bytes a
    # pixel once decoded (716 MB at the default), a worker's own data about 200 MB.
    max_worker_memory: int = 2_000_000_000
    stall_seconds: float = 600

    @property
    def effective_workers(self) -> int:
        """`workers`, with 0 meaning one per CPU."""
        return self.workers or (os.cpu_count() or 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisConfig:
    dominant_colors: int = 5
    near_duplicate_distance: int = 6
    max_duplicates_listed: int = 10
    gps: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    listen: str = "127.0.0.1:9464"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookConfig:
    url: str = ""
    secret: str = ""
    timeout_seconds: float = 10
    max_attempts: int = 6
    backoff_seconds: tuple[float, ...] = (1, 5, 30, 120, 600)


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadsConfig:
    timeout_seconds: float = 30
    max_bytes: int = 100_000_000
    allow_private_networks: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorConfig:
    kind: ExecutorKind = "local"
    address: str = ""  # dask: the scheduler, tcp://host:8786; "" starts a local cluster


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxConfig:
    name: str = "default"
    path: Path = Path("var/inbox")
    outbox: Path = Path("var/outbox")
    archive: Path = Path("var/archive")
    failed: Path | None = None
    on_complete: OnComplete = "archive"
    watch: WatchMode = "auto"
    settle_seconds: float = 5
    ready_marker: str = ".ready"
    rescan_seconds: float = 300
    ignore: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    downloads: DownloadsConfig = field(default_factory=DownloadsConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    inboxes: tuple[InboxConfig, ...] = (InboxConfig(),)
    source: Path | None = None  # the file this was loaded from; None for built-in defaults


WATCH_MODES: tuple[WatchMode, ...] = get_args(WatchMode)
ON_COMPLETE_ACTIONS: tuple[OnComplete, ...] = get_args(OnComplete)
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
EXECUTOR_KINDS: tuple[ExecutorKind, ...] = get_args(ExecutorKind)

_SECTIONS: dict[str, type] = {
    "daemon": DaemonConfig,
    "processing": ProcessingConfig,
    "analysis": AnalysisConfig,
    "metrics": MetricsConfig,
    "webhook": WebhookConfig,
    "downloads": DownloadsConfig,
    "executor": ExecutorConfig,
}
_INBOX_SECTION = "inbox"
_TOP_LEVEL = (*_SECTIONS, _INBOX_SECTION)
_KEYS: dict[str, tuple[str, ...]] = {
    name: tuple(f.name for f in dataclasses.fields(cls))
    for name, cls in {**_SECTIONS, _INBOX_SECTION: InboxConfig}.items()
}
_SIZE_KEYS = frozenset({"max_file_size", "max_bytes", "max_worker_memory"})
_SECRET_KEYS = frozenset({"secret"})
_INBOX_NAME = re.compile(r"[A-Za-z0-9_-]+")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")
_DASK_ADDRESS = re.compile(
    r"(?:tcp|tls)://[^\s/:]+(?::[0-9]{1,5})?|(?:tcp|tls)://\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?"
)
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")
_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_FORM = "a size such as 200MB, 1.5GiB or 512kB (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"
_LARGEST_UNIT_FIRST = (
    ("TiB", 1024**4),
    ("TB", 1000**4),
    ("GiB", 1024**3),
    ("GB", 1000**3),
    ("MiB", 1024**2),
    ("MB", 1000**2),
    ("KiB", 1024),
    ("kB", 1000),
)
_CLIP = 60

_S = TypeVar("_S", bound=str)


# --- public helpers ----------------------------------------------------------------------------


def parse_size(value: str | int) -> int:
    """Parse a byte size: an int, or a string like "200MB", "1.5GiB", "512kB" (case-insensitive).

    Raises:
        ValueError: not a whole, non-negative number of bytes in an accepted form.
    """
    if isinstance(value, bool):
        raise ValueError("not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative size")
        return value
    match = _SIZE.fullmatch(value)
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError("not a size")
    amount = Decimal(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if amount != amount.to_integral_value():
        raise ValueError("not a whole number of bytes")
    return int(amount)


def format_size(size: int) -> str:
    """Format a byte count with the largest unit that divides it exactly ("200MB", "1536B")."""
    for unit, factor in _LARGEST_UNIT_FIRST:
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def split_listen(listen: str) -> tuple[str, int]:
    """Split "host:port" ("[::1]:9464" for IPv6) into host and port.

    Raises:
        ValueError: with a short lower-case reason.
    """
    if listen.startswith("["):
        close = listen.find("]")
        if close < 0 or listen[close + 1 : close + 2] != ":":
            raise ValueError("an ipv6 address needs the form '[::1]:9464'")
        host, port_text = listen[1:close], listen[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ValueError(f"{host!r} is not an ipv6 address") from exc
    else:
        host, colon, port_text = listen.rpartition(":")
        if not colon:
            raise ValueError("missing ':port'")
        if ":" in host:
            raise ValueError("an ipv6 address needs brackets, e.g. '[::1]:9464'")
        if not _HOSTNAME.fullmatch(host):
            raise ValueError("missing or invalid host")
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise ValueError("port must be 0..65535")
    return host, int(port_text)


def mask_url(url: str) -> str:
    """The URL with any userinfo password replaced by "********"."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASKED}@{hostport}"))


# --- loading -----------------------------------------------------------------------------------


def load_config(path: Path) -> Config:
    """Load and validate a TOML configuration file.

    Raises:
        ConfigError: with every problem found, each naming its key.
    """
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(str(path), (ConfigIssue("<file>", f"cannot read: {reason}"),)) from exc
    except UnicodeDecodeError as exc:
        issue = ConfigIssue("<file>", f"not valid utf-8 (at byte {exc.start})")
        raise ConfigError(str(path), (issue,)) from exc
    except tomllib.TOMLDecodeError as exc:
        issue = ConfigIssue("<file>", f"not valid toml: {_lower_first(str(exc))}")
        raise ConfigError(str(path), (issue,)) from exc
    return config_from_dict(data, base_dir=path.resolve().parent, source=path)


def config_from_dict(data: Mapping[str, object], *, base_dir: Path, source: Path | None) -> Config:
    """Build a Config from parsed TOML; relative paths resolve against `base_dir`.

    Raises:
        ConfigError: with every problem found, each naming its dotted key.
    """
    issues: list[ConfigIssue] = []
    base = Path(os.path.abspath(base_dir))
    for name, value in data.items():
        if name not in _TOP_LEVEL:
            what = "section" if isinstance(value, dict | list) else "top-level key"
            issues.append(ConfigIssue(name, _unknown_message(name, _TOP_LEVEL, what)))
    config = Config(
        daemon=_read_daemon(_section(data, "daemon", issues, base)),
        processing=_read_processing(_section(data, "processing", issues, base)),
        analysis=_read_analysis(_section(data, "analysis", issues, base)),
        metrics=_read_metrics(_section(data, "metrics", issues, base)),
        webhook=_read_webhook(_section(data, "webhook", issues, base)),
        downloads=_read_downloads(_section(data, "downloads", issues, base)),
        executor=_read_executor(_section(data, "executor", issues, base)),
        inboxes=_read_inboxes(data.get(_INBOX_SECTION), issues, base),
        source=source,
    )
    issues.extend(_directory_issues(config, already_bad={issue.key for issue in issues}))
    if issues:
        raise ConfigError(str(source) if source is not None else "<config>", tuple(issues))
    return config


def default_config() -> Config:
    """The built-in defaults, with relative paths resolved against the current directory."""
    return config_from_dict({}, base_dir=Path.cwd(), source=None)


def find_config_path(explicit: Path | None) -> Path | None:
    """The config file to use: --config, $MEDIANALYSED_CONFIG, ./medianalysed.toml, /etc/..."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(CONFIG_ENV_VAR)
    if from_env:
        return Path(from_env)
    local = Path("medianalysed.toml")
    if local.is_file():
        return local
    if SYSTEM_CONFIG.is_file():
        return SYSTEM_CONFIG
    return None


def resolve_config(explicit: Path | None) -> Config:
    """Load the config the search order finds (SPEC §5), or the built-in defaults if none.

    Raises:
        ConfigError: the file found is unreadable or invalid.
    """
    path = find_config_path(explicit)
    return default_config() if path is None else load_config(path)


# --- reading one table -------------------------------------------------------------------------


class _Table:
    """Typed reads from one TOML table; a bad value is recorded as an issue and the default used."""

    def __init__(
        self, data: Mapping[str, object], prefix: str, issues: list[ConfigIssue], base_dir: Path
    ) -> None:
        self.data = data
        self.prefix = prefix
        self.issues = issues
        self.base_dir = base_dir

    def key(self, name: str) -> str:
        """The dotted key reported for `name`."""
        return f"{self.prefix}.{name}"

    def problem(self, name: str, message: str) -> None:
        """Record an issue for `name`."""
        self.issues.append(ConfigIssue(self.key(name), message))

    def reject_unknown(self, known: Sequence[str]) -> None:
        """Record every key not in `known`, with a suggestion where one is close."""
        for name in self.data:
            if name not in known:
                self.problem(name, _unknown_message(name, known, "key"))

    def integer(
        self, name: str, default: int, *, at_least: int | None = None, at_most: int | None = None
    ) -> int:
        """An integer (not a bool, not a float) within the given bounds."""
        if name not in self.data:
            return default
        value = self.data[name]
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem(name, f"expected an integer, got {_describe(value)}")
            return default
        return value if self._in_range(name, value, at_least=at_least, at_most=at_most) else default

    def number(
        self, name: str, default: float, *, at_least: float = 0, above: bool = False
    ) -> float:
        """A finite int or float, at least `at_least` (strictly above it if `above`)."""
        if name not in self.data:
            return default
        number = _as_number(self.data[name])
        if number is None:
            self.problem(name, f"expected a number, got {_describe(self.data[name])}")
            return default
        if not self._in_range(name, number, at_least=at_least, above=above):
            return default
        return number

    def boolean(self, name: str, default: bool) -> bool:
        """A TOML boolean."""
        if name not in self.data:
            return default
        value = self.data[name]
        if not isinstance(value, bool):
            self.problem(name, f"expected true or false, got {_describe(value)}")
            return default
        return value

    def string(self, name: str, default: str, *, secret: bool = False) -> str:
        """A string; a secret's bad value is never echoed."""
        if name not in self.data:
            return default
        value = self.data[name]
        if not isinstance(value, str):
            shown = _type_name(value) if secret else _describe(value)
            self.problem(name, f"expected a string, got {shown}")
            return default
        return value

    def choice(self, name: str, default: _S, choices: tuple[_S, ...]) -> _S:
        """One of `choices`, exactly."""
        value = self.string(name, default)
        for choice in choices:
            if choice == value:
                return choice
        message = f"must be one of {', '.join(choices)}; got {_clip(value)}"
        close = difflib.get_close_matches(value.lower(), choices, n=1)
        self.problem(name, f"{message}; did you mean '{close[0]}'?" if close else message)
        return default

    def size(self, name: str, default: int, *, zero_means_none: bool = False) -> int:
        """A positive byte size: an integer or a string such as "200MB".

        With `zero_means_none`, 0, "0" and "" are accepted too (as 0: no limit).
        """
        if name not in self.data:
            return default
        value = self.data[name]
        if zero_means_none and value == "":
            return 0
        if not isinstance(value, int | str):
            self.problem(name, f"expected {_SIZE_FORM}, got {_describe(value)}")
            return default
        try:
            size = parse_size(value)
        except ValueError:
            if isinstance(value, int) and not isinstance(value, bool):
                bound = ">= 0 (0 = no limit)" if zero_means_none else "> 0"
                self.problem(name, f"must be {bound}, got {value}")
            else:
                self.problem(name, f"expected {_SIZE_FORM}, got {_describe(value)}")
            return default
        if zero_means_none and size == 0:
            return 0
        return size if self._in_range(name, size, at_least=0, above=True) else default

    def path(self, name: str, default: Path) -> Path:
        """A directory; relative to the config file's directory, `~` expanded."""
        if self.data.get(name) == "":
            self.problem(name, "must not be empty")
        given = self._given_path(name)
        return self.resolve(default) if given is None else given

    def optional_path(self, name: str, default: Path | None) -> Path | None:
        """A directory, or None when the value is ""."""
        if name not in self.data:
            return None if default is None else self.resolve(default)
        return self._given_path(name)

    def _given_path(self, name: str) -> Path | None:
        """The path given for `name`, resolved; None if absent, "" or invalid (then recorded)."""
        value = self.data.get(name, "")
        if not isinstance(value, str):
            self.problem(name, f"expected a directory path, got {_describe(value)}")
            return None
        if value == "":
            return None
        if value.strip() == "" or "\0" in value:
            self.problem(name, f"must be a directory path, got {_clip(value)}")
            return None
        try:
            return self.resolve(Path(value))
        except RuntimeError:
            self.problem(name, f"cannot expand '~' in {_clip(value)}")
            return None

    def resolve(self, path: Path) -> Path:
        """`path` with `~` expanded, made absolute against the base directory, normalised."""
        return Path(os.path.normpath(self.base_dir / path.expanduser()))

    def numbers(self, name: str, default: tuple[float, ...]) -> tuple[float, ...]:
        """A non-empty array of finite numbers >= 0."""
        items = self._array(name, "numbers")
        if items is None:
            return default
        numbers: list[float] = []
        for index, item in enumerate(items):
            number = _as_number(item)
            item_key = f"{name}[{index}]"
            if number is None:
                self.problem(item_key, f"expected a number, got {_describe(item)}")
            elif self._in_range(item_key, number, at_least=0):
                numbers.append(number)
        return tuple(numbers) if len(numbers) == len(items) else default

    def patterns(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """An array (possibly empty) of non-empty glob patterns."""
        items = self._array(name, "strings", allow_empty=True)
        if items is None:
            return default
        patterns: list[str] = []
        for index, item in enumerate(items):
            if not isinstance(item, str) or item == "":
                self.problem(f"{name}[{index}]", f"expected a glob pattern, got {_describe(item)}")
            else:
                patterns.append(item)
        return tuple(patterns) if len(patterns) == len(items) else default

    def _array(self, name: str, of: str, *, allow_empty: bool = False) -> list[object] | None:
        if name not in self.data:
            return None
        value = self.data[name]
        if not isinstance(value, list):
            self.problem(name, f"expected an array of {of}, got {_describe(value)}")
            return None
        if not value and not allow_empty:
            self.problem(name, "must not be empty")
            return None
        return value

    def _in_range(
        self,
        name: str,
        value: float,
        *,
        at_least: float | None = None,
        at_most: float | None = None,
        above: bool = False,
    ) -> bool:
        if at_least is not None and at_most is not None and not at_least <= value <= at_most:
            self.problem(name, f"must be between {at_least} and {at_most}, got {_number(value)}")
            return False
        if at_least is not None and above and not value > at_least:
            self.problem(name, f"must be > {_number(at_least)}, got {_number(value)}")
            return False
        if at_least is not None and not value >= at_least:
            self.problem(name, f"must be >= {_number(at_least)}, got {_number(value)}")
            return False
        return True


def _section(
    data: Mapping[str, object], name: str, issues: list[ConfigIssue], base_dir: Path
) -> _Table:
    raw = data.get(name, {})
    if not isinstance(raw, dict):
        issues.append(ConfigIssue(name, f"expected a table [{name}], got {_describe(raw)}"))
        raw = {}
    table = _Table(raw, name, issues, base_dir)
    table.reject_unknown(_KEYS[name])
    return table


# --- the sections ------------------------------------------------------------------------------


def _read_daemon(table: _Table) -> DaemonConfig:
    default = DaemonConfig()
    return DaemonConfig(
        state_dir=table.path("state_dir", default.state_dir),
        log_format=table.choice("log_format", default.log_format, LOG_FORMATS),
        log_level=table.choice("log_level", default.log_level, LOG_LEVELS),
    )


def _read_processing(table: _Table) -> ProcessingConfig:
    default = ProcessingConfig()
    return ProcessingConfig(
        workers=table.integer("workers", default.workers, at_least=0),
        max_retries=table.integer("max_retries", default.max_retries, at_least=0),
        retry_backoff_seconds=table.numbers("retry_backoff_seconds", default.retry_backoff_seconds),
        image_timeout_seconds=table.number(
            "image_timeout_seconds", default.image_timeout_seconds, above=True
        ),
        max_file_size=table.size("max_file_size", default.max_file_size),
        max_pixels=table.integer("max_pixels", default.max_pixels, at_least=1),
        min_width=table.integer("min_width", default.min_width, at_least=0),
        min_height=table.integer("min_height", default.min_height, at_least=0),
        max_worker_memory=table.size(
            "max_worker_memory", default.max_worker_memory, zero_means_none=True
        ),
        stall_seconds=table.number("stall_seconds", default.stall_seconds, above=True),
    )


def _read_analysis(table: _Table) -> AnalysisConfig:
    default = AnalysisConfig()
    return AnalysisConfig(
        dominant_colors=table.integer(
            "dominant_colors", default.dominant_colors, at_least=1, at_most=32
        ),
        near_duplicate_distance=table.integer(
            "near_duplicate_distance", default.near_duplicate_distance, at_least=0, at_most=32
        ),
        max_duplicates_listed=table.integer(
            "max_duplicates_listed", default.max_duplicates_listed, at_least=0, at_most=1000
        ),
        gps=table.boolean("gps", default.gps),
    )


def _read_metrics(table: _Table) -> MetricsConfig:
    listen = table.string("listen", MetricsConfig().listen)
    if listen:
        try:
            split_listen(listen)
        except ValueError as exc:
            table.problem(
                "listen", f"{exc}; expected 'host:port' or '' to disable, got {_clip(listen)}"
            )
            listen = MetricsConfig().listen
    return MetricsConfig(listen=listen)


def _read_webhook(table: _Table) -> WebhookConfig:
    default = WebhookConfig()
    url = table.string("url", default.url)
    problem = _url_problem(url) if url else None
    if problem is not None:
        table.problem("url", f"{problem}, got {_clip(mask_url(url))}")
        url = default.url
    return WebhookConfig(
        url=url,
        secret=table.string("secret", default.secret, secret=True),
        timeout_seconds=table.number("timeout_seconds", default.timeout_seconds, above=True),
        max_attempts=table.integer("max_attempts", default.max_attempts, at_least=1),
        backoff_seconds=table.numbers("backoff_seconds", default.backoff_seconds),
    )


def _read_downloads(table: _Table) -> DownloadsConfig:
    default = DownloadsConfig()
    return DownloadsConfig(
        timeout_seconds=table.number("timeout_seconds", default.timeout_seconds, above=True),
        max_bytes=table.size("max_bytes", default.max_bytes),
        allow_private_networks=table.boolean(
            "allow_private_networks", default.allow_private_networks
        ),
    )


def _read_executor(table: _Table) -> ExecutorConfig:
    default = ExecutorConfig()
    kind = table.choice("kind", default.kind, EXECUTOR_KINDS)
    if kind == "dask" and importlib.util.find_spec("distributed") is None:
        table.problem(
            "kind",
            "dask needs the [dask] extra, not installed here: pip install 'medianalysed[dask]'",
        )
    address = table.string("address", default.address)
    if address and not _DASK_ADDRESS.fullmatch(address):
        table.problem(
            "address",
            f"expected a Dask scheduler address such as tcp://host:8786 (or '' for a local "
            f"cluster), got {_clip(address)}",
        )
        address = default.address
    return ExecutorConfig(kind=kind, address=address)


def _read_inboxes(
    raw: object, issues: list[ConfigIssue], base_dir: Path
) -> tuple[InboxConfig, ...]:
    if raw is None:
        return (_read_inbox(_Table({}, "inbox[0]", issues, base_dir)),)
    if not isinstance(raw, list) or not raw:
        shown = "a table [inbox]" if isinstance(raw, dict) else _describe(raw)
        issues.append(ConfigIssue(_INBOX_SECTION, f"expected one or more [[inbox]], got {shown}"))
        return (_read_inbox(_Table({}, "inbox[0]", issues, base_dir)),)
    inboxes: list[InboxConfig] = []
    first_index_of_name: dict[str, int] = {}
    for index, entry in enumerate(raw):
        prefix = f"inbox[{index}]"
        if not isinstance(entry, dict):
            issues.append(ConfigIssue(prefix, f"expected a table, got {_describe(entry)}"))
            continue
        table = _Table(entry, prefix, issues, base_dir)
        table.reject_unknown(_KEYS[_INBOX_SECTION])
        inbox = _read_inbox(table)
        if not any(issue.key == table.key("name") for issue in issues):
            _record_unique_name(table, inbox.name, index, first_index_of_name)
        inboxes.append(inbox)
    return tuple(inboxes)


def _record_unique_name(table: _Table, name: str, index: int, seen: dict[str, int]) -> None:
    if name in seen:
        table.problem("name", f"duplicate inbox name {name!r} (also inbox[{seen[name]}].name)")
    else:
        seen[name] = index


def _read_inbox(table: _Table) -> InboxConfig:
    default = InboxConfig()
    return InboxConfig(
        name=_inbox_name(table, default.name),
        path=table.path("path", default.path),
        outbox=table.path("outbox", default.outbox),
        archive=table.path("archive", default.archive),
        failed=table.optional_path("failed", default.failed),
        on_complete=table.choice("on_complete", default.on_complete, ON_COMPLETE_ACTIONS),
        watch=table.choice("watch", default.watch, WATCH_MODES),
        settle_seconds=table.number("settle_seconds", default.settle_seconds),
        ready_marker=_ready_marker(table, default.ready_marker),
        rescan_seconds=table.number("rescan_seconds", default.rescan_seconds, above=True),
        ignore=table.patterns("ignore", default.ignore),
    )


def _inbox_name(table: _Table, default: str) -> str:
    name = table.string("name", default)
    if name == "":
        table.problem("name", "must not be empty")
    elif not _INBOX_NAME.fullmatch(name):
        table.problem("name", f"must be letters, digits, '_' or '-' only, got {_clip(name)}")
    else:
        return name
    return default


def _ready_marker(table: _Table, default: str) -> str:
    """A bare file name; "" means no marker (readiness by settling only)."""
    marker = table.string("ready_marker", default)
    if "/" in marker or "\0" in marker or marker in {".", ".."}:
        table.problem("ready_marker", f"must be a file name without '/', got {_clip(marker)}")
        return default
    return marker


def _url_problem(url: str) -> str | None:
    if any(char.isspace() for char in url):
        return "must not contain whitespace"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return "not a valid url"
    if parts.scheme.lower() not in {"http", "https"}:
        return "must be an http:// or https:// url"
    if not parts.hostname:
        return "must name a host"
    return None


# --- cross-field rules -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Directory:
    key: str
    inbox: int | None  # None for daemon.state_dir
    role: str
    path: Path


def _directory_issues(config: Config, *, already_bad: set[str]) -> list[ConfigIssue]:
    """Inbox, outbox, archive, failed and state directories that coincide or nest."""
    directories = [
        _Directory(f"inbox[{index}].{role}", index, role, path)
        for index, inbox in enumerate(config.inboxes)
        for role, path in (
            ("path", inbox.path),
            ("outbox", inbox.outbox),
            ("archive", inbox.archive),
            ("failed", inbox.failed),
        )
        if path is not None and f"inbox[{index}].{role}" not in already_bad
    ]
    issues: list[ConfigIssue] = []
    for first, second in itertools.combinations(directories, 2):
        issue = _overlap_issue(first, second)
        if issue is not None:
            issues.append(issue)
    if "daemon.state_dir" not in already_bad:
        state = _Directory("daemon.state_dir", None, "state_dir", config.daemon.state_dir)
        issues.extend(_state_dir_issues(state, directories))
    return issues


def _overlap_issue(first: _Directory, second: _Directory) -> ConfigIssue | None:
    """Two directories of one inbox must be disjoint; across inboxes only the outbox, archive
    and failed directories may be shared (the same directory, not nested)."""
    if first.path == second.path:
        shareable = first.inbox != second.inbox and "path" not in (first.role, second.role)
        if shareable:
            return None
        return ConfigIssue(
            second.key, f"must not be the same directory as {first.key} ({first.path})"
        )
    if second.path.is_relative_to(first.path):
        return ConfigIssue(second.key, f"must not be inside {first.key} ({first.path})")
    if first.path.is_relative_to(second.path):
        return ConfigIssue(first.key, f"must not be inside {second.key} ({second.path})")
    return None


def _state_dir_issues(state: _Directory, directories: list[_Directory]) -> list[ConfigIssue]:
    """The state directory must not be, or be inside, a directory the daemon moves files in."""
    issues: list[ConfigIssue] = []
    for directory in directories:
        if state.path == directory.path:
            message = f"must not be the same directory as {directory.key} ({directory.path})"
            issues.append(ConfigIssue(state.key, message))
        elif state.path.is_relative_to(directory.path):
            message = f"must not be inside {directory.key} ({directory.path})"
            issues.append(ConfigIssue(state.key, message))
    return issues


# --- rendering ---------------------------------------------------------------------------------


def render_config(config: Config, *, mask_secrets: bool = True) -> str:
    """The effective configuration as TOML; values equal to their default end in `# default`.

    With `mask_secrets`, webhook.secret and URL passwords show as "********". Unmasked, the
    text parses back (with `config_from_dict`) to an equal Config.
    """
    base_dir = config.source.resolve().parent if config.source is not None else Path.cwd()
    defaults = config_from_dict({}, base_dir=base_dir, source=None)
    origin = str(config.source) if config.source is not None else "built-in defaults"
    lines = [
        f"# effective configuration ({_comment_safe(origin)})",
        "# paths are shown resolved; '# default' marks a value equal to the built-in default",
        "",
    ]
    for name in _SECTIONS:
        lines.append(f"[{name}]")
        lines.extend(_render_table(getattr(config, name), getattr(defaults, name), mask_secrets))
        lines.append("")
    for inbox in config.inboxes:
        lines.append(f"[[{_INBOX_SECTION}]]")
        lines.extend(_render_table(inbox, defaults.inboxes[0], mask_secrets))
        lines.append("")
    return "\n".join(lines)


def _render_table(
    section: DataclassInstance, default: DataclassInstance, mask_secrets: bool
) -> list[str]:
    lines: list[str] = []
    for spec in dataclasses.fields(section):
        value = getattr(section, spec.name)
        text = _toml_value(value, size=spec.name in _SIZE_KEYS)
        if mask_secrets and value and spec.name in _SECRET_KEYS:
            text = _toml_string(MASKED)
        elif mask_secrets and spec.name == "url":
            text = _toml_string(mask_url(value))
        is_default = value == getattr(default, spec.name)
        lines.append(f"{spec.name} = {text}" + ("  # default" if is_default else ""))
    return lines


def _toml_value(value: object, *, size: bool = False) -> str:
    if value is None:  # only `failed`, where "" means none
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and size:
        return _toml_string(format_size(value))
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str | Path):
        return _toml_string(str(value))
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as toml")


def _toml_string(text: str) -> str:
    # JSON string escapes are a subset of TOML's basic-string escapes, except that TOML also
    # forbids a raw DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _comment_safe(text: str) -> str:
    return " ".join(text.split())


# --- fingerprint -------------------------------------------------------------------------------


def config_fingerprint(config: Config) -> str:
    """A short stable hex digest of the settings that change analysis results (for summary.json)."""
    processing = config.processing
    relevant = {
        "processing": {
            "max_file_size": processing.max_file_size,
            "max_pixels": processing.max_pixels,
            "min_width": processing.min_width,
            "min_height": processing.min_height,
        },
        "analysis": dataclasses.asdict(config.analysis),
    }
    # How many matches a record lists changes no analysis, count or group: left out, so the
    # fingerprints of earlier summaries stay comparable.
    del relevant["analysis"]["max_duplicates_listed"]
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# --- small formatting helpers ------------------------------------------------------------------


def _unknown_message(name: str, known: Sequence[str], what: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"unknown {what}; did you mean '{close[0]}'?"
    homes = [section for section, keys in _KEYS.items() if name in keys]
    if homes:
        home = f"[[{homes[0]}]]" if homes[0] == _INBOX_SECTION else f"[{homes[0]}]"
        return f"unknown {what}; it belongs in {home}"
    return f"unknown {what}"


def _as_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    return float(value)


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _type_name(value: object) -> str:
    names = (
        (bool, "boolean"),
        (int, "integer"),
        (float, "float"),
        (str, "string"),
        (list, "array"),
        (dict, "table"),
    )
    for kind, name in names:
        if isinstance(value, kind):
            return name
    return type(value).__name__  # tomllib's datetime, date and time


def _describe(value: object) -> str:
    kind = _type_name(value)
    if isinstance(value, str):
        return f"{kind} {_clip(value)}"
    if isinstance(value, bool):
        return f"{kind} {'true' if value else 'false'}"
    if isinstance(value, list | dict):
        return kind
    return f"{kind} {_clip(str(value), quote=False)}"


def _clip(text: str, *, quote: bool = True) -> str:
    clipped = text if len(text) <= _CLIP else text[: _CLIP - 1] + "…"
    return repr(clipped) if quote else clipped


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
