"""Bearer token -> `Subject`: locally issued development tokens (key in the data directory) and an optional OIDC
issuer."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from api.errors import ServiceUnavailable, Unauthenticated
from api.settings import Settings
from governance.errors import AuthenticationError, IdentityProviderUnavailable
from governance.identity import ClaimMapping, OidcVerifier, Subject
from governance.tokens import LocalIssuer

HOW_TO_GET_A_TOKEN = "send 'Authorization: Bearer <token>' (a development token: `twin token --role viewer`)"


@dataclass(frozen=True)
class _Verified:
    """A verified token, remembered by its digest: who it stands for, until when, and the key that signed it."""

    subject: Subject
    expires: float
    verifier: OidcVerifier
    kid: object
    alg: str
    key: str  # the thumbprint of the key that verified it (OidcVerifier.signing_key_identity)


class Authenticator:
    """Verifies bearer tokens against the trusted issuers.

    A verified token is remembered by its SHA-256 digest (never the token itself) in a bounded cache, so that a
    client sending the same token again costs a lookup instead of a signature check: never past the token's `exp`,
    and only while the key that signed it is still one of its issuer's keys (a key rotated away ends every token it
    signed, remembered or not).
    """

    def __init__(
        self,
        verifiers: Sequence[OidcVerifier],
        cache_size: int = 4096,
        max_lifetime_s: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not verifiers:
            raise ValueError("an authenticator needs at least one trusted issuer")
        self.max_lifetime_s = max_lifetime_s
        self.verifiers = {v.issuer: v for v in verifiers}
        self.verified = 0  # tokens whose signature and claims were checked (not answered from the cache)
        self._cache: OrderedDict[str, _Verified] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        """Trust the local development key of the data directory and, when configured, one OIDC issuer."""
        verifiers = [LocalIssuer(settings.data_dir).verifier()]
        if settings.oidc_issuer:
            verifiers.append(
                OidcVerifier(
                    settings.oidc_issuer,
                    settings.oidc_audience,
                    jwks_url=settings.oidc_jwks_url,
                    discovery=settings.oidc_jwks_url is None,
                    claim_mapping=ClaimMapping(role_claims=tuple(settings.oidc_role_claims)),
                )
            )
        return cls(verifiers, max_lifetime_s=settings.api_max_token_lifetime_s)

    def authenticate(self, authorization: str | None) -> Subject:
        """The subject of an `Authorization` header; Unauthenticated with the reason otherwise."""
        if not authorization or not authorization.strip():
            raise Unauthenticated(f"missing bearer token: {HOW_TO_GET_A_TOKEN}")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(f"the Authorization header must use the Bearer scheme: {HOW_TO_GET_A_TOKEN}")
        key = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                if cached.expires > now:
                    self._cache.move_to_end(key)
                else:
                    del self._cache[key]
                    cached = None
        if cached is not None:
            try:
                trusted = cached.verifier.signing_key_identity(cached.kid, cached.alg) == cached.key
            except IdentityProviderUnavailable as exc:
                raise ServiceUnavailable(str(exc)) from None
            if trusted:
                return cached.subject
            with self._lock:
                self._cache.pop(key, None)  # its key was rotated away or replaced: verify again (which refuses it)
        claims = _unverified_claims(token)
        issuer = claims.get("iss")
        verifier = self.verifiers.get(issuer) if isinstance(issuer, str) else None
        if verifier is None:
            raise Unauthenticated(f"token issuer {str(issuer)[:120]!r} is not trusted by this server")
        try:
            self.verified += 1
            subject = verifier.verify(token)
        except AuthenticationError as exc:
            raise Unauthenticated(f"bearer token refused: {exc}") from None
        except IdentityProviderUnavailable as exc:
            raise ServiceUnavailable(str(exc)) from None
        expires = claims.get("exp")
        self._check_lifetime(claims, now)
        header = _unverified_part(token, 0)
        alg = header.get("alg")
        signer = None
        if isinstance(alg, str):
            with contextlib.suppress(IdentityProviderUnavailable):  # not remembered: verified again next time
                signer = verifier.signing_key_identity(header.get("kid"), alg)
        if isinstance(expires, (int, float)) and not isinstance(expires, bool) and isinstance(alg, str) and signer:
            with self._lock:
                self._cache[key] = _Verified(subject, float(expires), verifier, header.get("kid"), alg, signer)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return subject

    def _check_lifetime(self, claims: dict[str, object], now: float) -> None:
        """Refuse a verified token meant to live longer than the maximum (a stolen one would stay useful for long)."""
        if self.max_lifetime_s is None:
            return
        expires, issued = claims.get("exp"), claims.get("iat")
        if not isinstance(expires, (int, float)):
            return  # the verifier requires `exp`
        start = issued if isinstance(issued, (int, float)) else now
        lifetime = float(expires) - float(start)
        if lifetime > self.max_lifetime_s:
            raise Unauthenticated(
                f"bearer token refused: its lifetime ({int(lifetime)} s) exceeds the maximum of "
                f"{self.max_lifetime_s} s (TWIN_API_MAX_TOKEN_LIFETIME_S)"
            )


def token_expiry(authorization: str) -> float | None:
    """When an already verified bearer token expires (its `exp`, epoch seconds), for connections that outlive a
    request; None when it has no `exp`."""
    expires = _unverified_claims(authorization.strip().partition(" ")[2].strip()).get("exp")
    return float(expires) if isinstance(expires, (int, float)) and not isinstance(expires, bool) else None


def _unverified_claims(token: str) -> dict[str, object]:
    """The payload of a compact JWS, only to choose the verifier (which then checks everything)."""
    return _unverified_part(token, 1)


def _unverified_part(token: str, index: int) -> dict[str, object]:
    """The header (0) or payload (1) of a compact JWS as a JSON object, unverified."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthenticated("bearer token is not a JWT (expected three dot-separated parts)")
    name = "header" if index == 0 else "payload"
    try:
        padded = parts[index] + "=" * (-len(parts[index]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError):
        raise Unauthenticated(f"bearer token {name} cannot be decoded") from None
    if not isinstance(claims, dict):
        raise Unauthenticated(f"bearer token {name} is not a JSON object")
    return claims
