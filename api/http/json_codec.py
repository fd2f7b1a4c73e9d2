"""JSON of GraphQL requests and responses: orjson for speed, the standard library for what orjson refuses."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import Response


def loads(body: bytes) -> Any:
    """The decoded request body; ValueError when it is not JSON (big integers and NaN still decode as before)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def dumps(payload: Any) -> bytes:
    """Compact UTF-8 JSON of `payload` (the same text Starlette's JSONResponse writes, minus its cost)."""
    try:
        return orjson.dumps(payload)
    except (orjson.JSONEncodeError, TypeError):
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (echoed input): \u escapes are the JSON form of any str
            return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("ascii")


class JsonResponse(Response):
    """A JSON response rendered with `dumps`."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """The body of `content`."""
        return dumps(content)
