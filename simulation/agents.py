"""Mesa agents of the enterprise operations model: people, assets, production lines, suppliers and demand.

Each agent stands for one twin, owns its parameters and its own random stream (keyed by its uid, which is what makes
common random numbers work: an intervention on one twin never shifts the draws of another), and decides what happens
to it: a person leaves, is absent or is replaced; an asset fails and is repaired; a supplier stops and resumes
delivering; a line changes capacity; a customer orders. The flows between them (labour hours to lines, materials to
lines, goods to customers) are summed by the model over numpy arrays whose rows are these agents.
"""

from __future__ import annotations

import hashlib
import math
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np
from mesa import Agent

from simulation.calibration import AssetParams, DemandParams, PersonParams, ProcessParams, SupplierParams

if TYPE_CHECKING:
    from simulation.model import EnterpriseModel

PURPOSES = {
    "person": 1,
    "asset": 2,
    "supplier": 3,
    "demand": 4,
    "shock": 5,
    "hire": 6,
    "incident": 7,
    "shortage": 8,
    "forecast": 9,
}


def stream(seed: int, uid: str, purpose: str) -> np.random.Generator:
    """The random stream of one twin for one purpose in one replication (independent of every other twin)."""
    digest = hashlib.blake2b(uid.encode(), digest_size=8).digest()
    key = (int.from_bytes(digest[:4], "little"), int.from_bytes(digest[4:], "little"), PURPOSES[purpose])
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


class PersonAgent(Agent):
    """An employee who works on some lines, is sometimes absent, may leave, and is replaced after a delay."""

    def __init__(
        self, model: EnterpriseModel, index: int, params: PersonParams, stream_uid: str, employed: bool = True
    ) -> None:
        super().__init__(model)
        self.uid = params.uid
        self.index = index
        self.params = params
        rng = stream(model.seed, stream_uid, "person")
        steps = model.steps_total
        model.leave_draws[:, index] = rng.random(steps)
        model.absence_draws[:, index] = rng.random(steps)
        spell = model.calibration.defaults.absence_spell_days / model.step_days
        model.absence_steps[:, index] = np.ceil(rng.exponential(max(spell, 1e-9), steps))
        self.annual_attrition = params.annual_attrition
        self.leaves = 0
        self.gone = False  # left for good (a staffing change): never replaced
        model.employed[index] = employed
        model.hours[index] = params.hours_per_day * model.step_days
        self.set_attrition(params.annual_attrition)

    def set_attrition(self, annual: float) -> None:
        """Change this person's yearly chance of leaving (an attrition intervention)."""
        self.annual_attrition = min(max(annual, 0.0), 1.0)
        steps_per_year = 52 * self.model.calibration.defaults.working_days_per_week / self.model.step_days
        self.model.leave_probability[self.index] = 1 - (1 - self.annual_attrition) ** (1 / steps_per_year)

    def leave(self, step: int) -> None:
        """Leave the enterprise; the post is filled again after the hiring delay."""
        model = self.model
        model.employed[self.index] = False
        self.leaves += 1
        delay = max(1, math.ceil(model.hiring_delay_days[self.index] / model.step_days))
        if step + delay < model.steps_total:
            model.schedule_event(self.join, at=step + delay + 0.5)

    def leave_for_good(self) -> None:
        """Leave the enterprise without a replacement (a staffing change)."""
        self.gone = True
        self.model.employed[self.index] = False

    def join(self) -> None:
        """Start work (a replacement or an extra hire) in this post (not after leaving for good)."""
        if self.gone:
            return
        self.model.employed[self.index] = True
        self.model.absent_until[self.index] = 0

    def start_absence(self, step: int) -> None:
        """Be absent for a spell drawn from this person's stream."""
        self.model.absent_until[self.index] = step + int(self.model.absence_steps[step, self.index])


class AssetAgent(Agent):
    """A machine or other asset that fails at random (MTBF) and is repaired (MTTR)."""

    def __init__(self, model: EnterpriseModel, index: int, params: AssetParams) -> None:
        super().__init__(model)
        self.uid = params.uid
        self.index = index
        self.params = params
        rng = stream(model.seed, params.uid, "asset")
        steps = model.steps_total
        model.failure_draws[:, index] = rng.random(steps)
        self.repair_hours = rng.exponential(params.mttr_hours, steps)
        self.failures = 0
        self.mtbf_factors: list[float] = []
        hours = params.operating_hours_per_day * model.step_days
        model.operating_hours[index] = hours
        self._update()

    def _update(self) -> None:
        mtbf = self.params.mtbf_hours * math.prod(self.mtbf_factors)
        self.model.failure_probability[self.index] = 1 - math.exp(-self.model.operating_hours[self.index] / mtbf)

    def add_mtbf_factor(self, factor: float) -> None:
        """Start failing `factor` times less often (ageing < 1, preventive maintenance > 1)."""
        self.mtbf_factors.append(factor)
        self._update()

    def remove_mtbf_factor(self, factor: float) -> None:
        """End a change of the failure rate."""
        self.mtbf_factors.remove(factor)
        self._update()

    def fail(self, step: int) -> None:
        """Break down; repair takes hours drawn from this asset's stream."""
        self.failures += 1
        self.model.down_hours[self.index] = self.repair_hours[step]

    def break_down(self, hours: float) -> None:
        """Stand still for `hours` (a breakdown or a planned maintenance), on top of a repair under way."""
        self.model.down_hours[self.index] = max(self.model.down_hours[self.index], hours)


