"""One caller's query cannot lock up the graph: filter nesting and size are bounded, the time limit holds, and one
caller's slow queries leave the graph workers to everyone else (issue 22 item 4)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.runtime import Runtime
from governance.tokens import LocalIssuer
from graph.embedded import stop_embedded
from tests.api.conftest import ApiHarness, _settings, sample_twins

TIME_LIMIT_MS = 3_000


def nested_not(levels: int, leaf: str = '{name: {contains: "x"}}') -> str:
    """`{NOT: {NOT: ... leaf}}`, `levels` deep."""
    return "{NOT: " * levels + leaf + "}" * levels


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiHarness]:
    """An app of its own (a lock-up here must not slow the shared one), with a 3 s query time limit."""
    data_dir = tmp_path_factory.mktemp("limits")
    settings = _settings(data_dir).model_copy(update={"api_query_timeout_ms": TIME_LIMIT_MS})
    runtime = Runtime(settings=settings)
    try:
        twins, links = sample_twins()
        runtime.store.upsert_twins(twins)
        runtime.store.upsert_links(links)
        with TestClient(create_app(runtime)) as client:
            yield ApiHarness(client, runtime, LocalIssuer(data_dir))
    finally:
        runtime.close()
        stop_embedded(data_dir / "graph")


def _timed(harness: ApiHarness, query: str, token: str, out: dict[str, Any], key: str) -> None:
    started = time.monotonic()
    status, body = harness.gql(query, token=token)
    out[key] = (time.monotonic() - started, status, body)


def test_deep_not_queries_do_not_hold_up_a_normal_query(limited: ApiHarness) -> None:
    """Two 10-level NOT filters (20-30 s each in FalkorDB's parser, beyond any time limit) run alongside a normal
    query of another caller: the normal one answers within 1 s, the deep ones are refused within the limit."""
    deep = "{ machines(where: %s) { totalCount nodes { uid } } }" % nested_not(10)
    attacker, other = limited.token("viewer", sub="attacker"), limited.token("viewer", sub="someone-else")
    results: dict[str, Any] = {}
    attacks = [threading.Thread(target=_timed, args=(limited, deep, attacker, results, f"deep{i}")) for i in range(2)]
    for thread in attacks:
        thread.start()
    time.sleep(0.3)  # the deep queries are in flight (on the old code: on both of the server's threads)
    _timed(limited, "{ machines { totalCount nodes { uid } } }", other, results, "normal")
    for thread in attacks:
        thread.join(timeout=120)
    elapsed, status, body = results["normal"]
    print(
        f"\n  normal query answered in {elapsed:.3f} s; deep ones in "
        f"{', '.join(f'{results[k][0]:.3f} s' for k in ('deep0', 'deep1'))}"
    )
    assert status == 200 and body["data"]["machines"]["totalCount"] == 4, body
    assert elapsed < 1.0
    for key in ("deep0", "deep1"):
        elapsed, status, body = results[key]
        assert elapsed < TIME_LIMIT_MS / 1000 + 1.0
        assert body["errors"][0]["extensions"]["code"] in ("BAD_USER_INPUT", "TIMEOUT"), body


def test_filter_nesting_and_size_are_bounded_with_a_clear_error(limited: ApiHarness) -> None:
    status, body = limited.gql("{ machines(where: %s) { totalCount } }" % nested_not(6))
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "nest" in error["message"] and "5" in error["message"]
    mixed = '{OR: [{AND: [{NOT: {OR: [{AND: [{NOT: {name: {eq: "x"}}}]}]}}]}]}'
    status, body = limited.gql("{ machines(where: %s) { totalCount } }" % mixed)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    wide = "{OR: [" + ", ".join(f'{{name: {{eq: "m{i}"}}}}' for i in range(300)) + "]}"
    status, body = limited.gql("{ machines(where: %s) { totalCount } }" % wide)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "300 conditions" in error["message"], body
    status, body = limited.gql(
        "{ aggregate(className: Machine, where: %s) { group } }" % nested_not(6, '{name: {eq: "x"}}')
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


def test_filters_within_the_bounds_still_answer_correctly(limited: ApiHarness) -> None:
    data = limited.data("{ machines(where: %s) { totalCount } }" % nested_not(4, '{name: {contains: "press 1"}}'))
    assert data["machines"]["totalCount"] == 1
    data = limited.data("{ machines(where: %s) { totalCount } }" % nested_not(5, '{name: {contains: "press 1"}}'))
    assert data["machines"]["totalCount"] == 3
    data = limited.data(
        '{ machines(where: {OR: [{name: {eq: "Press 0"}}, {AND: [{name: {startsWith: "Press"}}, '
        "{NOT: {mtbfHours: {lt: 502}}}]}]}) { nodes { uid } } }"
    )
    assert sorted(n["uid"] for n in data["machines"]["nodes"]) == ["machine-0", "machine-2", "machine-3"]


def test_slow_reads_stop_at_the_limit_keep_their_place_and_leave_server_threads_to_others(limited: ApiHarness) -> None:
    """Reads the server cannot stop in time (a 10-level `NOT (` nesting parses for seconds whatever its TIMEOUT): the
    caller gets TIMEOUT at the limit, its reads keep their places until the server is done, its third read is not
    let through, and another caller's read answers within 1 s meanwhile (the server has threads to spare)."""
    import anyio

    from api.http.read_gate import ReadGate
    from graph.errors import QueryTimedOut

    backend = limited.store.backend
    slow = "MATCH (m:Machine) WHERE " + "NOT (" * 10 + "m.name = 'x'" + ")" * 10 + " RETURN count(m)"
    gate = ReadGate(per_caller=2)
    outcomes: dict[str, Any] = {}

    async def attempt(key: str, caller: str, cypher: str, timeout_ms: int) -> None:
        started = time.monotonic()
        try:
            result: Any = await gate.run(caller, lambda: backend.read(cypher, timeout_ms=timeout_ms), timeout_ms)
        except QueryTimedOut as exc:
            result = exc
        outcomes[key] = (time.monotonic() - started, result)

    async def scenario() -> None:
        async with anyio.create_task_group() as group:
            for i in range(3):
                group.start_soon(attempt, f"slow{i}", "attacker", slow, 1_000)
            await anyio.sleep(0.3)
            group.start_soon(attempt, "normal", "someone-else", "MATCH (m:Machine) RETURN count(m)", 1_000)
        outcomes["attacker places after the limit"] = gate.running("attacker")

    anyio.run(scenario)
    print("\n  " + "; ".join(f"{k}: {v[0]:.3f} s" for k, v in outcomes.items() if isinstance(v, tuple)))
    elapsed, result = outcomes["normal"]
    assert result == [[4]] and elapsed < 1.0
    for i in range(3):
        elapsed, result = outcomes[f"slow{i}"]
        assert isinstance(result, QueryTimedOut) and elapsed < 1.0 + 1.0
    assert outcomes["attacker places after the limit"] == 2  # the server is still parsing both
    deadline = time.monotonic() + 300
    while gate.running("attacker") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gate.running("attacker") == 0  # given back once the server was done


def test_the_embedded_server_runs_the_configured_query_threads(limited: ApiHarness) -> None:
    connection = limited.store.backend._client.connection  # noqa: SLF001 - the server's own config is the evidence
    assert connection.execute_command("GRAPH.CONFIG", "GET", "THREAD_COUNT") == [
        "THREAD_COUNT",
        limited.runtime.settings.graph_threads,
    ]


def test_reads_past_the_bound_wait_in_line_and_leave_no_place_behind() -> None:
    """Six reads of one caller with two places run two at a time in arrival order; reads given up on (time limit,
    or the request cancelled while waiting) give every place back."""
    import anyio

    from api.http.read_gate import ReadGate
    from graph.errors import QueryTimedOut

    gate = ReadGate(per_caller=2)
    finished: list[int] = []
    outcomes: dict[int, Any] = {}

    def work(i: int, seconds: float) -> Any:
        def read() -> int:
            finished.append(i)  # when it started: reads start in pairs, in arrival order
            time.sleep(seconds)
            return i

        return read

    async def one(i: int, seconds: float, timeout_ms: int) -> None:
        try:
            outcomes[i] = await gate.run("caller", work(i, seconds), timeout_ms)
        except QueryTimedOut:
            outcomes[i] = "TIMEOUT"

    async def scenario() -> list[int]:
        async with anyio.create_task_group() as group:
            for i in range(6):
                group.start_soon(one, i, 0.1, 10_000)
                await anyio.sleep(0.005)
        in_line = list(finished)
        outcomes.clear()
        async with anyio.create_task_group() as group:
            for i in range(4):
                group.start_soon(one, i, 0.6, 200)
        async with anyio.create_task_group() as group:  # requests cancelled while their reads wait in line
            for i in range(10, 14):
                group.start_soon(one, i, 0.3, 10_000)
            await anyio.sleep(0.05)
            group.cancel_scope.cancel()
        return in_line

    in_line = anyio.run(scenario)
    assert [sorted(in_line[k : k + 2]) for k in (0, 2, 4)] == [[0, 1], [2, 3], [4, 5]]
    assert [outcomes[i] for i in range(4)] == ["TIMEOUT"] * 4
    deadline = time.monotonic() + 10
    while gate.running("caller") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gate.running("caller") == 0 and not gate._waiting  # noqa: SLF001 - no place or waiter left behind
