"""Issue 22 item 12, decided: the API takes roles from the admin-assigned role claims (`roles`,
`realm_access.roles`) of an OIDC token, not from `groups` (often self-service or a directory's every group), unless
TWIN_OIDC_ROLE_CLAIMS says so; the local issuer's tokens and the OIDC provider are real."""

from __future__ import annotations

from pathlib import Path

from api.http.auth import Authenticator
from api.settings import Settings
from tests.governance.conftest import OidcProvider
from tests.governance.test_identity import AUDIENCE, _claims, _sign


def _authenticator(provider: OidcProvider, tmp_path: Path, **settings: object) -> Authenticator:
    return Authenticator.from_settings(
        Settings(
            data_dir=tmp_path,
            oidc_issuer=provider.issuer,
            oidc_audience=AUDIENCE,
            oidc_jwks_url=provider.jwks_url,
            **settings,
        )
    )  # type: ignore[arg-type]


def test_groups_do_not_grant_roles_by_default(oidc_provider: OidcProvider, tmp_path: Path) -> None:
    claims = _claims(oidc_provider, roles=None, realm_access={"roles": ["architect"]}, groups=["admin", "/compliance"])
    token = _sign(oidc_provider.private_keys["rsa-1"], claims, "RS256")
    subject = _authenticator(oidc_provider, tmp_path).authenticate(f"Bearer {token}")
    assert subject.roles == frozenset({"architect"})


def test_groups_grant_roles_when_configured(oidc_provider: OidcProvider, tmp_path: Path) -> None:
    claims = _claims(oidc_provider, roles=None, groups=["/compliance"])
    token = _sign(oidc_provider.private_keys["rsa-1"], claims, "RS256")
    authenticator = _authenticator(oidc_provider, tmp_path, oidc_role_claims=["roles", "groups"])
    assert authenticator.authenticate(f"Bearer {token}").roles == frozenset({"compliance"})
