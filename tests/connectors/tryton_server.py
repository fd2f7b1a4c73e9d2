"""A real trytond for tests: a cached template database on SQLite, copied per run, served on a free local port."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

# The Tryton modules the twin reads: companies and employees with supervisors (company), parties, products,
# suppliers and purchases, sale opportunities (CRM), production and work centres, projects and timesheets.
TRYTON_MODULES: tuple[str, ...] = (
    "company",
    "party",
    "product",
    "purchase",
    "sale_opportunity",
    "production",
    "production_work",
    "project",
    "timesheet",
)
# What a plain Tryton for sales and projects has (no purchase, no production): the bundled mapping must still sync
# it, skipping its optional purchase and production entities.
PLAIN_MODULES: tuple[str, ...] = ("company", "party", "product", "sale_opportunity", "project", "timesheet")
DATABASE_NAME = "twin"
ADMIN_LOGIN = "admin"
ADMIN_EMAIL = "admin@twin.example"


class TrytonServerError(RuntimeError):
    """trytond is installed but a database could not be built or the server did not come up."""


@dataclass(frozen=True)
class TemplateDatabase:
    """A pre-built SQLite database with the modules activated, and the admin password it was built with."""

    path: Path
    admin_password: str
    build_seconds: float | None  # None when it came from the cache


@dataclass(frozen=True)
class TrytonServer:
    """A running trytond: where to reach it and how to log in."""

    url: str
    database: str
    username: str
    password: str
    log_path: Path


def missing_tryton(modules: tuple[str, ...] = TRYTON_MODULES) -> str | None:
    """Why trytond and its modules cannot be used here, or None when they are all installed."""
    try:
        importlib.metadata.version("trytond")
    except importlib.metadata.PackageNotFoundError:
        return "trytond is not installed (the packages to install are listed in connectors/tryton.py)"
    absent = []
    for module in modules:
        try:
            importlib.metadata.version(f"trytond_{module}")
        except importlib.metadata.PackageNotFoundError:
            absent.append(f"trytond-{module.replace('_', '-')}")
    if absent:
        return f"Tryton modules not installed: {', '.join(absent)}"
    return None


def _script(name: str) -> str:
    """The console script of the running interpreter's environment (falls back to PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise TrytonServerError(f"the {name} command is not installed next to {sys.executable} nor on PATH")
    return found


def _template_key(modules: tuple[str, ...]) -> str:
    """A cache key that changes with the module list or any installed trytond package version."""
    versions = sorted(
        (dist.metadata["Name"].lower().replace("-", "_"), dist.version)
        for dist in importlib.metadata.distributions()
        if (dist.metadata["Name"] or "").lower().replace("-", "_").startswith("trytond")
    )
    blob = json.dumps({"modules": sorted(modules), "versions": versions}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """Where template databases are kept between test sessions (the user's cache directory)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "enterprise-twin" / "tryton"


def _write_config(path: Path, database_dir: Path, port: int | None = None) -> None:
    lines = ["[database]", "uri = sqlite://", f"path = {database_dir}", "list = False"]
    if port is not None:
        lines += ["", "[web]", f"listen = 127.0.0.1:{port}"]
    path.write_text("\n".join(lines) + "\n")


def _checkpoint(database: Path) -> None:
    """Fold SQLite's write-ahead log into the main file so that copying that one file is a full copy."""
    connection = sqlite3.connect(database)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("PRAGMA journal_mode = DELETE")
    finally:
        connection.close()


def build_database(directory: Path, modules: tuple[str, ...] = TRYTON_MODULES) -> str:
    """Create and initialise `DATABASE_NAME`.sqlite in `directory` with `modules` activated; returns the password."""
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(16)
    config = directory / "trytond-admin.conf"
    _write_config(config, directory)
    passfile = directory / "admin.pass"
    passfile.write_text(password + "\n")
    passfile.chmod(0o600)
    (directory / f"{DATABASE_NAME}.sqlite").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYTOND")}
    env["TRYTONPASSFILE"] = str(passfile)
    command = [
        _script("trytond-admin"),
        "-c",
        str(config),
        "-d",
        DATABASE_NAME,
        "--all",
        "--activate-dependencies",
        "-u",
        *modules,
        "--email",
        ADMIN_EMAIL,
    ]
    log = directory / "trytond-admin.log"
    with log.open("wb") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=900)
    passfile.unlink()
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise TrytonServerError(f"trytond-admin failed with exit code {result.returncode}:\n{tail}")
    _checkpoint(directory / f"{DATABASE_NAME}.sqlite")
    return password


def template_database(modules: tuple[str, ...] = TRYTON_MODULES, cache_dir: Path | None = None) -> TemplateDatabase:
    """The cached template for `modules` and the installed versions, building it first if it is missing."""
    cache = cache_dir or default_cache_dir()
    entry = cache / _template_key(modules)
    database = entry / f"{DATABASE_NAME}.sqlite"
    secret = entry / "admin.password"
    if database.exists() and secret.exists():
        return TemplateDatabase(database, secret.read_text().strip(), None)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="building-", dir=cache))
    try:
        started = time.perf_counter()
        password = build_database(staging, modules)
        seconds = time.perf_counter() - started
        secret_staged = staging / "admin.password"
        secret_staged.write_text(password + "\n")
        secret_staged.chmod(0o600)
        try:
            staging.rename(entry)  # atomic: a concurrent builder that lost the race keeps the winner's copy
        except OSError:
            if not (database.exists() and secret.exists()):
                raise
        return TemplateDatabase(database, secret.read_text().strip(), seconds)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_answering(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Poll common.server.version until trytond answers; fail with its log if it dies or stays silent."""
    deadline = time.monotonic() + timeout
    body = {"id": 0, "method": "common.server.version", "params": []}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise TrytonServerError(f"trytond exited with code {process.returncode} while starting:\n{tail}")
        try:
            if httpx.post(f"{url}/rpc/", json=body, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TrytonServerError(f"trytond did not answer on {url} within {timeout:.0f} s; log: {log}")


@contextmanager
def running_server(workdir: Path, template: TemplateDatabase, startup_timeout: float = 60.0) -> Iterator[TrytonServer]:
    """Copy the template into `workdir`, serve it with trytond on 127.0.0.1, and stop the server on exit."""
    database_dir = workdir / "db"
    database_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template.path, database_dir / f"{DATABASE_NAME}.sqlite")
    port = _free_port()
    config = workdir / "trytond.conf"
    _write_config(config, database_dir, port)
    log = workdir / "trytond.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYTOND")}
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [_script("trytond"), "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    try:
        _wait_until_answering(url, process, log, startup_timeout)
        yield TrytonServer(url, DATABASE_NAME, ADMIN_LOGIN, template.admin_password, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
