"""Configuration: typed, frozen settings loaded from TOML (SPEC §6).

The keys are declared once each, in `configschema.py` (how to add one is written there); this
module reads a file into them, finds the file, shows the effective values and fingerprints them.

Loading never stops at the first problem: every issue is collected, each naming its dotted key
(`processing.workers`, `inbox[0].settle_seconds`), and raised together as one `ConfigError`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from medianalysed.configkeys import declared_keys
from medianalysed.configrules import api_issues, directory_issues
from medianalysed.configschema import (
    SECTIONS,
    AnalysisConfig,
    ApiConfig,
    Config,
    DaemonConfig,
    DownloadsConfig,
    ExecutorConfig,
    InboxConfig,
    MetricsConfig,
    NearConfig,
    ProcessingConfig,
    WebhookConfig,
)
from medianalysed.configtable import (
    ARRAY_SECTION,
    Table,
    describe,
    format_size,
    lower_first,
    parse_size,
    split_listen,
    toml_key,
    unknown_message,
)
from medianalysed.errors import ConfigError, ConfigIssue
from medianalysed.models import stable_digest
from medianalysed.redaction import MASK as MASKED

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "CONFIG_ENV_VAR",
    "MASKED",
    "SYSTEM_CONFIG",
    "AnalysisConfig",
    "ApiConfig",
    "Config",
    "DaemonConfig",
    "DownloadsConfig",
    "ExecutorConfig",
    "InboxConfig",
    "MetricsConfig",
    "NearConfig",
    "ProcessingConfig",
    "WebhookConfig",
    "config_fingerprint",
    "config_from_dict",
    "default_config",
    "find_config_path",
    "format_size",
    "load_config",
    "parse_size",
    "render_config",
    "resolve_config",
    "split_listen",
]

CONFIG_ENV_VAR = "MEDIANALYSED_CONFIG"
SYSTEM_CONFIG = Path("/etc/medianalysed/medianalysed.toml")

_SECTIONS = SECTIONS
_TOP_LEVEL = (*SECTIONS, ARRAY_SECTION)
_KEYS: dict[str, tuple[str, ...]] = {
    name: tuple(declared.name for declared in declared_keys(cls))
    for name, cls in {**SECTIONS, ARRAY_SECTION: InboxConfig}.items()
}
_D = TypeVar("_D", bound="DataclassInstance")


# --- loading -------------------------------------------------------------------------------------


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
        issue = ConfigIssue("<file>", f"not valid toml: {lower_first(str(exc))}")
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
            message = unknown_message(name, _TOP_LEVEL, what, _KEYS)
            issues.append(ConfigIssue(toml_key(name), message))
    sections: dict[str, Any] = {
        name: _read_table(cls, _section(data, name, issues, base)) for name, cls in SECTIONS.items()
    }
    inboxes = _read_inboxes(data.get(ARRAY_SECTION), issues, base)
    config = Config(**sections, inboxes=inboxes, source=source)
    issues.extend(directory_issues(config, already_bad={issue.key for issue in issues}))
    issues.extend(api_issues(config, already_bad={issue.key for issue in issues}))
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


# --- reading the tables --------------------------------------------------------------------------


def _section(
    data: Mapping[str, object], name: str, issues: list[ConfigIssue], base_dir: Path
) -> Table:
    raw = data.get(name, {})
    if not isinstance(raw, dict):
        issues.append(ConfigIssue(name, f"expected a table [{name}], got {describe(raw)}"))
        raw = {}
    return Table(raw, name, issues, base_dir)


def _read_table(section: type[_D], table: Table) -> _D:
    """One section read key by key, as declared; unknown keys are reported first."""
    keys = list(declared_keys(section))
    table.reject_unknown([declared.name for declared in keys], _KEYS)
    values = {
        declared.name: declared.spec.kind.read(table, declared.name, declared.default)
        for declared in keys
    }
    return section(**values)


def _read_inboxes(
    raw: object, issues: list[ConfigIssue], base_dir: Path
) -> tuple[InboxConfig, ...]:
    if raw is None:
        return (_read_table(InboxConfig, Table({}, "inbox[0]", issues, base_dir)),)
    if not isinstance(raw, list) or not raw:
        shown = "a table [inbox]" if isinstance(raw, dict) else describe(raw)
        issues.append(ConfigIssue(ARRAY_SECTION, f"expected one or more [[inbox]], got {shown}"))
        return (_read_table(InboxConfig, Table({}, "inbox[0]", issues, base_dir)),)
    inboxes: list[InboxConfig] = []
    first_index_of_name: dict[str, int] = {}
    for index, entry in enumerate(raw):
        prefix = f"inbox[{index}]"
        if not isinstance(entry, dict):
            issues.append(ConfigIssue(prefix, f"expected a table, got {describe(entry)}"))
            continue
        table = Table(entry, prefix, issues, base_dir)
        inbox = _read_table(InboxConfig, table)
        if not any(issue.key == table.key("name") for issue in issues):
            _record_unique_name(table, inbox.name, index, first_index_of_name)
        inboxes.append(inbox)
    return tuple(inboxes)


def _record_unique_name(table: Table, name: str, index: int, seen: dict[str, int]) -> None:
    if name in seen:
        table.problem("name", f"duplicate inbox name {name!r} (also inbox[{seen[name]}].name)")
    else:
        seen[name] = index


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
        f"# effective configuration ({' '.join(origin.split())})",
        "# paths are shown resolved; '# default' marks a value equal to the built-in default",
        "",
    ]
    for name in SECTIONS:
        lines.append(f"[{name}]")
        lines.extend(_render_table(getattr(config, name), getattr(defaults, name), mask_secrets))
        lines.append("")
    for inbox in config.inboxes:
        lines.append(f"[[{ARRAY_SECTION}]]")
        lines.extend(_render_table(inbox, defaults.inboxes[0], mask_secrets))
        lines.append("")
    return "\n".join(lines)


def _render_table(
    section: DataclassInstance, default: DataclassInstance, mask_secrets: bool
) -> list[str]:
    lines: list[str] = []
    for declared in declared_keys(type(section)):
        value = getattr(section, declared.name)
        text = declared.spec.kind.toml(value, mask=mask_secrets)
        is_default = value == getattr(default, declared.name)
        lines.append(f"{declared.name} = {text}" + ("  # default" if is_default else ""))
    return lines


# --- fingerprint -------------------------------------------------------------------------------


def config_fingerprint(config: Config) -> str:
    """A short stable hex digest of the settings that change analysis results (for summary.json):
    the keys declared with `affects_results`."""
    relevant: dict[str, dict[str, object]] = {}
    for name, cls in SECTIONS.items():
        section = getattr(config, name)
        for declared in declared_keys(cls):
            if declared.spec.affects_results:
                relevant.setdefault(name, {})[declared.name] = getattr(section, declared.name)
    return stable_digest(relevant)
