"""Tryton ERP as a source: a JSON-RPC client for trytond and incremental reading of one model's records.

Wire format (trytond 7/8, ``trytond/protocols``): every call is ``POST {url}/{database}/rpc/`` with the body
``{"id": n, "method": "...", "params": [...]}``.  ``common.db.login`` takes ``[username, {"password": ...},
language]`` and answers ``[user_id, session, bus_url]``; later calls carry the header
``Authorization: Session base64("username:user_id:session")``.  A model method is
``model.<model>.<method>`` whose last parameter is the context.  Non-JSON values travel as objects tagged
``{"__class__": "datetime" | "date" | "time" | "timedelta" | "Decimal" | "bytes", ...}``.  Failures come back
either as HTTP status codes (401 bad session or password, 403 method not exposed, 404 unknown database,
429 rate limited) or as ``{"error": [message, detail]}`` with HTTP 200.

Server side (what the tests start, and what a self-hosted Tryton needs), one series throughout::

    trytond==8.0.11 trytond-company trytond-party trytond-product trytond-purchase
    trytond-sale-opportunity trytond-production trytond-production-work trytond-project trytond-timesheet
    (each ``~=8.0.0``; their dependencies account, stock, sale, ... come along)

trytond 8.0.12 cannot serve the first login after it starts (``Cache.sync`` registers an empty pool, so the
login finds no ``res.user``): stay on 8.0.11 until a fixed release.  The client itself needs only httpx.

Values handed on by `TrytonSource` are plain JSON-able Python types:

==========================  ==================================================================
Tryton value                in ``SourceRecord.fields``
==========================  ==================================================================
Char, Text, Selection       ``str`` (empty values stay ``None`` as Tryton sends them)
Integer, Float, Boolean     ``int``, ``float``, ``bool``
Numeric (``Decimal``)       ``str`` in fixed-point notation, exact (``"12.50"``): cast it in the mapping
Date / Time                 ISO 8601 ``str`` (``"2024-05-31"``, ``"08:30:00"``)
DateTime / Timestamp        ISO 8601 ``str`` in UTC with offset (``"2024-05-31T08:30:00.123456+00:00"``)
TimeDelta                   ISO 8601 duration ``str`` (``"PT7H30M"``, ``"P1DT2H"``, ``"-PT15M"``)
Binary                      base64 ``str``
Many2One                    the target's id as ``int`` (``None`` when empty)
One2Many, Many2Many         ``list[int]`` of target ids, in Tryton's order
Reference                   ``"model,id"`` ``str`` as Tryton sends it
Dict                        ``dict`` with its values converted by these same rules
dotted path ``a.b``         the value of ``b`` on the record ``a`` points to (``party.rec_name`` gives the
                            party's display name; through an x2many it gives a list, one value per target)
==========================  ==================================================================
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import httpx

from connectors.source import (
    SourceError,
    SourceObjectMissing,
    SourceRecord,
    UnknownSourceField,
    Watermark,
    change_time,
)
from graph.urls import redact_url
from ontology.durations import format_duration

__all__ = [
    "TrytonAuthenticationError",
    "TrytonClient",
    "TrytonSource",
    "TrytonUnavailableError",
    "tryton_value",
]

Domain = list[Any]


class TrytonAuthenticationError(SourceError):
    """Tryton refused the credentials or the session (wrong user/password, expired or revoked session)."""


class TrytonUnavailableError(SourceError):
    """The server cannot be reached, or it does not serve the database: nothing about a model can be known."""


def _encode(value: Any) -> Any:
    """Tag a Python value the way trytond's JSON decoder expects (json.dumps `default` hook)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return {
            "__class__": "datetime",
            "year": value.year,
            "month": value.month,
            "day": value.day,
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, dt.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, dt.time):
        return {
            "__class__": "time",
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, dt.timedelta):
        return {"__class__": "timedelta", "seconds": value.total_seconds()}
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"__class__": "bytes", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"cannot send a {type(value).__name__} to Tryton")


def _decode(obj: dict[str, Any]) -> Any:
    """Turn trytond's tagged JSON objects back into Python values (json.loads `object_hook`)."""
    kind = obj.get("__class__")
    if kind is None:
        return obj
    if kind == "datetime":
        return dt.datetime(
            obj["year"],
            obj["month"],
            obj["day"],
            obj["hour"],
            obj["minute"],
            obj["second"],
            obj["microsecond"],
        )
    if kind == "date":
        return dt.date(obj["year"], obj["month"], obj["day"])
    if kind == "time":
        return dt.time(obj["hour"], obj["minute"], obj["second"], obj["microsecond"])
    if kind == "timedelta":
        return dt.timedelta(seconds=obj["seconds"])
    if kind == "Decimal":
        return Decimal(obj["decimal"])
    if kind == "bytes":
        return base64.decodebytes(obj["base64"].encode("ascii"))
    return obj


