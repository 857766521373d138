"""Exceptions and exit codes.

The tree::

    MedianalysedError                 (base; never raised directly)
    ├── ConfigError                   (issues: tuple[ConfigIssue, ...]) -> exit 78
    ├── StartupError                  (bad dirs, port in use, inotify limits) -> exit 1
    ├── StateError                    (diskcache/sqlite failure, version mismatch)
    │   ├── StateCorruptError         (a database is damaged) -> exit 75, repaired at next start
    │   └── StateUnusableError        (state_dir unusable, not repairable) -> exit 74, no restart
    ├── OutboxError                   (results cannot be written)
    ├── DiskWriteError                (the disk refused a write: ENOSPC, EROFS, EIO...; the
    │   │                              batch pauses and retries, nothing is lost)
    │   └── OutboxDiskWriteError      (also an OutboxError)
    └── AnalysisError                 (per image; carries an ErrorCode; becomes data, never
                                       crosses an actor boundary as an exception)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

MAX_MESSAGE_LENGTH = 200


class ExitCode(enum.IntEnum):
    """Process exit codes (SPEC §5)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    # EX_IOERR: the state directory cannot be used (not a directory, unreadable, a damaged
    # database that could not be rebuilt). A restart cannot help: RestartPreventExitStatus.
    STATE_UNUSABLE = 74
    # EX_TEMPFAIL: a database was found damaged while running, or state could not be written at
    # start; it is marked for repair, and the next start (systemd restarts us) repairs it.
    STATE_REPAIR = 75
    CONFIG = 78  # EX_CONFIG; systemd's RestartPreventExitStatus=78 stops restart loops


class ErrorCode(enum.StrEnum):
    """Stable per-image error codes (SPEC §3)."""

    CORRUPT = "CORRUPT"
    UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
    DECOMPRESSION_BOMB = "DECOMPRESSION_BOMB"
    TOO_LARGE = "TOO_LARGE"
    TOO_SMALL = "TOO_SMALL"
    TIMEOUT = "TIMEOUT"
    IO_ERROR = "IO_ERROR"
    NETWORK_ERROR = "NETWORK_ERROR"
    RATE_LIMITED = "RATE_LIMITED"
    REMOTE_ERROR = "REMOTE_ERROR"
    BAD_REQUEST = "BAD_REQUEST"
    REFUSED = "REFUSED"
    INTERNAL = "INTERNAL"

    @property
    def retryable(self) -> bool:
        """Whether a failure with this code is worth another attempt."""
        return self in _RETRYABLE

    @property
    def skips(self) -> bool:
        """Whether this code means "filtered out by policy" (status skipped), not failed."""
        return self in _SKIPPING


_RETRYABLE = frozenset(
    {
        ErrorCode.TIMEOUT,
        ErrorCode.IO_ERROR,
        ErrorCode.NETWORK_ERROR,
        ErrorCode.RATE_LIMITED,
        ErrorCode.REMOTE_ERROR,
    }
)
# SPEC §3: a file that is not an image (or not one we decode) is skipped, like the size rules.
_SKIPPING = frozenset({ErrorCode.TOO_LARGE, ErrorCode.TOO_SMALL, ErrorCode.UNSUPPORTED_FORMAT})


def clip_message(message: str) -> str:
    """Clip a message to the 200 characters SPEC §3 allows, on one line."""
    one_line = " ".join(message.split())
    if len(one_line) <= MAX_MESSAGE_LENGTH:
        return one_line
    return one_line[: MAX_MESSAGE_LENGTH - 1] + "…"


class MedianalysedError(Exception):
    """Base of every error this package raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration file: the dotted key and what is wrong with it."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class ConfigError(MedianalysedError):
    """The configuration is invalid; carries every issue found, not just the first."""

    def __init__(self, source: str, issues: tuple[ConfigIssue, ...]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  {issue}" for issue in issues)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class StartupError(MedianalysedError):
    """The daemon cannot start; the message tells the operator what to do."""


class StateError(MedianalysedError):
    """The state store failed (disk full, corrupt database, incompatible version)."""


class StateCorruptError(StateError):
    """A state database is damaged ("database disk image is malformed", "not a database")."""

    def __init__(self, database: str, detail: str) -> None:
        self.database = database
        super().__init__(f"state database {database} is damaged: {detail}")


class StateUnusableError(StateError):
    """The state directory cannot be used and cannot be repaired; the operator must act."""


class OutboxError(MedianalysedError):
    """Results could not be written to the outbox."""


class DiskWriteError(MedianalysedError):
    """The disk refused a write (full, read-only, I/O error, quota, permissions).

    Not the data's fault, and transient from the daemon's point of view: whoever catches it
    pauses the work and retries the same step later. `target` says which storage failed
    (`state`, `outbox`, `archive` or `downloads`), `errno_name` how (`ENOSPC`, `EROFS`...).
    """

    def __init__(self, target: str, path: str, errno_name: str, detail: str) -> None:
        self.target = target
        self.path = path
        self.errno_name = errno_name
        self.detail = clip_message(detail)
        super().__init__(f"cannot write {target} at {path}: {self.detail} ({errno_name})")


class OutboxDiskWriteError(DiskWriteError, OutboxError):
    """A write failure in the outbox (still an OutboxError for existing handlers)."""


class AnalysisError(MedianalysedError):
    """An image could not be analysed; the code says why and whether to retry."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        self.code = code
        self.message = clip_message(message)
        super().__init__(f"{code}: {self.message}")

    @property
    def retryable(self) -> bool:
        """Whether another attempt may succeed."""
        return self.code.retryable
