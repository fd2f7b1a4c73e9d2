"""Domain exceptions of the simulation layer: bad scenario specs, slices that cannot be built, studies too big."""

from __future__ import annotations


class SimulationError(Exception):
    """Base of every error raised by the simulation layer."""


class SpecError(SimulationError):
    """A scenario spec is invalid; each problem names the file, the line and the field."""

    def __init__(self, problems: list[str], source: str = "<spec>") -> None:
        self.problems = problems
        self.source = source
        listed = "".join(f"\n  - {p}" for p in problems)
        super().__init__(f"{source}: invalid scenario spec ({len(problems)} problem(s)):{listed}")


class SliceError(SimulationError):
    """The twin graph holds nothing a model can be built from for the requested slice."""


class StudyNotFound(SimulationError):
    """No stored study has the given id."""


class ExecutorUnavailable(SimulationError):
    """The requested executor cannot run here (e.g. dask is not installed)."""


class ExperimentInfeasible(SpecError):
    """No evaluated decision of an experiment meets its constraints; each problem names the constraint's line."""
