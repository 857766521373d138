"""SIGHUP: read the configuration again and apply what can change while running (SPEC §9).

Logging, secrets and the inboxes follow the new file; every other section is fixed at start:
a change there is named in the log and waits for a restart.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from medianalysed.config import Config, InboxConfig, load_config
from medianalysed.errors import ConfigError, StartupError
from medianalysed.logs import clear_secrets, register_secret, setup_logging
from medianalysed.messages import InboxesChanged
from medianalysed.watch import InboxWatcher

if TYPE_CHECKING:
    from medianalysed.app import Daemon

logger = logging.getLogger(__name__)


# Sections (or keys) a reload does not apply: the parts that use them are built at start.
_RESTART_ONLY = ("processing", "analysis", "metrics", "webhook", "downloads", "executor")


def reload(daemon: Daemon, config_path: Path | None) -> None:
    """Reload `config_path` into the running daemon; a refused file changes nothing."""
    if config_path is None:
        logger.warning("SIGHUP: running on built-in defaults, nothing to reload")
        return
    daemon.notifier.reloading()
    try:
        new_config = load_config(config_path)
    except ConfigError as exc:
        logger.error("SIGHUP: new configuration refused, keeping the old one: %s", exc)
        daemon.notifier.ready("reload refused")
        return
    try:
        reconfigure(daemon, new_config)
    except Exception:
        # A failed reload must not take the running daemon down with it.
        logger.exception("SIGHUP: applying the new configuration failed; partly applied")
        daemon.notifier.ready("reload failed")
        return
    daemon.notifier.ready("reloaded")


def reconfigure(daemon: Daemon, new_config: Config) -> None:
    """Apply a reloaded configuration: logging, secrets, inboxes (main thread).

    Other sections are fixed at start: a change there is named in the log, and the
    effective configuration (`daemon.config`) keeps the running value until a restart.
    """
    old = daemon.config
    setup_logging(new_config.daemon.log_level, new_config.daemon.log_format)
    _register_secrets(old, new_config)
    _apply_inboxes(daemon, old, new_config)
    needs_restart = _restart_only_changes(old, new_config)
    if needs_restart:
        logger.warning(
            "SIGHUP: %s changed; that takes effect only after a restart",
            ", ".join(needs_restart),
        )
    daemon.config = replace(
        old,
        daemon=replace(
            old.daemon,
            log_level=new_config.daemon.log_level,
            log_format=new_config.daemon.log_format,
        ),
        inboxes=new_config.inboxes,
        source=new_config.source,
    )


def _register_secrets(old: Config, new: Config) -> None:
    clear_secrets()
    # The running dispatcher still signs with the old secret: mask both.
    for secret in (old.webhook.secret, new.webhook.secret):
        register_secret(secret)
    for token in (*old.api.tokens, *new.api.tokens):  # the API checks the old ones
        register_secret(token)


def _apply_inboxes(daemon: Daemon, old: Config, new: Config) -> None:
    old_inboxes = {inbox.name: inbox for inbox in old.inboxes}
    new_inboxes = {inbox.name: inbox for inbox in new.inboxes}
    if daemon.watcher is not None:
        _rewatch(daemon.watcher, old_inboxes, new_inboxes)
    if daemon.metrics is not None:
        for name in new_inboxes.keys() - old_inboxes.keys():
            daemon.metrics.add_inbox(name)
    if daemon.supervisor is not None:
        daemon.supervisor.tell(InboxesChanged(new.inboxes))
    if daemon.executor is not None:
        daemon.executor.check_inboxes(new.inboxes)
    changed = [
        name
        for name in new_inboxes.keys() & old_inboxes.keys()
        if new_inboxes[name] != old_inboxes[name]
    ]
    logger.info(
        "configuration reloaded: %d inbox(es) added, %d removed, %d changed",
        len(new_inboxes.keys() - old_inboxes.keys()),
        len(old_inboxes.keys() - new_inboxes.keys()),
        len(changed),
    )


def _rewatch(
    watcher: InboxWatcher, old: dict[str, InboxConfig], new: dict[str, InboxConfig]
) -> None:
    """Stop watching removed inboxes, (re)start watching new and changed ones."""
    for name, inbox in old.items():
        if new.get(name) != inbox:
            watcher.unwatch(name)
    for name, inbox in new.items():
        if old.get(name) == inbox:
            continue
        try:
            watcher.watch(inbox)
        except StartupError as exc:
            logger.error("reload: cannot watch inbox %s: %s", name, exc)


def _restart_only_changes(old: Config, new: Config) -> list[str]:
    changed = ["daemon.state_dir"] if old.daemon.state_dir != new.daemon.state_dir else []
    changed += [name for name in _RESTART_ONLY if getattr(old, name) != getattr(new, name)]
    return changed
