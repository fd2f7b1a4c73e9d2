"""Issue 19 items 1-2: per-subject data keys wrapped by a master key; sealed values bound to uid and property;
destroying a key makes every sealed copy unreadable; master key created 0600 in a fresh key directory, refused when
wrong or missing, rotated without touching sealed data; what a lost master key leaves."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from governance.errors import KeyMaterialError
from governance.master_key import EnvMasterKey, FileMasterKey, new_master_key_text
from governance.personal_seal import PersonalSeal
from governance.subject_keys import SubjectKeyRing
from graph.history import Change, ChangeContext, HistoryStore, LoadedTwin
from graph.personal_values import is_sealed

EMAIL = "ann.secret@acme.test"


def _ring(tmp_path: Path, provider: FileMasterKey | EnvMasterKey | None = None) -> SubjectKeyRing:
    return SubjectKeyRing(f"sqlite:///{tmp_path / 'keys.db'}", provider or FileMasterKey(tmp_path / "master.key"))


def test_a_fresh_key_directory_gets_a_private_master_key_file(tmp_path: Path) -> None:
    ring = _ring(tmp_path)
    path = tmp_path / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_text().strip())) == 32
    assert ring.count() == 0
    _ring(tmp_path)  # reopening checks the same key


def test_sealed_values_are_bound_to_subject_and_property_and_die_with_the_key(tmp_path: Path) -> None:
    seal = PersonalSeal(_ring(tmp_path), {"email"})
    token = seal.seal_value("p-ann", "email", EMAIL)
    assert is_sealed(token) and EMAIL not in token
    assert seal.open_value("p-ann", "email", token) == EMAIL
    assert seal.open_text("p-bob", "email", token) is None  # another subject's key, and another uid bound
    seal.ring.keys_for(["p-bob"], create=True)
    assert seal.open_text("p-bob", "email", token) is None
    assert seal.open_text("p-ann", "phone", token) is None  # the property is bound too
    (state,) = seal.seal_states([("p-ann", {"email": EMAIL, "name": "Ann", "phone": None})])
    assert state is not None and is_sealed(state["email"]) and state["name"] == "Ann" and state["phone"] is None
    assert seal.open_state("p-ann", state) == {"email": EMAIL, "name": "Ann", "phone": None}
    assert seal.ring.destroy("p-ann") and not seal.ring.has_key("p-ann")
    assert seal.open_text("p-ann", "email", token) is None
    assert seal.open_state("p-ann", state) == {"name": "Ann", "phone": None}  # erased: left out
    assert not seal.ring.destroy("p-ann")


def test_a_wrong_master_key_is_refused_at_start_without_showing_it(tmp_path: Path) -> None:
    _ring(tmp_path)
    wrong = new_master_key_text()
    with pytest.raises(KeyMaterialError, match="is not the one the subject key ring") as error:
        _ring(tmp_path, EnvMasterKey("TWIN_MASTER_KEY", wrong))
    assert wrong not in str(error.value)
    with pytest.raises(KeyMaterialError, match="not base64"):
        _ring(tmp_path, EnvMasterKey("TWIN_MASTER_KEY", "not a key!"))
    with pytest.raises(KeyMaterialError, match="holds 16 bytes; 32 are needed"):
        _ring(tmp_path, EnvMasterKey("TWIN_MASTER_KEY", base64.b64encode(b"x" * 16).decode()))


def test_a_missing_master_key_file_is_refused_once_the_ring_was_made(tmp_path: Path) -> None:
    ring = _ring(tmp_path)
    ring.keys_for(["p-ann"], create=True)
    (tmp_path / "master.key").unlink()
    with pytest.raises(KeyMaterialError, match="master key file .* is missing but the subject key ring"):
        _ring(tmp_path)
    assert not (tmp_path / "master.key").exists()  # no new key was made that would hide the loss


def test_group_readable_master_key_file_is_refused(tmp_path: Path) -> None:
    _ring(tmp_path)
    (tmp_path / "master.key").chmod(0o640)
    with pytest.raises(KeyMaterialError, match="accessible to group/others"):
        _ring(tmp_path)


def test_rotating_the_master_key_rewraps_keys_and_leaves_sealed_data_alone(tmp_path: Path) -> None:
    ring = _ring(tmp_path)
    seal = PersonalSeal(ring, {"email"})
    tokens = {uid: seal.seal_value(uid, "email", f"{uid}@acme.test") for uid in ("p-1", "p-2", "p-3")}
    old_key = (tmp_path / "master.key").read_text()
    with ring.engine.connect() as conn:
        before = dict(conn.exec_driver_sql("SELECT uid, wrapped FROM subject_key").all())
    new_text = new_master_key_text()
    assert ring.rotate_master(new_text) == 3
    assert (tmp_path / "master.key").read_text().strip() == new_text
    assert stat.S_IMODE((tmp_path / "master.key").stat().st_mode) == 0o600
    with ring.engine.connect() as conn:
        after = dict(conn.exec_driver_sql("SELECT uid, wrapped FROM subject_key").all())
    assert after.keys() == before.keys() and all(after[uid] != before[uid] for uid in before)
    reopened = PersonalSeal(_ring(tmp_path), {"email"})
    assert {uid: reopened.open_value(uid, "email", t) for uid, t in tokens.items()} == {
        uid: f"{uid}@acme.test" for uid in tokens
    }
    with pytest.raises(KeyMaterialError, match="is not the one"):
        _ring(tmp_path, EnvMasterKey("TWIN_MASTER_KEY", old_key.strip()))


def test_a_rotation_stopped_before_its_file_rename_finishes_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = _ring(tmp_path)
    token = PersonalSeal(ring, {"email"}).seal_value("p-1", "email", EMAIL)
    import governance.subject_keys as subject_keys

    def stopped(*_: object) -> None:
        raise OSError("the process stopped here")

    monkeypatch.setattr(subject_keys.os, "replace", stopped)
    with pytest.raises(OSError):
        ring.rotate_master(new_master_key_text())  # committed, file not yet renamed
    monkeypatch.undo()
    assert (tmp_path / "master.key.next").exists()
    reopened = PersonalSeal(_ring(tmp_path), {"email"})
    assert reopened.open_value("p-1", "email", token) == EMAIL
    assert not (tmp_path / "master.key.next").exists()


def test_history_seals_personal_values_and_reads_them_back(tmp_path: Path) -> None:
    seal = PersonalSeal(_ring(tmp_path), {"email", "phone"})
    history = HistoryStore(f"sqlite:///{tmp_path / 'twin.db'}", seal)
    history.record(
        [
            Change("p-ann", "twin", "create", None, {"name": "Ann", "email": EMAIL}, "Employee"),
            Change("p-ann", "twin", "update", {"email": EMAIL}, {"email": "ann@new.test"}, "Employee"),
            Change("p-ann", "link", "create", None, {"since": 2020}, None, "worksIn", "ou-1"),
        ],
        ChangeContext("test"),
    )
    with history.engine.connect() as conn:
        stored = " ".join(str(r) for r in conn.exec_driver_sql("SELECT before, after FROM twin_history").all())
    assert EMAIL not in stored and "ann@new.test" not in stored and "Ann" in stored
    entries = history.history("p-ann")
    assert entries[0].after == {"name": "Ann", "email": EMAIL}
    assert (entries[1].before, entries[1].after) == ({"email": EMAIL}, {"email": "ann@new.test"})
    assert entries[2].after == {"since": 2020}
    import datetime as dt

    assert history.as_of("p-ann", dt.datetime.now(dt.UTC))["email"] == "ann@new.test"  # type: ignore[index]
    feed = [(c.before, c.after) for c in history_feed(history)]
    assert feed[1] == ({"email": EMAIL}, {"email": "ann@new.test"})
    seal.ring.destroy("p-ann")
    assert history.history("p-ann")[0].after == {"name": "Ann"}
    assert [c.after for c in history_feed(history)][:2] == [{"name": "Ann"}, {}]


def history_feed(history: HistoryStore) -> list:
    from graph.feed import ChangeFeed

    return ChangeFeed(history).read()


def test_losing_the_master_key_loses_sealed_copies_only(tmp_path: Path) -> None:
    """What a lost master key leaves (README, 'Losing the master key'): the ring cannot be opened; moving it aside
    starts a new one, after which every sealed copy reads as erased and everything else still reads."""
    seal = PersonalSeal(_ring(tmp_path), {"email"})
    history = HistoryStore(f"sqlite:///{tmp_path / 'twin.db'}", seal)
    history.record(
        [Change("p-ann", "twin", "create", None, {"name": "Ann", "email": EMAIL}, "Employee")], ChangeContext()
    )
    (tmp_path / "master.key").unlink()
    with pytest.raises(KeyMaterialError, match="missing"):
        _ring(tmp_path)
    fresh_dir = tmp_path / "fresh"  # the lost ring moved aside: a new ring and master key start
    fresh_dir.mkdir()
    fresh = PersonalSeal(_ring(fresh_dir), {"email"})
    assert HistoryStore(history.url, fresh).history("p-ann")[0].after == {"name": "Ann"}


def test_identity_match_keys_are_blind_or_sealed_and_still_match(tmp_path: Path) -> None:
    from connectors.identity import IdentityResolver, candidate

    seal = PersonalSeal(_ring(tmp_path), {"email"}, b"i" * 32)
    identity = IdentityResolver(f"sqlite:///{tmp_path / 'twin.db'}", seal)
    identity.resolve("person", [candidate("hr:1", "hr", email=EMAIL, name="Ann  Archer", organisation="Acme")])
    with identity.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT kind, value FROM identity_key").all()
    assert {kind for kind, _ in stored} == {"email", "name"}
    assert not [value for _, value in stored if "ann" in value.lower()]  # neither the e-mail nor the name in clear
    by_email = identity.resolve("person", [candidate("crm:7", "crm", email=EMAIL.upper())])
    assert by_email["crm:7"].canonical_uid == "hr:1" and by_email["crm:7"].rule == "email"
    by_name = identity.resolve(
        "person", [candidate("erp:3", "erp", name="Ann Archer", organisation="acme")], threshold=90
    )
    assert by_name["erp:3"].canonical_uid == "hr:1" and by_name["erp:3"].rule.startswith("fuzzy")
    identity.resolve("person", [candidate("hr:1", "hr", email=EMAIL, name="Ann  Archer", organisation="Acme")])
    with identity.engine.connect() as conn:  # the same name again: the deterministic token keeps one row
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM identity_key WHERE kind = 'name'").scalar() == 1


def test_keys_commands_rotate_and_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from api.cli.app import app
    from api.settings import get_settings
    from governance.audit import AuditLog

    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        status = CliRunner().invoke(app, ["keys", "status"])
        assert status.exit_code == 0, status.output
        assert "opens the key ring; 0 subject keys" in " ".join(status.output.split())
        key_file = tmp_path / "data" / "keys" / "master.key"
        first = key_file.read_text()
        ring = SubjectKeyRing(f"sqlite:///{tmp_path / 'data' / 'keys' / 'subject_keys.db'}", FileMasterKey(key_file))
        token = PersonalSeal(ring, {"email"}).seal_value("p-1", "email", EMAIL)
        rotated = CliRunner().invoke(app, ["keys", "rotate-master"])
        assert rotated.exit_code == 0, rotated.output
        assert "re-wrapped 1 subject keys" in rotated.output and key_file.read_text() != first
        assert first.strip() not in rotated.output
        reopened = SubjectKeyRing(ring.url, FileMasterKey(key_file))
        assert PersonalSeal(reopened, {"email"}).open_value("p-1", "email", token) == EMAIL
        audit = AuditLog(f"sqlite:///{tmp_path / 'data' / 'twin.db'}")
        assert len(audit.query(operation="keys.rotate-master")) == 1
        missing_env = CliRunner().invoke(app, ["keys", "rotate-master", "--new-key-env", "NO_SUCH_VARIABLE_X"])
        assert missing_env.exit_code == 2 and "NO_SUCH_VARIABLE_X" in missing_env.output
    finally:
        get_settings.cache_clear()


def test_compact_history_of_a_bulk_load_seals_personal_values_and_reads_them_back(tmp_path: Path) -> None:
    seal = PersonalSeal(_ring(tmp_path), {"email", "phone"})
    history = HistoryStore(f"sqlite:///{tmp_path / 'twin.db'}", seal)
    pending = history.begin([], ChangeContext("loader"))
    pending.add_loaded(
        [
            LoadedTwin("p-ann", "Employee", {"name": "Ann", "email": EMAIL}, [("worksIn", "ou-1", {"since": 2020})]),
            LoadedTwin("ou-1", "OrgUnit", {"name": "Unit 1"}, [], ["p-ann"]),
        ]
    )
    assert pending.commit() == 3
    with history.engine.connect() as conn:
        stored = " ".join(str(r) for r in conn.exec_driver_sql("SELECT after, links FROM twin_history").all())
    assert EMAIL not in stored and "Ann" in stored and "since" in stored
    entries = history.history("p-ann")
    assert [(e.kind, e.after) for e in entries] == [
        ("twin", {"name": "Ann", "email": EMAIL}),
        ("link", {"since": 2020}),
    ]
    assert [(e.kind, e.uid) for e in history.history("ou-1")] == [("twin", "ou-1"), ("link", "p-ann")]
    import datetime as dt

    assert history.as_of("p-ann", dt.datetime.now(dt.UTC))["email"] == EMAIL  # type: ignore[index]
    assert [c.after for c in history_feed(history)] == [
        {"name": "Ann", "email": EMAIL},
        {"name": "Unit 1"},
        {"since": 2020},
    ]
    seal.ring.destroy("p-ann")
    assert history.history("p-ann")[0].after == {"name": "Ann"}
    assert history_feed(history)[0].after == {"name": "Ann"}
