"""Named connectors: a `connectors.yaml` lists each connector's source (kind and connection) and mapping file.

Format::

    connectors:
      sample-hr:
        description: HR system of the sample enterprise
        mapping: mappings/sample_hr.yaml          # relative to this file; else the package's connectors/mappings/
        schedule: 30s                             # the runtime's own syncs: 30s | {cron: ...} | continuous | off
        source:
          kind: sql                               # sql | file | rest | tryton | mqtt | opcua
          url: "sqlite:///{data_dir}/sample/hr.sqlite"

Per kind, the connector's `source:` holds the connection and each mapping entity's `source:` what to read:

=======  ===============================================  =========================================================
kind     connector `source:`                              entity `source:`
=======  ===============================================  =========================================================
sql      url, push (LISTEN/NOTIFY, connectors/sql_push)   table | query, schema, columns, page_size,
                                                          related_watermarks (joined tables' change times),
                                                          key_table (a query with one row per row of that table:
                                                          deletion checks count and list keys there)
file     directory                                        path, format, sheet, dtype
rest     base_url, headers                                endpoint, records_path, pagination, page_size, ... params
tryton   url, database, username, password                model, fields, domain, page_size
mqtt     host, port, client_id, duration, idle_timeout,   topic, time_field, batch_size
         batch_quiet, max_batch_delay
opcua    url, username, password, duration, idle_timeout, nodes, sampling_interval, deadband, deadband_type,
         batch_quiet, max_batch_delay, publishing_interval, batch_size, queue_size (connectors/opcua_source.py)
         reconnect_max_delay, timeout
=======  ===============================================  =========================================================

Text values may use ``{data_dir}`` (the twin's data directory), ``{package}`` (this package's folder) and
``${NAME}`` for secrets, filled from the `secrets` mapping the caller passes (never stored in the file).
The package's own `connectors/connectors.yaml` is loaded first; a `connectors.yaml` in the data directory adds
connectors or replaces them by name.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from connectors.errors import ConnectorError
from connectors.file_source import FileSource
from connectors.mapping import EntityMapping, SourceMapping, load_mapping
from connectors.message_batches import MAX_DELAY_SECONDS, QUIET_SECONDS, BatchWindowError
from connectors.mqtt_source import MqttSource
from connectors.rest_source import RestSource
from connectors.schedule import OFF, Schedule, ScheduleError, parse_schedule
from connectors.source import Source
from connectors.sql_push import PushError, SqlPush, parse_push
from connectors.sql_source import SqlSource
from connectors.sync import Connector
from ontology.model import Ontology
from ontology.safe_yaml import load_yaml

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE_REGISTRY = PACKAGE_DIR / "connectors.yaml"
KINDS = ("sql", "file", "rest", "tryton", "mqtt", "opcua")


class RegistryError(ConnectorError, ValueError):
    """A connectors.yaml is malformed or names something that does not exist; names the file and connector."""


@dataclass(frozen=True)
class ConnectorConfig:
    """One connector as configured: name, source kind and connection options, mapping file."""

    name: str
    kind: str
    options: Mapping[str, Any]
    mapping_path: Path
    description: str = ""
    defined_in: Path = field(default=PACKAGE_REGISTRY)
    schedule: Schedule = field(default=OFF)


def _fill(value: Any, variables: Mapping[str, str], secrets: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):

        def fill(match: re.Match[str]) -> str:
            dollar, name = match.group(1), match.group(2)
            if dollar:
                if name not in secrets:
                    raise RegistryError(f"{where}: secret ${{{name}}} is not set")
                return secrets[name]
            return variables.get(name, match.group(0))

        # one pass, so a secret's own text is never read as a placeholder
        return re.sub(r"(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}", fill, value)
    if isinstance(value, dict):
        return {k: _fill(v, variables, secrets, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, variables, secrets, where) for v in value]
    return value


class ConnectorRegistry:
    """The configured connectors, by name; builds runnable `Connector`s."""

    def __init__(
        self,
        configs: Mapping[str, ConnectorConfig],
        ontology: Ontology,
        variables: Mapping[str, str],
        secrets: Mapping[str, str],
    ) -> None:
        self.configs = dict(configs)
        self.ontology = ontology
        self.variables = dict(variables)
        self.secrets = dict(secrets)
        self._sessions: dict[str, Any] = {}  # connector -> (its options, its OPC-UA session), kept across runs

    @classmethod
    def load(
        cls,
        ontology: Ontology,
        *,
        data_dir: Path | None = None,
        extra: Path | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> ConnectorRegistry:
        """The package's connectors, then those of `data_dir/connectors.yaml` and `extra` (later ones win)."""
        variables = {"package": str(PACKAGE_DIR), "data_dir": str(Path(data_dir or ".").resolve())}
        configs: dict[str, ConnectorConfig] = {}
        for path in (PACKAGE_REGISTRY, (data_dir / "connectors.yaml") if data_dir else None, extra):
            if path is not None and path.is_file():
                configs.update(_read_registry(path))
        return cls(configs, ontology, variables, secrets or {})

    def names(self) -> list[str]:
        """Connector names, sorted."""
        return sorted(self.configs)

    def config(self, name: str) -> ConnectorConfig:
        """The configuration of connector `name`."""
        try:
            return self.configs[name]
        except KeyError:
            raise RegistryError(f"no connector named {name!r}; known: {', '.join(self.names()) or 'none'}") from None

    def mapping(self, name: str) -> SourceMapping:
        """The connector's mapping, loaded and checked against the ontology."""
        return load_mapping(self.config(name).mapping_path, self.ontology)

    def source_options(self, name: str) -> dict[str, Any]:
        """The connector's source options with variables and secrets filled in (for a write-back to the source)."""
        config = self.config(name)
        filled: dict[str, Any] = _fill(
            dict(config.options), self.variables, self.secrets, f"{config.defined_in}: {name}"
        )
        return {"kind": config.kind, **filled}

    def connector(self, name: str) -> Connector:
        """A runnable connector (sources open lazily, per entity)."""
        config = self.config(name)
        mapping = self.mapping(name)
        options = _fill(dict(config.options), self.variables, self.secrets, f"{config.defined_in}: {name}")
        factory = _SourceFactory(config.kind, options, name, mapping, self._sessions)
        return Connector(name, mapping, factory, config.description, factory.close)


