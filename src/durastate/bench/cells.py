"""Durastate's own cells: one operation of one store on one payload, timed and counted."""

from __future__ import annotations

import itertools
import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from durastate.bench.counting import WriteCountingBackend, count_http
from durastate.bench.matrix import BackendSpec, Effort
from durastate.bench.payloads import PayloadPair, Progress
from durastate.bench.results import Measurement
from durastate.bench.timing import (
    ROUND_TARGET_NS,
    Op,
    Timing,
    calibration,
    choose_batch,
    measure,
    measure_each,
    percentile,
)
from durastate.config import load_settings
from durastate.core import store as clock
from durastate.core.backend import Backend
from durastate.core.store import StateStore
from durastate.opening import open_backend
from durastate.registry import serializer_class
from durastate.serializers.base import Serializer
from durastate.serializers.pickle_safe import SafePickleSerializer

_ids = itertools.count(1)
RUN_TAG = secrets.token_hex(3)


def new_instance_id(prefix: str = "bench") -> str:
    """A fresh instance id for this process (ids never repeat within a run)."""
    return f"{prefix}-{RUN_TAG}-{next(_ids):06d}"


def make_serializer(serializer_id: str) -> Serializer:
    """The serializer by id; pickle-safe gets a generated HMAC key for the run."""
    if serializer_id == "pickle-safe":
        return SafePickleSerializer({"bench": secrets.token_bytes(32)})
    cls = serializer_class(serializer_id)
    return cls.from_settings(load_settings(serializer=serializer_id))


def make_store(backend: Backend, serializer: Serializer, limit: int) -> StateStore:
    return StateStore(backend, serializer=serializer, accept=[serializer],
                      max_custom_status_bytes=limit)


def durastate_op(store: StateStore, operation: str, values: tuple[Any, Any]) -> Op:
    """A fresh instance, and the operation on it; consecutive calls write different values."""
    instance_id = new_instance_id()
    etag = store.create_instance(instance_id, name="bench", custom_status=values[1])
    set_status = store.set_custom_status
    if operation == "update_cas":
        state = [etag]

        def update_cas(i: int) -> None:
            state[0] = set_status(instance_id, values[i & 1], etag=state[0])

        return update_cas
    if operation == "update_lww":
        def update_lww(i: int) -> None:
            set_status(instance_id, values[i & 1])

        return update_lww
    if operation == "update_unchanged":
        current = set_status(instance_id, values[0], etag=etag)
        value = values[0]

        def update_unchanged(i: int) -> None:
            set_status(instance_id, value, etag=current)

        return update_unchanged
    if operation == "read":
        get = store.get_instance

        def read(i: int) -> None:  # the read a client makes: fetch, then decode the status
            metadata = get(instance_id)
            assert metadata is not None
            metadata.custom_status  # noqa: B018 - decoding is part of the read

        return read
    if operation == "read_typed":
        get = store.get_instance

        def read_typed(i: int) -> None:  # read_custom_status_as(Model): fetch and validate
            metadata = get(instance_id)
            assert metadata is not None
            metadata.read_custom_status_as(Progress)

        return read_typed
    if operation == "update_clock_miss":
        return clock_miss_op(set_status, instance_id, values)
    if operation == "serialize":
        dumps = store.codec.writer.dumps

        def serialize(i: int) -> None:  # the serializer alone: what report() must cost
            dumps(values[i & 1], instance_id=instance_id)

        return serialize
    raise ValueError(f"not a timed durastate operation: {operation}")


@dataclass
class StorePair:
    """The store that is timed, and one over a counting wrapper of the same backend."""

    spec: BackendSpec
    serializer: Serializer
    timed: StateStore
    counted: StateStore
    counter: WriteCountingBackend

    @classmethod
    def open(cls, spec: BackendSpec, backend: Backend, serializer: Serializer,
             limit: int) -> StorePair:
        counter = WriteCountingBackend(backend)
        return cls(spec, serializer, make_store(backend, serializer, limit),
                   make_store(counter, serializer, limit), counter)