class ProcessAgent(Agent):
    """A production line: nominal capacity, the assets it runs on, what it consumes and produces."""

    def __init__(self, model: EnterpriseModel, index: int, params: ProcessParams) -> None:
        super().__init__(model)
        self.uid = params.uid
        self.index = index
        self.params = params
        self.factors: list[float] = []
        model.capacity[index] = params.capacity_per_day * model.step_days

    @property
    def capacity_factor(self) -> float:
        """Product of the capacity changes in force."""
        return math.prod(self.factors)

    def add_capacity_factor(self, factor: float) -> None:
        """Start a capacity change (a shift added, a machine bought or taken away)."""
        self.factors.append(factor)
        self._update()

    def remove_capacity_factor(self, factor: float) -> None:
        """End a capacity change."""
        self.factors.remove(factor)
        self._update()

    def _update(self) -> None:
        self.model.capacity[self.index] = self.params.capacity_per_day * self.model.step_days * self.capacity_factor

    def change_cycle_time(self, factor: float) -> None:
        """Each unit takes `factor` times as long: capacity divided, labour per unit multiplied by it."""
        self.factors.append(1 / factor)
        self._update()
        self.model.labour_per_unit[self.index] *= factor

    def restore_cycle_time(self, factor: float) -> None:
        """End a cycle-time change."""
        self.factors.remove(1 / factor)
        self._update()
        self.model.labour_per_unit[self.index] /= factor

    def set_yield(self, rate: float) -> None:
        """Share of the units made that are good from now on."""
        self.model.yield_rate[self.index] = rate

    @property
    def output(self) -> float:
        """Units produced so far."""
        return float(self.model.produced[:, self.index].sum())


class SupplierAgent(Agent):
    """A supplier: delivers on its lanes on time with its reliability; delivers nothing during an outage."""

    def __init__(self, model: EnterpriseModel, params: SupplierParams, lanes: list[int]) -> None:
        super().__init__(model)
        self.uid = params.uid
        self.params = params
        self.lanes = np.asarray(lanes, dtype=np.int64)
        rng = stream(model.seed, params.uid, "supplier")
        model.lane_on_time_draws[:, self.lanes] = rng.random((model.steps_total, len(lanes)))
        model.lane_reliability[self.lanes] = params.reliability
        self.outages = 0

    def stop(self) -> None:
        """Stop delivering (an outage begins); buyers route new orders to other suppliers of the material."""
        self.outages += 1
        self.model.lane_open[self.lanes] = False

    def resume(self) -> None:
        """Deliver again, including what fell due during the outage."""
        self.model.lane_open[self.lanes] = True


class CustomerDemand(Agent):
    """A customer (or the unnamed market) ordering products every day at its historical rates."""

    def __init__(self, model: EnterpriseModel, params: DemandParams) -> None:
        super().__init__(model)
        self.uid = params.uid
        self.params = params
        self.products = np.asarray([model.product_index[p] for p in params.rates], dtype=np.int64)
        rates = np.asarray(list(params.rates.values()), dtype=float) * model.step_days
        self.rates = rates
        rng = stream(model.seed, params.uid, "demand")
        self.orders = rng.poisson(rates[:, None], (len(rates), model.steps_total)).astype(float)
        self._shock_rng = stream(model.seed, params.uid, "shock")
        self._shock_draws = self._shock_rng.random((len(rates), model.steps_total))
        self.step_rates: dict[int, np.ndarray] = {}  # rows following a forecast: their expected orders per step

    def follow(self, product: str, per_day: np.ndarray, share: float) -> None:
        """Order `share` of a forecast's units per day of `product` (one value per step) instead of this customer's
        historical rate (its own random stream, so the other products' orders stay as they were)."""
        row = list(self.params.rates).index(product)
        lam = np.zeros(self.orders.shape[1])
        values = np.maximum(np.asarray(per_day, dtype=float), 0.0) * share * self.model.step_days
        lam[: len(values)] = values[: len(lam)]
        self.step_rates[row] = lam
        self.orders[row] = stream(self.model.seed, f"{self.uid}|{product}", "forecast").poisson(lam).astype(float)

    def shock(self, products: frozenset[str], factor: float, start: int, end: int) -> None:
        """Order `factor` times as much of `products` in steps [start, end) (extra orders from a separate stream)."""
        rows = [i for i, p in enumerate(self.params.rates) if p in products]
        if not rows:
            return
        window = slice(start, end)
        for row in rows:
            base = self.orders[row, window]
            if factor >= 1 and row in self.step_rates:  # a forecast's rate changes from step to step
                lams = self.step_rates[row][window] * (factor - 1)
                draws = self._shock_draws[row, window]
                extra = np.zeros_like(draws)
                for lam in np.unique(lams):
                    at = lams == lam
                    extra[at] = _poisson_from_uniform(float(lam), draws[at])
                self.orders[row, window] = base + extra
            elif factor >= 1:
                extra = _poisson_from_uniform(self.rates[row] * (factor - 1), self._shock_draws[row, window])
                self.orders[row, window] = base + extra
            else:
                self.orders[row, window] = np.floor(base * factor + self._shock_draws[row, window])


def _poisson_from_uniform(lam: float, u: np.ndarray) -> np.ndarray:
    """Poisson(lam) quantiles of uniforms (inverse transform, so a larger lam never gives fewer orders)."""
    if lam <= 0:
        return np.zeros_like(u)
    if lam > 50:
        z = np.asarray([NormalDist().inv_cdf(min(max(x, 1e-12), 1 - 1e-12)) for x in u])
        return np.maximum(0.0, np.round(lam + np.sqrt(lam) * z))
    k_max = int(lam + 12 * math.sqrt(lam) + 20)
    pmf = np.empty(k_max + 1)
    pmf[0] = math.exp(-lam)
    for k in range(1, k_max + 1):
        pmf[k] = pmf[k - 1] * lam / k
    cdf = np.cumsum(pmf)
    return np.searchsorted(cdf, u, side="right").astype(float)
