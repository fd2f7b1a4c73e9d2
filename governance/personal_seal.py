"""Sealing personal values under their subject's data key (graph/personal_values.py says what a sealed token is).

`PersonalSeal` knows which properties are personal (the ontology's `PII` classification, by property name across
classes) and seals a value of such a property as `tw1:` + base64(nonce + AES-256-GCM(data key of the uid, JSON of
the value, aad = uid NUL property)). Opening a token whose subject key was destroyed (erasure), or that does not
authenticate, gives nothing: the value reads as erased. Identity match keys use two more forms: a keyed blind index
(HMAC under the deployment digest key) for exact lookups across subjects, and a deterministic token under the
subject's key (the nonce derived from the key and the text) for values that must be read back (names for fuzzy
matching) yet keep one row per value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag

from governance.subject_keys import SubjectKey, SubjectKeyRing
from graph.personal_values import SEALED_PREFIX
from ontology.model import Ontology

PERSONAL = "PII"
BLIND_PREFIX = "bi1:"
_NONCE = 12


def personal_properties(ontology: Ontology) -> frozenset[str]:
    """The names of the properties any class of `ontology` classifies as personal (PII)."""
    names: set[str] = set()
    for cls in ontology.classes:
        names.update(name for name, prop in ontology.properties(cls).items() if prop.classification == PERSONAL)
    return frozenset(names)


def _aad(uid: str, prop: str) -> bytes:
    return f"{uid}\x00{prop}".encode("utf-8", "surrogatepass")


def _json_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=str)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, default=str, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _json_value(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


class PersonalSeal:
    """Seals and opens the personal values of subjects with the data keys of a key ring."""

    def __init__(self, ring: SubjectKeyRing, personal: Iterable[str], index_key: bytes | None = None) -> None:
        self.ring = ring
        self.personal = frozenset(personal)
        self.index_key = index_key or b""

    def is_personal(self, prop: str) -> bool:
        """Whether property `prop` holds personal data."""
        return prop in self.personal

    # ------------------------------------------------------------------ single values

    @staticmethod
    def _token(key: SubjectKey, uid: str, prop: str, plaintext: bytes, nonce: bytes | None = None) -> str:
        nonce = nonce or os.urandom(_NONCE)
        sealed = nonce + key.aead.encrypt(nonce, plaintext, _aad(uid, prop))
        return SEALED_PREFIX + base64.urlsafe_b64encode(sealed).decode("ascii")

    def seal_text(self, uid: str, prop: str, json_text: str, keys: Mapping[str, SubjectKey] | None = None) -> str:
        """A token for a value already encoded as JSON text (the key is made if the subject has none)."""
        key = (keys or {}).get(uid) or self.ring.keys_for([uid], create=True)[uid]
        return self._token(key, uid, prop, json_text.encode("utf-8", "surrogatepass"))

    def seal_value(self, uid: str, prop: str, value: Any, keys: Mapping[str, SubjectKey] | None = None) -> str:
        """A token for `value` of property `prop` of subject `uid` (the key is made if the subject has none)."""
        key = (keys or {}).get(uid) or self.ring.keys_for([uid], create=True)[uid]
        return self._token(key, uid, prop, _json_bytes(value))

    def seal_fixed(self, uid: str, prop: str, text: str) -> str:
        """A deterministic token for `text` (equal texts of one subject give one token, as a key column needs)."""
        key = self.ring.keys_for([uid], create=True)[uid]
        plaintext = _json_bytes(text)
        nonce = hmac.new(key.raw, _aad(uid, prop) + b"\x00" + plaintext, hashlib.sha256).digest()[:_NONCE]
        return self._token(key, uid, prop, plaintext, nonce)

    def open_text(self, uid: str, prop: str, token: str, keys: Mapping[str, SubjectKey] | None = None) -> str | None:
        """The JSON text a token holds; None when its subject's key is gone or it does not authenticate."""
        key = (keys or {}).get(uid) if keys is not None else self.ring.keys_for([uid], create=False).get(uid)
        if key is None:
            return None
        try:
            sealed = base64.urlsafe_b64decode(token[len(SEALED_PREFIX) :])
            return key.aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], _aad(uid, prop)).decode("utf-8", "surrogatepass")
        except (InvalidTag, binascii.Error, ValueError):
            return None

    def open_value(self, uid: str, prop: str, token: str, keys: Mapping[str, SubjectKey] | None = None) -> Any:
        """The value a token holds; None when it cannot be opened (`open_text` tells that from a sealed null)."""
        text = self.open_text(uid, prop, token, keys)
        return None if text is None else _json_value(text.encode("utf-8", "surrogatepass"))

    def blind(self, kind: str, value: str) -> str:
        """The blind index of a match key: HMAC-SHA-256 under the deployment digest key (lookups without plaintext)."""
        data = f"{kind}\x00{value}".encode("utf-8", "surrogatepass")
        return BLIND_PREFIX + hmac.new(self.index_key, data, hashlib.sha256).hexdigest()

    # ------------------------------------------------------------------ property maps

    def seal_states(self, states: Sequence[tuple[str, Mapping[str, Any] | None]]) -> list[dict[str, Any] | None]:
        """The states with their personal values sealed; subjects without a key get one (in one batch)."""
        personal = self.personal
        wanted = {uid for uid, state in states if state and not personal.isdisjoint(state)}
        keys = self.ring.keys_for(wanted, create=True) if wanted else {}
        sealed: list[dict[str, Any] | None] = []
        token = self._token
        for uid, state in states:
            if state is None:
                sealed.append(None)
                continue
            if uid not in wanted:
                sealed.append(state if isinstance(state, dict) else dict(state))
                continue
            key = keys[uid]
            sealed.append(
                {
                    name: token(key, uid, name, _json_bytes(value)) if name in personal and value is not None else value
                    for name, value in state.items()
                }
            )
        return sealed

    def open_states(self, states: Sequence[tuple[str, dict[str, Any] | None]]) -> list[dict[str, Any] | None]:
        """The states with their sealed values opened; values that cannot be opened (erased) are left out."""
        wanted = {
            uid
            for uid, state in states
            if state and any(type(v) is str and v.startswith(SEALED_PREFIX) for v in state.values())
        }
        if not wanted:
            return [state for _, state in states]
        keys = self.ring.keys_for(wanted, create=False)
        return [
            state if uid not in wanted or state is None else self._opened(uid, state, keys) for uid, state in states
        ]

    def open_state(self, uid: str, state: dict[str, Any]) -> dict[str, Any]:
        """`state` of twin `uid` with its sealed values opened (erased ones left out)."""
        opened = self.open_states([(uid, state)])[0]
        return state if opened is None else opened

    def _opened(self, uid: str, state: dict[str, Any], keys: Mapping[str, SubjectKey]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, value in state.items():
            if type(value) is str and value.startswith(SEALED_PREFIX):
                text = self.open_text(uid, name, value, keys)
                if text is not None:
                    result[name] = _json_value(text.encode("utf-8", "surrogatepass"))
                elif name not in self.personal:
                    result[name] = value  # an ordinary text that happens to look like a token
                continue
            result[name] = value
        return result
