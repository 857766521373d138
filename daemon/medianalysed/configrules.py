"""Cross-field rules of the configuration: directories that must not coincide or nest."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medianalysed.errors import ConfigIssue

if TYPE_CHECKING:
    from medianalysed.config import Config


@dataclass(frozen=True, slots=True)
class _Directory:
    key: str
    inbox: int | None  # None for daemon.state_dir
    role: str
    path: Path


def directory_issues(config: Config, *, already_bad: set[str]) -> list[ConfigIssue]:
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


MIN_TOKEN_CHARS = 16


def api_issues(config: Config, *, already_bad: set[str]) -> list[ConfigIssue]:
    """`[api] submit` needs tokens; a token must be long enough to resist guessing."""
    issues: list[ConfigIssue] = []
    if "api.tokens" in already_bad:
        return issues
    tokens = config.api.tokens
    if config.api.submit and not tokens:
        issues.append(
            ConfigIssue("api.submit", "submit = true needs [api] tokens (submission needs a token)")
        )
    for index, token in enumerate(tokens):
        if len(token) < MIN_TOKEN_CHARS:
            issues.append(
                ConfigIssue(
                    f"api.tokens[{index}]",
                    f"is shorter than {MIN_TOKEN_CHARS} characters; use a long random value "
                    "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')",
                )
            )
    return issues
