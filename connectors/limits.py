"""Size limits of what a sync takes from a source — one value, one row, one file — and the short excerpt that names
an oversized input in a message (an input is never echoed whole)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

EXCERPT = 40  # characters of an input a message quotes


def excerpt(text: str, length: int = EXCERPT) -> str:
    """`text` quoted for a message: whole when short, else its first `length` characters and how long it is."""
    if len(text) <= length:
        return repr(text)
    return f"{text[:length]!r}... ({len(text):,} characters)"


@dataclass(frozen=True)
class SizeLimits:
    """The most bytes one source value, one source row (all its values) and one source file may have."""

    value_bytes: int = 1_000_000
    row_bytes: int = 8_000_000
    file_bytes: int = 2_000_000_000

    def oversized(self, fields: Mapping[str, Any]) -> tuple[str | None, str] | None:
        """Why a row is too large — (the field, or None for the row as a whole; the message) — or None if it fits."""
        total = 0
        short = self.value_bytes // 4  # text this short cannot be too large, whatever its characters
        for name, value in fields.items():
            kind = type(value)
            if kind is str and len(value) <= short:  # the common case, without a call
                total += len(value)
                continue
            if value is None or kind is int or kind is float or kind is bool:
                total += 8
                continue
            size = self._size(value)
            if size > self.value_bytes:
                shown = value if isinstance(value, str) else repr(value)
                return name, (
                    f"{name}: the value is {size:,} bytes, more than the {self.value_bytes:,} a value may "
                    f"have; it begins {excerpt(shown)}"
                )
            total += size
        if total > self.row_bytes:
            return None, f"the row is {total:,} bytes, more than the {self.row_bytes:,} a row may have"
        return None

    def trimmed(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The row as quarantine keeps an oversized one: each long value cut to a short excerpt."""
        return {
            name: excerpt(value if isinstance(value, str) else repr(value))
            if self._size(value) > 4 * EXCERPT
            else value
            for name, value in fields.items()
        }

    def _size(self, value: Any) -> int:
        """Bytes of a value as text (UTF-8) — counted exactly only where characters alone cannot decide."""
        if value is None or isinstance(value, (int, float, bool)):
            return 8
        if isinstance(value, str):
            return len(value) if len(value) * 4 <= self.value_bytes else len(value.encode("utf-8", "replace"))
        if isinstance(value, (bytes, bytearray, memoryview)):
            return len(value)
        if isinstance(value, (dict, list, tuple)):
            return len(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))
        return len(str(value))
