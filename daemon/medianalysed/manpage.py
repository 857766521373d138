"""medianalysed(1), rendered in roff from the argparse parser (`python -m medianalysed.manpage`).

The Debian package ships it as /usr/share/man/man1/medianalysed.1.gz; generating it from
`cli.build_parser()` keeps every verb and option in the page the same as in `--help`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

from medianalysed import __version__
from medianalysed.cli import build_parser

EXIT_STATUS = (
    ("0", "success"),
    ("1", "failure (a batch failed, a command could not be carried out)"),
    ("2", "usage error"),
    ("74", "the state directory cannot be used; restarting cannot help"),
    ("75", "a damaged database was found and marked; the next start repairs it"),
    ("78", "configuration error"),
)
FILES = (
    ("/etc/medianalysed/medianalysed.toml", "the configuration (a conffile of the package)"),
    ("/var/lib/medianalysed", "the state: batches, history index, content cache"),
    ("/srv/medianalysed/inbox", "drop folders of images here (group medianalysed may write)"),
    ("/srv/medianalysed/outbox", "the analysis of each batch"),
    ("/srv/medianalysed/archive, /srv/medianalysed/failed", "where finished inputs go"),
)


def escape(text: str) -> str:
    """Roff-safe text: backslashes, hyphens and a leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def _option_label(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"\\fI{escape(str(action.metavar or action.dest))}\\fR"
    flags = ", ".join(f"\\fB{escape(flag)}\\fR" for flag in action.option_strings)
    if action.nargs == 0:
        return flags
    if action.choices:
        return f"{flags} {{{escape(','.join(map(str, action.choices)))}}}"
    return f"{flags} \\fI{escape(str(action.metavar or action.dest.upper()))}\\fR"


def _actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        yield action


def _describe(action: argparse.Action) -> str:
    if action.choices and not action.option_strings:
        return f"one of: {', '.join(map(str, action.choices))}"
    if action.help:
        return escape(action.help)
    if isinstance(action, argparse._VersionAction):
        return "print the version and the available executors, then exit"
    return ""


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _usage(parser: argparse.ArgumentParser) -> str:
    usage = parser.format_usage().removeprefix("usage: ").strip()
    return " ".join(usage.split())


def render(parser: argparse.ArgumentParser, date: datetime | None = None) -> str:
    """The whole page."""
    when = (date or datetime.now(UTC)).strftime("%Y-%m-%d")
    lines = [
        f'.TH MEDIANALYSED 1 "{when}" "medianalysed {__version__}" "User Commands"',
        ".SH NAME",
        f"medianalysed \\- {escape((parser.description or '').rstrip('.').lower())}",
        ".SH SYNOPSIS",
        f"\\fBmedianalysed\\fR {escape(_usage(parser).removeprefix('medianalysed '))}",
        ".SH DESCRIPTION",
        escape(parser.description or ""),
        ".PP",
        "Run as a service, \\fBmedianalysed run\\fR watches the inboxes of its configuration; "
        "every other verb talks to the state of a running or stopped daemon.",
        ".SH OPTIONS",
    ]
    for action in _actions(parser):
        lines += [".TP", _option_label(action), _describe(action)]
    lines.append(".SH COMMANDS")
    for name, sub in _subcommands(parser).items():
        lines += [".SS " + escape(name), escape(sub.description or ""), ".PP"]
        lines.append(f"\\fBmedianalysed {escape(name)}\\fR" + _sub_usage(sub))
        for action in _actions(sub):
            if "-h" in action.option_strings:
                continue
            lines += [".TP", _option_label(action), _describe(action)]
    lines.append(".SH EXIT STATUS")
    for code, meaning in EXIT_STATUS:
        lines += [".TP", f"\\fB{code}\\fR", escape(meaning)]
    lines.append(".SH FILES")
    for path, meaning in FILES:
        lines += [".TP", f"\\fI{escape(path)}\\fR", escape(meaning)]
    lines += [
        ".SH SEE ALSO",
        "\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1), \\fBsystemd-sysusers\\fR(8), "
        "\\fBsystemd-tmpfiles\\fR(8)",
    ]
    return "\n".join(lines) + "\n"


def _sub_usage(sub: argparse.ArgumentParser) -> str:
    usage = _usage(sub)
    words = usage.split(" ", 2)
    return " " + escape(words[2]) if len(words) > 2 else ""


def main() -> int:
    """Write the page to standard output, dated SOURCE_DATE_EPOCH where set (reproducible)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    date = datetime.fromtimestamp(int(epoch), UTC) if epoch else None
    sys.stdout.write(render(build_parser(), date))
    return 0


if __name__ == "__main__":
    sys.exit(main())
