"""Signing and verifying webhook deliveries (HMAC-SHA256 over ``timestamp + "." + body``).

Every webhook request carries::

    webhook-id:        <event id>
    webhook-timestamp: <unix seconds when sent>
    webhook-signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>

A receiver verifies, as with Stripe or Standard Webhooks: recompute the HMAC over the timestamp header, a
dot and the raw body bytes with the shared secret; compare in constant time; refuse a timestamp older or
newer than a tolerance (default 5 minutes) so a captured request cannot be replayed later. The event id lets
the receiver drop a redelivery it already processed. ``verify_webhook_signature`` does all of that.
"""

from __future__ import annotations

import hashlib
import hmac
import time

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300


class WebhookSignatureError(ValueError):
    """A webhook request's signature or timestamp does not verify."""


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for a body sent at timestamp (unix seconds)."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={digest.hexdigest()}"


def verify_webhook_signature(
    secret: str,
    body: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Check a received webhook request; raise WebhookSignatureError saying what is wrong."""
    if not timestamp_header or not signature_header:
        raise WebhookSignatureError("the timestamp or signature header is missing")
    try:
        timestamp = int(timestamp_header)
    except ValueError:
        raise WebhookSignatureError(f"timestamp header {timestamp_header[:20]!r} is not unix seconds") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise WebhookSignatureError(f"timestamp {timestamp} is outside the {tolerance_s} s tolerance")
    expected = webhook_signature(secret, timestamp, body)
    candidates = [part.strip() for part in signature_header.split(" ") if part.strip()]
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise WebhookSignatureError("signature does not match the body and timestamp")