def tryton_value(value: Any) -> Any:
    """Convert one decoded Tryton value into the plain JSON-able form documented in this module."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return change_time(value).isoformat()  # Tryton's naive times are UTC
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return format_duration(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): tryton_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [tryton_value(v) for v in value]
    raise TypeError(f"unexpected {type(value).__name__} value from Tryton")


def _error_message(error: Any) -> str:
    """The human part of a JSON-RPC error payload.

    Tryton's own exceptions arrive as ``[kind, args]`` (``["UserError", [message, description, domain]]``,
    ``["UserWarning", [name, message, description]]``, ``["ConcurrencyException", message]``); anything else
    as ``[message, traceback]``, of which only the message is kept.
    """
    if not isinstance(error, (list, tuple)) or not error:
        return str(error)
    kind, detail = str(error[0]), error[1] if len(error) > 1 else None
    if kind == "UserError" and isinstance(detail, (list, tuple)) and detail:
        parts = [str(part) for part in detail[:2] if part]
        return f"{kind}: {' - '.join(parts)}"
    if kind == "UserWarning" and isinstance(detail, (list, tuple)) and len(detail) > 1:
        parts = [str(part) for part in detail[1:3] if part]
        return f"{kind}: {' - '.join(parts)}"
    if kind == "ConcurrencyException" and isinstance(detail, str):
        return f"{kind}: {detail}"
    return kind


class TrytonClient:
    """A session with one Tryton database over JSON-RPC: login, then call model methods with the user's context."""

    def __init__(
        self,
        url: str,
        database: str,
        username: str,
        password: str,
        *,
        timeout: float = 30.0,
        language: str = "en",
    ) -> None:
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"Tryton URL {redact_url(url)!r} is not an http(s) URL")
        # Never keep credentials that might sit in the URL's user-info part: they would end up in messages.
        self.url = str(parsed.copy_with(username=None, password=None)).rstrip("/")
        self.database = database
        self.username = username
        self._password = password
        self._language = language
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._user_id: int | None = None
        self._session: str | None = None
        self._context: dict[str, Any] | None = None
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"TrytonClient(url={redact_url(self.url)!r}, database={self.database!r}, username={self.username!r})"

    def __enter__(self) -> TrytonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Log out (best effort) and release the HTTP connection pool."""
        if self._session is not None:
            # The session may already have expired; closing must not fail because of that.
            with contextlib.suppress(SourceError):
                self._post(f"/{self.database}/rpc/", "common.db.logout", [], model=None, authenticated=True)
            self._session = None
        self._http.close()

    def server_version(self) -> str:
        """The trytond series the server runs, e.g. '8.0' (no login needed)."""
        return str(self._post("/rpc/", "common.server.version", [], model=None, authenticated=False))

    def login(self) -> None:
        """Open a session (common.db.login); the user's preferences become the default context on first use."""
        result = self._post(
            f"/{self.database}/rpc/",
            "common.db.login",
            [self.username, {"password": self._password}, self._language],
            model=None,
            authenticated=False,
        )
        if not isinstance(result, list) or len(result) < 2:
            raise SourceError("unexpected login answer from Tryton", method="common.db.login")
        self._user_id, self._session = int(result[0]), str(result[1])
        self._context = None

    @property
    def context(self) -> dict[str, Any]:
        """The user's context (company, companies, language, ...), as Tryton clients send with every call."""
        if self._context is None:
            preferences = self.execute("res.user", "get_preferences", True, context={})
            self._context = dict(preferences) if isinstance(preferences, Mapping) else {}
        return dict(self._context)

    def refresh_context(self) -> dict[str, Any]:
        """Reload the user's context, e.g. after changing the user's company."""
        self._context = None
        return self.context

    def execute(self, model: str, method: str, *args: Any, context: Mapping[str, Any] | None = None) -> Any:
        """Call ``model.<model>.<method>(*args)`` with the user's context updated by `context`."""
        if self._session is None:
            self.login()
        if model == "res.user" and method == "get_preferences":
            call_context = dict(context or {})  # the call that builds the user's context cannot use it
        else:
            call_context = self.context
            call_context.update(context or {})
        params = [*args, call_context]
        path = f"/{self.database}/rpc/"
        try:
            return self._post(path, f"model.{model}.{method}", params, model=model, authenticated=True)
        except TrytonAuthenticationError:
            # Sessions expire after inactivity: log in again once, then give up.
            self.login()
            return self._post(path, f"model.{model}.{method}", params, model=model, authenticated=True)

    def search(
        self,
        model: str,
        domain: Domain,
        *,
        offset: int = 0,
        limit: int | None = None,
        order: Sequence[tuple[str, str]] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[int]:
        """Ids of the records of `model` matching `domain`."""
        order_param = [list(item) for item in order] if order is not None else None
        return list(self.execute(model, "search", domain, offset, limit, order_param, context=context))

    def search_read(
        self,
        model: str,
        domain: Domain,
        fields: Sequence[str],
        *,
        offset: int = 0,
        limit: int | None = None,
        order: Sequence[tuple[str, str]] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The given fields of the records of `model` matching `domain`, as decoded Python values."""
        order_param = [list(item) for item in order] if order is not None else None
        return list(
            self.execute(model, "search_read", domain, offset, limit, order_param, list(fields), context=context)
        )

    def read(
        self, model: str, ids: Sequence[int], fields: Sequence[str], *, context: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The given fields of the records `ids` of `model`."""
        return list(self.execute(model, "read", list(ids), list(fields), context=context))

    def create(
        self, model: str, values: Sequence[Mapping[str, Any]], *, context: Mapping[str, Any] | None = None
    ) -> list[int]:
        """Create records of `model` (Tryton's write syntax for relations, e.g. ``[('create', [...])]``)."""
        return list(self.execute(model, "create", [dict(v) for v in values], context=context))

    def write(
        self,
        model: str,
        ids: Sequence[int],
        values: Mapping[str, Any],
        *,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Set `values` on the records `ids` of `model`."""
        self.execute(model, "write", list(ids), dict(values), context=context)

    def delete(self, model: str, ids: Sequence[int], *, context: Mapping[str, Any] | None = None) -> None:
        """Delete the records `ids` of `model`."""
        self.execute(model, "delete", list(ids), context=context)

    def fields_get(
        self, model: str, names: Sequence[str] | None = None, *, context: Mapping[str, Any] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Field definitions of `model` (type, relation, ...), for all fields or just `names`."""
        return dict(self.execute(model, "fields_get", list(names) if names else None, context=context))

    def _authorization(self) -> str:
        token = f"{self.username}:{self._user_id}:{self._session}".encode()
        return "Session " + base64.b64encode(token).decode("ascii")

    def _post(self, path: str, method: str, params: list[Any], *, model: str | None, authenticated: bool) -> Any:
        """One JSON-RPC round trip; every failure becomes a SourceError naming model and method only."""
        method_name = method.rsplit(".", 1)[-1] if model else method
        body = json.dumps({"id": next(self._ids), "method": method, "params": params}, default=_encode)
        headers = {"Content-Type": "application/json"}
        if authenticated:
            headers["Authorization"] = self._authorization()
        try:
            response = self._http.post(path, content=body.encode("utf-8"), headers=headers)
        except httpx.HTTPError as exc:
            raise TrytonUnavailableError(
                f"cannot reach Tryton at {redact_url(self.url)}: {type(exc).__name__}", model=model, method=method_name
            ) from None
        status = response.status_code
        if status == 401:
            if method == "common.db.login":
                raise TrytonAuthenticationError(
                    f"Tryton refused the login of user {self.username!r} on database {self.database!r}",
                    method=method_name,
                )
            raise TrytonAuthenticationError(
                f"Tryton refused the session of user {self.username!r}", model=model, method=method_name
            )
        if status == 403:
            raise SourceError("method is not exposed over RPC (HTTP 403)", model=model, method=method_name)
        if status == 404:
            raise TrytonUnavailableError(
                f"database {self.database!r} not found on {redact_url(self.url)}", model=model, method=method_name
            )
        if status == 429:
            raise SourceError("Tryton is rate-limiting this client (HTTP 429)", model=model, method=method_name)
        if status >= 500:
            raise TrytonUnavailableError(f"Tryton answered HTTP {status}", model=model, method=method_name)
        if status != 200:
            raise SourceError(f"Tryton answered HTTP {status}", model=model, method=method_name)
        try:
            payload = json.loads(response.content, object_hook=_decode)
        except (ValueError, KeyError, binascii.Error) as exc:
            raise SourceError(f"unreadable JSON-RPC answer: {exc}", model=model, method=method_name) from None
        if not isinstance(payload, dict):
            raise SourceError("unexpected JSON-RPC answer", model=model, method=method_name)
        if payload.get("error") is not None:
            message = _error_message(payload["error"])
            if model and message == repr(model):  # trytond answers a bare KeyError for a model it does not have
                raise SourceObjectMissing(
                    f"unknown model {model!r}: no module activated on database {self.database!r} defines it",
                    model=model,
                    method=method_name,
                )
            raise SourceError(f"Tryton reported an error: {message}", model=model, method=method_name)
        return payload.get("result")


class TrytonSource:
    """One Tryton model as a Source: full and incremental batches by id, change time from write/create date."""

    lists_keys = True  # keys only, cheaply: incremental runs detect deletions (connectors.source.lists_keys)

    def __init__(
        self,
        client: TrytonClient,
        model: str,
        fields: Sequence[str],
        watermark_field: str = "write_date",
        *,
        name: str | None = None,
        domain: Domain | None = None,
        page_size: int = 500,
        key_page_size: int = 10_000,
        include_inactive: bool = True,
        overlap: dt.timedelta = dt.timedelta(0),
        context: Mapping[str, Any] | None = None,
    ) -> None:
        if not fields or any(not isinstance(f, str) or not f for f in fields):
            raise ValueError(f"TrytonSource for {model!r} needs a non-empty list of field names, got {fields!r}")
        if page_size < 1 or key_page_size < 1:
            raise ValueError(f"TrytonSource for {model!r}: page sizes must be positive")
        if overlap < dt.timedelta(0):
            raise ValueError(f"TrytonSource for {model!r}: overlap must not be negative")
        self.client = client
        self.model = model
        self.fields = tuple(dict.fromkeys(fields))
        self.watermark_field = watermark_field
        self.name = name or f"tryton:{model}"
        self.domain: Domain = list(domain or [])
        self.page_size = page_size
        self.key_page_size = key_page_size
        self.overlap = overlap
        # Archived records (active = False) still exist: without this they would look deleted.
        self.context: dict[str, Any] = {"active_test": False} if include_inactive else {}
        self.context.update(context or {})
        self._checked = False

    def __repr__(self) -> str:
        return f"TrytonSource(name={self.name!r}, model={self.model!r}, fields={list(self.fields)!r})"

    @property
    def related_paths(self) -> tuple[str, ...]:
        """The related records the fields read through: every proper prefix of a dotted field, e.g. 'company' and
        'company.party' for 'company.party.name' (their changes change the value read)."""
        paths: dict[str, None] = {}
        for name in self.fields:
            parts = name.split(".")
            for end in range(1, len(parts)):
                paths[".".join(parts[:end])] = None
        return tuple(paths)

    def read(self, since: Watermark | None) -> Iterator[list[SourceRecord]]:
        """Batches of records (ascending id) changed after `since` (minus `overlap`), or all when None.

        A record counts as changed when it or a record one of its dotted fields reads through (``party`` of
        ``party.name``, ``company`` and ``company.party`` of ``company.party.name``) was created or written after
        the watermark, so renaming a party re-reads the employees that show its name. A record's change time is
        the newest of those times. Not seen by an incremental read: a target removed from an x2many path (the
        root and the remaining targets keep their write dates); a full run sees it.
        """
        self._check_fields()
        changed: Domain = []
        if since is not None:
            after = since.value - self.overlap
            if self.watermark_field == "create_date":
                changed = ["OR", ("create_date", ">", after)]
            else:
                # write_date is NULL for records never written since creation: fall back to create_date.
                changed = [
                    "OR",
                    (self.watermark_field, ">", after),
                    [(self.watermark_field, "=", None), ("create_date", ">", after)],
                ]
            for path in self.related_paths:  # Tryton resolves a dotted domain through the relation, at any depth
                changed += [(f"{path}.write_date", ">", after), (f"{path}.create_date", ">", after)]
        related_times = [f"{path}.{stamp}" for path in self.related_paths for stamp in ("write_date", "create_date")]
        wanted = list(dict.fromkeys(["id", "create_date", self.watermark_field, *self.fields, *related_times]))
        last_id = 0
        while True:
            domain = self._domain(changed, last_id)
            rows = self.client.search_read(
                self.model, domain, wanted, limit=self.page_size, order=[("id", "ASC")], context=self.context
            )
            if not rows:
                return
            yield [self._record(row) for row in rows]
            last_id = max(int(row["id"]) for row in rows)
            if len(rows) < self.page_size:
                return

    def all_keys(self) -> set[str]:
        """The keys (ids as strings) of every record of the model that matches the source's domain now."""
        keys: set[str] = set()
        last_id = 0
        while True:
            ids = self.client.search(
                self.model,
                self._domain([], last_id),
                limit=self.key_page_size,
                order=[("id", "ASC")],
                context=self.context,
            )
            keys.update(str(i) for i in ids)
            if len(ids) < self.key_page_size:
                return keys
            last_id = max(ids)

    def _domain(self, changed: Domain, last_id: int) -> Domain:
        domain: Domain = [("id", ">", last_id)]
        if changed:
            domain.append(changed)
        if self.domain:
            domain.append(self.domain)
        return domain

    def _check_fields(self) -> None:
        """Fail early, naming the model and field, when the model or a field (or a dotted path's next step) does
        not exist on the server; an unreachable server, unknown database or refused login is reported as such."""
        if self._checked:
            return
        top_level = sorted({f.split(".", 1)[0] for f in (*self.fields, self.watermark_field)})
        known = self._describe(self.model, top_level)
        missing = [f for f in top_level if f not in known and f != "id"]
        if missing:
            raise UnknownSourceField(
                f"unknown field(s) {', '.join(missing)}", field=missing[0], model=self.model, method="fields_get"
            )
        kind = known[self.watermark_field].get("type") if self.watermark_field in known else None
        if kind not in ("datetime", "timestamp"):
            raise SourceError(
                f"watermark field {self.watermark_field!r} is a {kind} field, not a datetime",
                model=self.model,
                method="fields_get",
            )
        for path in self.fields:
            if "." in path:
                self._check_path(path, known)
        self._checked = True

    def _describe(self, model: str, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """fields_get of `names` on `model`; connection, database and login failures pass through unchanged."""
        try:
            return self.client.fields_get(model, names, context=self.context)
        except (TrytonAuthenticationError, TrytonUnavailableError, SourceObjectMissing):
            raise
        except SourceError as exc:
            raise SourceError(
                f"cannot describe model {model!r} (no read access?): {exc}", model=model, method="fields_get"
            ) from None

    def _check_path(self, path: str, root: Mapping[str, Mapping[str, Any]]) -> None:
        """Follow a dotted path ('party.name') through the relations it crosses; refuse a step that does not exist."""
        steps = path.split(".")
        known, model = root, self.model
        for depth, step in enumerate(steps):
            if step not in known and step != "id":
                raise UnknownSourceField(
                    f"unknown field {step!r} of {model} in {path!r}", field=path, model=self.model, method="fields_get"
                )
            if depth == len(steps) - 1:
                return
            relation = known.get(step, {}).get("relation")
            if not relation:  # a Reference or non-relational field: the server decides what follows
                return
            model = str(relation)
            known = self._describe(model, [steps[depth + 1]])

    def _record(self, row: Mapping[str, Any]) -> SourceRecord:
        changed_at = row.get(self.watermark_field) or row.get("create_date")
        times = [changed_at] if isinstance(changed_at, dt.datetime) else []
        for path in self.related_paths:  # the newest change of a related record read through counts too
            for stamp in ("write_date", "create_date"):
                times += [t for t in _flatten(_pluck(row, [*path.split("."), stamp])) if isinstance(t, dt.datetime)]
        return SourceRecord(
            key=str(row["id"]),
            fields={f: tryton_value(_pluck(row, f.split("."))) for f in self.fields},
            watermark=change_time(max(times)) if times else None,
        )


def _pluck(row: Mapping[str, Any], path: list[str]) -> Any:
    """The value at a dotted path in a search_read row, where Tryton nests 'a.b' under the key 'a.'."""
    head, *rest = path
    if not rest:
        return row.get(head)
    nested = row.get(head + ".")
    if nested is None:
        return None
    if isinstance(nested, list):
        return [_pluck(item, rest) for item in nested]
    return _pluck(nested, rest)


def _flatten(value: Any) -> list[Any]:
    """The values at a dotted path as one flat list (an x2many step gives a list, possibly of lists)."""
    if isinstance(value, list):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value]
