"""Locally issued development tokens: a signing key kept in the data directory (mode 0600) and `issue_token`."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, OKPKey, RSAKey

from governance.errors import GovernanceError, KeyMaterialError
from governance.identity import OidcVerifier
from governance.key_files import read_private_file, write_private_file
from governance.roles import ROLE_NAMES

LOCAL_ISSUER = "urn:enterprise-twin:local"
DEFAULT_AUDIENCE = "enterprise-twin"
KEY_FILE_NAME = "local-signing-key.jwk.json"

_GENERATORS: dict[str, Callable[[], ECKey | RSAKey | OKPKey]] = {
    "ES256": lambda: ECKey.generate_key("P-256", auto_kid=True),
    "RS256": lambda: RSAKey.generate_key(2048, auto_kid=True),
    "Ed25519": lambda: OKPKey.generate_key("Ed25519", auto_kid=True),
}
_KEY_TYPES: dict[str, type[ECKey] | type[RSAKey] | type[OKPKey]] = {"EC": ECKey, "RSA": RSAKey, "OKP": OKPKey}


class LocalIssuer:
    """Issues development tokens signed by a key created on first use in `data_dir/keys/` and trusted locally."""

    def __init__(
        self,
        data_dir: Path | str,
        algorithm: str = "ES256",
        issuer: str = LOCAL_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        known_roles: Collection[str] = ROLE_NAMES,
    ) -> None:
        if algorithm not in _GENERATORS:
            raise GovernanceError(
                f"local signing algorithm {algorithm!r} is not supported; use one of {', '.join(_GENERATORS)}"
            )
        self.key_path = Path(data_dir) / "keys" / KEY_FILE_NAME
        self.issuer = issuer
        self.audience = audience
        self.known_roles = frozenset(known_roles)
        self._requested_algorithm = algorithm
        self._key: Key | None = None
        self._algorithm: str | None = None

    def __repr__(self) -> str:
        return f"LocalIssuer(key_path={str(self.key_path)!r}, issuer={self.issuer!r})"

    @property
    def algorithm(self) -> str:
        """The JWS algorithm of the local key (that of an existing key file wins over the requested one)."""
        self._load()
        assert self._algorithm is not None
        return self._algorithm

    def _load(self) -> Key:
        """The private key, created (mode 0600) on first use; never logged."""
        if self._key is not None:
            return self._key
        if not self.key_path.exists():
            fresh = _GENERATORS[self._requested_algorithm]()
            document = {"alg": self._requested_algorithm, "key": fresh.as_dict(private=True)}
            write_private_file(self.key_path, json.dumps(document).encode("utf-8"))
        raw = read_private_file(self.key_path)
        try:
            document = json.loads(raw)
            algorithm = document["alg"]
            key = _KEY_TYPES[document["key"]["kty"]].import_key(document["key"])
        except (ValueError, KeyError, TypeError, JoseError):
            raise KeyMaterialError(f"key file {self.key_path} is not a valid local signing key") from None
        if algorithm not in _GENERATORS or not key.is_private:
            raise KeyMaterialError(f"key file {self.key_path} does not hold a private {algorithm!r} key")
        key.ensure_kid()
        self._key, self._algorithm = key, algorithm
        return key

    def public_keys(self) -> KeySet:
        """The public half of the local key as a key set (what the server trusts)."""
        private = self._load()
        public = type(private).import_key(private.as_dict(private=False))
        return KeySet([public])

    def jwks(self) -> dict[str, Any]:
        """The public JWKS document of the local key."""
        return dict(self.public_keys().as_dict(private=False))

    def issue_token(
        self,
        roles: str | Collection[str],
        sub: str = "developer",
        org_unit: str | None = None,
        ttl: timedelta | int = timedelta(hours=8),
        *,
        audience: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed JWT for `sub` holding `roles` (and `org_unit`), valid for `ttl` (seconds or timedelta)."""
        role_set = {roles} if isinstance(roles, str) else set(roles)
        if not role_set:
            raise GovernanceError("a token needs at least one role")
        unknown = sorted(role_set - self.known_roles)
        if unknown:
            raise GovernanceError(f"unknown role(s) {unknown}; known roles are {', '.join(sorted(self.known_roles))}")
        seconds = int(ttl.total_seconds()) if isinstance(ttl, timedelta) else int(ttl)
        if seconds <= 0:
            raise GovernanceError(f"token ttl must be positive, got {seconds} s")
        key = self._load()
        now = int(time.time())
        claims: dict[str, Any] = dict(attributes or {})
        claims.update(
            iss=self.issuer,
            aud=audience or self.audience,
            sub=sub,
            roles=sorted(role_set),
            iat=now,
            nbf=now,
            exp=now + seconds,
            jti=str(uuid.uuid4()),
        )
        if org_unit is not None:
            claims["org_unit"] = org_unit
        return jwt.encode({"alg": self.algorithm, "kid": key.kid}, claims, key, algorithms=[self.algorithm])

    def verifier(self, audience: str | None = None, **options: Any) -> OidcVerifier:
        """An `OidcVerifier` that trusts this local key (local JWKS, no HTTP)."""
        return OidcVerifier(
            self.issuer, audience or self.audience, algorithms=(self.algorithm,), keys=self.public_keys(), **options
        )


def issue_token(
    data_dir: Path | str,
    roles: str | Collection[str],
    sub: str = "developer",
    org_unit: str | None = None,
    ttl: timedelta | int = timedelta(hours=8),
) -> str:
    """A development token signed by the local key in `data_dir` (the `twin token` command)."""
    return LocalIssuer(data_dir).issue_token(roles, sub=sub, org_unit=org_unit, ttl=ttl)
