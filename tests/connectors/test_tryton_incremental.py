"""Tryton, incremental runs only: every kind of change made in Tryton (a related record renamed, a record re-parented,
deleted, inserted, a second-level related record changed) is in the twin after the next incremental run, record by
record: uids, names, values and links equal what Tryton holds."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from connectors.mapping import EntityMapping, parse_mapping
from connectors.sync import Connector, SyncReport
from connectors.tryton import TrytonClient, TrytonSource
from ontology.model import Ontology
from tests.connectors.tryton_server import missing_tryton, running_server, template_database
from tests.connectors.twin_fixtures import TwinEnv, core, twin  # noqa: F401

MAPPING = """\
system: tryton
entities:
  - name: companies
    class: Organization
    uid: "tryton:company:{id}"
    watermark: write_date
    source: {model: company.company, fields: [id, party.name]}
    properties:
      name: party.name
  - name: employees
    class: Employee
    uid: "tryton:employee:{id}"
    watermark: write_date
    source: {model: company.employee, fields: [id, party.name, party.code, supervisor, company, company.party.name]}
    properties:
      name: party.name
      employeeId: {field: id, cast: string}
      jobTitle: party.code
      description: company.party.name
    links:
      - type: reportsTo
        target: "tryton:employee:{supervisor}"
        target_class: Employee
      - type: partOf
        target: "tryton:company:{company}"
        target_class: Organization
"""

Twins = dict[str, tuple[str, dict[str, Any]]]
Links = set[tuple[str, str, str]]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrytonClient]:
    """A trytond of this module's own, so the comparison covers exactly what this module created."""
    reason = missing_tryton()
    if reason is not None:
        pytest.skip(reason)
    with running_server(tmp_path_factory.mktemp("tryton-incremental"), template_database()) as server:
        tryton = TrytonClient(server.url, server.database, server.username, server.password)
        tryton.login()
        yield tryton
        tryton.close()


def build_enterprise(c: TrytonClient) -> dict[str, Any]:
    """A company with a chief and three employees reporting to her, created as a Tryton client would."""
    currencies = c.search("currency.currency", [("code", "=", "EUR")])
    currency = (
        currencies[0]
        if currencies
        else c.create(
            "currency.currency",
            [{"name": "Euro", "code": "EUR", "symbol": "€", "digits": 2, "rounding": Decimal("0.01")}],
        )[0]
    )
    (company_party,) = c.create("party.party", [{"name": "Łódź Rail Works"}])
    (company,) = c.create("company.company", [{"party": company_party, "currency": currency}])
    c.write(
        "res.user",
        [c.search("res.user", [("login", "=", "admin")])[0]],
        {"companies": [("add", [company])], "company": company},
    )
    c.refresh_context()
    people = c.create("party.party", [{"name": n} for n in ("Erin Chief", "Finn Fitter", "Gina Welder", "Hal Temp")])
    (chief,) = c.create("company.employee", [{"party": people[0], "company": company}])
    fitter, welder, temp = c.create(
        "company.employee", [{"party": p, "company": company, "supervisor": chief} for p in people[1:]]
    )
    return {
        "company": company,
        "company_party": company_party,
        "chief": chief,
        "fitter": fitter,
        "welder": welder,
        "temp": temp,
        "people": people,
    }


def expected_state(c: TrytonClient) -> tuple[Twins, Links]:
    """What the twin must hold, read independently from Tryton's current records."""
    twins: Twins = {}
    links: Links = set()
    ctx = {"active_test": False}
    for company in c.search_read("company.company", [], ["party.name"], context=ctx):
        twins[f"tryton:company:{company['id']}"] = ("Organization", {"name": company["party."]["name"]})
    for e in c.search_read(
        "company.employee", [], ["party.name", "party.code", "supervisor", "company", "company.party.name"], context=ctx
    ):
        uid = f"tryton:employee:{e['id']}"
        props = {
            "name": e["party."]["name"],
            "employeeId": str(e["id"]),
            "jobTitle": e["party."]["code"],
            "description": e["company."]["party."]["name"],
        }
        twins[uid] = ("Employee", {k: v for k, v in props.items() if v is not None})
        if e["supervisor"]:
            links.add(("reportsTo", uid, f"tryton:employee:{e['supervisor']}"))
        links.add(("partOf", uid, f"tryton:company:{e['company']}"))
    return twins, links


