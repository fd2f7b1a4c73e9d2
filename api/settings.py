"""The one place configuration is read: environment variables with the TWIN_ prefix (or a .env file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Enterprise Twin settings; every backend is chosen by URL."""

    model_config = SettingsConfigDict(env_prefix="TWIN_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path(".twin"), description="Where embedded databases, keys and artefacts live.")
    graph_url: str | None = Field(
        None,
        description="Twin graph backend: falkordb+embedded:///PATH (default: DATA_DIR/graph), "
        "falkordb://host:port, rediss://host:port[?ca=PATH] (FalkorDB over TLS), neo4j://, neo4j+s://, bolt://.",
    )
    graph_name: str = Field("twin", description="Graph (FalkorDB) or database (Neo4j) name.")
    graph_user: str | None = Field(None, description="User for Neo4j or a password-protected FalkorDB server.")
    graph_password: SecretStr | None = Field(None, description="Password for the graph backend.")
    graph_fsync: Literal["always", "everysec", "no"] = Field(
        "always", description="Embedded FalkorDB append-only fsync policy (always = no acknowledged write lost)."
    )
    database_url: str | None = Field(
        None,
        description="Relational store: sqlite:///PATH (default: DATA_DIR/twin.db) or postgresql://... (TLS: "
        "?sslmode=verify-full&sslrootcert=PATH, passed to libpq as given)",
    )
    key_dir: Path | None = Field(
        None,
        description="Where the master key file and the subject key ring live (default: DATA_DIR/keys). Keep it out "
        "of data backups: a backup of the key ring brings erased subjects' keys back.",
    )
    master_key: SecretStr | None = Field(
        None,
        description="The master key (base64 of 32 bytes) wrapping every subject's data key; unset = the file "
        "KEY_DIR/master.key, created (0600) on first use.",
    )
    subject_keys_url: str | None = Field(
        None,
        description="The subject key ring's relational store: sqlite:///PATH (default: KEY_DIR/subject_keys.db) or a "
        "postgresql:// database of its own (not the one dumped with the data).",
    )
    tls_cert: Path | None = Field(None, description="PEM certificate (chain) `twin serve` presents; with tls_key.")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert; `twin serve` then speaks HTTPS only.")
    hsts_max_age: int = Field(
        31_536_000, ge=0, description="Strict-Transport-Security max-age (seconds) sent when TLS is on (0: none)."
    )
    ontology_paths: list[Path] = Field(
        default_factory=list, description="Extra OWL/DTDL files or folders merged into the core ontology."
    )
    policy_path: Path | None = Field(None, description="Policy YAML; default: the bundled governance policy.")
    oidc_issuer: str | None = Field(None, description="OIDC issuer URL; unset = trust only locally issued tokens.")
    oidc_audience: str = Field("enterprise-twin", description="Expected `aud` of bearer tokens.")
    oidc_jwks_url: str | None = Field(None, description="JWKS URL when the issuer has no discovery document.")
    oidc_role_claims: list[str] = Field(
        default_factory=lambda: ["roles", "realm_access.roles"],
        description="Claims (dotted paths) whose values are roles; `groups` only when listed here.",
    )
    oidc_console_client_id: str | None = Field(
        None,
        description="Client id of the console at the OIDC issuer (a public client: authorization code with PKCE); "
        "with `oidc_issuer` set, the console offers 'Sign in with your identity provider'. The console sends the "
        "access token when the provider issues JWT access tokens, else the ID token (then set `oidc_audience` to "
        "this client id).",
    )
    oidc_console_scope: str = Field("openid profile email", description="Scopes the console's sign-on asks for.")
    api_host: str = Field("127.0.0.1", description="Address `twin serve` binds to.")
    api_port: int = Field(8000, description="Port `twin serve` listens on.")
    api_graphiql: bool = Field(True, description="Serve the GraphiQL IDE at GET /graphql (development).")
    api_query_timeout_ms: int = Field(10_000, description="Time limit of one graph query sent by the API (ms).")
    api_max_depth: int = Field(15, description="Deepest GraphQL selection the API accepts.")
    api_max_tokens: int = Field(5_000, description="Most tokens a GraphQL document may have.")
    api_max_aliases: int = Field(30, description="Most aliases a GraphQL document may use.")
    api_max_filter_depth: int = Field(5, ge=1, description="Deepest nesting of AND/OR/NOT/...Some in one `where`.")
    api_max_filter_conditions: int = Field(200, ge=1, description="Most conditions one `where` may hold.")
    api_reads_per_caller: int = Field(
        4,
        ge=1,
        description="Graph reads one caller may have running at once in one API process (a read past its "
        "time limit keeps its place until the graph server is done with it).",
    )
    graph_threads: int = Field(
        8, ge=1, le=64, description="Query threads of the embedded FalkorDB server (set when it starts)."
    )
    api_workers: int = Field(1, description="Worker processes of `twin serve` (the app keeps no state of its own).")
    runtime_enabled: bool = Field(
        True, description="Run scheduled connector syncs inside `twin serve` and `twin demo` (`twin run` always does)."
    )
    demo_activity_seconds: float = Field(
        3.0,
        ge=0.1,
        description="`twin demo` (serving): one business change written into the sample's HR or ERP "
        "database every this many seconds (`--still` turns it off).",
    )
    demo_sync_seconds: float = Field(
        5.0,
        ge=1.0,
        description="`twin demo` (serving): the sample connectors are synced every this many seconds "
        "(instead of their connectors.yaml schedule), so a change shows in the twin within seconds.",
    )
    event_source: str = Field(
        "urn:enterprise-twin:twin", description="CloudEvents `source` of the twin's change events on every route."
    )
    runtime_lease_seconds: float = Field(
        30.0, ge=3.0, description="Connector lease period: a dead runtime's connectors move to another within it."
    )
    api_max_body_bytes: int = Field(1_048_576, ge=1, description="Largest request body the API reads (413 beyond).")
    api_max_token_lifetime_s: int = Field(
        86_400, ge=1, description="Longest lifetime (exp - iat) of a bearer token the API accepts, in seconds."
    )
    sync_max_delete_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Most of an entity's records one sync run may delete (a share; more stops the "
        "run before it deletes, as does a full run reading 0 rows; `twin connect run --allow-deletions N%` overrides).",
    )
    sync_delete_floor: int = Field(
        10, ge=0, description="Deletions a sync run may always make per entity, whatever their share (small sources)."
    )
    sync_max_value_bytes: int = Field(
        1_000_000, gt=0, description="Largest source value a sync takes (bytes; a larger one quarantines its row)."
    )
    sync_max_row_bytes: int = Field(
        8_000_000,
        gt=0,
        description="Largest source row a sync takes (bytes, all its values; a larger one is quarantined).",
    )
    sync_max_file_bytes: int = Field(
        2_000_000_000,
        gt=0,
        description="Largest source file a sync reads (bytes; a larger one fails the run before it is read).",
    )
    sync_workers: int = Field(
        0,
        ge=0,
        description="Worker processes that read, screen and map a large source's key ranges beside a sync run "
        "(SQL sources with one integer key; 0: always in the run's own process). Worth it where cores are spare: "
        "on a busy 2-core machine the workers take CPU the run's writer needs (tests/benchmarks/sync.py).",
    )
    sync_parallel_min_rows: int = Field(
        10_000,
        ge=1,
        description="Records a sync read must expect (a full read: the source's count; an incremental one: the "
        "changed records, asked once its first page comes back full) before it goes to the worker processes; "
        "smaller reads stay in the run's process.",
    )

    @field_validator("graph_url")
    @classmethod
    def _known_graph_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        schemes = (
            "falkordb+embedded://",
            "falkordb://",
            "falkordbs://",
            "rediss://",
            "neo4j://",
            "neo4j+s://",
            "neo4j+ssc://",
            "bolt://",
            "bolt+s://",
        )
        if not value.startswith(schemes):
            raise ValueError(f"graph_url {value!r} must start with one of {', '.join(schemes)}")
        return value

    @property
    def resolved_graph_url(self) -> str:
        """The graph URL, defaulting to an embedded FalkorDB inside the data directory."""
        return self.graph_url or f"falkordb+embedded://{(self.data_dir / 'graph').resolve()}"

    @property
    def resolved_key_dir(self) -> Path:
        """The key directory, defaulting to DATA_DIR/keys."""
        return self.key_dir or self.data_dir / "keys"

    @property
    def resolved_subject_keys_url(self) -> str:
        """The subject key ring's URL, defaulting to SQLite in the key directory."""
        return self.subject_keys_url or f"sqlite:///{(self.resolved_key_dir / 'subject_keys.db').resolve()}"

    @property
    def resolved_database_url(self) -> str:
        """The relational store URL, defaulting to SQLite inside the data directory."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'twin.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
