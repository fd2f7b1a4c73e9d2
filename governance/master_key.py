"""The master key that wraps every subject's data key, behind a small provider interface.

A provider gives the 32-byte master key; the ones here read it from a file (base64, mode 0600, created on first use
in a fresh key directory) or from an environment variable (base64). A KMS or Vault provider implements the same
protocol: `name` for errors and `key()` for the bytes (it may also unwrap remotely later; the key ring only needs
the bytes today). The key is never logged and never part of an error message.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from pathlib import Path
from typing import Protocol

from governance.errors import KeyMaterialError
from governance.key_files import read_private_file, write_private_file

MASTER_KEY_BYTES = 32
MASTER_KEY_FILE = "master.key"


class MasterKeyProvider(Protocol):
    """Where the master key comes from."""

    @property
    def name(self) -> str:
        """Where the key comes from, for messages (never the key)."""
        ...

    def key(self) -> bytes:
        """The 32-byte master key; KeyMaterialError when it is missing or malformed."""
        ...


def new_master_key_text() -> str:
    """A fresh random master key as the base64 text a key file or environment variable holds."""
    return base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode("ascii")


def decode_master_key(text: str | bytes, where: str) -> bytes:
    """The 32 key bytes of base64 `text`; KeyMaterialError naming `where` when it is not a 32-byte base64 key."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyMaterialError(f"the master key in {where} is not base64 text") from None
    if len(key) != MASTER_KEY_BYTES:
        raise KeyMaterialError(f"the master key in {where} holds {len(key)} bytes; {MASTER_KEY_BYTES} are needed")
    return key


class FileMasterKey:
    """The master key in a private file (base64 text, mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def name(self) -> str:
        """The file, for messages."""
        return f"file {self.path}"

    def exists(self) -> bool:
        """Whether the key file is there."""
        return self.path.exists()

    def create(self) -> None:
        """Write a fresh random key to the file (mode 0600) unless one is there already."""
        write_private_file(self.path, new_master_key_text().encode("ascii") + b"\n")

    def key(self) -> bytes:
        """The key the file holds."""
        if not self.path.exists():
            raise KeyMaterialError(f"the master key file {self.path} is missing")
        return decode_master_key(read_private_file(self.path), self.name)


class EnvMasterKey:
    """The master key in an environment variable (base64 text)."""

    def __init__(self, variable: str, value: str) -> None:
        self.variable = variable
        self.value = value

    @property
    def name(self) -> str:
        """The variable, for messages."""
        return f"environment variable {self.variable}"

    def key(self) -> bytes:
        """The key the variable holds."""
        return decode_master_key(self.value, self.name)