_CONNECTOR_OPTIONS: dict[str, tuple[str, ...]] = {  # what each kind of source cannot open without
    "sql": ("url",),
    "rest": ("base_url",),
    "tryton": ("url", "database", "username", "password"),
    "opcua": ("url",),
}
_CONNECTOR_KNOWN: dict[str, set[str]] = {  # every option a kind of source takes (kinds listed here are checked)
    "opcua": {
        "url",
        "username",
        "password",
        "duration",
        "idle_timeout",
        "batch_quiet",
        "max_batch_delay",
        "publishing_interval",
        "reconnect_max_delay",
        "timeout",
    },
}
_ENTITY_OPTIONS: dict[str, set[str]] = {  # an entity's `source:` options, per kind of source
    "sql": {"table", "query", "schema", "columns", "page_size", "related_watermarks", "key_table"},
    "file": {"path", "format", "sheet", "dtype"},
    "rest": {
        "endpoint",
        "records_path",
        "pagination",
        "page_size",
        "page_param",
        "size_param",
        "offset_param",
        "limit_param",
        "cursor_param",
        "cursor_path",
        "since_param",
        "params",
        "timeout",
        "max_pages",
    },
    "tryton": {"model", "fields", "domain", "page_size", "overlap_seconds"},
    "mqtt": {"topic", "time_field", "batch_size"},
    "opcua": {"nodes", "sampling_interval", "deadband", "deadband_type", "batch_size", "queue_size"},
}


