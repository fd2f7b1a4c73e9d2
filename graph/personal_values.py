"""Personal values outside the live graph: the interface stores use to keep them sealed under their subject's key.

A copy of a personal value (a history state, a change-feed payload, a lineage value, a sync ledger payload) is
stored as a *sealed token*, `tw1:` and the URL-safe base64 of a nonce and an AES-256-GCM ciphertext under the data
key of the twin it belongs to, with the twin's uid and the property bound as associated data (governance/
subject_keys.py makes and keeps the keys). Erasing a subject destroys its key, and every token sealed under it, in
whatever store or backup, can no longer be opened: readers then see the value as erased (absent).

The graph layer knows only this protocol; the key ring lives in governance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

SEALED_PREFIX = "tw1:"


def is_sealed(value: Any) -> bool:
    """Whether a stored value is a sealed token."""
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


class PersonalValues(Protocol):
    """Seals and opens the personal values of property maps (twin states) keyed by the twin they belong to."""

    def is_personal(self, prop: str) -> bool:
        """Whether property `prop` holds personal data (its copies are sealed)."""
        ...

    def seal_states(self, states: Sequence[tuple[str, Mapping[str, Any] | None]]) -> list[dict[str, Any] | None]:
        """The states, each of twin uid, with their personal values sealed (keys made for new subjects at once)."""
        ...

    def open_states(self, states: Sequence[tuple[str, dict[str, Any] | None]]) -> list[dict[str, Any] | None]:
        """The states with their sealed values opened (a state with none is returned as it is, the same object)."""
        ...

    def open_state(self, uid: str, state: dict[str, Any]) -> dict[str, Any]:
        """`state` of twin `uid` with its sealed values opened; values whose key was destroyed are left out."""
        ...
