"""Who is calling: bearer JWTs from an OIDC issuer (discovery + JWKS, key rotation) verified into a `Subject`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import Key, KeySet

from governance.errors import AuthenticationError, GovernanceError, IdentityProviderUnavailable

log = logging.getLogger(__name__)

#: Asymmetric JWS algorithms we accept, with the JWK key type each one needs. Symmetric (HS*) and `none`
#: are absent on purpose: a verifier that holds only public keys must never accept a MAC or an unsigned token.
ASYMMETRIC_ALGORITHMS: Mapping[str, str] = MappingProxyType(
    {
        "RS256": "RSA",
        "RS384": "RSA",
        "RS512": "RSA",
        "PS256": "RSA",
        "PS384": "RSA",
        "PS512": "RSA",
        "ES256": "EC",
        "ES384": "EC",
        "ES512": "EC",
        "EdDSA": "OKP",
        "Ed25519": "OKP",
    }
)
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


@dataclass(frozen=True)
class Subject:
    """An authenticated caller: subject id, roles, org unit and further attributes taken from verified claims."""

    sub: str
    roles: frozenset[str]
    org_unit: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    token_id: str | None = None
    issuer: str | None = None

    def has_role(self, role: str) -> bool:
        """Whether the subject holds `role`."""
        return role in self.roles


def _claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The claim at a dotted path (`realm_access.roles`), or None when any step is absent."""
    value: Any = claims
    for step in path.split("."):
        if not isinstance(value, Mapping) or step not in value:
            return None
        value = value[step]
    return value


@dataclass(frozen=True)
class ClaimMapping:
    """Which claims carry roles, org unit and attributes (roles: `roles`, `groups`, Keycloak `realm_access.roles`)."""

    role_claims: tuple[str, ...] = ("roles", "groups", "realm_access.roles")
    org_unit_claim: str = "org_unit"
    attribute_claims: tuple[str, ...] = ("email", "name", "preferred_username")
    role_prefix: str = ""

    def subject(self, claims: Mapping[str, Any]) -> Subject:
        """The `Subject` described by verified `claims`."""
        roles: set[str] = set()
        for path in self.role_claims:
            value = _claim_at(claims, path)
            if isinstance(value, str):
                value = value.split()
            if isinstance(value, Sequence) and not isinstance(value, str):
                for role in value:
                    if isinstance(role, str) and role.startswith(self.role_prefix):
                        roles.add(role.removeprefix(self.role_prefix).lstrip("/"))
        org_unit = _claim_at(claims, self.org_unit_claim)
        attributes = {name: _claim_at(claims, name) for name in self.attribute_claims}
        return Subject(
            sub=str(claims["sub"]),
            roles=frozenset(roles),
            org_unit=str(org_unit) if org_unit is not None else None,
            attributes=MappingProxyType({k: v for k, v in attributes.items() if v is not None}),
            token_id=str(claims["jti"]) if claims.get("jti") is not None else None,
            issuer=str(claims["iss"]) if claims.get("iss") is not None else None,
        )


