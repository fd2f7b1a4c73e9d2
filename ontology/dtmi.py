"""Digital Twin Model Identifiers (DTMI): syntax and version rules of DTDL v2, v3 and v4, and the IRI -> DTMI mapping.

Rules (github.com/Azure/opendigitaltwins-dtdl, DTMI/README.md and DTDL.Specification.v2/v3/v4.md):

* ``dtmi:<segment>(:<segment>)*[;<version>]``; a segment starts with a letter, holds only letters, digits and
  underscores, and does not end with an underscore (segments starting with ``_`` are *system* segments, which DTDL
  models may not use).
* DTDL v2: the version is required and is one integer of 1-9 digits without a leading zero.
* DTDL v3 and v4: the version is optional and may be ``major`` or ``major.minor`` (minor: 1-6 digits, no leading
  zero, so ``1.0`` and ``1.01`` are invalid).
* A user DTMI is at most 2048 characters; an Interface ``@id`` at most 128; an ``@id`` must not start with
  ``dtmi:dtdl:`` or ``dtmi:standard:`` (reserved).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

_SEGMENT = r"[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?"
_PATH = rf"dtmi:{_SEGMENT}(?::{_SEGMENT})*"
DTMI_V2 = re.compile(rf"^{_PATH};[1-9][0-9]{{0,8}}$")
DTMI_V3 = re.compile(rf"^{_PATH}(?:;[1-9][0-9]{{0,8}}(?:\.[1-9][0-9]{{0,5}})?)?$")
SEGMENT = re.compile(rf"^{_SEGMENT}$")
_PARTS = re.compile(rf"^dtmi:({_SEGMENT}(?::{_SEGMENT})*)(?:;([1-9][0-9]{{0,8}})(?:\.([1-9][0-9]{{0,5}}))?)?$")

USER_DTMI_MAX_LENGTH = 2048
INTERFACE_ID_MAX_LENGTH = 128
RESERVED_ID_PREFIXES = ("dtmi:dtdl:", "dtmi:standard:")
DTDL_VERSIONS = (2, 3, 4)


class DtmiError(ValueError):
    """A string is not a valid DTMI for the DTDL version in use."""


@dataclass(frozen=True)
class Dtmi:
    """A parsed DTMI: path segments and optional major/minor version."""

    segments: tuple[str, ...]
    major: int | None = None
    minor: int | None = None

    @property
    def name(self) -> str:
        """The last path segment (e.g. 'Bed' for dtmi:digitaltwins:rec_3_3:asset:Bed;1)."""
        return self.segments[-1]

    @property
    def deversioned(self) -> str:
        """The DTMI without its version suffix."""
        return "dtmi:" + ":".join(self.segments)

    @property
    def version(self) -> str | None:
        """The version suffix as written ('1', '2.3'), or None when absent."""
        if self.major is None:
            return None
        return f"{self.major}.{self.minor}" if self.minor is not None else str(self.major)

    def __str__(self) -> str:
        version = self.version
        return self.deversioned + (f";{version}" if version else "")


def dtmi_problem(
    value: object, dtdl_version: int = 3, *, as_id: bool = False, max_length: int | None = None
) -> str | None:
    """Why `value` is not a valid DTMI under `dtdl_version` (None when it is valid)."""
    if not isinstance(value, str):
        return f"a DTMI must be a string, got {type(value).__name__}"
    limit = max_length or USER_DTMI_MAX_LENGTH
    if len(value) > limit:
        return f"DTMI is {len(value)} characters long, more than the limit of {limit}"
    if not value.startswith("dtmi:"):
        return f"{value!r} does not start with 'dtmi:'"
    pattern = DTMI_V2 if dtdl_version == 2 else DTMI_V3
    if not pattern.match(value):
        return f"{value!r} is not a valid DTDL v{dtdl_version} DTMI: {_explain(value, dtdl_version)}"
    if as_id and value.startswith(RESERVED_ID_PREFIXES):
        return f"{value!r} uses a reserved prefix ({' or '.join(RESERVED_ID_PREFIXES)})"
    return None


def _explain(value: str, dtdl_version: int) -> str:
    path, _, version = value[5:].partition(";")
    for segment in path.split(":"):
        if not SEGMENT.match(segment):
            return (
                f"segment {segment!r} must start with a letter, hold only letters, digits and '_', and not end with '_'"
            )
    if not version and ";" not in value:
        return "a version (';<n>') is required in DTDL v2" if dtdl_version == 2 else "malformed"
    if dtdl_version == 2:
        return f"version {version!r} must be an integer 1..999999999 without a leading zero"
    return f"version {version!r} must be 'major' or 'major.minor' without leading zeros (minor 1..999999)"


def is_dtmi(value: object, dtdl_version: int = 3) -> bool:
    """True when `value` is a valid DTMI under `dtdl_version`."""
    return dtmi_problem(value, dtdl_version) is None


def parse_dtmi(value: str, dtdl_version: int = 3) -> Dtmi:
    """The parsed DTMI; DtmiError naming the value and the broken rule otherwise."""
    problem = dtmi_problem(value, dtdl_version)
    if problem:
        raise DtmiError(problem)
    match = _PARTS.match(value)
    assert match is not None
    path, major, minor = match.groups()
    return Dtmi(tuple(path.split(":")), int(major) if major else None, int(minor) if minor else None)


def dtmi_name(value: str) -> str:
    """The last path segment of a DTMI-shaped string, without version."""
    path = value.split(";", 1)[0]
    return path.rsplit(":", 1)[-1]


def deversion(value: str) -> str:
    """The part of a DTMI left of the semicolon."""
    return value.split(";", 1)[0]


def to_segment(text: str) -> str:
    """`text` as a valid DTMI segment/DTDL name: other characters become '_', a leading digit gets an 'x' prefix."""
    cleaned = re.sub(r"[^A-Za-z0-9_]+", "_", text)
    cleaned = re.sub(r"_+", "_", cleaned).strip("_")
    if not cleaned:
        return "x"
    if not cleaned[0].isalpha():
        cleaned = "x" + cleaned
    return cleaned


def iri_to_dtmi(iri: str, version: int = 1, max_length: int = INTERFACE_ID_MAX_LENGTH) -> str:
    """A DTMI for an IRI, deterministically: reversed host labels, then path segments, then the fragment.

    https://enterprise-twin.dev/ontology/core#Employee -> dtmi:dev:enterprise_twin:ontology:core:Employee;1.
    Characters a segment cannot hold become '_'. The mapping is not injective, so writers record the original IRI
    (see ontology.dtdl_writer). Results longer than `max_length` keep the last segment and a hash of the IRI.
    """
    if iri.startswith("dtmi:"):
        parts = deversion(iri)[5:].split(":")
    else:
        split = urlsplit(iri)
        if split.netloc:
            host = split.hostname or split.netloc
            parts = list(reversed(host.split(".")))
            parts += [unquote(p) for p in split.path.split("/") if p]
        else:
            parts = [p for p in re.split(r"[:/]", split.path) if p]
        if split.query:
            parts.append(split.query)
        if split.fragment:
            parts.append(unquote(split.fragment))
    segments = [to_segment(p) for p in parts if to_segment(p) != "x" or p == "x"] or ["x"]
    result = f"dtmi:{':'.join(segments)};{version}"
    if len(result) > max_length:
        digest = "h" + hashlib.sha1(iri.encode()).hexdigest()[:16]
        tail = segments[-1][: max(1, max_length - len(digest) - 20)].rstrip("_")
        result = f"dtmi:{segments[0][:8].rstrip('_') or 'x'}:{digest}:{tail};{version}"
    return result
