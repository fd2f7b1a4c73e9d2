"""KPIs of a finished model run: a series over steps and one summary value per replication, over a KPI's twins."""

from __future__ import annotations

import numpy as np

from simulation.model import EnterpriseModel
from simulation.scenario import KpiPlan

FLOW_KPIS = frozenset(
    {"throughput", "demand", "shipped", "lost_sales", "overtime_hours", "downtime_hours", "labour_cost"}
)
"""KPIs whose summary is the total over the horizon (the others are averages or ratios)."""


def _rows(index: dict[str, int], uids: frozenset[str] | None) -> np.ndarray | slice:
    if uids is None:
        return slice(None)
    return np.asarray(sorted(index[u] for u in uids if u in index), dtype=np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.ones_like(num, dtype=float), where=den > 0)


def measure(model: EnterpriseModel, kpi: KpiPlan) -> tuple[float, np.ndarray]:
    """(summary, series) of one KPI over the twins it is scoped to."""
    lines = _rows(model.process_index, kpi.processes)
    products = _rows(model.product_index, kpi.products)
    name = kpi.name
    if name == "throughput":
        series = model.produced[:, lines].sum(1)
        return float(series.sum()), series
    if name == "utilisation":
        made, nominal = model.produced[:, lines].sum(1), model.nominal[:, lines].sum(1)
        return float(made.sum() / nominal.sum()) if nominal.sum() else 0.0, _ratio(made, nominal)
    if name == "overtime_hours":
        series = model.overtime[:, lines].sum(1)
        return float(series.sum()), series
    if name in ("demand", "shipped", "lost_sales", "backlog"):
        source = {
            "demand": model.demanded,
            "shipped": model.shipped,
            "lost_sales": model.lost,
            "backlog": model.backlog_units,
        }[name]
        series = source[:, products].sum(1)
        return (float(series.mean()) if name == "backlog" else float(series.sum())), series
    if name == "fill_rate":
        filled, demand = model.filled_now[:, products].sum(1), model.demanded[:, products].sum(1)
        return float(filled.sum() / demand.sum()) if demand.sum() else 1.0, _ratio(filled, demand)
    if name == "service_level":
        lost, demand = np.cumsum(model.lost[:, products].sum(1)), np.cumsum(model.demanded[:, products].sum(1))
        series = 1.0 - _ratio(lost, demand) + (demand <= 0)
        return float(series[-1]) if len(series) else 1.0, np.minimum(series, 1.0)
    if name == "headcount":
        people = _people_rows(model, kpi)
        series = model.headcount[:, people].sum(1).astype(float)
        return float(series.mean()), series
    if name == "availability":
        assets = _rows(model.asset_index, kpi.assets)
        series = model.availability[:, assets].mean(1) if model.availability.size else np.ones(model.steps_total)
        return float(series.mean()), series
    if name == "material_stock":
        materials = _rows(model.material_index, kpi.materials)
        series = model.material_stock[:, materials].sum(1)
        return float(series.mean()), series
    if name == "downtime_hours":
        series = (model.stopped[:, lines] * model.line_hours[lines]).sum(1)
        return float(series.sum()), series
    if name == "labour_utilisation":
        used, available = model.labour_used[:, lines].sum(1), model.labour_available[:, lines].sum(1)
        total = float(available.sum())
        return (float(used.sum()) / total if total else 0.0), _ratio(used, available)
    if name == "labour_cost":
        series = model.paid[:, _people_rows(model, kpi)].sum(1) + model.overtime_cost[:, lines].sum(1)
        return float(series.sum()), series
    if name == "projects_late":
        series = _projects_late(model, _rows(model.project_index, kpi.projects))
        return (float(series[-1]) if len(series) else 0.0), series
    raise ValueError(f"unknown KPI {name!r}")


def _projects_late(model: EnterpriseModel, projects: np.ndarray | slice) -> np.ndarray:
    """Per step, how many of the projects are past their due step without being finished by it."""
    due, done = model.project_due[projects], model.project_done[projects]
    steps = np.arange(1, model.steps_total + 1)[:, None]
    overdue = steps >= due[None, :]
    finished_in_time = (done[None, :] + 1 <= np.maximum(due, 0)[None, :]) & (done[None, :] + 1 <= steps)
    return (overdue & ~finished_in_time).sum(1).astype(float)


def _people_rows(model: EnterpriseModel, kpi: KpiPlan) -> np.ndarray | slice:
    """The people a headcount counts: the KPI's people, else those staffing its lines, else everyone."""
    if kpi.persons:
        return _rows(model.person_index, kpi.persons)
    if kpi.processes is not None:
        lines = _rows(model.process_index, kpi.processes)
        return np.flatnonzero(model.person_lines[:, lines].sum(1) > 0)
    return slice(None)
