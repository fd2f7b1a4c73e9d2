"""Replication statistics: means with t confidence intervals, percentiles, paired differences, breach chances."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


def t_quantile(q: float, df: int) -> float:
    """The q-quantile of Student's t with df degrees of freedom (scipy when installed, else an expansion)."""
    try:  # scipy takes seconds to import: only when a summary is made
        from scipy.stats import t as student_t
    except ImportError:
        return _t_quantile_expansion(q, df)
    return float(student_t.ppf(q, df))


def _t_quantile_expansion(q: float, df: int) -> float:
    """Exact for df 1 and 2; else a Cornish-Fisher start refined by bisection on the exact integer-df CDF."""
    if df == 1:
        return math.tan(math.pi * (q - 0.5))
    if df == 2:
        return (2 * q - 1) / math.sqrt(2 * q * (1 - q))
    z = NormalDist().inv_cdf(q)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    guess = z + g1 / df + g2 / df**2 + g3 / df**3
    low, high = guess - 1.0, guess + 1.0
    while _t_cdf(low, df) > q:
        low -= 1.0
    while _t_cdf(high, df) < q:
        high += 1.0
    for _ in range(80):
        mid = (low + high) / 2
        if _t_cdf(mid, df) < q:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _t_cdf(x: float, df: int) -> float:
    """Student's t CDF for integer df (Abramowitz & Stegun 26.7.3 / 26.7.4)."""
    theta = math.atan(x / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:
        total, term = 1.0, 1.0
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        a = 2 / math.pi * (theta + (math.sin(theta) * math.cos(theta) * total if df > 1 else 0.0))
    else:
        total, term = 1.0, 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        a = math.sin(theta) * total
    return 0.5 + 0.5 * a


@dataclass(frozen=True)
class Interval:
    """A mean with its 95 % confidence interval."""

    mean: float
    low: float
    high: float


def mean_interval(values: np.ndarray, level: float = 0.95) -> Interval:
    """Mean and t confidence interval of independent replications."""
    n = len(values)
    mean = float(np.mean(values)) if n else math.nan
    if n < 2:
        return Interval(mean, math.nan, math.nan)
    half = t_quantile(0.5 + level / 2, n - 1) * float(np.std(values, ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half)


def interval_series(matrix: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column (step): mean and the t interval over rows (replications)."""
    n = matrix.shape[0]
    mean = matrix.mean(0)
    if n < 2:
        return mean, mean, mean
    half = t_quantile(0.5 + level / 2, n - 1) * matrix.std(0, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class KpiSummary:
    """One KPI of one scenario over the replications, and its difference to baseline (paired by replication)."""

    scenario: str
    kpi: str
    n: int
    mean: float
    ci_low: float
    ci_high: float
    p10: float
    p90: float
    diff_mean: float | None = None
    diff_low: float | None = None
    diff_high: float | None = None
    p_breach: float | None = None


def summarise(
    scenario: str,
    kpi: str,
    values: np.ndarray,
    baseline: np.ndarray | None,
    below: float | None = None,
    above: float | None = None,
) -> KpiSummary:
    """Mean, CI, P10/P90, paired difference to baseline (common random numbers), chance of breaching a threshold."""
    ci = mean_interval(values)
    p10, p90 = (float(x) for x in np.percentile(values, [10, 90]))
    diff = mean_interval(values - baseline) if baseline is not None else None
    breach = None
    if below is not None or above is not None:
        hit = np.zeros(len(values), dtype=bool)
        if below is not None:
            hit |= values < below
        if above is not None:
            hit |= values > above
        breach = float(hit.mean())
    return KpiSummary(
        scenario,
        kpi,
        len(values),
        ci.mean,
        ci.low,
        ci.high,
        p10,
        p90,
        diff.mean if diff else None,
        diff.low if diff else None,
        diff.high if diff else None,
        breach,
    )
