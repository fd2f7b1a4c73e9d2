"""Private key files: created once with mode 0600, refused when readable by others, never logged."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from governance.errors import KeyMaterialError


def write_private_file(path: Path, content: bytes) -> bool:
    """Create `path` (mode 0600) with `content` unless it exists; True when this call created it (race-safe)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp creates with mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp_name, path)  # atomic: fails if another process created the file first
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp_name)


def read_private_file(path: Path) -> bytes:
    """The bytes of a private key file, refusing files that group or others may read or write."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyMaterialError(f"key file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyMaterialError(
            f"key file {path} is accessible to group/others (mode {stat.S_IMODE(mode):04o}); run chmod 600 on it"
        )
    try:
        return path.read_bytes()
    except OSError as error:
        raise KeyMaterialError(f"key file {path} cannot be read: {error.strerror}") from None


def ed25519_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key stored (PEM, mode 0600) at `path`, created on first use; never logged."""
    if not path.exists():
        fresh = Ed25519PrivateKey.generate()
        pem = fresh.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        write_private_file(path, pem)
    try:
        key = load_pem_private_key(read_private_file(path), password=None)
    except (ValueError, TypeError):
        raise KeyMaterialError(f"key file {path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyMaterialError(f"key file {path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key
