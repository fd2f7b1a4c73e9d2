"""Domain exceptions of the governance layer (identity, policy, audit, lineage)."""

from __future__ import annotations


class GovernanceError(Exception):
    """Base of every error raised by the governance layer."""


class AuthenticationError(GovernanceError):
    """A bearer token was refused; the message names the failed check, never the token."""


class IdentityProviderUnavailable(GovernanceError):
    """The OIDC discovery document or JWKS could not be fetched (a server-side problem, not a bad token)."""


class KeyMaterialError(GovernanceError):
    """A signing key file is missing, unreadable, malformed or too widely readable."""


class PolicyDenied(GovernanceError):
    """The policy refused an operation for a subject."""


class AuditError(GovernanceError):
    """The audit log cannot be written, read or exported as asked."""


class AuditTamperDetected(AuditError):
    """Verification of the audit chain found tampering; `seq` is the first affected record, `kind` what happened."""

    def __init__(self, message: str, *, seq: int | None, kind: str) -> None:
        super().__init__(message)
        self.seq = seq
        self.kind = kind


class LineageError(GovernanceError):
    """A lineage record or run is invalid or refers to something unknown."""


class RunNotFound(LineageError):
    """No run with the given id is recorded."""
