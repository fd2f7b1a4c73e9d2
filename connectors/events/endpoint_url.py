"""Parsing and redaction of event endpoint URLs (scheme, host, port, path parts, query options).

``redact_url`` is what every error message and log line shows: the password of the userinfo and the value
of any query option that looks like a credential are replaced by ``***``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

from .errors import EndpointConfigError

_SECRET_QUERY_KEYS = re.compile(r"(pass|secret|token|key|auth|sig)", re.IGNORECASE)
_URL_PREFIX_LEN = 80


@dataclass(frozen=True)
class EndpointAddress:
    """A parsed endpoint URL: where to connect, with what credentials, and the path/query parts."""

    url: str = field(repr=False)
    scheme: str
    host: str
    port: int | None
    username: str | None
    password: str | None = field(repr=False)
    path_parts: tuple[str, ...]
    query: dict[str, str]

    @property
    def redacted(self) -> str:
        """The URL as it may appear in errors and logs."""
        return redact_url(self.url)

    def netloc(self, default_port: int) -> str:
        """host:port (IPv6 hosts bracketed), with the scheme's default port when none was given."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port or default_port}"

    def secrets(self) -> tuple[str, ...]:
        """Every credential in the URL, for scrubbing library messages before they reach an error."""
        found = [s for s in (self.password,) if s]
        found += [v for k, v in self.query.items() if v and _SECRET_QUERY_KEYS.search(k)]
        if self.username and self.password is None and self.scheme.startswith("nats"):
            found.append(self.username)  # nats://TOKEN@host: the user part is a token
        return tuple(found)


def redact_url(url: str) -> str:
    """Hide the password and credential-like query values of a URL; quote at most a short prefix of junk."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, has_password, _ = userinfo.partition(":")
            if has_password:
                netloc = f"{user}:***@{hostport}"
            elif parts.scheme.startswith("nats"):
                netloc = f"***@{hostport}"
            else:
                netloc = f"{user}@{hostport}"
        query = "&".join(
            f"{k}=***" if _SECRET_QUERY_KEYS.search(k) else f"{k}={v}"
            for k, _, v in (pair.partition("=") for pair in parts.query.split("&") if pair)
        )
        shown = urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        shown = "<unparsable URL>"
    return shown if len(shown) <= _URL_PREFIX_LEN else shown[:_URL_PREFIX_LEN] + "..."


def parse_endpoint_url(url: str) -> EndpointAddress:
    """Split an endpoint URL into its parts, refusing what no endpoint could use."""
    if not isinstance(url, str) or not url.strip():
        raise EndpointConfigError("<empty URL>", "an endpoint URL is required")
    shown = redact_url(url)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise EndpointConfigError(shown, f"malformed URL ({exc})") from None
    if not parts.scheme or "://" not in url:
        raise EndpointConfigError(shown, "malformed URL: expected scheme://host[:port]/...")
    if "#" in url:
        raise EndpointConfigError(shown, "malformed URL: '#' starts a fragment (topic prefixes hold no wildcards)")
    host = parts.hostname
    if not host:
        raise EndpointConfigError(shown, "malformed URL: no host")
    query: dict[str, str] = {}
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        if len(values) > 1:
            raise EndpointConfigError(shown, f"query option {key!r} is given {len(values)} times")
        query[key] = values[0]
    path_parts = tuple(unquote(p) for p in parts.path.split("/")[1:]) if parts.path else ()
    return EndpointAddress(
        url=url.strip(),
        scheme=parts.scheme.lower(),
        host=host,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        path_parts=path_parts,
        query=query,
    )


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Remove every credential (raw and URL-quoted) from a library's message."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return text
