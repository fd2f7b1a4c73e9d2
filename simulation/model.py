"""EnterpriseModel: the Mesa 3 model of the enterprise's operations, built from a calibrated slice of the twin.

One step is `step_days` days (a working day by default). In each step, in this order:
1. suppliers deliver what falls due on their open lanes (late with probability 1 - reliability);
2. assets fail or get repaired; 3. people leave, are absent, return or are replaced;
4. customers' orders join each product's backlog; 5. lines produce what the backlog and a small finished-goods buffer
need, limited by capacity x asset availability, by present labour hours (plus capped overtime) and by material stock
(shared materials go to lines in proportion to their need); 6. goods ship oldest order first, orders older than the
customers' patience are lost; 7. the buyer reorders every material up to lead-time demand plus safety stock, from the
suppliers of the material that are not down.
Interventions are Mesa events that call the agents (a supplier stops and resumes, a line changes capacity, people's
attrition changes, extra hires join, a machine breaks down or is maintained, people leave, move or learn a skill, a
line's cycle time, yield or routing changes); demand shocks are applied to the customers' order streams before the
run, and IT outages (with the spread of a cyber incident drawn per IT system) and skill shortages become per-step masks
before the run. Lines make `yield` good units of every unit made; people split their hours evenly between the lines
and projects they work on; projects progress by the present hours of assignees holding a skill they need.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from functools import partial

import numpy as np
from mesa import Model

from simulation.agents import AssetAgent, CustomerDemand, PersonAgent, ProcessAgent, SupplierAgent, stream
from simulation.calibration import Calibration, PersonParams, lead_steps
from simulation.scenario import ProcessChangePlan, ScenarioPlan

MODEL_VERSION = "enterprise-ops/1.1.0"
"""Changes whenever the model's behaviour changes (stored with every study)."""


