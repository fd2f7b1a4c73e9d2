"""RestSource against a real HTTP server (FastAPI under uvicorn in a thread): page, offset and cursor pagination,
incremental filtering, errors, and a sync through it."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI, HTTPException, Response

from connectors.mapping import parse_mapping
from connectors.rest_source import RestSource
from connectors.source import Source, SourceError, Watermark
from connectors.sync import Connector
from ontology.model import Ontology
from tests.connectors.twin_fixtures import TwinEnv, core, twin  # noqa: F401

SUPPLIERS = [
    {
        "code": f"S{i:03d}",
        "name": f"Supplier {i}",
        "reliability": round(0.5 + i / 100, 2),
        "updated": f"2025-01-{1 + i % 28:02d}T08:00:00Z",
    }
    for i in range(23)
]
CALLS: list[dict[str, str]] = []


def api() -> FastAPI:
    app = FastAPI()

    @app.get("/page")
    def by_page(page: int = 1, page_size: int = 10, since: str | None = None) -> dict:
        CALLS.append({"page": str(page), "since": since or ""})
        items = [s for s in SUPPLIERS if since is None or s["updated"] >= since.replace("+00:00", "Z")]
        return {"data": {"items": items[(page - 1) * page_size : page * page_size]}}

    @app.get("/offset")
    def by_offset(offset: int = 0, limit: int = 10) -> list[dict]:
        return SUPPLIERS[offset : offset + limit]

    @app.get("/cursor")
    def by_cursor(limit: int = 10, cursor: str | None = None) -> dict:
        start = int(cursor) if cursor else 0
        end = start + limit
        return {"results": SUPPLIERS[start:end], "next": str(end) if end < len(SUPPLIERS) else None}

    @app.get("/broken")
    def broken() -> None:
        raise HTTPException(503, "down for maintenance")

    @app.get("/html")
    def html() -> Response:
        return Response("<html>not json</html>", media_type="text/html")

    return app


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """A real HTTP server on a free port for this module."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the test HTTP server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def keys(source: RestSource, since: Watermark | None = None) -> list[str]:
    return [r.key for page in source.read(since) for r in page]


@pytest.mark.parametrize(
    ("endpoint", "options"),
    [
        ("/page", {"pagination": "page", "records_path": "data.items"}),
        ("/offset", {"pagination": "offset"}),
        ("/cursor", {"pagination": "cursor", "records_path": "results", "cursor_path": "next"}),
    ],
)
def test_every_pagination_style_reads_every_record_once(base_url: str, endpoint: str, options: dict) -> None:
    source = RestSource(base_url, endpoint, key="code", watermark="updated", page_size=10, **options)
    try:
        assert isinstance(source, Source)
        pages = list(source.read(None))
        assert [len(p) for p in pages] == [10, 10, 3]
        assert keys(source) == [s["code"] for s in SUPPLIERS]
        assert source.all_keys() == {s["code"] for s in SUPPLIERS}
        assert pages[0][0].watermark == dt.datetime(2025, 1, 1, 8, tzinfo=dt.UTC)
    finally:
        source.close()


def test_incremental_read_sends_and_applies_the_watermark(base_url: str) -> None:
    source = RestSource(
        base_url, "/page", key="code", watermark="updated", records_path="data.items", since_param="since", page_size=10
    )
    since = Watermark(dt.datetime(2025, 1, 20, 8, tzinfo=dt.UTC))
    CALLS.clear()
    changed = keys(source, since)
    assert changed == [s["code"] for s in SUPPLIERS if s["updated"] >= "2025-01-20T08:00:00Z"]
    assert CALLS[0]["since"].startswith("2025-01-20T08:00:00")
    source.close()


def test_api_failures_are_source_errors(base_url: str) -> None:
    with pytest.raises(SourceError, match="HTTP 503"):
        keys(RestSource(base_url, "/broken", key="code"))
    with pytest.raises(SourceError, match="not JSON"):
        keys(RestSource(base_url, "/html", key="code"))
    with pytest.raises(SourceError, match="no list of records at data.rows"):
        keys(RestSource(base_url, "/page", key="code", records_path="data.rows"))
    with pytest.raises(SourceError, match="cannot reach the API"):
        keys(RestSource("http://127.0.0.1:9", "/page", key="code", timeout=2))


MAPPING = """\
system: procurement-api
entities:
  - name: suppliers
    class: Supplier
    uid: "api:supplier:{code}"
    key: code
    watermark: updated
    properties:
      name: name
      reliability: reliability
"""


def test_sync_through_the_api(core: Ontology, twin: TwinEnv, base_url: str) -> None:
    mapping = parse_mapping(MAPPING, core, "api.yaml")
    connector = Connector(
        "procurement",
        mapping,
        lambda e: RestSource(
            base_url,
            "/cursor",
            key="code",
            watermark="updated",
            pagination="cursor",
            records_path="results",
            cursor_path="next",
            page_size=7,
        ),
    )
    report = twin.engine().run(connector, "full")
    assert report.counts["created"] == len(SUPPLIERS)
    assert twin.store.require("api:supplier:S005").properties == {"name": "Supplier 5", "reliability": 0.55}
