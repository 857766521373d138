"""The declaration of one configuration key: its kind of value, default and help (SPEC §6).

A section of the configuration is a frozen dataclass whose fields are declared with `key()`;
reading, `config show`, the sample `medianalysed.toml` and the README's key table are all
derived from these declarations.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from medianalysed.configtable import Table, toml_string, toml_value
from medianalysed.redaction import MASK, mask_url

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
_S = TypeVar("_S", bound=str)
_METADATA = "medianalysed.key"

Check = Callable[[str], "str | None"]
"""A check of a string value: the full problem message, or None when it is fine."""


def _checked(table: Table, name: str, value: _S, default: _S, check: Check | None) -> _S:
    """`value` if `check` passes it, else the problem recorded and `default`."""
    problem = check(value) if check is not None else None
    if problem is None:
        return value
    table.problem(name, problem)
    return default


class Kind(ABC, Generic[T]):
    """How one key's TOML value is read and shown."""

    @abstractmethod
    def read(self, table: Table, name: str, default: T) -> T:
        """The value of `name` in `table`; a problem is recorded there and `default` returned."""

    @property
    @abstractmethod
    def accepts(self) -> str:
        """What the key accepts, for the documentation."""

    def toml(self, value: T, *, mask: bool) -> str:
        """`value` as TOML; with `mask`, secrets hidden."""
        del mask
        return toml_value(value)


@dataclass(frozen=True, slots=True)
class Integer(Kind[int]):
    at_least: int | None = None
    at_most: int | None = None

    def read(self, table: Table, name: str, default: int) -> int:
        return table.integer(name, default, at_least=self.at_least, at_most=self.at_most)

    @property
    def accepts(self) -> str:
        if self.at_least is not None and self.at_most is not None:
            return f"integer {self.at_least}..{self.at_most}"
        return "integer" if self.at_least is None else f"integer >= {self.at_least}"


@dataclass(frozen=True, slots=True)
class Number(Kind[float]):
    at_least: float = 0
    above: bool = False

    def read(self, table: Table, name: str, default: float) -> float:
        return table.number(name, default, at_least=self.at_least, above=self.above)

    @property
    def accepts(self) -> str:
        return f"number {'>' if self.above else '>='} {self.at_least:g}"


@dataclass(frozen=True, slots=True)
class Boolean(Kind[bool]):
    def read(self, table: Table, name: str, default: bool) -> bool:
        return table.boolean(name, default)

    @property
    def accepts(self) -> str:
        return "true or false"


@dataclass(frozen=True, slots=True)
class Text(Kind[str]):
    """A string; `check` refuses bad ones, `secret` is never echoed, `url` shows masked."""

    check: Check | None = None
    secret: bool = False
    url: bool = False
    form: str = "string"

    def read(self, table: Table, name: str, default: str) -> str:
        return _checked(
            table, name, table.string(name, default, secret=self.secret), default, self.check
        )

    @property
    def accepts(self) -> str:
        return self.form

    def toml(self, value: str, *, mask: bool) -> str:
        if mask and self.secret and value:
            return toml_string(MASK)
        return toml_string(mask_url(value) if mask and self.url else value)


@dataclass(frozen=True, slots=True)
class Choice(Kind[_S]):
    """One of `choices`; `check` may refuse one that cannot work here."""

    choices: tuple[_S, ...]
    check: Check | None = None

    def read(self, table: Table, name: str, default: _S) -> _S:
        return _checked(table, name, table.choice(name, default, self.choices), default, self.check)

    @property
    def accepts(self) -> str:
        return " \\| ".join(f'"{choice}"' for choice in self.choices)


@dataclass(frozen=True, slots=True)
class Size(Kind[int]):
    """A byte size; with `zero_means_none`, 0 and "" mean no limit."""

    zero_means_none: bool = False

    def read(self, table: Table, name: str, default: int) -> int:
        return table.size(name, default, zero_means_none=self.zero_means_none)

    @property
    def accepts(self) -> str:
        return 'size ("200MB", "1.5GiB", bytes)' + (", 0 = none" if self.zero_means_none else "")

    def toml(self, value: int, *, mask: bool) -> str:
        del mask
        return toml_value(value, size=True)


@dataclass(frozen=True, slots=True)
class Directory(Kind[Path]):
    def read(self, table: Table, name: str, default: Path) -> Path:
        return table.path(name, default)

    @property
    def accepts(self) -> str:
        return "directory (relative to the config file)"


@dataclass(frozen=True, slots=True)
class OptionalDirectory(Kind["Path | None"]):
    def read(self, table: Table, name: str, default: Path | None) -> Path | None:
        return table.optional_path(name, default)

    @property
    def accepts(self) -> str:
        return 'directory, or "" for none'


@dataclass(frozen=True, slots=True)
class Numbers(Kind[tuple[float, ...]]):
    def read(self, table: Table, name: str, default: tuple[float, ...]) -> tuple[float, ...]:
        return table.numbers(name, default)

    @property
    def accepts(self) -> str:
        return "non-empty array of numbers >= 0"


@dataclass(frozen=True, slots=True)
class Patterns(Kind[tuple[str, ...]]):
    def read(self, table: Table, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        return table.patterns(name, default)

    @property
    def accepts(self) -> str:
        return "array of glob patterns"


@dataclass(frozen=True, slots=True)
class Secrets(Kind[tuple[str, ...]]):
    """Strings never shown: `config show` and every problem mask them."""

    def read(self, table: Table, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        return table.secrets(name, default)

    @property
    def accepts(self) -> str:
        return "array of secret strings"

    def toml(self, value: tuple[str, ...], *, mask: bool) -> str:
        return toml_value((MASK,) * len(value) if mask else value)


@dataclass(frozen=True, slots=True)
class Key(Generic[T]):
    """What is declared about one key besides its name, type and default."""

    kind: Kind[T]
    help: str
    affects_results: bool = False  # part of summary.json's config_fingerprint


def key(default: T, kind: Kind[T], help: str, *, affects_results: bool = False) -> T:
    """Declare a configuration key as a dataclass field (see the module docstring).

    `affects_results` puts the key in `config_fingerprint`: set it only for settings that change
    what an analysis reports (doing so changes every stored fingerprint).
    """
    spec = Key(kind, " ".join(help.split()), affects_results)
    field: T = dataclasses.field(default=default, metadata={_METADATA: spec})
    return field


@dataclass(frozen=True, slots=True)
class DeclaredKey:
    """One key of a section, as declared."""

    name: str
    default: Any
    spec: Key[Any]


def declared_keys(section: type[DataclassInstance]) -> Iterator[DeclaredKey]:
    """The keys of a section class, in declaration order."""
    for field in dataclasses.fields(section):
        yield DeclaredKey(field.name, field.default, cast(Key[Any], field.metadata[_METADATA]))
