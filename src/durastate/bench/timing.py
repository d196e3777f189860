"""Timing primitives: batch-timed medians, per-operation tails, client CPU.

How a cell is timed:

- A warm-up runs first (untimed).
- Batched pass: the operation runs in rounds of ``batch`` calls; each round is timed as a
  whole with ``perf_counter_ns`` (wall) and ``thread_time_ns`` (CPU of the calling thread,
  i.e. the client's CPU: emulators run in other processes). The per-operation figure of a
  round is its total divided by ``batch``, minus the measured cost of the harness loop
  itself (an empty operation through the same loop), for wall time and for CPU time alike.
  ``median_us`` and ``cpu_us`` are the medians over rounds. ``batch`` is chosen so a
  round lasts about 200 µs, so fast operations (memory: ~1 µs) are not dominated by the
  ~0.1 µs timer overhead; slow ones (network) get ``batch = 1``.
- Tail pass: when ``batch > 1``, a second pass times each call on its own (timer overhead
  subtracted) for ``p99_us``; when ``batch == 1`` the rounds are the single calls.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

Op = Callable[[int], object]

ROUND_TARGET_NS = 200_000
MAX_BATCH = 1000


@dataclass(frozen=True)
class Timing:
    """Per-operation figures of one timed cell, in nanoseconds unless named otherwise."""

    ops: int
    batch: int
    median_ns: float
    p99_ns: float
    cpu_ns: float
    mean_wall_ns: float

    @property
    def ops_per_s(self) -> float:
        return 1e9 / self.mean_wall_ns if self.mean_wall_ns > 0 else float("inf")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def _noop(_: int) -> None:
    return None


def _round(op: Op, start: int, batch: int) -> tuple[int, int]:
    perf, cpu = time.perf_counter_ns, time.thread_time_ns
    w0, c0 = perf(), cpu()
    for i in range(start, start + batch):
        op(i)
    return perf() - w0, cpu() - c0


def _timer_overhead_ns() -> float:
    perf = time.perf_counter_ns
    samples = []
    for _ in range(2000):
        t0 = perf()
        samples.append(perf() - t0)
    return float(statistics.median(samples))


@dataclass(frozen=True)
class Calibration:
    """What the harness itself costs per call, measured once per process."""

    loop_ns: float  # one iteration of the batched loop with an empty operation (wall)
    timer_ns: float  # one perf_counter_ns pair
    loop_cpu_ns: float = 0.0  # the same loop iteration in thread CPU time
    timer_cpu_ns: float = 0.0  # one round's pair of clock reads, in thread CPU time

    @classmethod
    def measure(cls) -> Calibration:
        rounds = [_round(_noop, 0, MAX_BATCH) for _ in range(50)]
        empty = [_round(_noop, 0, 0) for _ in range(200)]
        return cls(
            loop_ns=float(statistics.median(wall / MAX_BATCH for wall, _ in rounds)),
            timer_ns=_timer_overhead_ns(),
            loop_cpu_ns=float(statistics.median(cpu / MAX_BATCH for _, cpu in rounds)),
            timer_cpu_ns=float(statistics.median(cpu for _, cpu in empty)),
        )

    def overhead(self, batch: int) -> tuple[float, float]:
        """What the harness adds to one operation's (wall, CPU) in a round of ``batch``."""
        if batch > 1:
            return self.loop_ns, self.loop_cpu_ns
        return self.timer_ns, self.timer_cpu_ns


_CALIBRATION: Calibration | None = None


def calibration() -> Calibration:
    global _CALIBRATION
    if _CALIBRATION is None:
        _CALIBRATION = Calibration.measure()
    return _CALIBRATION


def choose_batch(op: Op, start: int) -> tuple[int, float]:
    """A batch size that makes a round last about ``ROUND_TARGET_NS``; and one op's cost."""
    wall, _ = _round(op, start, 5)
    per_op = max(wall / 5, 1.0)
    return max(1, min(MAX_BATCH, int(ROUND_TARGET_NS / per_op))), per_op


def plan_ops(per_op_ns: float, seconds: float, min_ops: int, max_ops: int) -> int:
    """How many timed operations fit in ``seconds``, within ``[min_ops, max_ops]``."""
    return max(min_ops, min(max_ops, int(seconds * 1e9 / per_op_ns)))


