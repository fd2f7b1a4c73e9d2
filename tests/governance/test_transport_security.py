"""Issue 19 items 2-3: `twin serve --tls-cert/--tls-key` serves HTTPS (a self-signed certificate made here) with HSTS;
a wrong master key stops `twin serve` at start with the problem named; TLS options of the PostgreSQL store and the
FalkorDB server reach their drivers."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from governance.master_key import FileMasterKey, new_master_key_text
from governance.subject_keys import SubjectKeyRing
from graph.backends import open_backend
from graph.embedded import start_tcp_server
from graph.errors import GraphUnavailable
from graph.relational import relational_engine

REPO = Path(__file__).resolve().parents[2]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost/127.0.0.1 and its key, written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _twin(args: list[str], data_dir: Path, **env: str) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TWIN_DATA_DIR": str(data_dir),
        "TWIN_RUNTIME_ENABLED": "false",
        "TWIN_GRAPH_FSYNC": "no",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_serve_speaks_https_with_hsts_using_a_certificate_made_here(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port = _free_port()
    server = _twin(
        ["serve", "--port", str(port), "--log-level", "warning", "--tls-cert", str(cert), "--tls-key", str(key)],
        tmp_path / "data",
    )
    trusted = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "twin serve did not become ready"
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/ready", timeout=3, context=trusted) as ready:
                    assert ready.status == 200
                    assert ready.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
                    break
            except (urllib.error.URLError, ConnectionError, ssl.SSLError):
                time.sleep(0.3)
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):  # not a trusted certificate
            urllib.request.urlopen(f"https://127.0.0.1:{port}/ready", timeout=3, context=ssl.create_default_context())
        with pytest.raises((urllib.error.URLError, ConnectionError, http_error())):  # plain HTTP is not served
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=3)
    finally:
        server.terminate()
        server.wait(timeout=60)
    from graph.embedded import stop_embedded

    stop_embedded(tmp_path / "data" / "graph")


def http_error() -> type[Exception]:
    """What http.client raises for an answer that is not HTTP (a TLS alert)."""
    from http.client import HTTPException

    return HTTPException


def test_serve_refuses_half_a_tls_configuration(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    server = _twin(["serve", "--tls-cert", str(cert)], tmp_path / "data")
    _, err = server.communicate(timeout=120)
    assert server.returncode == 2
    assert "--tls-cert and --tls-key" in err.decode()


def test_serve_stops_at_start_on_a_wrong_master_key(tmp_path: Path) -> None:
    keys = tmp_path / "data" / "keys"
    SubjectKeyRing(f"sqlite:///{keys / 'subject_keys.db'}", FileMasterKey(keys / "master.key"))
    wrong = new_master_key_text()
    server = _twin(["serve", "--port", str(_free_port())], tmp_path / "data", TWIN_MASTER_KEY=wrong)
    out, err = server.communicate(timeout=120)
    assert server.returncode == 1
    message = " ".join(err.decode().split())
    assert "TWIN_MASTER_KEY is not the one the subject key ring" in message
    assert wrong not in (out + err).decode() and wrong[:12] not in (out + err).decode()
    truncated = base64.b64encode(b"x" * 8).decode()
    server = _twin(["keys", "status"], tmp_path / "data", TWIN_MASTER_KEY=truncated)
    out, err = server.communicate(timeout=120)
    assert server.returncode == 1 and "holds 8 bytes; 32 are needed" in " ".join((out + err).decode().split())


def test_postgresql_sslmode_reaches_the_driver(postgres_url: str) -> None:
    with relational_engine(f"{postgres_url}?sslmode=disable").connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    requiring = relational_engine(f"{postgres_url}?sslmode=require")
    with relational_engine(postgres_url).connect() as conn:
        server_ssl = conn.execute(text("SHOW ssl")).scalar()
    if server_ssl == "on":
        with requiring.connect() as conn:
            assert conn.execute(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).scalar() is True
    else:  # the local test server has no certificate: requiring TLS must fail, not fall back to clear text
        with pytest.raises(OperationalError, match="SSL was required"), requiring.connect():
            pass
    requiring.dispose()


class TlsProxy:
    """A TLS terminator in front of a clear-text FalkorDB server (the bundled redis-server has no TLS built in)."""

    def __init__(self, cert: Path, key: Path, upstream_port: int) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.handshakes = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                plain, _ = self.listener.accept()
            except OSError:
                return
            try:
                client = self.context.wrap_socket(plain, server_side=True)
            except (ssl.SSLError, OSError):
                plain.close()
                continue
            self.handshakes += 1
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.close()

    def close(self) -> None:
        """Stop accepting."""
        self.listener.close()


def test_a_rediss_graph_url_speaks_tls_and_verifies_the_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    with start_tcp_server(tmp_path / "graph") as server:
        proxy = TlsProxy(cert, key, server.port)
        try:
            backend = open_backend(f"rediss://localhost:{proxy.port}?ca={cert}", graph_name="tls")
            try:
                backend.write("CREATE (:Probe {uid: 'p1'})")
                assert backend.read("MATCH (n:Probe) RETURN n.uid") == [["p1"]]
            finally:
                backend.close()
            assert proxy.handshakes >= 1  # the client spoke TLS to the proxy
            with pytest.raises(GraphUnavailable, match="not reachable"):  # a certificate it does not trust
                open_backend(f"rediss://localhost:{proxy.port}", graph_name="tls")
        finally:
            proxy.close()
