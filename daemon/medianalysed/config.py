"""Configuration: typed, frozen settings loaded from TOML (SPEC §6).

The dataclass defaults below are the single source of truth for defaults;
`medianalysed.toml` at the project root is their commented copy, and a test keeps the
two equal.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from medianalysed.errors import ConfigError, ConfigIssue

WatchMode = Literal["auto", "events", "polling"]
OnComplete = Literal["archive", "delete", "keep"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]

CONFIG_ENV_VAR = "MEDIANALYSED_CONFIG"
SYSTEM_CONFIG = Path("/etc/medianalysed/medianalysed.toml")


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

    @property
    def effective_workers(self) -> int:
        """`workers`, with 0 meaning one per CPU."""
        return self.workers or (os.cpu_count() or 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisConfig:
    dominant_colors: int = 5
    near_duplicate_distance: int = 6
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
    inboxes: tuple[InboxConfig, ...] = (InboxConfig(),)
    source: Path | None = None  # the file this was loaded from; None for built-in defaults


def load_config(path: Path) -> Config:
    """Load and validate a TOML configuration file.

    Raises:
        ConfigError: with every problem found, each naming its key.
    """
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(str(path), (ConfigIssue("<file>", f"cannot read: {exc.strerror}"),)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), (ConfigIssue("<file>", f"not valid TOML: {exc}"),)) from exc
    return config_from_dict(data, base_dir=path.resolve().parent, source=path)


def config_from_dict(data: dict[str, object], *, base_dir: Path, source: Path | None) -> Config:
    """Build a Config from parsed TOML; relative paths resolve against `base_dir`."""
    raise NotImplementedError  # owned by the config work: see the config module's tests


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
