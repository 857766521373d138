"""Words for people: counts with the right plural ("1 image", "2 images")."""

from __future__ import annotations


def plural(count: int, singular: str, many: str | None = None) -> str:
    """`count` and the noun that agrees with it: `plural(1, "image")` is "1 image"."""
    return f"{count} {singular if count == 1 else (many or singular + 's')}"
