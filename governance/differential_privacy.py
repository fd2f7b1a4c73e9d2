"""Differentially private answers to aggregates over sensitive classes: counts, clamped sums and means with
calibrated noise from OpenDP's Laplace mechanisms, each answer stating its accuracy at 95 %.

Neighbouring datasets differ by one twin (added or removed). A count has sensitivity 1; a sum of values clamped to
[lo, hi] has sensitivity max(|lo|, |hi|); a mean is a noisy sum over a noisy count, each given half of the epsilon.
Grouped answers release each group's metrics with the full epsilon (a twin is in one group: parallel composition) and
leave out groups whose noisy count falls under a threshold, so that a group's key alone does not reveal that a
single twin holds it (the stability-based histogram; its delta is `GROUP_DELTA`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import opendp.prelude as dp

from governance.errors import GovernanceError

dp.enable_features("contrib")

ALPHA = 0.05
"""The accuracy statements are at 1 - ALPHA = 95 %: |noisy - exact| <= accuracy with that probability."""

GROUP_DELTA = 1e-6
"""The chance that a grouped answer reveals a group held by one twin only (the threshold is set from it)."""

MIN_EPSILON = 1e-3
"""The smallest epsilon an answer may spend: below it the noise drowns any count (and the samplers saturate)."""

DpMetric = Literal["count", "sum", "avg"]


class PrivacyQueryError(GovernanceError):
    """An aggregate that cannot be answered with differential privacy (MIN/MAX, a sum without bounds, …)."""


@dataclass(frozen=True)
class NoisyValue:
    """One released number: the noisy value, the epsilon it spent and its accuracy at 95 % (None: not bounded)."""

    value: float
    epsilon: float
    accuracy95: float | None
    mechanism: str


@lru_cache(maxsize=256)
def _integer_laplace(scale: float) -> Any:
    return dp.m.make_laplace(dp.atom_domain(T=int), dp.absolute_distance(T=int), scale=scale)


@lru_cache(maxsize=256)
def _float_laplace(scale: float) -> Any:
    return dp.m.make_laplace(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale=scale)


def _positive(epsilon: float) -> float:
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
        raise PrivacyQueryError(f"epsilon must be a positive number, not {epsilon!r}")
    return float(epsilon)


def count_accuracy(epsilon: float, alpha: float = ALPHA) -> float:
    """The 1-alpha accuracy of a count released at `epsilon` (discrete Laplace, scale 1/epsilon)."""
    return float(dp.discrete_laplacian_scale_to_accuracy(1.0 / _positive(epsilon), alpha))


def noisy_count(exact: int, epsilon: float) -> NoisyValue:
    """A count with discrete Laplace noise of scale 1/epsilon (sensitivity 1)."""
    scale = 1.0 / _positive(epsilon)
    # clamping at zero is post-processing: no privacy cost, and it only moves the answer towards the exact count
    value = max(float(_integer_laplace(scale)(int(exact))), 0.0)
    return NoisyValue(value, epsilon, count_accuracy(epsilon), "discrete_laplace")


def sum_sensitivity(bounds: tuple[float, float]) -> float:
    """How much one twin can move a sum of values clamped to `bounds`."""
    lo, hi = bounds
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise PrivacyQueryError(f"clamp bounds must be finite with lower < upper, not {bounds!r}")
    return max(abs(lo), abs(hi))


def _sum_accuracy(epsilon: float, bounds: tuple[float, float], alpha: float) -> float:
    return float(dp.laplacian_scale_to_accuracy(sum_sensitivity(bounds) / _positive(epsilon), alpha))


def noisy_sum(exact: float, epsilon: float, bounds: tuple[float, float]) -> NoisyValue:
    """A sum of values clamped to `bounds`, with Laplace noise of scale max(|lo|, |hi|)/epsilon."""
    scale = sum_sensitivity(bounds) / _positive(epsilon)
    value = float(_float_laplace(scale)(float(exact)))
    return NoisyValue(value, epsilon, _sum_accuracy(epsilon, bounds, ALPHA), "laplace")


def noisy_mean(exact_sum: float, exact_count: int, epsilon: float, bounds: tuple[float, float]) -> NoisyValue:
    """A mean as a noisy clamped sum over a noisy count (half the epsilon each). Its accuracy is a conservative 95 %
    bound: both parts within their 97.5 % accuracies give |noisy - exact| <= (a_sum + M a_count) / (count' - a_count),
    M = max(|lo|, |hi|); None when the noisy count is too small for the bound to exist."""
    half = _positive(epsilon) / 2
    scale_sum = sum_sensitivity(bounds) / half
    noisy_total = float(_float_laplace(scale_sum)(float(exact_sum)))
    noisy_n = float(_integer_laplace(1.0 / half)(int(exact_count)))
    lo, hi = bounds
    value = min(max(noisy_total / noisy_n, lo), hi) if noisy_n >= 1 else (lo + hi) / 2
    a_sum = _sum_accuracy(half, bounds, ALPHA / 2)
    a_count = count_accuracy(half, ALPHA / 2)
    accuracy = (a_sum + sum_sensitivity(bounds) * a_count) / (noisy_n - a_count) if noisy_n > a_count else None
    if accuracy is not None:
        accuracy = min(accuracy, hi - lo)
    return NoisyValue(value, epsilon, accuracy, "laplace_ratio")


def group_threshold(epsilon: float, delta: float = GROUP_DELTA) -> float:
    """The noisy count under which a group is left out of a grouped answer: a group held by one twin passes it with
    probability at most `delta` (discrete Laplace tail, scale 1/epsilon)."""
    return 1.0 + math.log(1.0 / (2.0 * delta)) / _positive(epsilon)


@dataclass(frozen=True)
class MetricRequest:
    """One metric of a private aggregate: what it computes, and the clamp bounds of its field (sum and mean)."""

    fn: str
    field: str | None
    bounds: tuple[float, float] | None = None


@dataclass(frozen=True)
class PrivateGroup:
    """One released group: its key values and the noisy metrics, in request order."""

    group: dict[str, Any]
    metrics: tuple[NoisyValue, ...]


@dataclass(frozen=True)
class PrivateAnswer:
    """A grouped aggregate released with noise: the groups that passed the threshold, and how many were left out (an
    exact number: never released — it would count the twins of a filter without noise)."""

    groups: tuple[PrivateGroup, ...]
    epsilon: float
    suppressed: int


def check_private(metrics: list[MetricRequest]) -> None:
    """Refuse, before any budget is spent, metrics that differential privacy here cannot answer."""
    for metric in metrics:
        if metric.fn not in ("count", "sum", "avg"):
            raise PrivacyQueryError(
                f"{metric.fn.upper()} cannot be answered with differential privacy (one twin decides it); "
                "ask for COUNT, SUM or AVG"
            )
        if metric.fn != "count" and metric.bounds is None:
            raise PrivacyQueryError(
                f"{metric.fn.upper()} of {metric.field!r} needs clamp bounds for that field in the role's privacy "
                "settings (privacy.bounds in the policy)"
            )


@dataclass(frozen=True)
class ExactGroup:
    """One group as the graph computed it: key values, its twin count, and per metric the exact value (a count, a
    sum of clamped values, or for a mean the pair (sum of clamped values, number of values))."""

    group: dict[str, Any]
    twins: int
    values: tuple[Any, ...]


def release(rows: list[ExactGroup], metrics: list[MetricRequest], epsilon: float, grouped: bool) -> PrivateAnswer:
    """Noise every metric of `rows` with `epsilon` split evenly across the metrics plus, when grouped, the count that
    decides whether a group is released."""
    check_private(metrics)
    parts = len(metrics) + (1 if grouped else 0)
    share = _positive(epsilon) / parts
    released: list[PrivateGroup] = []
    suppressed = 0
    threshold = group_threshold(share) if grouped else 0.0
    for row in rows:
        if grouped and noisy_count(row.twins, share).value < threshold:
            suppressed += 1
            continue
        noised = []
        for metric, value in zip(metrics, row.values, strict=True):
            if metric.fn == "count":
                noised.append(noisy_count(int(value or 0), share))
            elif metric.fn == "sum":
                assert metric.bounds is not None  # check_private
                noised.append(noisy_sum(float(value or 0.0), share, metric.bounds))
            else:
                assert metric.bounds is not None
                total, count = value
                noised.append(noisy_mean(float(total or 0.0), int(count or 0), share, metric.bounds))
        released.append(PrivateGroup(row.group, tuple(noised)))
    return PrivateAnswer(tuple(released), float(epsilon), suppressed)