def measure(
    op: Op,
    *,
    seconds: float,
    min_ops: int,
    max_ops: int,
    repeat: int | None = None,
    warmup: int | None = None,
    tail_ops: int = 5000,
) -> Timing:
    """Time ``op(i)`` for increasing ``i`` (so it can alternate values); see the module doc."""
    counter = 0
    _, per_op = choose_batch(op, counter)  # a first estimate, cold
    counter += 5
    warm = warmup if warmup is not None else plan_ops(per_op, seconds / 10, 5, max_ops // 10)
    for i in range(counter, counter + warm):
        op(i)
    counter += warm
    batch, per_op = choose_batch(op, counter)
    counter += 5
    ops = repeat if repeat is not None else plan_ops(per_op, seconds, min_ops, max_ops)
    batch = min(batch, max(1, ops // 20))
    rounds = max(1, ops // batch)
    cal = calibration()
    loop, loop_cpu = cal.overhead(batch)
    walls: list[float] = []
    cpus: list[float] = []
    total_wall = 0
    for _ in range(rounds):
        wall, cpu = _round(op, counter, batch)
        counter += batch
        total_wall += wall
        walls.append(max(0.0, wall / batch - loop))
        cpus.append(max(0.0, cpu / batch - loop_cpu))
    tails = walls
    if batch > 1:
        perf = time.perf_counter_ns
        tails = []
        for i in range(counter, counter + min(tail_ops, rounds * batch)):
            t0 = perf()
            op(i)
            tails.append(max(0.0, perf() - t0 - cal.timer_ns))
    return Timing(
        ops=rounds * batch,
        batch=batch,
        median_ns=float(statistics.median(walls)),
        p99_ns=percentile(tails, 0.99),
        cpu_ns=float(statistics.median(cpus)),
        mean_wall_ns=total_wall / (rounds * batch),
    )


def measure_paired(
    op_a: Op,
    op_b: Op,
    *,
    seconds: float,
    min_ops: int,
    max_ops: int,
    repeat: int | None = None,
) -> tuple[Timing, Timing]:
    """Time two operations in alternating rounds (A, B, A, B, ...) for a fair ratio.

    Drift on a shared machine (another process, CPU frequency, an emulator's garbage
    collector) then hits both sides alike. p99 is over rounds here.
    """
    ops_list = (op_a, op_b)
    per_op = []
    for op in ops_list:
        _, estimate = choose_batch(op, 0)
        for i in range(5, 5 + plan_ops(estimate, seconds / 10, 5, max(5, max_ops // 10))):
            op(i)
        per_op.append(choose_batch(op, 1_000_000))
    slowest = max(p for _, p in per_op)
    ops = repeat if repeat is not None else plan_ops(slowest, seconds, min_ops, max_ops)
    batches = [min(b, max(1, ops // 20)) for b, _ in per_op]
    rounds = max(1, ops // max(batches))
    cal = calibration()
    walls: tuple[list[float], list[float]] = ([], [])
    cpus: tuple[list[float], list[float]] = ([], [])
    totals = [0, 0]
    counters = [2_000_000, 2_000_000]  # one per side: each must alternate its own values
    for _ in range(rounds):
        for side, op in enumerate(ops_list):
            batch = batches[side]
            wall, cpu = _round(op, counters[side], batch)
            counters[side] += batch
            totals[side] += wall
            overhead, overhead_cpu = cal.overhead(batch)
            walls[side].append(max(0.0, wall / batch - overhead))
            cpus[side].append(max(0.0, cpu / batch - overhead_cpu))
    timings = [
        Timing(ops=rounds * batches[side], batch=batches[side],
               median_ns=float(statistics.median(walls[side])),
               p99_ns=percentile(walls[side], 0.99),
               cpu_ns=float(statistics.median(cpus[side])),
               mean_wall_ns=totals[side] / (rounds * batches[side]))
        for side in (0, 1)
    ]
    return timings[0], timings[1]


def measure_each(op: Op, prepare: Callable[[int], object], ops: int) -> Timing:
    """Time ``op(i)`` alone, after an untimed ``prepare(i)``: for cold paths (a first write
    after opening, a write after the clock moved on), where the setup must not be timed."""
    cal = calibration()
    perf, cpu = time.perf_counter_ns, time.thread_time_ns
    walls: list[float] = []
    cpus: list[float] = []
    for i in range(ops):
        prepare(i)
        c0 = cpu()
        w0 = perf()  # the wall window holds nothing but the operation and one timer pair
        op(i)
        w1 = perf()
        wall, spent = w1 - w0, cpu() - c0
        walls.append(max(0.0, wall - cal.timer_ns))
        cpus.append(max(0.0, spent - cal.timer_cpu_ns))
    return Timing(
        ops=ops,
        batch=1,
        median_ns=float(statistics.median(walls)),
        p99_ns=percentile(walls, 0.99),
        cpu_ns=float(statistics.median(cpus)),
        mean_wall_ns=sum(walls) / ops,
    )