def twin_state(env: TwinEnv) -> tuple[Twins, Links]:
    """The twins and links of Tryton's system in the graph."""
    twins: Twins = {}
    for uid, cls, props in env.store.backend.read(
        "MATCH (n:Twin) WHERE n.uid STARTS WITH 'tryton:' RETURN n.uid, n._class, properties(n)"
    ):
        twins[uid] = (cls, {k: v for k, v in dict(props).items() if k not in ("uid", "_class")})
    links = {
        (t, a, b)
        for t, a, b in env.store.backend.read(
            "MATCH (a:Twin)-[r]->(b:Twin) WHERE a.uid STARTS WITH 'tryton:' RETURN type(r), a.uid, b.uid"
        )
    }
    return twins, links


def differences(env: TwinEnv, c: TrytonClient) -> list[str]:
    """Every way the twin differs from Tryton, record by record (empty when they are equal)."""
    want_twins, want_links = expected_state(c)
    have_twins, have_links = twin_state(env)
    found = [f"missing twin {uid}" for uid in sorted(set(want_twins) - set(have_twins))]
    found += [f"extra twin {uid}" for uid in sorted(set(have_twins) - set(want_twins))]
    found += [
        f"{uid}: twin {have_twins[uid]} but Tryton {want}"
        for uid, want in sorted(want_twins.items())
        if uid in have_twins and have_twins[uid] != want
    ]
    found += [f"missing link {link}" for link in sorted(want_links - have_links)]
    found += [f"extra link {link}" for link in sorted(have_links - want_links)]
    return found


def connector(core: Ontology, client: TrytonClient) -> Connector:
    mapping = parse_mapping(MAPPING, core, "tryton-incremental.yaml")

    def open_source(entity: EntityMapping) -> TrytonSource:
        return TrytonSource(
            client,
            entity.source["model"],
            entity.source["fields"],
            entity.watermark or "write_date",
            overlap=dt.timedelta(seconds=1),
            name=f"tryton:{entity.name}",
        )

    return Connector("tryton", mapping, open_source)


@pytest.mark.timeout(600)
def test_incremental_runs_keep_the_twin_equal_to_tryton(core: Ontology, twin: TwinEnv, client: TrytonClient) -> None:
    c = client
    ids = build_enterprise(c)
    tryton = connector(core, c)
    engine = twin.engine()

    def settle() -> None:
        """Let the source's overlap (1 s) pass, so the next run re-reads only records changed after this point."""
        time.sleep(1.2)

    def incremental() -> SyncReport:
        report = engine.run(tryton, "incremental")
        assert report.status == "completed" and report.counts["quarantined"] == 0
        assert differences(twin, c) == []
        return report

    first = incremental()  # no watermark yet: reads everything
    # 1 company and 4 employees; 3 reportsTo and 4 partOf links: twins and links, not records
    assert (first.counts["read"], first.counts["created"]) == (5, 5 + 7)
    welder, fitter = f"tryton:employee:{ids['welder']}", f"tryton:employee:{ids['fitter']}"

    # re-parented: the welder now reports to the fitter (this also moves the employees' watermark past the
    # other employees' own change times)
    settle()
    c.write("company.employee", [ids["welder"]], {"supervisor": ids["fitter"]})
    moved = incremental()
    assert moved.entity("employees").created == 1 and moved.entity("employees").deleted == 1  # the two links

    # a related record renamed: the fitter's employee record is unchanged, it reads the name through party.name
    settle()
    c.write("party.party", [ids["people"][1]], {"name": "Finn Fitzgerald"})
    renamed = incremental()
    assert renamed.entity("employees").updated == 1 and renamed.entity("companies").updated == 0
    assert twin.store.require(fitter).properties["name"] == "Finn Fitzgerald"

    settle()
    # deleted: the twin goes with its links, without a full run
    c.delete("company.employee", [ids["temp"]])
    gone = incremental()
    assert gone.entity("employees").deleted == 1  # the twin; its links go with it
    assert twin.store.get(f"tryton:employee:{ids['temp']}") is None

    settle()
    # inserted
    (party,) = c.create("party.party", [{"name": "Ivo Inspector"}])
    (new,) = c.create("company.employee", [{"party": party, "company": ids["company"], "supervisor": ids["chief"]}])
    added = incremental()
    assert added.entity("employees").created == 3  # the twin and its two links
    assert twin.store.require(f"tryton:employee:{new}").properties["name"] == "Ivo Inspector"

    settle()
    # a second-level related record changed: employee -> company -> party
    c.write("party.party", [ids["company_party"]], {"name": "Łódź Rail Works SA"})
    second = incremental()
    assert second.entity("employees").updated == 4 and second.entity("companies").updated == 1
    assert twin.store.require(welder).properties["description"] == "Łódź Rail Works SA"
    assert engine.run(tryton, "incremental").counts["updated"] == 0  # the watermark moved past the change
