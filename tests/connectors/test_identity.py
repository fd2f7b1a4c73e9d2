"""Identity resolution: one Person twin for the same person in HR and CRM, by e-mail or fuzzy name, recorded and
reversible."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text

from connectors.identity import IdentityResolver
from connectors.mapping import parse_mapping
from connectors.sql_source import SqlSource
from connectors.sync import Connector
from governance.lineage import LineageStore
from ontology.model import Ontology
from tests.connectors.twin_fixtures import TwinEnv, core, twin  # noqa: F401

HR = """\
system: hr
entities:
  - name: employees
    class: Employee
    uid: "hr:employee:{id}"
    key: id
    properties:
      employeeId: {field: id, cast: string}
      name: name
      email: email
      phone: phone
    identity:
      domain: person
      email: email
      plus_domains: [acme.example]
      fuzzy: {name: name, organisation: "{company}", threshold: 90}
      authoritative: true
"""

CRM = """\
system: crm
entities:
  - name: contacts
    class: Contact
    uid: "crm:contact:{id}"
    key: id
    properties:
      name: name
      email: email
      phone: phone
      jobTitle: title
    identity:
      domain: person
      email: email
      plus_domains: [acme.example]
      fuzzy: {name: name, organisation: "{company}", threshold: 90}
"""


def database(path: Path, table: str, rows: list[dict]) -> str:
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, name TEXT, email TEXT, "
                "phone TEXT, title TEXT, company TEXT)"
            )
        )
        conn.execute(text(f"DELETE FROM {table}"))
        for row in rows:
            conn.execute(
                text(
                    f"INSERT INTO {table} (id, name, email, phone, title, company) "
                    "VALUES (:id, :name, :email, :phone, :title, :company)"
                ),
                {"title": None, "phone": None, "company": None, "email": None, **row},
            )
    engine.dispose()
    return url


def connector(core: Ontology, name: str, mapping: str, url: str) -> Connector:
    return Connector(
        name,
        parse_mapping(mapping, core, f"{name}.yaml"),
        lambda e: SqlSource(url, table=e.name, key="id", name=e.name),
    )


ADA_HR = {"id": 1, "name": "Ada Lovelace", "email": "ada.lovelace@acme.example", "phone": "+44 1", "company": "ACME"}
ADA_CRM = {
    "id": 10,
    "name": "Ada Lovelace",
    "email": "  Ada.Lovelace+sales@ACME.example ",
    "phone": "+44 2",
    "title": "Chief Engineer",
    "company": "Acme",
}


def test_hr_employee_and_crm_contact_become_one_person_twin(core: Ontology, twin: TwinEnv, tmp_path: Path) -> None:
    hr = connector(core, "hr", HR, database(tmp_path / "hr.db", "employees", [ADA_HR]))
    crm = connector(
        core,
        "crm",
        CRM,
        database(
            tmp_path / "crm.db",
            "contacts",
            [ADA_CRM, {"id": 11, "name": "Bob Buyer", "email": "bob@customer.example", "company": "Customer"}],
        ),
    )
    engine = twin.engine()
    engine.run(hr, "full")
    report = engine.run(crm, "full")
    assert report.entity("contacts").examples["merge"] == ["crm:contact:10 -> hr:employee:1 (email)"]
    assert twin.store.stats().by_class == {"Employee": 1, "Contact": 1}
    ada = twin.store.require("hr:employee:1")
    assert ada.cls == "Employee" and "Person" in ada.labels and "Contact" not in ada.labels
    # CRM fills what HR lacks and never overwrites what HR gave
    assert ada.properties["jobTitle"] == "Chief Engineer" and ada.properties["phone"] == "+44 1"
    (link,) = IdentityResolver(twin.state_url).links("hr:employee:1")
    assert (link.canonical_uid, link.source_system, link.source_key, link.rule, link.score) == (
        "hr:employee:1",
        "crm",
        "crm:contact:10",
        "email",
        1.0,
    )
    systems = {(p.source_system, p.property) for p in LineageStore(twin.state_url).where_from("hr:employee:1")}
    assert {("hr", "employeeId"), ("hr", "phone"), ("crm", "jobTitle")} <= systems
    assert ("crm", "phone") not in systems
    again = engine.run(crm, "full")  # stable: no flip-flopping between sources
    assert again.counts["unchanged"] == 2 and twin.store.require("hr:employee:1").properties["phone"] == "+44 1"
    engine.run(hr, "full")
    assert twin.store.require("hr:employee:1").properties["jobTitle"] == "Chief Engineer"


def test_crm_first_then_hr_refines_the_contact_to_an_employee(core: Ontology, twin: TwinEnv, tmp_path: Path) -> None:
    hr = connector(core, "hr", HR, database(tmp_path / "hr.db", "employees", [ADA_HR]))
    crm = connector(core, "crm", CRM, database(tmp_path / "crm.db", "contacts", [ADA_CRM]))
    engine = twin.engine()
    engine.run(crm, "full")
    assert twin.store.require("crm:contact:10").cls == "Contact"
    engine.run(hr, "full")
    assert twin.store.stats().by_class == {"Employee": 1}
    merged = twin.store.require("crm:contact:10")  # uids never change: the first twin's uid stays canonical
    assert merged.cls == "Employee" and "Contact" not in merged.labels
    assert merged.properties["employeeId"] == "1" and merged.properties["phone"] == "+44 1"  # HR is authoritative
    engine.run(crm, "full")
    assert twin.store.require("crm:contact:10").cls == "Employee"


def test_fuzzy_name_within_the_same_organisation_above_the_threshold(
    core: Ontology, twin: TwinEnv, tmp_path: Path
) -> None:
    hr = connector(
        core,
        "hr",
        HR,
        database(
            tmp_path / "hr.db",
            "employees",
            [{**ADA_HR, "email": None}, {"id": 2, "name": "Grace Hopper", "company": "ACME"}],
        ),
    )
    crm = connector(
        core,
        "crm",
        CRM,
        database(
            tmp_path / "crm.db",
            "contacts",
            [
                {"id": 10, "name": "Lovelace,  Ada", "company": "Acme"},  # same person, other spelling
                {"id": 11, "name": "Grace Hooper", "company": "Other Corp"},  # similar name, other organisation
                {"id": 12, "name": "Gracie Harper", "company": "ACME"},  # same organisation, too different
            ],
        ),
    )
    engine = twin.engine()
    engine.run(hr, "full")
    engine.run(crm, "full")
    links = IdentityResolver(twin.state_url).links()
    assert [(link.source_key, link.canonical_uid, link.rule) for link in links] == [
        ("crm:contact:10", "hr:employee:1", "fuzzy:name+organisation")
    ]
    assert 0.9 <= links[0].score <= 1.0
    assert twin.store.stats().by_class == {"Employee": 2, "Contact": 2}


def test_unmerge_splits_the_record_back_and_it_stays_split(core: Ontology, twin: TwinEnv, tmp_path: Path) -> None:
    hr = connector(core, "hr", HR, database(tmp_path / "hr.db", "employees", [ADA_HR]))
    crm = connector(core, "crm", CRM, database(tmp_path / "crm.db", "contacts", [ADA_CRM]))
    engine = twin.engine()
    engine.run(hr, "full")
    engine.run(crm, "full")
    assert engine.unmerge("crm:contact:10") == "crm:contact:10"
    contact = twin.store.require("crm:contact:10")
    assert contact.cls == "Contact" and contact.properties["jobTitle"] == "Chief Engineer"
    assert twin.store.require("hr:employee:1").cls == "Employee"
    resolver = IdentityResolver(twin.state_url)
    assert resolver.links() == []
    (ended,) = resolver.links(include_ended=True)
    assert not ended.active and ended.ended_at is not None
    again = engine.run(crm, "full")  # not merged again; the contact gets back the phone HR's value had hidden
    assert again.counts["created"] == 0 and resolver.links() == []
    assert twin.store.require("crm:contact:10").properties["phone"] == "+44 2"
    assert twin.store.require("hr:employee:1").properties["phone"] == "+44 1"
    assert twin.store.stats().by_class == {"Employee": 1, "Contact": 1}


def test_records_of_one_system_never_merge_with_each_other(core: Ontology, twin: TwinEnv, tmp_path: Path) -> None:
    hr = connector(
        core, "hr", HR, database(tmp_path / "hr.db", "employees", [ADA_HR, {**ADA_HR, "id": 2, "phone": "+44 3"}])
    )
    twin.engine().run(hr, "full")
    assert twin.store.stats().by_class == {"Employee": 2}
    assert IdentityResolver(twin.state_url).links() == []
