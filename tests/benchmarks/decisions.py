"""Benchmark: decision orchestration. One JSON line per figure, with the load average.

    .venv/bin/python -m tests.benchmarks.decisions [--twins 2000] [--automations 100] [--rounds 3] [--moments 10]
        [--samples 20] [--only rule_evals_per_s|change_to_proposal_p95_ms|proposal_to_subscriber_p95_ms|
        duplicate_writebacks]

- rule_evals_per_s: 100 automations (CEL conditions over the twin; a tenth also over neighbours one hop away), N
  materials and suppliers in an embedded graph, every material's stock changed once; the evaluator then follows the
  change feed page by page (feed read, policy gate per role, (class, property) index, neighbours in one round trip
  per page, binding, conditions) — changes x matching rules evaluated per second, median of the rounds. Goal
  >= 20,000.
- change_to_proposal_p95_ms: the small sample enterprise synced, the reorder automation running in a decisions
  runtime (its own thread, as `twin serve` runs it); a material's stock lowered in the sample ERP database and the ERP
  connector synced (incremental) — milliseconds from the sync's commit until the proposal is visible through the
  decisions service (as GraphQL reads it), 95th percentile over `--samples` materials (the sync's own time is
  reported beside it). Goal < 1,000 ms.
- proposal_to_subscriber_p95_ms: the small sample enterprise synced and served (the real app, in-process); a
  data steward subscribed to `decisions` over the GraphQL WebSocket; a proposal made through the decisions service —
  milliseconds from the write's return until the subscriber holds its event, 95th percentile over `--samples`
  proposals. The subscription is woken by the service's notice (governance/decisions/notices.py); before, it polled
  every 250 ms.
- duplicate_writebacks: the crash test (tests/decisions/test_execution_crash.py) at `--moments` random moments:
  orders the ERP holds beyond one per approved proposal, summed. Goal 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's packages, not this folder's scripts

from governance.decisions.actions import default_action_types  # noqa: E402
from governance.decisions.automations import load_automations  # noqa: E402
from governance.decisions.evaluation import Evaluator  # noqa: E402
from governance.policy import load_policy  # noqa: E402
from graph.embedded import stop_embedded  # noqa: E402
from graph.model import Link, Twin  # noqa: E402
from graph.store import GraphStore  # noqa: E402
from ontology.core import load_core  # noqa: E402


def emit(figure: str, value: float, **extra: object) -> None:
    """One figure as a JSON line, with the load average."""
    print(
        json.dumps(
            {
                "benchmark": "decisions",
                "figure": figure,
                "value": value,
                "load_average": [round(x, 2) for x in os.getloadavg()],
                **extra,
            }
        ),
        flush=True,
    )


def automations_yaml(count: int) -> str:
    """`count` automations over Material and Supplier, a tenth reading neighbours."""
    lines = ["automations:"]
    for i in range(count):
        if i % 10 == 9:
            lines += [
                f"  near-{i}:",
                "    role: admin",
                "    trigger: {change: {class: Material, properties: [stockLevel]}}",
                "    neighbours: {hops: 1, via: [supplies]}",
                f"    condition: \"twin.stockLevel < {i}.0 && neighbours.exists(n, n.cls == 'Supplier' && "
                'n.reliability < 0.5)"',
                "    alert: {severity: info}",
            ]
        elif i % 4 == 3:
            lines += [
                f"  supplier-{i}:",
                "    role: data_steward",
                "    trigger: {change: {class: Supplier, properties: [reliability]}}",
                f'    condition: "twin.reliability < 0.{i % 9 + 1}"',
                "    alert: {severity: info}",
            ]
        else:
            lines += [
                f"  stock-{i}:",
                "    role: data_steward",
                "    trigger: {change: {class: Material, properties: [stockLevel]}}",
                f"    condition: \"twin.stockLevel < {i}.0 && twin.name != '' && twin.uid != ''\"",
                "    alert: {severity: info}",
            ]
    return "\n".join(lines) + "\n"


def rule_evals(twins: int, count: int, rounds: int) -> None:
    ontology = load_core()
    policy = load_policy(ontology)
    results = []
    for _ in range(rounds):
        root = Path(tempfile.mkdtemp(prefix="decisions-bench-"))
        store = GraphStore.open(
            f"falkordb+embedded://{root / 'graph'}", ontology, fsync="no", history_url=f"sqlite:///{root / 'twin.db'}"
        )
        try:
            suppliers = [Twin(f"sup:{i}", "Supplier", {"name": f"S{i}", "reliability": 0.9}) for i in range(50)]
            materials = [
                Twin(f"mat:{i}", "Material", {"name": f"M{i}", "stockLevel": 500.0, "unitCost": 2.0})
                for i in range(twins)
            ]
            store.upsert_twins(suppliers + materials)
            store.upsert_links([Link("supplies", f"sup:{i % 50}", f"mat:{i}", {}) for i in range(twins)])
            start = store.feed.head()
            store.upsert_twins([Twin(f"mat:{i}", "Material", {"stockLevel": float(i % 200)}) for i in range(twins)])
            path = root / "automations.yaml"
            path.write_text(automations_yaml(count))
            rules = load_automations(path, ontology, policy, default_action_types())
            evaluator = Evaluator(store, policy)
            evaluated = fired = 0
            began = time.perf_counter()
            cursor = start
            while page := store.feed.read(cursor, 1000):
                report = evaluator.changes(rules, page)
                evaluated += report.evaluated
                fired += len(report.firings)
                cursor = page[-1].seq
            elapsed = time.perf_counter() - began
            results.append((evaluated / elapsed, evaluated, fired, elapsed))
        finally:
            store.close()
            stop_embedded(root / "graph")
            shutil.rmtree(root, ignore_errors=True)
    rate = statistics.median(r[0] for r in results)
    best = min(results, key=lambda r: abs(r[0] - rate))
    emit(
        "rule_evals_per_s",
        round(rate),
        automations=count,
        changes=twins,
        evaluations=best[1],
        firings=best[2],
        seconds=round(best[3], 3),
        rounds=rounds,
    )


def change_to_proposal(samples: int) -> None:
    import sqlite3

    from api.runtime import Runtime
    from connectors.sample.enterprise import generate_sample
    from tests.decisions.conftest import REORDER, settings_for, sync_erp

    root = Path(tempfile.mkdtemp(prefix="decisions-latency-"))
    data_dir = root / "data"
    generate_sample(data_dir / "sample", "small")
    (data_dir / "automations.yaml").write_text(REORDER)
    runtime = Runtime(settings=settings_for(data_dir))
    decisions = None
    latencies, syncs = [], []
    try:
        sync_erp(runtime)
        decisions = runtime.decision_runtime(holder="benchmark")
        assert decisions is not None
        decisions.start()
        materials = [
            row[0]
            for row in runtime.store.query(
                "MATCH (:Supplier)-[:supplies]->(m:Material) RETURN DISTINCT m.uid ORDER BY m.uid LIMIT $n",
                {"n": samples},
            )
        ]
        service, operator = runtime.decisions, runtime.operator()
        erp = data_dir / "sample" / "erp.sqlite"
        for uid in materials:
            code = uid.rsplit(":", 1)[1]
            with sqlite3.connect(erp) as con:
                newest = con.execute("SELECT MAX(updated_at) FROM materials").fetchone()[0] or ""
                stamp = max(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), str(newest)[:19])
                con.execute(
                    "UPDATE materials SET safety_stock = 1, updated_at = ? WHERE material_code = ?", (stamp, code)
                )
            began = time.perf_counter()
            sync_erp(runtime)
            synced = time.perf_counter()
            deadline = synced + 30
            while not service.page_proposals(operator, states=["proposed"], twin_uid=uid, first=1).items:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"no proposal for {uid} within 30 s: {decisions.status.errors}")
                time.sleep(0.005)
            latencies.append((time.perf_counter() - synced) * 1000)
            syncs.append((synced - began) * 1000)
    finally:
        if decisions is not None:
            decisions.stop()
        runtime.close()
        stop_embedded(data_dir / "graph")
        shutil.rmtree(root, ignore_errors=True)
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    emit(
        "change_to_proposal_p95_ms",
        round(p95, 1),
        samples=len(latencies),
        median_ms=round(statistics.median(latencies), 1),
        sync_median_ms=round(statistics.median(syncs), 1),
    )


def proposal_to_subscriber(samples: int) -> None:
    from fastapi.testclient import TestClient

    from api.http.app import create_app
    from api.runtime import Runtime
    from connectors.sample.enterprise import generate_sample
    from governance.identity import Subject
    from governance.tokens import LocalIssuer
    from tests.decisions.conftest import settings_for, sync_erp

    root = Path(tempfile.mkdtemp(prefix="decisions-push-"))
    data_dir = root / "data"
    generate_sample(data_dir / "sample", "small")
    runtime = Runtime(settings=settings_for(data_dir))
    latencies = []
    try:
        sync_erp(runtime)
        supplier, material = runtime.store.query(
            "MATCH (s:Supplier)-[:supplies]->(m:Material) RETURN s.uid, m.uid ORDER BY m.uid LIMIT 1"
        )[0]
        proposer = Subject(sub="bench-proposer", roles=frozenset({"data_steward"}))
        service = runtime.decisions
        token = LocalIssuer(data_dir).issue_token("data_steward", sub="bench-watcher")
        with (
            TestClient(create_app(runtime)) as client,
            client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as socket,
        ):
            socket.send_json({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
            assert socket.receive_json() == {"type": "connection_ack"}
            query = 'subscription { decisions(kinds: ["proposal"]) { kind proposal { id } } }'
            socket.send_json({"id": "p", "type": "subscribe", "payload": {"query": query}})
            deadline = time.monotonic() + 30
            while service.notices.listeners == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("the subscription did not start")
                time.sleep(0.01)
            for _ in range(samples):
                made = service.propose(
                    proposer,
                    "erp.purchase_order",
                    {"material": material, "supplier": supplier, "quantity": 5.0},
                    material,
                    "benchmark",
                )
                written = time.perf_counter()
                while True:
                    message = socket.receive_json()
                    if message["payload"]["data"]["decisions"]["proposal"]["id"] == made.id:
                        break
                latencies.append((time.perf_counter() - written) * 1000)
            socket.send_json({"id": "p", "type": "complete"})
    finally:
        runtime.close()
        stop_embedded(data_dir / "graph")
        shutil.rmtree(root, ignore_errors=True)
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    emit(
        "proposal_to_subscriber_p95_ms",
        round(p95, 1),
        samples=len(latencies),
        median_ms=round(statistics.median(latencies), 1),
    )


def duplicate_writebacks(moments: int) -> None:
    from api.runtime import Runtime
    from connectors.sample.enterprise import generate_sample
    from tests.decisions.conftest import settings_for, sync_erp
    from tests.decisions.test_execution_crash import crash_runs

    root = Path(tempfile.mkdtemp(prefix="decisions-crash-"))
    data_dir = root / "data"
    generate_sample(data_dir / "sample", "small")
    runtime = Runtime(settings=settings_for(data_dir))
    try:
        sync_erp(runtime)
        results = crash_runs(runtime, moments=moments, seed=int(time.time()))
    finally:
        runtime.close()
        stop_embedded(data_dir / "graph")
        shutil.rmtree(root, ignore_errors=True)
    emit(
        "duplicate_writebacks",
        sum(max(0, n - 1) for _, n in results),
        moments=moments,
        lost=sum(1 for _, n in results if n == 0),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--twins", type=int, default=2000)
    parser.add_argument("--automations", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--moments", type=int, default=10)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument(
        "--only",
        choices=[
            "rule_evals_per_s",
            "change_to_proposal_p95_ms",
            "proposal_to_subscriber_p95_ms",
            "duplicate_writebacks",
        ],
        default=None,
    )
    args = parser.parse_args()
    if args.only in (None, "rule_evals_per_s"):
        rule_evals(args.twins, args.automations, args.rounds)
    if args.only in (None, "change_to_proposal_p95_ms"):
        change_to_proposal(args.samples)
    if args.only in (None, "proposal_to_subscriber_p95_ms"):
        proposal_to_subscriber(args.samples)
    if args.only in (None, "duplicate_writebacks"):
        duplicate_writebacks(args.moments)


if __name__ == "__main__":
    main()