def clock_miss_op(set_status: Callable[[str, Any], str], instance_id: str,
                  values: tuple[Any, Any]) -> Op:
    """Last-write-wins updates that each find the store's per-millisecond clock cache empty,
    as when writes come more than a millisecond apart.

    The cache is emptied directly rather than by waiting: after a real pause the CPU's own
    caches are cold too (a 3 µs write then takes 10 to 20 µs here, whatever the library does),
    which would drown the one thing this cell is about.
    """
    forgotten = (0, clock._last_millisecond[1])

    def write_in_a_new_millisecond(i: int) -> None:
        clock._last_millisecond = forgotten
        set_status(instance_id, values[i & 1])

    return write_in_a_new_millisecond


def run_cold_cell(pair: StorePair, payload: PayloadPair, operation: str,
                  effort: Effort) -> Measurement:
    """A write that finds nothing warm, each after its own untimed setup.

    ``update_cold``: the first last-write-wins update through a backend opened just before
    (fresh clients, connections and caches), on an instance that already exists.
    """
    m = base_measurement(pair, payload, operation)
    m.stored_bytes = len(pair.timed.encode_custom_status("size-probe", payload.values[0]).data)
    values = payload.values
    instance_id = new_instance_id()
    with ColdStores(pair, instance_id, values[1]) as cold:
        timing = measure_each(cold.write(values), cold.reopen, effort.cold_ops)
        _fill(m, timing)
        ops = max(1, min(effort.count_ops, effort.cold_ops, 5))  # each reopens the backend
        write = cold.write(values)
        requests = 0
        for i in range(ops):
            cold.reopen(i)
            with count_http() as http:
                write(i)
            requests += http.requests
        m.http_requests = requests / ops
    return m


class ColdStores:
    """Opens the benchmarked backend afresh for every operation (closing the previous)."""

    def __init__(self, pair: StorePair, instance_id: str, value: Any) -> None:
        spec = pair.spec
        url = spec.url
        if spec.scheme == "memory" and not url.partition("://")[2].strip("/"):
            url = f"memory://durastate-bench-cold-{RUN_TAG}"  # a reopened name sees the data
        self.url, self.options = url, spec.options
        self.pair = pair
        self.instance_id = instance_id
        self.backend = open_backend(url, **spec.options)
        self.store = self._store(self.backend)
        self.store.create_instance(instance_id, name="bench", custom_status=value)

    def _store(self, backend: Backend) -> StateStore:
        return make_store(backend, self.pair.serializer, self.pair.timed.max_custom_status_bytes
                          or 16 * 1024)

    def reopen(self, i: int) -> None:
        self.backend.close()
        self.backend = open_backend(self.url, **self.options)
        self.store = self._store(self.backend)

    def write(self, values: tuple[Any, Any]) -> Op:
        def first_write(i: int) -> None:
            self.store.set_custom_status(self.instance_id, values[i & 1])

        return first_write

    def __enter__(self) -> ColdStores:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.backend.close()


def _fill(m: Measurement, timing: Timing) -> None:
    m.ops, m.batch = timing.ops, timing.batch
    m.median_us, m.p99_us = timing.median_ns / 1e3, timing.p99_ns / 1e3
    m.cpu_us, m.ops_per_s = timing.cpu_ns / 1e3, timing.ops_per_s


def count_calls(pair: StorePair, operation: str, values: tuple[Any, Any],
                ops: int) -> tuple[float, float, float]:
    """Backend calls, real writes and HTTP requests per operation, from a counting pass."""
    op = durastate_op(pair.counted, operation, values)
    op(1)  # the first call may warm a cache (a table-exists check): not the steady state
    calls, writes = pair.counter.total, pair.counter.writes
    with count_http() as http:
        for i in range(2, ops + 2):
            op(i)
    return ((pair.counter.total - calls) / ops, (pair.counter.writes - writes) / ops,
            http.requests / ops)


def base_measurement(pair: StorePair, payload: PayloadPair, operation: str) -> Measurement:
    return Measurement(
        subject="durastate", name="durastate", backend=pair.spec.name,
        serializer=pair.serializer.id, payload=payload.label, kind=payload.kind,
        operation=operation,
    )


