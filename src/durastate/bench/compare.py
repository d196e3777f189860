"""``--compare OLD.json``: this run against an earlier one, cell by cell."""

from __future__ import annotations

from dataclasses import dataclass

from durastate.bench.results import Measurement, RunResult


@dataclass(frozen=True)
class Comparison:
    """One cell present in both runs; ratios are new / old (below 1: faster now)."""

    new: Measurement
    old: Measurement

    @staticmethod
    def _ratio(new: float | None, old: float | None) -> float | None:
        if new is None or old is None or old <= 0:
            return None
        return new / old

    @property
    def latency_ratio(self) -> float | None:
        return self._ratio(self.new.median_us, self.old.median_us)

    @property
    def cpu_ratio(self) -> float | None:
        return self._ratio(self.new.cpu_us, self.old.cpu_us)

    @property
    def calls_delta(self) -> float | None:
        if self.new.backend_calls is None or self.old.backend_calls is None:
            return None
        return self.new.backend_calls - self.old.backend_calls


def compare(new: RunResult, old: RunResult) -> list[Comparison]:
    """Cells measured (without error) in both runs, in the new run's order."""
    earlier = {m.key: m for m in old.measurements if m.ok}
    return [Comparison(m, earlier[m.key]) for m in new.measurements
            if m.ok and m.key in earlier]
