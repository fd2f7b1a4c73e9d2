"""The per-deployment digest key: HMAC-SHA-256 instead of plain SHA-256 for digests that callers may see.

A plain digest of a birth date or an e-mail address is recovered by hashing candidates until one matches; keyed with
a secret that never leaves the data directory, a digest still proves a value to whoever holds the key and tells
nobody else anything.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from governance.errors import KeyMaterialError
from governance.key_files import read_private_file, write_private_file

DIGEST_KEY_FILE = Path("keys") / "digest.key"


def deployment_digest_key(data_dir: Path) -> bytes:
    """The deployment's 32-byte digest key in DATA_DIR/keys/digest.key (mode 0600), created on first use."""
    path = data_dir / DIGEST_KEY_FILE
    if not path.exists():
        write_private_file(path, secrets.token_bytes(32))
    key = read_private_file(path)
    if len(key) < 32:
        raise KeyMaterialError(f"digest key file {path} holds {len(key)} bytes; 32 are needed")
    return key


def keyed_text_digest(text: str, key: bytes | None) -> str:
    """Hex HMAC-SHA-256 of `text` under `key` (plain SHA-256 when there is no deployment key, as in library use)."""
    data = text.encode("utf-8", "surrogatepass")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def owner_only_data_dir(data_dir: Path) -> None:
    """Make the data directory owner-only (0700) and every file created from now on by this process and the servers
    it starts owner-only (umask 077), whatever the umask was; files already there lose group/other access."""
    os.umask(0o077)
    if not data_dir.exists():
        return  # whoever creates it does so under the umask: 0700
    for path in (data_dir, *data_dir.rglob("*")):
        if path.is_symlink() or path.is_socket():
            continue
        mode = path.stat().st_mode & 0o7777
        if mode & 0o077:
            path.chmod(mode & 0o700)
