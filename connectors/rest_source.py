"""A generic paginated REST/JSON API as a Source (httpx), with page-number, offset or cursor pagination.

Configuration names where the records are in a response (`records_path`, dotted, e.g. ``data.items``; empty for a
top-level array), the key field(s), an optional watermark field and how to page:

- ``page``:   ``?page=1&page_size=N``, then 2, 3 ... until a short or empty page;
- ``offset``: ``?offset=0&limit=N``, then N, 2N ... until a short or empty page;
- ``cursor``: ``?limit=N``, then ``?cursor=<value at cursor_path>`` until the cursor is empty.

Incremental reads send the watermark as `since_param` (ISO 8601) when the API supports it and always filter the
records client side as well. Errors (connection, HTTP status, non-JSON, missing records) become SourceErrors naming
the URL's path, never credentials.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import httpx

from connectors.source import SourceError, SourceRecord, Watermark, change_time

Pagination = Literal["page", "offset", "cursor"]


def _at(document: Any, path: str) -> Any:
    """The value at a dotted path of a JSON document ('' = the document)."""
    value = document
    for part in [p for p in path.split(".") if p]:
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


class RestSource:
    """One collection endpoint of a JSON API, read page by page."""

    def __init__(
        self,
        base_url: str,
        endpoint: str,
        *,
        key: Sequence[str] | str,
        watermark: str | None = None,
        records_path: str = "",
        pagination: Pagination = "page",
        page_size: int = 500,
        page_param: str = "page",
        size_param: str = "page_size",
        offset_param: str = "offset",
        limit_param: str = "limit",
        cursor_param: str = "cursor",
        cursor_path: str = "next_cursor",
        since_param: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float = 30.0,
        max_pages: int = 100_000,
        name: str | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        if pagination not in ("page", "offset", "cursor"):
            raise SourceError(f"REST source {endpoint}: pagination must be page, offset or cursor, not {pagination!r}")
        self.keys = (key,) if isinstance(key, str) else tuple(key)
        self.endpoint = endpoint
        self.watermark_field = watermark
        self.records_path = records_path
        self.pagination = pagination
        self.page_size = page_size
        self.page_param, self.size_param = page_param, size_param
        self.offset_param, self.limit_param = offset_param, limit_param
        self.cursor_param, self.cursor_path = cursor_param, cursor_path
        self.since_param = since_param
        self.params = dict(params or {})
        self.max_pages = max_pages
        self.name = name or f"rest:{endpoint}"
        self._client = client or httpx.Client(base_url=base_url, headers=dict(headers or {}), timeout=timeout)
        self._owns_client = client is None

    def __repr__(self) -> str:
        return f"RestSource(name={self.name!r}, pagination={self.pagination!r})"

    def close(self) -> None:
        """Release the HTTP connection pool (when this source created it)."""
        if self._owns_client:
            self._client.close()

    def _get(self, params: Mapping[str, Any]) -> Any:
        try:
            response = self._client.get(self.endpoint, params=dict(params))
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot reach the API: {type(exc).__name__}", model=self.name, method="GET") from None
        if response.status_code != 200:
            raise SourceError(f"the API answered HTTP {response.status_code}", model=self.name, method="GET")
        try:
            return response.json()
        except ValueError:
            raise SourceError("the API answered something that is not JSON", model=self.name, method="GET") from None

    def _records(self, document: Any) -> list[Any]:
        records = _at(document, self.records_path)
        if not isinstance(records, list):
            where = self.records_path or "the top level"
            raise SourceError(f"no list of records at {where} of the answer", model=self.name, method="GET")
        return records

    def pages(self, since: Watermark | None = None) -> Iterator[list[Mapping[str, Any]]]:
        """The raw record pages as the API returns them."""
        params = dict(self.params)
        if since is not None and self.since_param:
            params[self.since_param] = since.value.isoformat()
        cursor: Any = None
        for number in range(self.max_pages):
            query = dict(params)
            if self.pagination == "page":
                query.update({self.page_param: number + 1, self.size_param: self.page_size})
            elif self.pagination == "offset":
                query.update({self.offset_param: number * self.page_size, self.limit_param: self.page_size})
            else:
                query[self.limit_param] = self.page_size
                if cursor is not None:
                    query[self.cursor_param] = cursor
            document = self._get(query)
            records = self._records(document)
            if records:
                yield records
            if self.pagination == "cursor":
                cursor = _at(document, self.cursor_path)
                if not cursor:
                    return
            elif len(records) < self.page_size:
                return
        raise SourceError(f"more than {self.max_pages} pages; raise max_pages", model=self.name)

    def read(self, since: Watermark | None) -> Iterator[list[SourceRecord]]:
        """Pages of records: all, or those whose watermark is at or after `since`."""
        for page in self.pages(since):
            batch = []
            for raw in page:
                if not isinstance(raw, Mapping):
                    raise SourceError(f"a record is a {type(raw).__name__}, not a JSON object", model=self.name)
                fields = dict(raw)
                changed = change_time(fields.get(self.watermark_field)) if self.watermark_field else None
                if since is not None and changed is not None and changed < since.value:
                    continue
                parts = [fields.get(k) for k in self.keys]
                key = "|".join("" if p is None else str(p) for p in parts)
                batch.append(SourceRecord(key, fields, changed))
            if batch:
                yield batch

    def all_keys(self) -> set[str]:
        """Every key the API lists now."""
        return {"|".join(str(r.get(k)) for k in self.keys) for page in self.pages() for r in page}
