"""The API verifies a bearer token once and then remembers it by its digest (issue 25 item 4), but never past the
token's `exp` and never once the key that signed it has been rotated away: an expired or withdrawn token is refused
even though it was remembered. Real tokens, a real OIDC issuer over HTTP."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from api.errors import Unauthenticated
from api.http.auth import Authenticator
from governance.identity import OidcVerifier
from governance.tokens import LocalIssuer
from tests.governance.conftest import OidcProvider
from tests.governance.test_identity import AUDIENCE, _claims, _sign


def test_a_token_is_verified_once_then_refused_when_it_expires(tmp_path: Path) -> None:
    issuer = LocalIssuer(tmp_path)
    authenticator = Authenticator([issuer.verifier(leeway=0)])
    token = issuer.issue_token("architect", sub="brief", ttl=2)
    subjects = [authenticator.authenticate(f"Bearer {token}") for _ in range(5)]
    assert {s.sub for s in subjects} == {"brief"} and subjects[0].roles == frozenset({"architect"})
    assert authenticator.verified == 1, "a remembered token is not verified again"
    time.sleep(3.1)  # past its exp (whole seconds)
    with pytest.raises(Unauthenticated, match="expired"):
        authenticator.authenticate(f"Bearer {token}")
    assert authenticator.verified == 2, "an expired token is verified again (and refused), not answered from memory"


def test_a_remembered_token_is_never_answered_past_its_exp(tmp_path: Path) -> None:
    issuer = LocalIssuer(tmp_path)
    now = [time.time()]
    authenticator = Authenticator([issuer.verifier()], clock=lambda: now[0])
    token = issuer.issue_token("viewer", sub="clock", ttl=600)
    authenticator.authenticate(f"Bearer {token}")
    authenticator.authenticate(f"Bearer {token}")
    assert authenticator.verified == 1
    now[0] += 601  # the authenticator's clock is past exp: the memory is not used, the token is verified again
    authenticator.authenticate(f"Bearer {token}")
    assert authenticator.verified == 2


def test_a_remembered_token_is_refused_once_its_key_is_rotated_away(oidc_provider: OidcProvider) -> None:
    verifier = OidcVerifier(
        oidc_provider.issuer, AUDIENCE, jwks_url=oidc_provider.jwks_url, discovery=False, jwks_ttl=0.0
    )
    authenticator = Authenticator([verifier])
    withdrawn = _sign(oidc_provider.private_keys["rsa-1"], _claims(oidc_provider, sub="old-key"), "RS256")
    kept = _sign(oidc_provider.private_keys["ec-1"], _claims(oidc_provider, sub="kept-key"), "ES256")
    for token in (withdrawn, kept, withdrawn, kept):
        authenticator.authenticate(f"Bearer {token}")
    assert authenticator.verified == 2, "each token verified once, then remembered"
    oidc_provider.remove_key("rsa-1")
    with pytest.raises(Unauthenticated, match="rsa-1") as refused:
        authenticator.authenticate(f"Bearer {withdrawn}")
    assert withdrawn.split(".")[2] not in str(refused.value)
    assert authenticator.authenticate(f"Bearer {kept}").sub == "kept-key"
    assert authenticator.verified == 3, "only the withdrawn key's token was verified again"


def test_the_cache_holds_digests_and_stays_bounded(tmp_path: Path) -> None:
    issuer = LocalIssuer(tmp_path)
    authenticator = Authenticator([issuer.verifier()], cache_size=3)
    tokens = [issuer.issue_token("viewer", sub=f"u{i}") for i in range(5)]
    for token in tokens:
        authenticator.authenticate(f"Bearer {token}")
    remembered = list(authenticator._cache)
    assert len(remembered) == 3
    assert not any(part in key for key in remembered for token in tokens for part in token.split("."))
    authenticator.authenticate(f"Bearer {tokens[0]}")  # forgotten (least recently used): verified again
    assert authenticator.verified == 6


def _rs256_without_kid(provider: OidcProvider, sub: str) -> str:
    """A token whose header names no key: it verifies against the issuer's single RSA key."""
    return jwt.encode(
        {"alg": "RS256"}, _claims(provider, sub=sub), provider.private_keys["rsa-1"], algorithms=["RS256"]
    )


def test_a_remembered_token_is_refused_once_its_key_is_replaced(oidc_provider: OidcProvider) -> None:
    verifier = OidcVerifier(
        oidc_provider.issuer, AUDIENCE, jwks_url=oidc_provider.jwks_url, discovery=False, jwks_ttl=0.0
    )
    authenticator = Authenticator([verifier])
    no_kid = _rs256_without_kid(oidc_provider, "no-kid")
    named = _sign(oidc_provider.private_keys["rsa-1"], _claims(oidc_provider, sub="named"), "RS256")
    for token in (no_kid, named, no_kid, named):
        authenticator.authenticate(f"Bearer {token}")
    assert authenticator.verified == 2
    # the issuer replaces its RSA key with a new one under the same kid: both tokens were signed by a key it no longer
    # publishes (the token without kid would otherwise match "the single RSA key" again)
    oidc_provider.add_key(RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}))
    for token in (no_kid, named):
        with pytest.raises(Unauthenticated, match="bearer token refused"):
            authenticator.authenticate(f"Bearer {token}")
    assert authenticator.verified == 4, "each was verified again, not answered from memory"