class JwksCache:
    """The issuer's signing keys, fetched over HTTP(S) (optionally via discovery) and kept for `ttl` seconds."""

    def __init__(
        self,
        issuer: str,
        jwks_url: str | None = None,
        *,
        discovery: bool = True,
        ttl: float = 300.0,
        refresh_cooldown: float = 10.0,
        timeout: float = 5.0,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if jwks_url is None and not discovery:
            raise GovernanceError(f"issuer {issuer!r}: give a jwks_url or enable discovery")
        self.issuer = issuer
        self._jwks_url = jwks_url
        self._discovery = discovery and jwks_url is None
        self._ttl = ttl
        self._cooldown = refresh_cooldown
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self.fetch_count = 0

    def keys(self) -> KeySet:
        """The cached key set, fetched again when older than the TTL."""
        with self._lock:
            if self._keys is None or self._clock() - self._fetched_at >= self._ttl:
                self._fetch(keep_stale=True)
            assert self._keys is not None
            return self._keys

    def refresh(self) -> bool:
        """Fetch the key set again (key rotation) unless it was fetched within the cooldown; True if fetched."""
        with self._lock:
            if self._clock() - self._fetched_at < self._cooldown:
                return False
            self._fetch(keep_stale=True)
            return True

    def _fetch(self, *, keep_stale: bool) -> None:
        try:
            url = self._jwks_url or self._discover()
            response = self._client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            keys = KeySet.import_key_set(response.json())
        except (httpx.HTTPError, ValueError, JoseError, KeyError, TypeError) as error:
            if keep_stale and self._keys is not None:
                log.warning(
                    "JWKS of issuer %s could not be refreshed (%s); keeping the cached keys",
                    self.issuer,
                    type(error).__name__,
                )
                self._fetched_at = self._clock()
                return
            raise IdentityProviderUnavailable(
                f"JWKS of issuer {self.issuer!r} could not be fetched: {type(error).__name__}: {error}"
            ) from None
        self._keys = keys
        self._fetched_at = self._clock()
        self.fetch_count += 1

    def _discover(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        response = self._client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        document = response.json()
        if document.get("issuer") != self.issuer:
            raise ValueError(f"discovery document at {url} names issuer {document.get('issuer')!r}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise ValueError(f"discovery document at {url} has no jwks_uri")
        self._jwks_url = jwks_uri
        return jwks_uri


class StaticKeys:
    """A fixed key set (the locally issued development key): no HTTP, no refresh."""

    def __init__(self, keys: KeySet) -> None:
        self._keys = keys

    def keys(self) -> KeySet:
        """The fixed key set."""
        return self._keys

    def refresh(self) -> bool:
        """Nothing to refresh; always False."""
        return False


class OidcVerifier:
    """Verifies bearer JWTs of one issuer and audience into a `Subject`; only asymmetric algorithms are accepted."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        discovery: bool = True,
        algorithms: Sequence[str] = ("RS256", "ES256"),
        leeway: int = 60,
        *,
        claim_mapping: ClaimMapping | None = None,
        keys: KeySet | None = None,
        jwks_ttl: float = 300.0,
        refresh_cooldown: float = 10.0,
        http_client: httpx.Client | None = None,
        required_claims: Sequence[str] = ("iss", "aud", "exp", "sub"),
    ) -> None:
        refused = [alg for alg in algorithms if alg not in ASYMMETRIC_ALGORITHMS]
        if refused:
            raise GovernanceError(
                f"algorithms {refused} are not accepted for bearer tokens; use asymmetric ones such as "
                f"{', '.join(sorted(ASYMMETRIC_ALGORITHMS))}"
            )
        if not algorithms:
            raise GovernanceError("at least one signing algorithm must be accepted")
        self.issuer = issuer
        self.audience = audience
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self.claim_mapping = claim_mapping or ClaimMapping()
        self._required = tuple(required_claims)
        self._source: JwksCache | StaticKeys = (
            StaticKeys(keys)
            if keys is not None
            else JwksCache(
                issuer,
                jwks_url,
                discovery=discovery,
                ttl=jwks_ttl,
                refresh_cooldown=refresh_cooldown,
                client=http_client,
            )
        )

    def verify(self, token: str) -> Subject:
        """The `Subject` of a valid bearer token; AuthenticationError naming the failed check otherwise."""
        if not isinstance(token, str) or not token.strip():
            raise AuthenticationError("bearer token is empty")
        token = token.strip()
        if token.count(".") != 2:
            raise AuthenticationError("bearer token is not a compact JWS (expected three dot-separated parts)")
        try:
            header = jws.extract_compact(token.encode("ascii")).headers()
        except (JoseError, ValueError, UnicodeError):
            raise AuthenticationError("bearer token header cannot be decoded") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise AuthenticationError("unsigned token (alg 'none') refused")
        if alg not in self.algorithms:
            raise AuthenticationError(
                f"token algorithm {alg!r} is not accepted (accepted: {', '.join(self.algorithms)})"
            )
        if "crit" in header:
            raise AuthenticationError("token header has critical extensions this verifier does not understand")
        key = self._key_for(header.get("kid"), alg)
        try:
            decoded = jwt.decode(token, key, algorithms=[alg])
        except BadSignatureError:
            raise AuthenticationError("token signature does not verify") from None
        except JoseError as error:
            raise AuthenticationError(f"token is malformed ({error.error})") from None
        self._check_claims(decoded.claims)
        return self.claim_mapping.subject(decoded.claims)

    def signing_key_identity(self, kid: Any, alg: str) -> str | None:
        """The thumbprint (RFC 7638) of the issuer key a token with this header's `kid` and `alg` verifies against now
        (the key set is fetched again when its TTL has passed); None when the issuer publishes no such key. A remembered
        verification holds only while this stays the thumbprint of the key that signed the token: a key rotated away,
        replaced under the same `kid`, or (for a token without `kid`) replaced as the issuer's single key ends it."""
        if alg not in self.algorithms:
            return None
        key = self._find(self._source.keys(), kid, alg)
        return key.thumbprint() if key is not None else None

    def _key_for(self, kid: Any, alg: str) -> Key:
        """The issuer key for `kid`, refreshing the JWKS once when the id is unknown (rotation)."""
        key = self._find(self._source.keys(), kid, alg)
        if key is None and self._source.refresh():
            key = self._find(self._source.keys(), kid, alg)
        if key is None:
            if kid is None:
                raise AuthenticationError(
                    f"token has no key id and the issuer publishes no single {ASYMMETRIC_ALGORITHMS[alg]} key"
                )
            raise AuthenticationError(f"signing key id {str(kid)[:64]!r} is not in the issuer's JWKS")
        required_type = ASYMMETRIC_ALGORITHMS[alg]
        if key.key_type != required_type:
            raise AuthenticationError(
                f"key {key.kid!r} is an {key.key_type} key but algorithm {alg} needs an {required_type} key"
            )
        declared = key.get("alg")
        if declared and declared != alg:
            raise AuthenticationError(f"key {key.kid!r} is published for {declared}, not {alg}")
        if key.get("use") not in (None, "sig"):
            raise AuthenticationError(f"key {key.kid!r} is not a signing key (use={key.get('use')!r})")
        curve = _EC_CURVES.get(alg)
        if curve and key.get("crv") != curve:
            raise AuthenticationError(f"key {key.kid!r} is on curve {key.get('crv')}, algorithm {alg} needs {curve}")
        return key

    @staticmethod
    def _find(keys: KeySet, kid: Any, alg: str) -> Key | None:
        if kid is None:
            candidates = [k for k in keys if k.key_type == ASYMMETRIC_ALGORITHMS[alg]]
            return candidates[0] if len(candidates) == 1 else None
        for key in keys:
            if key.kid == kid:
                return key
        return None

    @cached_property
    def _claims_registry(self) -> jwt.JWTClaimsRegistry:
        """The claim rules, which depend on configuration only (the registry reads the clock when it validates)."""
        options: dict[str, jwt.ClaimsOption] = {name: {"essential": True} for name in self._required}
        options["iss"] = {"essential": "iss" in self._required, "value": self.issuer}
        options["aud"] = {"essential": "aud" in self._required, "value": self.audience}
        return jwt.JWTClaimsRegistry(now=None, leeway=self.leeway, **options)

    def _check_claims(self, claims: Mapping[str, Any]) -> None:
        try:
            self._claims_registry.validate(dict(claims))
        except ExpiredTokenError:
            raise AuthenticationError("token has expired (exp is in the past)") from None
        except MissingClaimError as error:
            raise AuthenticationError(f"token lacks required claim(s): {error.claim}") from None
        except InvalidClaimError as error:
            raise AuthenticationError(self._claim_problem(error.claim, claims)) from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise AuthenticationError("token claim 'sub' is missing or not a string")

    def _claim_problem(self, claim: str, claims: Mapping[str, Any]) -> str:
        if claim == "iss":
            return f"wrong issuer: token issuer {str(claims.get('iss'))[:200]!r} is not {self.issuer!r}"
        if claim == "aud":
            return f"wrong audience: token is not intended for {self.audience!r}"
        if claim == "nbf":
            return "token is not yet valid (nbf is in the future)"
        if claim == "iat":
            return "token was issued in the future (iat)"
        return f"token claim {claim!r} is invalid"
