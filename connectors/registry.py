"""Named connectors: a `connectors.yaml` lists each connector's source (kind and connection) and mapping file.

Format::

    connectors:
      sample-hr:
        description: HR system of the sample enterprise
        mapping: mappings/sample_hr.yaml          # relative to this file; else the package's connectors/mappings/
        schedule: 30s                             # the runtime's own syncs: 30s | {cron: ...} | continuous | off
        source:
          kind: sql                               # sql | file | rest | tryton | mqtt
          url: "sqlite:///{data_dir}/sample/hr.sqlite"

Per kind, the connector's `source:` holds the connection and each mapping entity's `source:` what to read:

=======  ===============================================  =========================================================
kind     connector `source:`                              entity `source:`
=======  ===============================================  =========================================================
sql      url                                              table | query, schema, columns, page_size,
                                                          related_watermarks (joined tables' change times)
file     directory                                        path, format, sheet, dtype
rest     base_url, headers                                endpoint, records_path, pagination, page_size, ... params
tryton   url, database, username, password                model, fields, domain, page_size
mqtt     host, port, client_id, duration, idle_timeout     topic, time_field, batch_size
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
from connectors.mqtt_source import MqttSource
from connectors.rest_source import RestSource
from connectors.schedule import OFF, Schedule, ScheduleError, parse_schedule
from connectors.source import Source
from connectors.sql_source import SqlSource
from connectors.sync import Connector
from ontology.model import Ontology
from ontology.safe_yaml import load_yaml

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE_REGISTRY = PACKAGE_DIR / "connectors.yaml"
KINDS = ("sql", "file", "rest", "tryton", "mqtt")


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

    def __init__(self, configs: Mapping[str, ConnectorConfig], ontology: Ontology,
                 variables: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        self.configs = dict(configs)
        self.ontology = ontology
        self.variables = dict(variables)
        self.secrets = dict(secrets)

    @classmethod
    def load(cls, ontology: Ontology, *, data_dir: Path | None = None, extra: Path | None = None,
             secrets: Mapping[str, str] | None = None) -> "ConnectorRegistry":
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

    def connector(self, name: str) -> Connector:
        """A runnable connector (sources open lazily, per entity)."""
        config = self.config(name)
        mapping = self.mapping(name)
        options = _fill(dict(config.options), self.variables, self.secrets, f"{config.defined_in}: {name}")
        factory = _SourceFactory(config.kind, options, name)
        return Connector(name, mapping, factory, config.description, factory.close)


_CONNECTOR_OPTIONS: dict[str, tuple[str, ...]] = {  # what each kind of source cannot open without
    "sql": ("url",), "rest": ("base_url",), "tryton": ("url", "database", "username", "password"),
}
_ENTITY_OPTIONS: dict[str, set[str]] = {  # an entity's `source:` options, per kind of source
    "sql": {"table", "query", "schema", "columns", "page_size", "related_watermarks"},
    "file": {"path", "format", "sheet", "dtype"},
    "rest": {"endpoint", "records_path", "pagination", "page_size", "page_param", "size_param", "offset_param",
             "limit_param", "cursor_param", "cursor_path", "since_param", "params", "timeout", "max_pages"},
    "tryton": {"model", "fields", "domain", "page_size", "overlap_seconds"},
    "mqtt": {"topic", "time_field", "batch_size"},
}


class _SourceFactory:
    """Opens the Source of one entity of a connector from the connector's and the entity's options."""

    def __init__(self, kind: str, options: Mapping[str, Any], connector: str) -> None:
        self.kind = kind
        self.options = options
        self.connector = connector
        self._tryton: Any = None

    def close(self) -> None:
        """Log out of a shared Tryton session, if one was opened."""
        if self._tryton is not None:
            self._tryton.close()
            self._tryton = None

    def __call__(self, entity: EntityMapping) -> Source:
        opts = dict(entity.source)
        where = f"connector {self.connector}, entity {entity.name}"
        missing = [name for name in _CONNECTOR_OPTIONS.get(self.kind, ()) if name not in self.options]
        if missing:
            raise RegistryError(f"connector {self.connector}: a {self.kind} source needs {', '.join(missing)}")
        unknown = sorted(set(opts) - _ENTITY_OPTIONS.get(self.kind, set()))
        if unknown:  # a typo must not quietly read another table or endpoint
            raise RegistryError(f"{where}: unknown source option(s) {', '.join(unknown)}; a {self.kind} entity takes "
                                f"{', '.join(sorted(_ENTITY_OPTIONS.get(self.kind, set()))) or 'none'}")
        if self.kind == "sql":
            return SqlSource(self.options["url"], table=opts.get("table", None if "query" in opts else entity.name),
                             query=opts.get("query"), key=entity.key or ("id",), watermark=entity.watermark,
                             schema=opts.get("schema"), columns=opts.get("columns"),
                             related_watermarks=opts.get("related_watermarks") or (),
                             page_size=int(opts.get("page_size", self.options.get("page_size", 5_000))),
                             name=f"{self.connector}:{entity.name}")
        if self.kind == "file":
            base = Path(self.options.get("directory", "."))
            path = Path(opts.get("path", entity.name))
            dtype = opts.get("dtype")
            if dtype is not None and not (isinstance(dtype, dict) and all(
                    isinstance(k, str) and isinstance(v, str) for k, v in dtype.items())):
                raise RegistryError(f"{where}: source.dtype must map column names to type names, "
                                    f"e.g. {{zip: string}}; got {dtype!r}")
            return FileSource(path if path.is_absolute() else base / path, key=entity.key or ("id",),
                              watermark=entity.watermark, format=opts.get("format"), sheet=opts.get("sheet"),
                              name=f"{self.connector}:{entity.name}", dtype=dtype)
        if self.kind == "rest":
            extra = {k: v for k, v in opts.items() if k not in ("endpoint",)}
            return RestSource(self.options["base_url"], opts.get("endpoint", f"/{entity.name}"),
                              key=entity.key or ("id",), watermark=entity.watermark,
                              headers=self.options.get("headers"), name=f"{self.connector}:{entity.name}", **extra)
        if self.kind == "tryton":
            from connectors.tryton import TrytonClient, TrytonSource

            if self._tryton is None:
                self._tryton = TrytonClient(self.options["url"], self.options["database"], self.options["username"],
                                            self.options["password"])
            fields = opts.get("fields")
            if not fields or "model" not in opts:
                raise RegistryError(f"{where}: a Tryton entity needs source.model and source.fields")
            return TrytonSource(self._tryton, opts["model"], fields, entity.watermark or "write_date",
                                domain=opts.get("domain"), page_size=int(opts.get("page_size", 500)),
                                overlap=dt.timedelta(seconds=float(opts.get("overlap_seconds", 1))),
                                name=f"{self.connector}:{entity.name}")
        if self.kind == "mqtt":
            return MqttSource(self.options.get("host", "127.0.0.1"), int(self.options.get("port", 1883)),
                              topic=opts.get("topic", "#"),
                              client_id=str(self.options.get("client_id", f"twin-{self.connector}-{entity.name}")),
                              time_field=opts.get("time_field", "ts"), batch_size=int(opts.get("batch_size", 500)),
                              duration=float(self.options.get("duration", 30)),
                              idle_timeout=float(self.options.get("idle_timeout", 1.0)),
                              name=f"{self.connector}:{entity.name}")
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
        try:
            schedule = parse_schedule(body.get("schedule"), kind, f"{path}: connector {name!r}")
        except ScheduleError as exc:
            raise RegistryError(str(exc)) from None
        configs[str(name)] = ConnectorConfig(str(name), kind, options, mapping, str(body.get("description", "")), path,
                                             schedule)
    return configs