class _SourceFactory:
    """Opens the Source of one entity of a connector from the connector's and the entity's options."""

    def __init__(
        self,
        kind: str,
        options: Mapping[str, Any],
        connector: str,
        mapping: SourceMapping | None = None,
        sessions: dict[str, Any] | None = None,
    ) -> None:
        self.kind = kind
        self.options = options
        self.connector = connector
        self.mapping = mapping
        self._tryton: Any = None
        self._opcua: Any = None  # the connector's OPC-UA session, shared by its entities
        self._sessions = sessions  # the registry's sessions, kept across runs (else this factory's own)

    @property
    def push(self) -> SqlPush | None:
        """Where the connector's change notifications come from (a SQL source with `push:`), else None."""
        if self.kind != "sql":
            return None
        try:
            return parse_push(
                self.options.get("push"), self.connector, self.options.get("url"), f"connector {self.connector}"
            )
        except PushError as exc:
            raise RegistryError(str(exc)) from None

    def close(self) -> None:
        """Log out of a shared Tryton session and close a shared OPC-UA session, if one was opened."""
        if self._tryton is not None:
            self._tryton.close()
            self._tryton = None
        if self._opcua is not None and self._sessions is None:
            self._opcua.close()
        self._opcua = None

    def __call__(self, entity: EntityMapping) -> Source:
        """The Source of `entity`; RegistryError naming the connector and entity when an option is wrong."""
        try:
            return self._open(entity)
        except BatchWindowError as exc:
            raise RegistryError(f"connector {self.connector}, entity {entity.name}: {exc}") from None

    def _open(self, entity: EntityMapping) -> Source:
        opts = dict(entity.source)
        where = f"connector {self.connector}, entity {entity.name}"
        missing = [name for name in _CONNECTOR_OPTIONS.get(self.kind, ()) if name not in self.options]
        if missing:
            raise RegistryError(f"connector {self.connector}: a {self.kind} source needs {', '.join(missing)}")
        unknown = sorted(set(opts) - _ENTITY_OPTIONS.get(self.kind, set()))
        if unknown:  # a typo must not quietly read another table or endpoint
            raise RegistryError(
                f"{where}: unknown source option(s) {', '.join(unknown)}; a {self.kind} entity takes "
                f"{', '.join(sorted(_ENTITY_OPTIONS.get(self.kind, set()))) or 'none'}"
            )
        if self.kind == "sql":
            return SqlSource(
                self.options["url"],
                table=opts.get("table", None if "query" in opts else entity.name),
                query=opts.get("query"),
                key=entity.key or ("id",),
                watermark=entity.watermark,
                schema=opts.get("schema"),
                columns=opts.get("columns"),
                related_watermarks=opts.get("related_watermarks") or (),
                key_table=opts.get("key_table"),
                page_size=int(opts.get("page_size", self.options.get("page_size", 5_000))),
                name=f"{self.connector}:{entity.name}",
            )
        if self.kind == "file":
            base = Path(self.options.get("directory", "."))
            path = Path(opts.get("path", entity.name))
            dtype = opts.get("dtype")
            if dtype is not None and not (
                isinstance(dtype, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in dtype.items())
            ):
                raise RegistryError(
                    f"{where}: source.dtype must map column names to type names, e.g. {{zip: string}}; got {dtype!r}"
                )
            return FileSource(
                path if path.is_absolute() else base / path,
                key=entity.key or ("id",),
                watermark=entity.watermark,
                format=opts.get("format"),
                sheet=opts.get("sheet"),
                name=f"{self.connector}:{entity.name}",
                dtype=dtype,
            )
        if self.kind == "rest":
            extra = {k: v for k, v in opts.items() if k not in ("endpoint",)}
            return RestSource(
                self.options["base_url"],
                opts.get("endpoint", f"/{entity.name}"),
                key=entity.key or ("id",),
                watermark=entity.watermark,
                headers=self.options.get("headers"),
                name=f"{self.connector}:{entity.name}",
                **extra,
            )
        if self.kind == "tryton":
            from connectors.tryton import TrytonClient, TrytonSource

            if self._tryton is None:
                self._tryton = TrytonClient(
                    self.options["url"], self.options["database"], self.options["username"], self.options["password"]
                )
            fields = opts.get("fields")
            if not fields or "model" not in opts:
                raise RegistryError(f"{where}: a Tryton entity needs source.model and source.fields")
            return TrytonSource(
                self._tryton,
                opts["model"],
                fields,
                entity.watermark or "write_date",
                domain=opts.get("domain"),
                page_size=int(opts.get("page_size", 500)),
                overlap=dt.timedelta(seconds=float(opts.get("overlap_seconds", 1))),
                name=f"{self.connector}:{entity.name}",
            )
        if self.kind == "opcua":
            from connectors.opcua_source import OpcUaError, OpcUaSession

            if self._opcua is None:  # one session and subscription for every entity's nodes
                entities = [
                    e
                    for e in (self.mapping.entities if self.mapping else [entity])
                    if e.name == entity.name or set(e.source) <= _ENTITY_OPTIONS["opcua"]
                ]
                settings = repr((sorted(self.options.items()), [(e.name, e.source) for e in entities]))
                kept = (self._sessions or {}).get(self.connector)
                if kept is not None and kept[0] == settings:
                    self._opcua = kept[1]
                else:
                    if kept is not None:  # the connector's options or nodes changed
                        kept[1].close()
                    try:
                        self._opcua = OpcUaSession.from_options(
                            self.connector,
                            self.options,
                            [(e.name, e.source, f"{e.file}:{e.source_line}: entity {e.name}") for e in entities],
                        )
                    except OpcUaError as exc:
                        raise RegistryError(f"connector {self.connector}: {exc}") from None
                    if self._sessions is not None:
                        self._sessions[self.connector] = (settings, self._opcua)
            try:
                return self._opcua.source(entity.name)
            except OpcUaError as exc:
                raise RegistryError(str(exc)) from None
        if self.kind == "mqtt":
            return MqttSource(
                self.options.get("host", "127.0.0.1"),
                int(self.options.get("port", 1883)),
                topic=opts.get("topic", "#"),
                client_id=str(self.options.get("client_id", f"twin-{self.connector}-{entity.name}")),
                time_field=opts.get("time_field", "ts"),
                batch_size=int(opts.get("batch_size", 500)),
                duration=float(self.options.get("duration", 30)),
                idle_timeout=float(self.options.get("idle_timeout", 1.0)),
                batch_quiet=float(self.options.get("batch_quiet", QUIET_SECONDS)),
                max_batch_delay=float(self.options.get("max_batch_delay", MAX_DELAY_SECONDS)),
                name=f"{self.connector}:{entity.name}",
            )
        raise RegistryError(f"{where}: unknown source kind {self.kind!r}")


