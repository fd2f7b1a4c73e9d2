"""Bearer-token verification against a real OIDC issuer (discovery + JWKS over HTTP) and locally issued tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, Key, RSAKey

from governance.errors import AuthenticationError, GovernanceError, IdentityProviderUnavailable, KeyMaterialError
from governance.identity import ClaimMapping, OidcVerifier, Subject
from governance.roles import BUILT_IN_ROLES, ROLE_NAMES, role_description
from governance.tokens import LocalIssuer, issue_token
from tests.governance.conftest import OidcProvider

AUDIENCE = "enterprise-twin"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(provider: OidcProvider, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": provider.issuer,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "nbf": now - 5,
        "exp": now + 600,
        "jti": "t-1",
        "roles": ["hr", "viewer"],
        "org_unit": "plant-b",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(key: Key, claims: dict[str, Any], alg: str, kid: str | None = None) -> str:
    header = {"alg": alg, "kid": kid if kid is not None else key.kid}
    return jwt.encode(header, claims, key, algorithms=[alg])


def _verifier(provider: OidcProvider, **options: Any) -> OidcVerifier:
    options.setdefault("refresh_cooldown", 0.0)
    return OidcVerifier(provider.issuer, AUDIENCE, **options)


def _refused(verifier: OidcVerifier, token: str) -> str:
    with pytest.raises(AuthenticationError) as caught:
        verifier.verify(token)
    message = str(caught.value)
    for part in token.split("."):
        if len(part) > 8:
            assert part not in message, "the error message must never echo the token"
    return message


def test_valid_rs256_token_maps_claims_to_subject(oidc_provider: OidcProvider) -> None:
    token = _sign(oidc_provider.private_keys["rsa-1"], _claims(oidc_provider), "RS256")
    subject = _verifier(oidc_provider).verify(token)
    assert subject == Subject(
        sub="alice",
        roles=frozenset({"hr", "viewer"}),
        org_unit="plant-b",
        attributes=subject.attributes,
        token_id="t-1",
        issuer=oidc_provider.issuer,
    )
    assert subject.has_role("hr") and not subject.has_role("admin")
    assert oidc_provider.discovery_hits == 1 and oidc_provider.jwks_hits == 1


def test_valid_es256_token_and_jwks_is_cached(oidc_provider: OidcProvider) -> None:
    verifier = _verifier(oidc_provider)
    key = oidc_provider.private_keys["ec-1"]
    for sub in ("bob", "carol", "dave"):
        assert verifier.verify(_sign(key, _claims(oidc_provider, sub=sub), "ES256")).sub == sub
    assert oidc_provider.jwks_hits == 1, "JWKS must be cached between verifications"


def test_jwks_ttl_expiry_fetches_again(oidc_provider: OidcProvider) -> None:
    verifier = _verifier(oidc_provider, jwks_ttl=0.0)
    token = _sign(oidc_provider.private_keys["ec-1"], _claims(oidc_provider), "ES256")
    verifier.verify(token)
    verifier.verify(token)
    assert oidc_provider.jwks_hits == 2


def test_keycloak_realm_roles_and_groups_mapping(oidc_provider: OidcProvider) -> None:
    claims = _claims(
        oidc_provider, roles=None, realm_access={"roles": ["architect"]}, groups=["/compliance"], department="finance"
    )
    token = _sign(oidc_provider.private_keys["rsa-1"], claims, "RS256")
    subject = _verifier(oidc_provider).verify(token)
    assert subject.roles == frozenset({"architect", "compliance"})
    only_realm = _verifier(
        oidc_provider,
        claim_mapping=ClaimMapping(
            role_claims=("realm_access.roles",), org_unit_claim="department", attribute_claims=("department",)
        ),
    )
    subject = only_realm.verify(token)
    assert subject.roles == frozenset({"architect"})
    assert subject.org_unit == "finance" and subject.attributes["department"] == "finance"


def test_expired_token_is_refused(oidc_provider: OidcProvider) -> None:
    now = int(time.time())
    token = _sign(oidc_provider.private_keys["rsa-1"], _claims(oidc_provider, iat=now - 900, exp=now - 300), "RS256")
    assert "expired" in _refused(_verifier(oidc_provider, leeway=30), token)


def test_not_yet_valid_token_is_refused(oidc_provider: OidcProvider) -> None:
    token = _sign(oidc_provider.private_keys["rsa-1"], _claims(oidc_provider, nbf=int(time.time()) + 3600), "RS256")
    assert "not yet valid" in _refused(_verifier(oidc_provider), token)


def test_leeway_accepts_small_clock_skew(oidc_provider: OidcProvider) -> None:
    token = _sign(oidc_provider.private_keys["rsa-1"], _claims(oidc_provider, nbf=int(time.time()) + 20), "RS256")
    assert _verifier(oidc_provider, leeway=60).verify(token).sub == "alice"


def test_wrong_issuer_is_refused(oidc_provider: OidcProvider) -> None:
    token = _sign(oidc_provider.private_keys["rsa-1"], _claims(oidc_provider, iss="https://evil.example"), "RS256")
    assert "wrong issuer" in _refused(_verifier(oidc_provider), token)


def test_wrong_audience_is_refused(oidc_provider: OidcProvider) -> None:
    token = _sign(oidc_provider.private_keys["rsa-1"], _claims(oidc_provider, aud="another-api"), "RS256")
    assert "wrong audience" in _refused(_verifier(oidc_provider), token)


def test_missing_exp_is_refused(oidc_provider: OidcProvider) -> None:
    token = _sign(oidc_provider.private_keys["rsa-1"], _claims(oidc_provider, exp=None), "RS256")
    assert "exp" in _refused(_verifier(oidc_provider), token)


def test_unknown_key_id_refreshes_once_then_fails(oidc_provider: OidcProvider) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "not-published"})
    verifier = _verifier(oidc_provider)
    token = _sign(stranger, _claims(oidc_provider), "RS256")
    message = _refused(verifier, token)
    assert "not-published" in message and "JWKS" in message
    assert oidc_provider.jwks_hits == 2, "one initial fetch plus exactly one refresh"


def test_unknown_key_id_refresh_is_rate_limited(oidc_provider: OidcProvider) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "spray"})
    verifier = _verifier(oidc_provider, refresh_cooldown=300.0)
    for _ in range(3):
        _refused(verifier, _sign(stranger, _claims(oidc_provider), "RS256"))
    assert oidc_provider.jwks_hits == 1, "random key ids must not make us hammer the issuer"


def test_key_rotation_new_kid_is_accepted_after_refresh(oidc_provider: OidcProvider) -> None:
    verifier = _verifier(oidc_provider)
    verifier.verify(_sign(oidc_provider.private_keys["rsa-1"], _claims(oidc_provider), "RS256"))
    rotated = ECKey.generate_key("P-256", parameters={"kid": "ec-2026"})
    oidc_provider.add_key(rotated)
    subject = verifier.verify(_sign(rotated, _claims(oidc_provider, sub="rotated"), "ES256"))
    assert subject.sub == "rotated"
    assert oidc_provider.jwks_hits == 2


def test_alg_none_is_refused(oidc_provider: OidcProvider) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims(oidc_provider, roles=["admin"])).encode())
    assert "alg 'none'" in _refused(_verifier(oidc_provider), f"{header}.{payload}.")


def test_hs256_signed_with_rsa_public_key_is_refused(oidc_provider: OidcProvider) -> None:
    """Algorithm confusion: the attacker MACs with the issuer's public key bytes as the HMAC secret."""
    public = oidc_provider.private_keys["rsa-1"].as_pem(private=False)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    payload = _b64(json.dumps(_claims(oidc_provider, roles=["admin"])).encode())
    signature = _b64(hmac.new(public, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    message = _refused(_verifier(oidc_provider), f"{header}.{payload}.{signature}")
    assert "HS256" in message and "not accepted" in message


def test_symmetric_algorithms_cannot_be_configured(oidc_provider: OidcProvider) -> None:
    with pytest.raises(GovernanceError, match="HS256"):
        OidcVerifier(oidc_provider.issuer, AUDIENCE, algorithms=("RS256", "HS256"))


def test_key_type_must_match_algorithm(oidc_provider: OidcProvider) -> None:
    """An ES256 token that names the RSA key id is refused before any signature check."""
    token = _sign(oidc_provider.private_keys["ec-1"], _claims(oidc_provider), "ES256", kid="rsa-1")
    assert "needs an EC key" in _refused(_verifier(oidc_provider), token)


def test_tampered_signature_is_refused(oidc_provider: OidcProvider) -> None:
    token = _sign(oidc_provider.private_keys["rsa-1"], _claims(oidc_provider), "RS256")
    header, payload, signature = token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    assert "signature does not verify" in _refused(_verifier(oidc_provider), f"{header}.{payload}.{flipped}")


def test_tampered_payload_is_refused(oidc_provider: OidcProvider) -> None:
    token = _sign(oidc_provider.private_keys["ec-1"], _claims(oidc_provider), "ES256")
    header, _, signature = token.split(".")
    forged = _b64(json.dumps(_claims(oidc_provider, roles=["admin"])).encode())
    assert "signature does not verify" in _refused(_verifier(oidc_provider), f"{header}.{forged}.{signature}")


def test_garbage_tokens_are_refused_without_echo(oidc_provider: OidcProvider) -> None:
    verifier = _verifier(oidc_provider)
    assert "empty" in _refused(verifier, "   ")
    assert "three dot-separated parts" in _refused(verifier, "abc.def")
    assert "cannot be decoded" in _refused(verifier, "%%%%.eyJ.sig")


def test_explicit_jwks_url_without_discovery(oidc_provider: OidcProvider) -> None:
    verifier = _verifier(oidc_provider, jwks_url=oidc_provider.jwks_url, discovery=False)
    verifier.verify(_sign(oidc_provider.private_keys["rsa-1"], _claims(oidc_provider), "RS256"))
    assert oidc_provider.discovery_hits == 0 and oidc_provider.jwks_hits == 1


def test_discovery_naming_another_issuer_is_an_provider_error(oidc_provider: OidcProvider) -> None:
    verifier = OidcVerifier(oidc_provider.issuer + "/", AUDIENCE)
    token = _sign(oidc_provider.private_keys["rsa-1"], _claims(oidc_provider), "RS256")
    with pytest.raises(IdentityProviderUnavailable, match="names issuer"):
        verifier.verify(token)


def test_unreachable_issuer_is_a_provider_error() -> None:
    verifier = OidcVerifier("http://127.0.0.1:9", AUDIENCE, http_client=httpx.Client(timeout=1.0))
    key = RSAKey.generate_key(2048, parameters={"kid": "k"})
    now = int(time.time())
    token = _sign(key, {"iss": "http://127.0.0.1:9", "aud": AUDIENCE, "sub": "x", "exp": now + 60}, "RS256")
    with pytest.raises(IdentityProviderUnavailable, match="could not be fetched"):
        verifier.verify(token)


def test_local_issuer_key_is_private_and_stable(tmp_path: Path) -> None:
    issuer = LocalIssuer(tmp_path)
    token = issuer.issue_token(["architect"], sub="eve", org_unit="it")
    assert stat.S_IMODE(os.stat(issuer.key_path).st_mode) == 0o600
    assert "d" not in issuer.jwks()["keys"][0], "the JWKS must hold the public key only"
    assert str(tmp_path) in repr(issuer) and issuer.key_path.read_text() not in repr(issuer)
    again = LocalIssuer(tmp_path)  # a second process/instance reuses the same key
    subject = again.verifier().verify(token)
    assert (subject.sub, subject.roles, subject.org_unit) == ("eve", frozenset({"architect"}), "it")
    assert again.jwks() == issuer.jwks()


@pytest.mark.parametrize("algorithm", ["ES256", "RS256", "Ed25519"])
def test_local_issuer_algorithms(tmp_path: Path, algorithm: str) -> None:
    issuer = LocalIssuer(tmp_path, algorithm=algorithm)
    issuer.jwks()  # creates the key; the module-level issue_token then uses the existing key file's algorithm
    token = issue_token(tmp_path, "executive", sub="ceo", ttl=60)
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["alg"] == algorithm
    assert issuer.verifier().verify(token).roles == frozenset({"executive"})


def test_local_token_from_another_data_dir_is_refused(tmp_path: Path) -> None:
    ours, theirs = LocalIssuer(tmp_path / "ours"), LocalIssuer(tmp_path / "theirs")
    message = _refused(ours.verifier(), theirs.issue_token("admin"))
    assert "not in the issuer's JWKS" in message


def test_local_token_expires(tmp_path: Path) -> None:
    issuer = LocalIssuer(tmp_path)
    token = issuer.issue_token("viewer", ttl=1)
    time.sleep(1.1)
    assert "expired" in _refused(issuer.verifier(leeway=0), token)


def test_local_issuer_refuses_unknown_role_and_open_key_file(tmp_path: Path) -> None:
    issuer = LocalIssuer(tmp_path)
    with pytest.raises(GovernanceError, match="unknown role"):
        issuer.issue_token(["viewer", "superuser"])
    issuer.issue_token("viewer")
    os.chmod(issuer.key_path, 0o644)
    with pytest.raises(KeyMaterialError, match="chmod 600"):
        LocalIssuer(tmp_path).issue_token("viewer")


def test_built_in_roles_are_documented() -> None:
    assert [r.name for r in BUILT_IN_ROLES] == [
        "admin",
        "architect",
        "executive",
        "analyst",
        "compliance",
        "hr",
        "data_steward",
        "viewer",
    ]
    assert {r.name for r in BUILT_IN_ROLES} == ROLE_NAMES
    assert "subtree" in role_description("hr")
    with pytest.raises(GovernanceError, match="not a built-in role"):
        role_description("root")
