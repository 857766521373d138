"""Reading one TOML table of the configuration: typed reads that record problems (SPEC §6).

A bad value is recorded as a `ConfigIssue` naming its dotted key, and the default stands in, so
loading goes on and reports every problem at once. Also the value formats shared by reading and
rendering: sizes, "host:port", masked URLs, TOML literals.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from medianalysed.errors import ConfigIssue

_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
ARRAY_SECTION = "inbox"  # the one array of tables; its keys are reported as [[inbox]]
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


# --- value formats ----------------------------------------------------------------------------


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


# --- reading one table -------------------------------------------------------------------------


class Table:
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

    def reject_unknown(self, known: Sequence[str], homes: Mapping[str, Sequence[str]]) -> None:
        """Record every key not in `known`, with a suggestion where one is close or where it
        belongs (`homes`: the keys of each section)."""
        for name in self.data:
            if name not in known:
                message = unknown_message(name, known, "key", homes)
                self.issues.append(ConfigIssue(self.key(toml_key(name)), message))

    def integer(
        self, name: str, default: int, *, at_least: int | None = None, at_most: int | None = None
    ) -> int:
        """An integer (not a bool, not a float) within the given bounds."""
        if name not in self.data:
            return default
        value = self.data[name]
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem(name, f"expected an integer, got {describe(value)}")
            return default
        return value if self._in_range(name, value, at_least=at_least, at_most=at_most) else default

    def number(
        self, name: str, default: float, *, at_least: float = 0, above: bool = False
    ) -> float:
        """A finite int or float, at least `at_least` (strictly above it if `above`)."""
        if name not in self.data:
            return default
        number = as_number(self.data[name])
        if number is None:
            self.problem(name, f"expected a number, got {describe(self.data[name])}")
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
            self.problem(name, f"expected true or false, got {describe(value)}")
            return default
        return value

    def string(self, name: str, default: str, *, secret: bool = False) -> str:
        """A string; a secret's bad value is never echoed."""
        if name not in self.data:
            return default
        value = self.data[name]
        if not isinstance(value, str):
            shown = type_name(value) if secret else describe(value)
            self.problem(name, f"expected a string, got {shown}")
            return default
        return value

    def choice(self, name: str, default: _S, choices: tuple[_S, ...]) -> _S:
        """One of `choices`, exactly."""
        value = self.string(name, default)
        for choice in choices:
            if choice == value:
                return choice
        message = f"must be one of {', '.join(choices)}; got {clip(value)}"
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
            self.problem(name, f"expected {_SIZE_FORM}, got {describe(value)}")
            return default
        try:
            size = parse_size(value)
        except ValueError:
            if isinstance(value, int) and not isinstance(value, bool):
                bound = ">= 0 (0 = no limit)" if zero_means_none else "> 0"
                self.problem(name, f"must be {bound}, got {value}")
            else:
                self.problem(name, f"expected {_SIZE_FORM}, got {describe(value)}")
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
            self.problem(name, f"expected a directory path, got {describe(value)}")
            return None
        if value == "":
            return None
        if value.strip() == "" or "\0" in value:
            self.problem(name, f"must be a directory path, got {clip(value)}")
            return None
        try:
            return self.resolve(Path(value))
        except RuntimeError:
            self.problem(name, f"cannot expand '~' in {clip(value)}")
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
            number = as_number(item)
            item_key = f"{name}[{index}]"
            if number is None:
                self.problem(item_key, f"expected a number, got {describe(item)}")
            elif self._in_range(item_key, number, at_least=0):
                numbers.append(number)
        return tuple(numbers) if len(numbers) == len(items) else default

    def patterns(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """An array (possibly empty) of non-empty glob patterns."""
        return self._strings(name, default, "a glob pattern", echo=True)

    def secrets(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """An array (possibly empty) of non-empty strings, none ever echoed in a problem."""
        return self._strings(name, default, "a non-empty string", echo=False)

    def _strings(
        self, name: str, default: tuple[str, ...], expected: str, *, echo: bool
    ) -> tuple[str, ...]:
        items = self._array(name, "strings", allow_empty=True)
        if items is None:
            return default
        found: list[str] = []
        for index, item in enumerate(items):
            if not isinstance(item, str) or item == "":
                shown = describe(item) if echo else type_name(item)
                self.problem(f"{name}[{index}]", f"expected {expected}, got {shown}")
            else:
                found.append(item)
        return tuple(found) if len(found) == len(items) else default

    def _array(self, name: str, of: str, *, allow_empty: bool = False) -> list[object] | None:
        if name not in self.data:
            return None
        value = self.data[name]
        if not isinstance(value, list):
            self.problem(name, f"expected an array of {of}, got {describe(value)}")
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
            self.problem(
                name, f"must be between {at_least} and {at_most}, got {format_number(value)}"
            )
            return False
        if at_least is not None and above and not value > at_least:
            self.problem(name, f"must be > {format_number(at_least)}, got {format_number(value)}")
            return False
        if at_least is not None and not value >= at_least:
            self.problem(name, f"must be >= {format_number(at_least)}, got {format_number(value)}")
            return False
        return True


# --- TOML and message formatting --------------------------------------------------------------


def toml_value(value: object, *, size: bool = False) -> str:
    """`value` as a TOML literal; a size as a string such as "200MB"."""
    if value is None:  # only `failed`, where "" means none
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and size:
        return toml_string(format_size(value))
    if isinstance(value, int | float):
        return format_number(value)
    if isinstance(value, str | Path):
        return toml_string(str(value))
    if isinstance(value, tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as toml")


def toml_key(name: str) -> str:
    """`name` as TOML writes a key: bare when it can be, else quoted (`""`, `"a.b"`)."""
    return name if _BARE_KEY.fullmatch(name) else toml_string(name)


def toml_string(text: str) -> str:
    """`text` as a TOML basic string."""
    # JSON string escapes are a subset of TOML's basic-string escapes, except that TOML also
    # forbids a raw DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def unknown_message(
    name: str, known: Sequence[str], what: str, homes: Mapping[str, Sequence[str]]
) -> str:
    """ "unknown key", with a did-you-mean or the section `name` belongs in."""
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"unknown {what}; did you mean '{close[0]}'?"
    owners = [section for section, keys in homes.items() if name in keys]
    if owners:
        home = f"[[{owners[0]}]]" if owners[0] == ARRAY_SECTION else f"[{owners[0]}]"
        return f"unknown {what}; it belongs in {home}"
    return f"unknown {what}"


def as_number(value: object) -> float | None:
    """A finite int or float (not a bool) as a float, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    return float(value)


def format_number(value: float) -> str:
    """An int as itself, a whole float without ".0", any other float exactly."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def type_name(value: object) -> str:
    """The TOML name of the type of a parsed value."""
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


def describe(value: object) -> str:
    """A parsed value for a message: its type and, clipped, itself."""
    kind = type_name(value)
    if isinstance(value, str):
        return f"{kind} {clip(value)}"
    if isinstance(value, bool):
        return f"{kind} {'true' if value else 'false'}"
    if isinstance(value, list | dict):
        return kind
    return f"{kind} {clip(str(value), quote=False)}"


def clip(text: str, *, quote: bool = True) -> str:
    """`text` cut to a length a message can carry."""
    clipped = text if len(text) <= _CLIP else text[: _CLIP - 1] + "…"
    return repr(clipped) if quote else clipped


def lower_first(text: str) -> str:
    """`text` with its first letter in lower case (messages start lower-case)."""
    return text[:1].lower() + text[1:]