class EnterpriseModel(Model):
    """The enterprise's supply, production, workforce and demand as Mesa agents over shared flow arrays."""

    def __init__(
        self, calibration: Calibration, scenario: ScenarioPlan, steps: int, step_days: int = 1, seed: int = 0
    ) -> None:
        super().__init__(rng=seed)
        self.calibration = calibration
        self.plan = scenario
        self.steps_total = steps
        self.step_days = step_days
        self.seed = seed
        self.t = 0
        c, d = calibration, calibration.defaults
        self.process_index = {p.uid: i for i, p in enumerate(c.processes)}
        self.product_index = {p: i for i, p in enumerate(c.products)}
        self.material_index = {m.uid: i for i, m in enumerate(c.materials)}
        self.asset_index = {a.uid: i for i, a in enumerate(c.assets)}
        n_j, n_i, n_k, n_a = len(c.processes), len(c.products), len(c.materials), len(c.assets)

        # ---- people (hire slots of workforce interventions appended after the roster)
        hires = [(w, n) for w in scenario.workforce for n in range(w.hires)]
        person_params = list(c.persons)
        by_uid = {p.uid: p for p in c.persons}
        for k, (plan, n) in enumerate(hires):
            template = by_uid[sorted(plan.persons)[n % len(plan.persons)]]
            person_params.append(replace(template, uid=f"hire:{plan.start}:{k}"))  # same post, rate, skills
        for staffing in scenario.staffing:
            if staffing.action != "hire":
                continue
            for _ in range(staffing.count):
                person_params.append(
                    PersonParams(
                        f"staff:{staffing.start}:{len(person_params)}",
                        d.hours_per_week / d.working_days_per_week,
                        tuple(sorted(staffing.processes)),
                        d.absence_rate,
                        d.annual_attrition,
                        (staffing.skill,) if staffing.skill else (),
                        tuple(sorted(staffing.projects)),
                        d.hourly_rate,
                    )
                )
        n_p = len(person_params)
        self.person_params = person_params
        self.project_index = {q.uid: i for i, q in enumerate(c.projects)}
        n_q = len(c.projects)
        self.person_index = {p.uid: i for i, p in enumerate(person_params)}
        self.employed = np.zeros(n_p, dtype=bool)
        self.absent_until = np.zeros(n_p, dtype=np.int64)
        self.hours = np.zeros(n_p)
        self.leave_probability = np.zeros(n_p)
        self.hiring_delay_days = np.full(n_p, d.hiring_delay_days)
        self.leave_draws = np.zeros((steps, n_p))  # rows = steps, so each step reads contiguous memory
        self.absence_draws = np.zeros((steps, n_p))
        self.absence_steps = np.zeros((steps, n_p), dtype=np.int32)
        absence = np.asarray([p.absence_rate for p in person_params]) if n_p else np.zeros(0)
        spell = max(d.absence_spell_days / step_days, 1.0)
        self.absence_probability = absence / (spell * np.maximum(1 - absence, 1e-9))
        self.person_lines = np.zeros((n_p, n_j))
        self.person_projects = np.zeros((n_p, n_q))
        self.project_qualified = np.zeros((n_p, n_q), dtype=bool)
        self.person_skills = [set(p.skills) for p in person_params]
        for i, person in enumerate(person_params):
            self._allocate(i, person.processes, person.projects)
            self._qualify(i)
        self.person_rate = np.asarray([p.hourly_rate for p in person_params]) if n_p else np.zeros(0)
        self.unavailable = np.zeros((steps, n_p), dtype=bool)
        self.people = [PersonAgent(self, i, p, p.uid, employed=i < len(c.persons)) for i, p in enumerate(person_params)]

        # ---- assets
        self.operating_hours = np.zeros(n_a)
        self.failure_probability = np.zeros(n_a)
        self.down_hours = np.zeros(n_a)
        self.failure_draws = np.zeros((steps, n_a))
        self.assets = [AssetAgent(self, i, a) for i, a in enumerate(c.assets)]

        # ---- lines
        self.capacity = np.zeros(n_j)
        self.line_assets = np.zeros((n_j, n_a))
        self.consumes = np.zeros((n_j, n_k))
        self.makes = np.zeros((n_j, n_i))
        producers: dict[int, list[int]] = defaultdict(list)
        for j, process in enumerate(c.processes):
            for machine in process.machines:
                self.line_assets[j, self.asset_index[machine]] = 1 / len(process.machines)
            for material in process.materials:
                self.consumes[j, self.material_index[material]] = 1.0
            for product in process.products:
                producers[self.product_index[product]].append(j)
        for i, lines in producers.items():
            for j in lines:
                self.makes[j, i] = 1 / len(lines)
        self.has_assets = self.line_assets.sum(1) > 0
        self.labour_per_unit = np.asarray([p.labour_hours_per_unit for p in c.processes]) if n_j else np.zeros(0)
        self.yield_rate = np.asarray([p.yield_rate for p in c.processes]) if n_j else np.zeros(0)
        hours = [p.operating_hours_per_day * step_days for p in c.processes]
        self.line_hours = np.asarray(hours) if n_j else np.zeros(0)
        self.it_capacity = np.ones((steps, n_j))  # 1 - degradation while an IT system the line needs is down
        self.lines = [ProcessAgent(self, j, p) for j, p in enumerate(c.processes)]

        # ---- supply lanes and suppliers
        n_l = len(c.lanes)
        self.lane_material = np.asarray([self.material_index[lane.material] for lane in c.lanes], dtype=np.int64)
        self.lane_lead = np.asarray([lead_steps(lane.lead_time_days, step_days) for lane in c.lanes], dtype=np.int64)
        self.lane_open = np.ones(n_l, dtype=bool)
        self.lane_reliability = np.ones(n_l)
        self.lane_on_time_draws = np.ones((steps, n_l))
        self.ring_size = int(self.lane_lead.max(initial=1)) + 2
        self.pipeline = np.zeros((n_l, self.ring_size))
        lanes_of: dict[str, list[int]] = defaultdict(list)
        for li, lane in enumerate(c.lanes):
            lanes_of[lane.supplier].append(li)
        self.suppliers = [SupplierAgent(self, s, lanes_of[s.uid]) for s in c.suppliers if lanes_of[s.uid]]
        self.lanes_per_material = np.bincount(self.lane_material, minlength=n_k).astype(float)

        # ---- materials: stock, expected use, base stock, a pipeline already in flight
        self.stock = np.asarray([m.initial_stock for m in c.materials], dtype=float)
        self.usage = np.asarray([m.usage_per_day * step_days for m in c.materials], dtype=float)
        material_lead = np.zeros(n_k)
        np.maximum.at(material_lead, self.lane_material, self.lane_lead.astype(float))
        self.cover_steps = material_lead + d.material_safety_days / step_days
        for li in range(n_l):
            k = self.lane_material[li]
            share = 1 / self.lanes_per_material[k]
            self.pipeline[li, 1 : self.lane_lead[li] + 1] = self.usage[k] * share

        # ---- demand
        self.customers = [CustomerDemand(self, dp) for dp in c.demand]
        for forecast in scenario.demand_rates:  # a forecast replaces the product's historical rates, split as they were
            having = [
                (cd, cd.params.rates[forecast.product]) for cd in self.customers if forecast.product in cd.params.rates
            ]
            total = sum(historical for _, historical in having)
            for customer, historical in having:
                share = historical / total if total > 0 else 1 / len(having)
                customer.follow(forecast.product, np.asarray(forecast.per_day, dtype=float), share)
        for shock in scenario.demand_shocks:
            for customer in self.customers:
                if shock.customers is None or customer.uid in shock.customers:
                    customer.shock(shock.products, shock.factor, shock.start, min(shock.end, steps))
        orders = np.zeros((n_i, steps))
        for customer in self.customers:
            np.add.at(orders, customer.products, customer.orders)
        self.orders = np.ascontiguousarray(orders.T)
        rate = np.zeros(n_i)
        for dp in c.demand:
            for prod, r in dp.rates.items():
                rate[self.product_index[prod]] += r * step_days
        self.finished_target = rate * d.finished_goods_days / step_days
        self.finished = self.finished_target.copy()
        self.patience = max(1, int(np.ceil(d.patience_days / step_days)))
        self.backlog = np.zeros((n_i, self.patience + 1))
        self.overtime_cap = d.overtime_cap

        # ---- records (rows = steps, columns = agents)
        self.produced = np.zeros((steps, n_j))
        self.nominal = np.zeros((steps, n_j))
        self.overtime = np.zeros((steps, n_j))
        self.demanded = np.zeros((steps, n_i))
        self.shipped = np.zeros((steps, n_i))
        self.filled_now = np.zeros((steps, n_i))
        self.lost = np.zeros((steps, n_i))
        self.backlog_units = np.zeros((steps, n_i))
        self.availability = np.ones((steps, n_a))
        self.headcount = np.zeros((steps, n_p), dtype=bool)
        self.material_stock = np.zeros((steps, n_k))
        self.stopped = np.zeros((steps, n_j))  # share of the line's operating time it stands still
        self.labour_available = np.zeros((steps, n_j))
        self.labour_used = np.zeros((steps, n_j))
        self.paid = np.zeros((steps, n_p))  # labour cost of each person per step
        self.overtime_cost = np.zeros((steps, n_j))

        # ---- projects: effort left, due step, progress slowed by IT outages
        self.project_remaining = np.asarray([q.remaining_hours for q in c.projects], dtype=float)
        self.project_due = np.asarray(
            [np.inf if q.due_day is None else np.ceil(q.due_day / step_days) for q in c.projects], dtype=float
        )
        self.project_done = np.where(self.project_remaining <= 0, -1, steps + 1).astype(np.int64)
        self.project_it = np.ones((steps, n_q))
        self.project_hours = np.zeros((steps, n_q))

        self._actions: list[object] = []
        self._schedule_interventions()

    # ------------------------------------------------------------------ interventions as events

    def _at(self, step: int, action: Callable[[], object]) -> None:
        """Run `action` just before step `step` (steps are at Mesa times 1, 2, ...)."""
        if step <= 0:
            action()
        elif step < self.steps_total:
            self._actions.append(action)  # Mesa holds event functions weakly
            self.schedule_event(action, at=step + 0.5)

    def _allocate(self, i: int, processes: tuple[str, ...], projects: tuple[str, ...]) -> None:
        """Person i's hours split evenly over these lines and projects (those of the model)."""
        lines = [self.process_index[u] for u in processes if u in self.process_index]
        work = [self.project_index[u] for u in projects if u in self.project_index]
        self.person_lines[i] = 0.0
        self.person_projects[i] = 0.0
        share = 1 / len(processes + projects) if processes or projects else 0.0
        self.person_lines[i, lines] = share
        self.person_projects[i, work] = share

    def _qualify(self, i: int) -> None:
        """Which projects person i's skills let them work on (a project that needs no skill takes anyone)."""
        for q, project in enumerate(self.calibration.projects):
            self.project_qualified[i, q] = not project.skills or bool(self.person_skills[i] & set(project.skills))

    def _learn(self, i: int, skill: str, processes: frozenset[str]) -> None:
        """Person i gains `skill` and works on the lines and projects that need it (and on `processes`)."""
        self.person_skills[i].add(skill)
        self._qualify(i)
        current_lines = [u for u, j in self.process_index.items() if self.person_lines[i, j] > 0]
        current_projects = [u for u, q in self.project_index.items() if self.person_projects[i, q] > 0]
        lines = {*current_lines, *processes, *(p.uid for p in self.calibration.processes if skill in p.skills)}
        projects = {*current_projects, *(q.uid for q in self.calibration.projects if skill in q.skills)}
        self._allocate(i, tuple(sorted(lines)), tuple(sorted(projects)))

    def _it_masks(self) -> None:
        """Per step and line (and project): the capacity left while IT systems they need are down or recovering."""
        systems = {s.uid: s for s in self.calibration.it_systems}
        self.it_hit: set[str] = set()
        for k, outage in enumerate(self.plan.it_outages):
            hit = {u for u in outage.systems if u in systems}
            if outage.spread > 0:  # a cyber incident: a linked system is hit when its own draw is below the spread
                queue = sorted(hit)
                while queue:
                    for other in systems[queue.pop(0)].linked:
                        drawn = other in systems and other not in hit
                        if drawn and stream(self.seed, f"{other}#{k}", "incident").random() < outage.spread:
                            hit.add(other)
                            queue.append(other)
            self.it_hit |= hit
            for uid in sorted(hit):
                system = systems[uid]
                recovery = system.recovery_hours if outage.recovery_hours is None else outage.recovery_hours
                lines = [(self.process_index[u], self.line_hours[self.process_index[u]]) for u in system.processes]
                work = [(self.project_index[u], 8.0 * self.step_days) for u in system.projects]
                for mask, targets in ((self.it_capacity, lines), (self.project_it, work)):
                    for col, hours in targets:
                        self._degrade(mask, col, outage.start, outage.end, outage.degradation, recovery / hours)

    def _degrade(self, mask: np.ndarray, col: int, start: int, end: int, degradation: float, recovery: float) -> None:
        """Capacity of column `col` at most 1 - degradation in [start, end) and for `recovery` steps after it."""
        whole, part = int(recovery), recovery - int(recovery)
        stop = min(end + whole, self.steps_total)
        mask[start:stop, col] = np.minimum(mask[start:stop, col], 1 - degradation)
        if part > 0 and stop < self.steps_total:
            mask[stop, col] = min(mask[stop, col], 1 - degradation * part)

    def _schedule_interventions(self) -> None:
        self._it_masks()
        suppliers = {s.uid: s for s in self.suppliers}
        for outage in self.plan.outages:
            for uid in sorted(outage.suppliers):
                if uid in suppliers:
                    self._at(outage.start, suppliers[uid].stop)
                    self._at(outage.end, suppliers[uid].resume)
        lines = {line.uid: line for line in self.lines}
        for change in self.plan.capacity:
            for uid in sorted(change.processes):
                line = lines[uid]
                self._at(change.start, partial(line.add_capacity_factor, change.factor))
                self._at(change.end, partial(line.remove_capacity_factor, change.factor))
        hire_slot = len(self.calibration.persons)
        for plan in self.plan.workforce:
            targets = [self.people[self.person_index[uid]] for uid in sorted(plan.persons) if uid in self.person_index]
            for person in targets:
                new = person.annual_attrition * plan.attrition_factor + plan.attrition_add
                self._at(plan.start, partial(person.set_attrition, new))
                self._at(plan.end, partial(person.set_attrition, person.annual_attrition))
                if plan.hiring_delay_days is not None:
                    self.hiring_delay_days[person.index] = plan.hiring_delay_days
            for _ in range(plan.hires):
                self._at(plan.start, self.people[hire_slot].join)
                hire_slot += 1
        self._schedule_changes(hire_slot)

    def _schedule_changes(self, hire_slot: int) -> None:
        """Machine failures and maintenance, staffing, skill shortages and process changes."""
        assets = {a.uid: a for a in self.assets}
        for failure in self.plan.machine_failures:
            for uid in sorted(failure.assets):
                asset = assets.get(uid)
                if asset is None:
                    continue
                if failure.breakdown:
                    hours = failure.repair_hours or asset.params.mttr_hours
                    self._at(failure.start, partial(asset.break_down, hours))
                factor = failure.mtbf_factor
                if failure.preventive_every is not None:
                    factor *= failure.preventive_mtbf_factor
                    for step in range(failure.start + failure.preventive_every, failure.end, failure.preventive_every):
                        self._at(step, partial(asset.break_down, failure.preventive_hours))
                if factor != 1.0:
                    self._at(failure.start, partial(asset.add_mtbf_factor, factor))
                    self._at(failure.end, partial(asset.remove_mtbf_factor, factor))
        for plan in self.plan.staffing:
            people = [self.people[self.person_index[u]] for u in sorted(plan.persons) if u in self.person_index]
            if plan.action == "leave":
                for person in people:
                    self._at(plan.start, person.leave_for_good)
            elif plan.action == "reassign":
                for person in people:
                    move = partial(
                        self._allocate, person.index, tuple(sorted(plan.processes)), tuple(sorted(plan.projects))
                    )
                    self._at(plan.start, move)
            elif plan.action == "train" and plan.skill:
                for person in people:
                    learn = partial(self._learn, person.index, plan.skill, plan.processes)
                    self._at(plan.start + plan.training_steps, learn)
            elif plan.action == "hire":
                for _ in range(plan.count):
                    self._at(plan.start + plan.training_steps, self.people[hire_slot].join)
                    hire_slot += 1
        for k, shortage in enumerate(self.plan.skill_shortages):
            for i, params in enumerate(self.person_params):
                holder = bool(set(params.skills) & shortage.skills)
                if holder and stream(self.seed, f"{params.uid}#{k}", "shortage").random() < shortage.share:
                    self.unavailable[shortage.start : shortage.end, i] = True
        lines = {line.uid: line for line in self.lines}
        for change in self.plan.process_changes:
            for uid in sorted(change.processes):
                line = lines[uid]
                if change.cycle_factor != 1.0:
                    self._at(change.start, partial(line.change_cycle_time, change.cycle_factor))
                    self._at(change.end, partial(line.restore_cycle_time, change.cycle_factor))
                if change.yield_rate is not None:
                    self._at(change.start, partial(line.set_yield, change.yield_rate))
                    self._at(change.end, partial(line.set_yield, line.params.yield_rate))
            if change.route_to:
                moved = self._routing(change)
                self._at(change.start, partial(np.add, self.makes, moved, out=self.makes))
                self._at(change.end, partial(np.subtract, self.makes, moved, out=self.makes))

    def _routing(self, change: ProcessChangePlan) -> np.ndarray:
        """The change to the product split (lines x products) of routing a share of some lines' products elsewhere."""
        moved = np.zeros_like(self.makes)
        targets = [self.process_index[u] for u in sorted(change.route_to) if u in self.process_index]
        for uid in sorted(change.processes):
            j = self.process_index[uid]
            for i in np.flatnonzero(self.makes[j] > 0):
                amount = self.makes[j, i] * change.route_share
                moved[j, i] -= amount
                moved[targets, i] += amount / len(targets)
        return moved

    # ------------------------------------------------------------------ one step

    def step(self) -> None:
        """Advance the enterprise by one step (see the module docstring for the order of events)."""
        t = self.t
        self._deliver(t)
        availability = self._assets(t)
        labour = self._people(t)
        self.backlog[:, 0] += self.orders[t]
        self.demanded[t] = self.orders[t]
        self._produce(t, availability, labour)
        self._ship(t)
        self._reorder(t)
        self.material_stock[t] = self.stock
        self.t += 1

    def _deliver(self, t: int) -> None:
        slot = t % self.ring_size
        due = self.pipeline[:, slot]
        on_time = self.lane_open & (self.lane_on_time_draws[t] < self.lane_reliability)
        arrived = np.where(on_time, due, 0.0)
        self.stock += np.bincount(self.lane_material, weights=arrived, minlength=len(self.stock))
        self.pipeline[:, (t + 1) % self.ring_size] += due - arrived
        self.pipeline[:, slot] = 0.0

    def _assets(self, t: int) -> np.ndarray:
        if not self.assets:
            return np.ones(len(self.lines))
        up = self.down_hours <= 0
        failing = np.flatnonzero(up & (self.failure_draws[t] < self.failure_probability))
        for a in failing:
            self.assets[a].fail(t)
        hours = self.operating_hours
        available = np.clip(1 - self.down_hours / hours, 0.0, 1.0)
        self.down_hours = np.maximum(self.down_hours - hours, 0.0)
        self.availability[t] = available
        return np.where(self.has_assets, self.line_assets @ available, 1.0)

    def _people(self, t: int) -> np.ndarray:
        if not self.people:
            return np.zeros(len(self.lines))
        employed = self.employed
        for i in np.flatnonzero(employed & (self.leave_draws[t] < self.leave_probability)):
            self.people[i].leave(t)
        present = employed & (self.absent_until <= t)
        for i in np.flatnonzero(present & (self.absence_draws[t] < self.absence_probability)):
            self.people[i].start_absence(t)
        present = employed & (self.absent_until <= t) & ~self.unavailable[t]
        self.headcount[t] = employed
        self.paid[t] = self.hours * employed * self.person_rate
        hours = self.hours * present
        if len(self.project_remaining):
            worked = (hours @ (self.person_projects * self.project_qualified)) * self.project_it[t]
            self.project_hours[t] = worked
            self.project_remaining -= worked
            finished = (self.project_remaining <= 1e-9) & (self.project_done > t)
            self.project_done[finished] = t
        return hours @ self.person_lines

    def _produce(self, t: int, availability: np.ndarray, labour: np.ndarray) -> None:
        need_by_product = np.maximum(self.backlog.sum(1) + self.finished_target - self.finished, 0.0)
        weighted = self.makes * need_by_product
        need = weighted.sum(1)
        up = availability * self.it_capacity[t]
        capacity = self.capacity * up
        self.stopped[t] = 1.0 - up
        self.nominal[t] = self.capacity
        staffed = self.labour_per_unit > 0
        labour_limit = np.where(
            staffed, labour * (1 + self.overtime_cap) / np.where(staffed, self.labour_per_unit, 1.0), np.inf
        )
        planned = np.minimum(np.minimum(need / np.maximum(self.yield_rate, 1e-9), capacity), labour_limit)
        request = planned @ self.consumes
        ratio = np.where(request > 0, np.minimum(1.0, self.stock / np.where(request > 0, request, 1.0)), 1.0)
        line_ratio = np.where(self.consumes > 0, ratio, 1.0).min(1, initial=1.0)
        made = planned * line_ratio
        good = np.minimum(made * self.yield_rate, need)
        self.stock = np.maximum(self.stock - made @ self.consumes, 0.0)
        self.usage += 0.1 * (request - self.usage)
        self.produced[t] = good
        used = made * self.labour_per_unit
        self.labour_available[t] = labour
        self.labour_used[t] = used
        self.overtime[t] = np.maximum(used - labour, 0.0)
        d = self.calibration.defaults
        self.overtime_cost[t] = self.overtime[t] * d.hourly_rate * d.overtime_premium
        share = np.divide(good, need, out=np.zeros_like(good), where=need > 0)
        self.finished += share @ weighted

    def _ship(self, t: int) -> None:
        oldest_first = self.backlog[:, ::-1]
        before = np.cumsum(oldest_first, axis=1) - oldest_first
        ship = np.clip(self.finished[:, None] - before, 0.0, oldest_first)
        remaining = oldest_first - ship
        self.finished -= ship.sum(1)
        self.filled_now[t] = ship[:, -1]
        self.shipped[t] = ship.sum(1)
        lost = remaining[:, 0]
        ageing = remaining[:, ::-1]
        self.backlog[:, 1:] = ageing[:, :-1]
        self.backlog[:, 0] = 0.0
        self.lost[t] = lost
        self.backlog_units[t] = self.backlog.sum(1)

    def _reorder(self, t: int) -> None:
        if not len(self.pipeline):
            return
        on_order = np.bincount(self.lane_material, weights=self.pipeline.sum(1), minlength=len(self.stock))
        order = np.maximum(self.usage * self.cover_steps - self.stock - on_order, 0.0)
        open_lanes = self.lane_open.astype(float)
        open_count = np.bincount(self.lane_material, weights=open_lanes, minlength=len(self.stock))
        weight = np.where(
            open_count[self.lane_material] > 0,
            open_lanes / np.maximum(open_count[self.lane_material], 1.0),
            1.0 / self.lanes_per_material[self.lane_material],
        )
        slots = (t + self.lane_lead) % self.ring_size
        self.pipeline[np.arange(len(slots)), slots] += order[self.lane_material] * weight

    def run(self) -> EnterpriseModel:
        """Run every step of the horizon."""
        for _ in range(self.steps_total):
            self.step()
        return self

    @property
    def agent_total(self) -> int:
        """Number of Mesa agents."""
        return len(self.agents)
