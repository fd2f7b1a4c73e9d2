"""Managing automations over the API and the CLI: list, create, update, enable or disable, and delete the automations
of `automations.yaml`, for roles the policy allows the operation `automation.manage`.

The file stays the one place automations live (people may still edit it by hand): a change reads the file, applies
itself to the document, checks the whole new set exactly as a load does (CEL compiles, classes, properties, action
types, approval policy, unique names — an error names the automation and the term), and only then replaces the file
atomically (a temporary file renamed over it) under a lock, so a refused change leaves the file and the running set as
they were. A runtime in the same process is reloaded at once; one in another process (`twin run`, `twin serve`)
reloads within its next turn because the file changed. Rewriting the file keeps every automation and every other
top-level key, but not YAML comments.

An automation acts as its `role`: a manager may only give it a role it holds itself (or any role, when the policy
gives its role every operation), so managing automations cannot read or propose beyond the manager's own rights.
Every change, and every refusal, is an audit record naming the automation and its versions before and after.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from governance.audit import AuditEvent, AuditLog, Decision
from governance.decisions.actions import ActionTypes
from governance.decisions.automations import (
    NAME,
    Automation,
    AutomationError,
    AutomationRegistry,
    AutomationSet,
    load_automations,
    parse_automations,
)
from governance.errors import GovernanceError, PolicyDenied
from governance.identity import Subject
from governance.policy import Policy
from ontology.model import Ontology

MANAGE_OPERATION = "automation.manage"
"""The policy operation that lets a role create, change, enable, disable and delete automations."""

Change = Literal["create", "update", "enable", "disable", "delete"]
_PROCESS_LOCK = threading.Lock()


class AutomationChangeError(GovernanceError):
    """A change of the automations that cannot be made: a definition that does not check, an unknown or taken name,
    a role the manager may not give; the message names the automation and the problem."""


@dataclass(frozen=True)
class AutomationChanged:
    """What a change did: the automation as it now stands (None once deleted) and its versions before and after."""

    name: str
    change: Change
    automation: Automation | None
    version_before: str | None
    version_after: str | None


class AutomationManager:
    """Reads and changes automations.yaml for subjects the policy allows, checked whole, audited."""

    def __init__(
        self,
        path: Path,
        ontology: Ontology,
        policy: Policy,
        action_types: ActionTypes,
        audit: AuditLog,
        registry: AutomationRegistry | None = None,
    ) -> None:
        """`registry`: the set a runtime in this process evaluates, reloaded after each change."""
        self.path = path
        self.ontology = ontology
        self.policy = policy
        self.action_types = action_types
        self.audit = audit
        self.registry = registry

    def current(self) -> AutomationSet:
        """The automations of the file as they stand (AutomationChangeError when the file does not check)."""
        try:
            return load_automations(self.path, self.ontology, self.policy, self.action_types)
        except AutomationError as exc:
            raise AutomationChangeError(str(exc)) from None

    def create(self, subject: Subject, name: str, definition: Mapping[str, Any]) -> AutomationChanged:
        """Add the automation `name` (a name no automation has yet)."""
        return self._change(subject, "create", name, definition)

    def update(self, subject: Subject, name: str, changes: Mapping[str, Any]) -> AutomationChanged:
        """Change an automation: each top-level key of `changes` (trigger, condition, alert, action, role, ...)
        replaces the automation's; a key whose value is null is removed."""
        return self._change(subject, "update", name, changes)

    def set_enabled(self, subject: Subject, name: str, enabled: bool) -> AutomationChanged:
        """Enable or disable an automation (a disabled one stays in the file and is evaluated by nothing)."""
        return self._change(subject, "enable" if enabled else "disable", name, {"enabled": enabled})

    def delete(self, subject: Subject, name: str) -> AutomationChanged:
        """Remove an automation; its alerts and proposals stay."""
        return self._change(subject, "delete", name, None)

    # ------------------------------------------------------------------ the change

    def _change(self, subject: Subject, change: Change, name: str, body: Mapping[str, Any] | None) -> AutomationChanged:
        variables = {"automation": str(name)[:128], "change": change}
        decision = self.policy.decide(subject, "operation", MANAGE_OPERATION)
        if not decision.allowed:
            self._record(subject, change, Decision.DENY, variables, {"reason": decision.reason})
            raise PolicyDenied(
                f"denied: {subject.sub} may not manage automations (needs the operation {MANAGE_OPERATION})"
            )
        try:
            with self._locked():
                document = self._document()
                rules: dict[str, Any] = document.setdefault("automations", {}) or {}
                document["automations"] = rules
                before = self._version(name)
                rules_after = self._apply(subject, change, name, body, rules)
                document["automations"] = rules_after
                text = _dump(document)
                try:
                    checked = parse_automations(text, self.path, self.ontology, self.policy, self.action_types)
                except AutomationError as exc:
                    raise AutomationChangeError(str(exc)) from None
                _replace(self.path, text)
        except (AutomationChangeError, PolicyDenied) as exc:
            self._record(subject, change, Decision.DENY, variables, {"reason": str(exc)[:1000]})
            raise
        if self.registry is not None:
            self.registry.reload()
        found = checked.get(name)
        after = found.version if found is not None else None
        self._record(
            subject,
            change,
            Decision.ALLOW,
            variables,
            {"automation": name, "version_before": before, "version_after": after},
        )
        return AutomationChanged(name, change, found, before, after)

    def _apply(
        self,
        subject: Subject,
        change: Change,
        name: str,
        body: Mapping[str, Any] | None,
        rules: dict[str, Any],
    ) -> dict[str, Any]:
        """The automations after `change` (a new mapping; `rules` is left as it was)."""
        if not isinstance(name, str) or not NAME.match(name):
            raise AutomationChangeError(
                f"automation name {str(name)[:60]!r} must be 1-128 letters, digits, '_', '.' or '-', starting with "
                "a letter or digit"
            )
        if change == "create" and name in rules:
            raise AutomationChangeError(f"an automation called {name!r} exists already; update it or choose a name")
        if change != "create" and name not in rules:
            raise AutomationChangeError(f"no automation called {name!r}")
        if body is not None and not isinstance(body, Mapping):
            raise AutomationChangeError(f"automation {name!r}: a definition is a mapping of keys to values")
        after = dict(rules)
        if change == "delete":
            self._may_give(subject, name, rules[name])  # one may not delete what one could not have created
            del after[name]
            return after
        if change == "create":
            assert body is not None
            definition = _plain(body)
        else:
            current = rules[name] if isinstance(rules[name], dict) else {}
            self._may_give(subject, name, current)
            definition = {**current, **_plain(body or {})}
            definition = {k: v for k, v in definition.items() if v is not None}
        self._may_give(subject, name, definition)
        after[name] = definition
        return after

    def _may_give(self, subject: Subject, name: str, definition: Any) -> None:
        """Refuse a role the manager does not hold itself (unless its role may do every operation)."""
        role = definition.get("role") if isinstance(definition, Mapping) else None
        if not isinstance(role, str) or role in subject.roles:
            return  # a missing or malformed role is the check's to report
        if any("*" in self.policy.roles[r].operations for r in subject.roles if r in self.policy.roles):
            return
        raise PolicyDenied(
            f"denied: automation {name!r} acts as role {role!r}, which {subject.sub} does not hold "
            f"(an automation may act as one of its manager's roles: {', '.join(sorted(subject.roles)) or 'none'})"
        )

    def _document(self) -> dict[str, Any]:
        """The file's document (a new one when there is no file); refused when the file does not check now."""
        if not self.path.is_file():
            return {"automations": {}}
        self.current()  # a hand-edited file that is wrong is fixed by hand, not overwritten
        document = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        return document if isinstance(document, dict) else {"automations": {}}

    def _version(self, name: str) -> str | None:
        found = self.current().get(name) if self.path.is_file() else None
        return found.version if found is not None else None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One change at a time: a thread lock in this process, an advisory file lock between processes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _PROCESS_LOCK, open(self.path.with_name(self.path.name + ".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _record(
        self, subject: Subject, change: Change, decision: Decision, variables: dict[str, Any], detail: dict[str, Any]
    ) -> None:
        self.audit.append(
            AuditEvent.for_subject(
                subject,
                f"automation.{change}",
                decision,
                variables=variables,
                policy_version=self.policy.version,
                detail=json.dumps(detail, sort_keys=True, default=str)[:4000],
            )
        )


def _plain(value: Any) -> Any:
    """JSON-like input as plain dicts and lists (so it dumps as plain YAML)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _dump(document: dict[str, Any]) -> str:
    return "# automations: managed by `twin decisions automations` and the API as well as by hand\n" + yaml.safe_dump(
        document, sort_keys=False, allow_unicode=True, width=120
    )


def _replace(path: Path, text: str) -> None:
    """Write `text` to `path` atomically: a reader sees the old file or the new one, never half of one."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
