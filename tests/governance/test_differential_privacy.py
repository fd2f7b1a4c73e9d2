"""Differential privacy for sensitive aggregates: the mechanisms keep their stated accuracy, the budget ledger refuses
an overspend (also under concurrent spenders on PostgreSQL), and the policy decides exact, noisy or none."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from governance.differential_privacy import (
    ExactGroup,
    MetricRequest,
    PrivacyQueryError,
    check_private,
    count_accuracy,
    noisy_count,
    noisy_mean,
    noisy_sum,
    release,
)
from governance.identity import Subject
from governance.policy import Policy, PolicyError, PrivacyBudgetRule, load_policy
from governance.privacy_budget import PrivacyBudgetExhausted, PrivacyBudgetLedger, period_start
from ontology.loader import load_ontology

TRIALS = 1000


def test_count_at_epsilon_one_stays_within_its_stated_accuracy_95_percent_of_the_time() -> None:
    exact = 137
    answers = [noisy_count(exact, 1.0) for _ in range(TRIALS)]
    accuracy = answers[0].accuracy95
    assert accuracy is not None and 2.9 < accuracy < 3.5  # ~3 at epsilon 1 (discrete Laplace, scale 1)
    within = sum(abs(a.value - exact) <= accuracy for a in answers)
    assert within >= 0.95 * TRIALS
    assert sum(a.value == exact for a in answers) < 0.6 * TRIALS  # noise is really added
    assert all(a.value == int(a.value) for a in answers)  # counts stay integers


def test_counts_never_come_out_negative() -> None:
    assert min(noisy_count(0, 0.5).value for _ in range(300)) == 0.0


def test_smaller_epsilon_means_wider_accuracy() -> None:
    assert count_accuracy(0.1) > 5 * count_accuracy(1.0)


def test_clamped_sum_and_mean_keep_their_accuracy() -> None:
    bounds = (0.0, 100.0)
    # a continuous Laplace sum is within its accuracy exactly 95 % of the time: 3,000 trials put the observed share
    # within 0.935..0.965 except with probability ~1e-4 (3.75 standard deviations either side)
    sums = [noisy_sum(5_000.0, 1.0, bounds) for _ in range(3 * TRIALS)]
    share = sum(abs(s.value - 5_000.0) <= (s.accuracy95 or 0) for s in sums) / len(sums)
    assert 0.935 <= share <= 0.965
    assert 250 < (sums[0].accuracy95 or 0) < 350  # Laplace scale 100: ln(20) * 100
    means = [noisy_mean(5_000.0, 100, 1.0, bounds) for _ in range(TRIALS)]
    assert all(m.accuracy95 is not None for m in means)
    assert sum(abs(m.value - 50.0) <= (m.accuracy95 or 0) for m in means) >= 0.95 * TRIALS
    assert all(0.0 <= m.value <= 100.0 for m in means)


def test_mean_over_too_few_twins_states_no_accuracy() -> None:
    mean = noisy_mean(10.0, 1, 0.1, (0.0, 100.0))
    assert mean.accuracy95 is None or mean.accuracy95 <= 100.0


def test_min_max_and_unbounded_sums_are_refused_before_anything_is_spent() -> None:
    with pytest.raises(PrivacyQueryError, match="MAX cannot be answered"):
        check_private([MetricRequest("max", "salary", (0.0, 1.0))])
    with pytest.raises(PrivacyQueryError, match="needs clamp bounds"):
        check_private([MetricRequest("sum", "salary", None)])
    with pytest.raises(PrivacyQueryError, match="epsilon must be a positive"):
        noisy_count(3, 0.0)


def test_a_group_held_by_one_twin_is_not_released_but_a_large_one_is() -> None:
    rows = [ExactGroup({"title": "rare"}, 1, (1,)), ExactGroup({"title": "common"}, 500, (500,))]
    released = [release(rows, [MetricRequest("count", None)], 1.0, grouped=True) for _ in range(300)]
    assert all([g.group["title"] for g in a.groups] == ["common"] for a in released)
    assert all(a.suppressed == 1 for a in released)


def _rule(limit: float = 3.0, per_query: float = 1.0, role: str = "executive") -> PrivacyBudgetRule:
    return PrivacyBudgetRule(role, limit, "day", per_query, {})


def test_the_ledger_refuses_when_the_budget_is_spent_and_renews_next_period(tmp_path) -> None:
    ledger = PrivacyBudgetLedger(f"sqlite:///{tmp_path / 'twin.db'}")
    rule = _rule()
    now = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
    for _ in range(3):
        ledger.spend(rule, 1.0, "alice", "aggregate Person", now)
    assert ledger.state(rule, now).remaining == 0.0
    with pytest.raises(PrivacyBudgetExhausted, match="privacy budget of role executive for this day is spent"):
        ledger.spend(rule, 0.5, "alice", "aggregate Person", now)
    with pytest.raises(PrivacyBudgetExhausted, match="outside"):
        ledger.spend(rule, 2.0, "alice", "aggregate Person", now + timedelta(days=1))
    renewed = ledger.spend(rule, 1.0, "alice", "aggregate Person", now + timedelta(days=1))
    assert renewed.spent == 1.0 and renewed.period_start == datetime(2026, 12, 4, tzinfo=UTC)
    other = ledger.spend(_rule(role="architect"), 1.0, "bob", "aggregate Person", now)
    assert other.spent == 1.0  # budgets are per role


def test_period_starts() -> None:
    now = datetime(2026, 12, 3, 15, 30, tzinfo=UTC)  # a Thursday
    assert period_start("day", now) == datetime(2026, 12, 3, tzinfo=UTC)
    assert period_start("week", now) == datetime(2026, 11, 30, tzinfo=UTC)
    assert period_start("month", now) == datetime(2026, 12, 1, tzinfo=UTC)


def test_concurrent_spenders_never_overspend_on_postgresql(postgres_url: str) -> None:
    ledger = PrivacyBudgetLedger(postgres_url)
    rule = _rule(limit=10.0, role=f"role-{uuid.uuid4().hex[:8]}")
    spent, refused = [], []

    def spender() -> None:
        for _ in range(5):
            try:
                spent.append(ledger.spend(rule, 1.0, "t", "q"))
            except PrivacyBudgetExhausted:
                refused.append(1)

    threads = [threading.Thread(target=spender) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(spent) == 10 and len(refused) == 20
    assert ledger.state(rule).spent == pytest.approx(10.0)


@pytest.fixture(scope="module")
def ontology():
    return load_ontology()


def test_policy_decides_exact_noisy_or_none(ontology) -> None:
    policy = load_policy(ontology)
    analyst, admin = Subject("x", frozenset({"analyst"})), Subject("a", frozenset({"admin"}))
    private = policy.aggregate_mode(analyst, "Employee")
    assert private.mode == "private" and private.budget is not None and private.scope is not None
    assert "Employee" in (private.scope.readable_classes or ()) and "salary" in private.scope.hidden["Employee"]
    assert "Employee" not in (policy.read_scope(analyst).readable_classes or ())  # never readable row by row
    assert policy.aggregate_mode(analyst, "Skill").mode == "exact"
    assert policy.aggregate_mode(admin, "Employee").mode == "exact"
    both = Subject("b", frozenset({"analyst", "admin"}))
    assert policy.aggregate_mode(both, "Employee").mode == "exact"  # the union of what the roles allow
    executive = Subject("e", frozenset({"executive"}))
    assert policy.aggregate_mode(executive, "Employee").mode == "exact"  # reads the rows anyway: noise would be theatre
    spec = {
        "version": "1",
        "roles": {
            "steward": {"read": ["*"], "sensitive_aggregates": "none"},
            "analyst": {"read": ["*"], "privacy": {"epsilon_per_period": 5, "bounds": {"salary": [0, 1e5]}}},
        },
    }
    custom = Policy(spec, ontology)
    steward, analyst = Subject("s", frozenset({"steward"})), Subject("x", frozenset({"analyst"}))
    assert custom.aggregate_mode(steward, "Employee").mode == "none"
    assert custom.aggregate_mode(steward, "Skill").mode == "exact"  # no personal or confidential properties
    assert custom.aggregate_mode(analyst, "Machine").mode == "private"  # acquisitionCost is Confidential
    assert custom.aggregate_mode(analyst, "Employee").budget.bounds == {"salary": (0.0, 1e5)}
    employees_only = Policy(
        {"version": "1", "roles": {"r": {"read": ["Employee"], "privacy": {"epsilon_per_period": 5}}}}, ontology
    )
    assert employees_only.aggregate_mode(Subject("r", frozenset({"r"})), "Person").mode == "private"  # via Employee


def test_aggregate_only_classes_need_a_budget(ontology) -> None:
    with pytest.raises(PolicyError, match="`aggregate` needs `privacy`"):
        Policy({"version": "1", "roles": {"r": {"read": ["Skill"], "aggregate": ["Person"]}}}, ontology)
    with pytest.raises(PolicyError, match="unknown class 'Nosuch'"):
        spec = {"read": ["Skill"], "aggregate": ["Nosuch"], "privacy": {"epsilon_per_period": 1}}
        Policy({"version": "1", "roles": {"r": spec}}, ontology)


@pytest.mark.parametrize(
    "privacy,problem",
    [
        ({"epsilon_per_period": 1, "epsilon_per_query": 2}, "cannot exceed"),
        ({"epsilon_per_period": 0}, "greater than 0"),
        ({"epsilon_per_period": 5, "bounds": {"salary": [10, 1]}}, "lower < upper"),
        ({"epsilon_per_period": 5, "classifications": ["Public"]}, "classifications"),
        ({"epsilon_per_period": 5, "bounds": {"salery": [0, 1]}}, r"bounds name no numeric property.*salery"),
        ({"epsilon_per_period": 5, "bounds": {"email": [0, 1]}}, r"bounds name no numeric property.*email"),
    ],
)
def test_bad_privacy_settings_are_clear_errors(ontology, privacy, problem) -> None:
    with pytest.raises(PolicyError, match=problem):
        Policy({"version": "1", "roles": {"r": {"read": ["*"], "privacy": privacy}}}, ontology)


def test_twin_privacy_budget_shows_what_each_role_spent_and_audits_the_read(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from api.cli.app import app
    from api.settings import get_settings
    from governance.audit import AuditLog

    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "twin"))
    get_settings.cache_clear()
    try:
        url = get_settings().resolved_database_url
        rule = load_policy(load_ontology()).roles["analyst"].privacy
        assert rule is not None
        PrivacyBudgetLedger(url).spend(rule, 1.0, "anna", "aggregate Employee")
        PrivacyBudgetLedger(url).spend(rule, 0.5, "anna", "aggregate Employee")
        result = CliRunner().invoke(app, ["privacy", "budget", "--json"])
        assert result.exit_code == 0, result.output
        rows = {row["role"]: row for row in json.loads(result.output)}
        assert rows["analyst"]["epsilon_spent"] == 1.5
        assert rows["analyst"]["epsilon_left"] == rule.epsilon_per_period - 1.5
        unknown = CliRunner().invoke(app, ["privacy", "budget", "--role", "nosuch"])
        assert unknown.exit_code == 2 and "unknown role 'nosuch'" in unknown.output
        assert [r.operation for r in AuditLog(url).query(limit=10)].count("privacy.budget.read") == 1
    finally:
        get_settings.cache_clear()


def _spend_ten(url: str, barrier, out) -> None:  # type: ignore[no-untyped-def]
    ledger = PrivacyBudgetLedger(url)
    barrier.wait()
    paid = 0
    for _ in range(10):
        try:
            ledger.spend(_rule(limit=10.0, role="analyst"), 1.0, "s", "q")
            paid += 1
        except PrivacyBudgetExhausted:
            continue
    out.put(paid)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_spending_at_once_never_overspend(backend: str, tmp_path, request) -> None:
    """Several API workers (processes) spending one role's budget at once: exactly the budget is paid, no more."""
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'ledger.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    PrivacyBudgetLedger(url)
    spawn = multiprocessing.get_context("spawn")
    barrier, out = spawn.Barrier(4), spawn.Queue()
    workers = [spawn.Process(target=_spend_ten, args=(url, barrier, out)) for _ in range(4)]
    for worker in workers:
        worker.start()
    paid = [out.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert sum(paid) == 10
    assert PrivacyBudgetLedger(url).state(_rule(limit=10.0, role="analyst")).spent == pytest.approx(10.0)
