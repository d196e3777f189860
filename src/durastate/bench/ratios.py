"""Ratios of durastate to the anchors and peers measured next to it (same run, server)."""

from __future__ import annotations

from durastate.bench.results import Measurement, RunResult


def counterpart(result: RunResult, ref: Measurement) -> Measurement | None:
    """The durastate cell doing the same job as ``ref``: json, dict, same payload and backend."""
    for m in result.measurements:
        if (m.subject == "durastate" and m.backend == ref.backend and m.serializer == "json"
                and m.kind == "dict" and m.payload == ref.payload
                and m.operation == ref.compares_to and m.ok):
            return m
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 3)


def add_ratios(result: RunResult) -> None:
    """Store ``durastate / reference`` for latency and client CPU on each anchor and peer."""
    for ref in result.measurements:
        if ref.subject == "durastate" or not ref.ok:
            continue
        ours = counterpart(result, ref)
        if ours is None:
            continue
        # prefer the figures measured interleaved with the reference (same moments)
        median = ref.extra.get("paired_durastate_median_us", ours.median_us)
        cpu = ref.extra.get("paired_durastate_cpu_us", ours.cpu_us)
        ref.extra["durastate_median_us"] = median
        ref.extra["durastate_cpu_us"] = cpu
        ref.extra["ratio_latency"] = _ratio(median, ref.median_us)
        ref.extra["ratio_cpu"] = _ratio(cpu, ref.cpu_us)
