"""The HTTP floor of the API benchmark: a bare Starlette app answering POST /graphql with fixed bytes.

`tests/benchmarks/api.py` serves it with the same uvicorn settings as the twin's API and the bytes of the twin's
answer to the 3-level query (read from the file TWIN_BENCH_FLOOR_BODY), so the time a request takes here is what
HTTP, uvicorn and Starlette cost before the API does anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def create_app() -> Starlette:
    """The floor app (uvicorn --factory)."""
    body = Path(os.environ["TWIN_BENCH_FLOOR_BODY"]).read_bytes()

    async def answer(request: Request) -> Response:
        await request.body()  # read the request as the API does
        return Response(body, media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b"ok")

    return Starlette(routes=[Route("/graphql", answer, methods=["POST"]), Route("/ready", ready)])
