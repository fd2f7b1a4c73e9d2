"""Fixtures of the API tests: one real embedded graph on the core ontology, the app over it, real tokens per role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.runtime import Runtime
from api.settings import Settings
from governance.audit import AuditRecord
from governance.roles import ROLE_NAMES
from governance.tokens import LocalIssuer
from graph.embedded import stop_embedded
from graph.model import Link, Twin

EMPLOYEES = 24
UNITS = {"u-root": None, "u-eng": "u-root", "u-sales": "u-root", "u-eng-tools": "u-eng"}


def sample_twins() -> tuple[list[Twin], list[Link]]:
    """A small enterprise: org units, employees with personal data, skills, machines, processes, supply chain."""
    twins = [Twin(uid, "OrgUnit", {"name": f"Unit {uid[2:]}", "costCenter": f"CC-{uid}"}) for uid in UNITS]
    links = [Link("partOf", uid, parent) for uid, parent in UNITS.items() if parent]
    units = ["u-eng", "u-sales", "u-eng-tools"]
    for i in range(EMPLOYEES):
        uid = f"emp-{i:02d}"
        twins.append(
            Twin(
                uid,
                "Employee",
                {
                    "name": f"Person {i:02d}",
                    "employeeId": f"E{i:03d}",
                    "email": f"person{i}@example.test",
                    "phone": f"+49 30 1234 {i:04d}",
                    "salary": 50_000.0 + 1_000 * i,
                    "jobTitle": "Engineer" if i % 2 else "Sales",
                    "hireDate": f"20{10 + i % 10}-0{1 + i % 9}-15",
                },
            )
        )
        links.append(Link("worksIn", uid, units[i % 3]))
        if i:
            links.append(Link("reportsTo", uid, f"emp-{(i - 1) // 4:02d}"))
    twins += [
        Twin(f"skill-{k}", "Skill", {"name": name, "category": "tech"})
        for k, name in enumerate(["Welding", "CNC", "Python"])
    ]
    links += [Link("hasSkill", f"emp-{i:02d}", f"skill-{i % 3}", {"level": 1 + i % 5}) for i in range(EMPLOYEES)]
    twins += [
        Twin(
            f"machine-{k}",
            "Machine",
            {
                "name": f"Press {k}",
                "status": "operational",
                "acquisitionCost": 10_000.0 * (k + 1),
                "mtbfHours": 500.0 + k,
            },
        )
        for k in range(4)
    ]
    twins += [Twin("site-1", "Site", {"name": "Plant Berlin", "country": "DE"})]
    links += [Link("locatedAt", f"machine-{k}", "site-1") for k in range(4)]
    links += [Link("operates", f"emp-{i:02d}", f"machine-{i % 4}") for i in range(0, EMPLOYEES, 2)]
    twins += [
        Twin("proc-1", "Process", {"name": "Stamping", "cycleTimeHours": 1.5}),
        Twin("mat-1", "Material", {"name": "Steel coil", "unitCost": 3.2, "stockLevel": 100.0}),
        Twin("prod-1", "Product", {"name": "Bracket", "sku": "BR-1", "unitPrice": 9.9}),
        Twin("sup-1", "Supplier", {"name": "Acme Steel", "reliability": 0.9}),
    ]
    links += [
        Link("requires", "proc-1", "machine-0"),
        Link("consumes", "proc-1", "mat-1"),
        Link("produces", "proc-1", "prod-1"),
        Link("supplies", "sup-1", "mat-1", {"leadTimeDays": 14}),
    ]
    return twins, links


@dataclass
class ApiHarness:
    """The app under test with helpers: tokens per role, GraphQL calls, audit rows."""

    client: TestClient
    runtime: Runtime
    issuer: LocalIssuer

    @property
    def store(self) -> Any:
        """The graph store behind the app."""
        return self.runtime.store

    def token(self, role: str, sub: str | None = None, org_unit: str | None = None) -> str:
        """A real token from the local issuer the app trusts."""
        return self.issuer.issue_token(role, sub=sub or f"test-{role}", org_unit=org_unit)

    def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        role: str = "admin",
        org_unit: str | None = None,
        token: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """POST a GraphQL request as `role`; (status, JSON body)."""
        bearer = token or self.token(role, org_unit=org_unit)
        response = self.client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {bearer}"},
        )
        return response.status_code, response.json()

    def data(
        self, query: str, variables: dict[str, Any] | None = None, role: str = "admin", org_unit: str | None = None
    ) -> dict[str, Any]:
        """The `data` of a request that must succeed without errors."""
        status, body = self.gql(query, variables, role, org_unit)
        assert status == 200 and "errors" not in body, body
        return body["data"]

    def audit_records(self) -> list[AuditRecord]:
        """Every audit record so far, oldest first."""
        trail = self.client.app.state.services.trail  # type: ignore[attr-defined]
        trail.flush()
        return trail.log.query(limit=100_000)


def _settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        graph_url=f"falkordb+embedded://{data_dir / 'graph'}",
        database_url=f"sqlite:///{data_dir / 'twin.db'}",
        api_graphiql=True,
    )


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiHarness]:
    """The app over a populated embedded graph (shared by the session; tests that write use their own uids)."""
    data_dir = tmp_path_factory.mktemp("api")
    runtime = Runtime(settings=_settings(data_dir))
    try:
        twins, links = sample_twins()
        runtime.store.upsert_twins(twins)
        runtime.store.upsert_links(links)
        app = create_app(runtime)
        with TestClient(app) as client:
            yield ApiHarness(client, runtime, LocalIssuer(data_dir))
    finally:
        runtime.close()
        stop_embedded(data_dir / "graph")


@pytest.fixture(scope="session")
def roles() -> list[str]:
    """Every built-in role."""
    return sorted(ROLE_NAMES)
