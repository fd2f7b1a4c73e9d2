"""Canonical JSON and SHA-256 digests: one byte encoding per value, so hashes agree across processes and databases."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, date, datetime
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any
from uuid import UUID

from governance.errors import GovernanceError

_UTC_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _encode_extra(value: Any) -> Any:
    """JSON form of the non-JSON scalars that twin values and query variables carry."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"value of type {type(value).__name__} has no canonical JSON form")


def _scalar_json(value: Any) -> str | None:
    """The JSON text json.dumps gives a str, int, bool, None or finite float; None for anything else."""
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    return None


def canonical_json(value: Any) -> str:
    """The canonical JSON text of `value`: sorted keys, no whitespace, UTF-8 characters kept, NaN refused."""
    # Scalars (most twin values) and flat maps of them (link values) take a fast path giving byte for byte what
    # json.dumps gives them; everything else goes through json.dumps.
    text = _scalar_json(value)
    if text is not None:
        return text
    if type(value) is dict and all(type(key) is str for key in value):
        parts = []
        for key in sorted(value):
            item = _scalar_json(value[key])
            if item is None:
                break
            parts.append(f"{encode_basestring(key)}:{item}")
        else:
            return "{" + ",".join(parts) + "}"
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_encode_extra
    )


def digest_bytes(text: str) -> bytes:
    """The bytes a text is hashed as: UTF-8, a lone surrogate kept as its own three bytes (so any str has a digest,
    and distinct texts distinct ones; valid text hashes as before)."""
    return text.encode("utf-8", "surrogatepass")


def text_digest(text: str) -> str:
    """Hex SHA-256 of a canonical JSON text (for callers that keep the text too: encode once, hash once)."""
    return hashlib.sha256(digest_bytes(text)).hexdigest()


def sha256_digest(value: Any) -> str:
    """Hex SHA-256 of the canonical JSON of `value` (the digest stored instead of, or next to, a value)."""
    return hashlib.sha256(digest_bytes(canonical_json(value))).hexdigest()


def utc_text(moment: datetime) -> str:
    """The fixed-width UTC text of an aware time as stored and hashed (it sorts like the time itself)."""
    if moment.tzinfo is None:
        raise GovernanceError(f"time {moment.isoformat()} has no timezone; give an aware datetime")
    return moment.astimezone(UTC).strftime(_UTC_FORMAT)


def parse_utc_text(text: str) -> datetime:
    """The aware UTC time of a text written by `utc_text`."""
    return datetime.strptime(text, _UTC_FORMAT).replace(tzinfo=UTC)