def run_cell(pair: StorePair, payload: PayloadPair, operation: str, effort: Effort,
             repeat: int | None) -> Measurement:
    """Time one operation, then count its calls in a separate pass."""
    m = base_measurement(pair, payload, operation)
    m.stored_bytes = len(pair.timed.encode_custom_status("size-probe", payload.values[0]).data)
    if operation == "report":
        return run_report_cell(pair, payload, effort, m)
    if operation == "update_cold":
        return run_cold_cell(pair, payload, operation, effort)
    timing = measure(durastate_op(pair.timed, operation, payload.values), seconds=effort.seconds,
                     min_ops=effort.min_ops, max_ops=effort.max_ops, repeat=repeat,
                     tail_ops=effort.tail_ops)
    _fill(m, timing)
    m.backend_calls, m.backend_writes, m.http_requests = count_calls(
        pair, operation, payload.values, effort.count_ops)
    return m


def run_report_cell(pair: StorePair, payload: PayloadPair, effort: Effort,
                    m: Measurement) -> Measurement:
    """``report()`` in a hot loop inside ``status_reporter``; writes vs elapsed / interval."""
    store, counter, values = pair.counted, pair.counter, payload.values
    instance_id = new_instance_id()
    store.create_instance(instance_id, name="bench", custom_status=values[1])
    interval = effort.report_interval
    dumps = pair.timed.codec.writer.dumps
    per_op = min(choose_batch(lambda i: dumps(values[i & 1], instance_id=instance_id), n)[1]
                 for n in range(3))  # the least disturbed of three estimates
    batch = max(1, min(200, int(ROUND_TARGET_NS / per_op)))  # rounds of ~200 µs, as elsewhere
    alone: list[float] = []  # the serializer alone, in rounds alternating with report()'s
    alone_ns = 0  # their wall time, not part of report()'s ops/s
    calls0, writes0 = counter.total, counter.writes
    walls: list[float] = []
    cpus: list[float] = []
    tails: list[float] = []
    cal = calibration()
    loop_ns, loop_cpu_ns, timer_ns = cal.loop_ns, cal.loop_cpu_ns, cal.timer_ns
    perf, cpu = time.perf_counter_ns, time.thread_time_ns
    with count_http() as http:
        started = time.perf_counter()
        with store.status_reporter(instance_id, min_interval=interval) as reporter:
            report = reporter.report
            deadline = started + effort.report_seconds * 0.8
            i = 0
            while time.perf_counter() < deadline:
                w0, c0 = perf(), cpu()
                for j in range(i, i + batch):
                    report(values[j & 1])
                walls.append(max(0.0, (perf() - w0) / batch - loop_ns))
                cpus.append(max(0.0, (cpu() - c0) / batch - loop_cpu_ns))
                w0, c0 = perf(), cpu()
                for j in range(i, i + batch):
                    dumps(values[j & 1], instance_id=instance_id)
                alone.append(max(0.0, (cpu() - c0) / batch - loop_cpu_ns))
                alone_ns += perf() - w0
                i += batch
            deadline = started + effort.report_seconds
            while time.perf_counter() < deadline:
                t0 = perf()
                report(values[i & 1])
                tails.append(max(0.0, perf() - t0 - timer_ns))
                i += 1
        elapsed = time.perf_counter() - started
    m.ops, m.batch = i, batch
    m.median_us = statistics.median(walls) / 1e3
    m.p99_us = percentile(tails or walls, 0.99) / 1e3
    m.cpu_us = statistics.median(cpus) / 1e3
    m.ops_per_s = i / (elapsed - alone_ns / 1e9)
    writes = counter.writes - writes0
    m.backend_calls = (counter.total - calls0) / i
    m.backend_writes = writes / i
    m.http_requests = http.requests / i
    m.extra = {
        "paired_serialize_cpu_us": statistics.median(alone) / 1e3,
        # report()'s cost over the serializer: the median of the per-round differences, so a
        # round slowed by load counts on both sides of its own difference, not in one median
        "paired_overhead_cpu_us": statistics.median(
            mine - theirs for mine, theirs in zip(cpus, alone, strict=True)
        ) / 1e3,
        "reporter_writes": reporter.writes,
        "backend_writes": writes,
        "elapsed_s": round(elapsed, 4),
        "min_interval_s": interval,
        "write_bound": round(elapsed / interval + 2, 2),
        "http_requests": http.requests,
    }
    return m
