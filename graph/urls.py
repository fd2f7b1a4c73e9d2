"""Backend URLs as they may appear in messages, logs and lineage: never with their credentials."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """`url` with any user password replaced by *** (and a query string dropped, it may carry secrets too)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url.split("?", 1)[0]
    userinfo, host = parts.netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def url_without_credentials(url: str) -> str:
    """`url` without user, password or query: what lineage records name a store by."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url.split("?", 1)[0]
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))