def _read_registry(path: Path) -> dict[str, ConnectorConfig]:
    try:
        document = load_yaml(path.read_text(encoding="utf-8"), str(path))
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"{path}: cannot read the connector registry: {exc}") from None
    connectors = (document or {}).get("connectors")
    if not isinstance(connectors, dict):
        raise RegistryError(f"{path}: needs a `connectors:` mapping of name -> configuration")
    configs = {}
    for name, body in connectors.items():
        if not isinstance(body, dict) or not isinstance(body.get("source"), dict) or "mapping" not in body:
            raise RegistryError(f"{path}: connector {name!r} needs `source:` (with kind) and `mapping:`")
        kind = body["source"].get("kind")
        if kind not in KINDS:
            raise RegistryError(f"{path}: connector {name!r}: source kind {kind!r} is not one of {', '.join(KINDS)}")
        mapping = Path(str(body["mapping"]))
        if not mapping.is_absolute():
            local = path.parent / mapping
            mapping = local if local.is_file() else PACKAGE_DIR / mapping
        if not mapping.is_file():
            raise RegistryError(f"{path}: connector {name!r}: mapping file {body['mapping']} not found")
        options = {k: v for k, v in body["source"].items() if k != "kind"}
        if kind == "sql":  # checked here so `twin run` refuses a wrong push option before it starts
            try:
                parse_push(options.get("push"), str(name), options.get("url"), f"{path}: connector {name!r}")
            except PushError as exc:
                raise RegistryError(str(exc)) from None
        elif "push" in options:
            raise RegistryError(f"{path}: connector {name!r}: push is an option of PostgreSQL (sql) sources only")
        unknown = sorted(set(options) - _CONNECTOR_KNOWN.get(kind, set(options)))
        if unknown:
            raise RegistryError(
                f"{path}: connector {name!r}: unknown source option(s) {', '.join(map(str, unknown))}; "
                f"an {kind} source takes {', '.join(sorted(_CONNECTOR_KNOWN[kind]))}"
            )
        try:
            schedule = parse_schedule(body.get("schedule"), kind, f"{path}: connector {name!r}")
        except ScheduleError as exc:
            raise RegistryError(str(exc)) from None
        configs[str(name)] = ConnectorConfig(
            str(name), kind, options, mapping, str(body.get("description", "")), path, schedule
        )
    return configs
