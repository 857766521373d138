"""The sample `medianalysed.toml` and the README's key table, written from the key declarations.

`python -m medianalysed.configdocs [ROOT]` rewrites both in the project at ROOT (default: the
current directory); `make config-docs` runs it. Tests compare both files with this output.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from medianalysed.configkeys import DeclaredKey, declared_keys
from medianalysed.configschema import SECTIONS, InboxConfig
from medianalysed.configtable import ARRAY_SECTION

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

SAMPLE_NAME = "medianalysed.toml"
README_NAME = "README.md"
README_BEGIN = "<!-- config keys: written by `make config-docs` from configschema.py -->"
README_END = "<!-- end of config keys -->"
_WIDTH = 94

SAMPLE_HEADER = """\
# medianalysed — the default configuration, fully commented (SPEC §6).
#
# Every value below IS the built-in default: deleting a line changes nothing, and an empty
# file is a valid configuration. This file is written from the key declarations in
# daemon/medianalysed/configschema.py (`make config-docs`), and a test keeps it current.
# Relative paths are relative to THIS file's directory; "~" is expanded. Sizes take an integer
# (bytes) or a string such as "200MB", "1.5GiB", "512kB" (SI units kB/MB/GB/TB = powers of
# 1000, IEC units KiB/MiB/GiB/TiB = powers of 1024).
#
# Check a file with `medianalysed config check --config FILE`; see what is in effect with
# `medianalysed config show`. Search order when --config is not given:
# $MEDIANALYSED_CONFIG, ./medianalysed.toml, /etc/medianalysed/medianalysed.toml, defaults.
"""


def _all_sections() -> list[tuple[str, type[DataclassInstance]]]:
    return [*SECTIONS.items(), (ARRAY_SECTION, InboxConfig)]


def _header(name: str) -> str:
    return f"[[{name}]]" if name == ARRAY_SECTION else f"[{name}]"


def _doc(section: type[DataclassInstance]) -> str:
    return " ".join((section.__doc__ or "").split())


def _comment(text: str) -> list[str]:
    return textwrap.wrap(
        text,
        width=_WIDTH,
        initial_indent="# ",
        subsequent_indent="# ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def _default(declared: DeclaredKey) -> str:
    return declared.spec.kind.toml(declared.default, mask=False)


def sample_text() -> str:
    """The commented default configuration: every key, its help above it, its default."""
    lines = [SAMPLE_HEADER.rstrip("\n")]
    for name, section in _all_sections():
        lines += ["", *_comment(_doc(section)), _header(name)]
        for index, declared in enumerate(declared_keys(section)):
            if index:
                lines.append("")
            lines += _comment(declared.spec.help)
            lines.append(f"{declared.name} = {_default(declared)}")
    return "\n".join(lines) + "\n"


def readme_block() -> str:
    """The README's table of keys, between its markers."""
    lines = [README_BEGIN]
    for name, section in _all_sections():
        lines += ["", f"`{_header(name)}` — {_doc(section)}", ""]
        lines += ["| key | default | accepts | what it does |", "|---|---|---|---|"]
        for declared in declared_keys(section):
            cells = (
                f"`{declared.name}`",
                f"`{_default(declared)}`",
                declared.spec.kind.accepts,
                declared.spec.help.replace("|", "\\|"),
            )
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", README_END]
    return "\n".join(lines)


def readme_with_block(readme: str) -> str:
    """`readme` with its key table replaced by the current one.

    Raises:
        ValueError: the README has no pair of markers.
    """
    begin, end = readme.find(README_BEGIN), readme.find(README_END)
    if begin < 0 or end < begin:
        raise ValueError(f"{README_NAME} lacks the markers {README_BEGIN!r} … {README_END!r}")
    return readme[:begin] + readme_block() + readme[end + len(README_END) :]


def write_docs(root: Path) -> None:
    """Rewrite the sample file and the README's key table under `root`."""
    (root / SAMPLE_NAME).write_text(sample_text(), encoding="utf-8")
    readme = root / README_NAME
    readme.write_text(readme_with_block(readme.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    write_docs(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
