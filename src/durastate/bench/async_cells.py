"""Benchmark cells for the async store, the reporter writer and watch, per backend.

Each cell measures the async path side by side with the sync one in the same run, on the
same backend, so the figures are ratios: client CPU of ``set_custom_status`` one at a time;
1,000 updates over 100 instances with 100 in flight against the sync store with 16
threads; threads added by 1,000 reporters; watch latency (a write returning -> the
watcher's yield) and reads per poll interval with 100 watchers of one instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from durastate.bench.matrix import BackendSpec
from durastate.bench.results import Measurement
from durastate.core.async_store import AsyncStateStore
from durastate.core.store import StateStore
from durastate.opening import open_backend
from durastate.testing.counting import CountingBackend

VALUE = {"percent": 42, "stage": "resize", "eta_s": 12.5, "detail": "x" * 90}  # ~150 B
INSTANCES = 100
UPDATES = 1000
IN_FLIGHT = 100
SYNC_THREADS = 16
REPORTERS = 1000
WATCHERS = 100


def _measurement(spec: BackendSpec, operation: str, **extra: Any) -> Measurement:
    return Measurement(
        "durastate", "durastate", spec.name, "json", "150B", "dict", operation, extra=extra
    )


def _stores(spec: BackendSpec) -> tuple[StateStore, AsyncStateStore]:
    backend = open_backend(spec.url, **spec.options)
    store = StateStore(backend)
    return store, AsyncStateStore(store)


def _clock(work: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds: every thread's, pool threads included)."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def _ids(prefix: str, count: int) -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"bench-{prefix}-{run}-{n}" for n in range(count)]


def set_status_one_at_a_time(spec: BackendSpec, quick: bool) -> Measurement:
    store, aio = _stores(spec)
    network = spec.scheme not in ("memory", "sqlite")
    ops = (100 if quick else 300) if network else (1000 if quick else 5000)
    (instance_id,) = _ids("one", 1)
    store.create_instance(instance_id, name="bench")
    values = [dict(VALUE, percent=n) for n in range(ops)]  # every write really writes
    loop = asyncio.new_event_loop()

    async def async_writes() -> None:
        for value in values:
            await aio.set_custom_status(instance_id, value)

    def sync_writes() -> None:
        for value in values:
            store.set_custom_status(instance_id, value)

    rounds: dict[str, list[tuple[float, float]]] = {"async": [], "sync": []}
    try:
        for _ in range(3):  # interleaved, so both see the same machine
            rounds["async"].append(_clock(lambda: loop.run_until_complete(async_writes())))
            rounds["sync"].append(_clock(sync_writes))
        loop.run_until_complete(aio.purge(instance_id))
        loop.run_until_complete(aio.close())
    finally:
        loop.close()
    per_op = {
        face: (
            statistics.median(wall for wall, _ in runs) / ops * 1e6,
            statistics.median(cpu for _, cpu in runs) / ops * 1e6,
        )
        for face, runs in rounds.items()
    }
    m = _measurement(
        spec,
        "async_set_status",
        sync_wall_us=round(per_op["sync"][0], 2),
        sync_cpu_us=round(per_op["sync"][1], 2),
        cpu_ratio_vs_sync=round(per_op["async"][1] / per_op["sync"][1], 3),
    )
    m.ops, m.median_us, m.cpu_us = ops, per_op["async"][0], per_op["async"][1]
    m.ops_per_s = 1e6 / per_op["async"][0]
    return m


def updates_in_flight(spec: BackendSpec, quick: bool) -> Measurement:
    """1,000 updates over 100 instances: asyncio with 100 in flight vs 16 sync threads."""
    store, aio = _stores(spec)
    ids = _ids("flight", INSTANCES)
    for instance_id in ids:
        store.create_instance(instance_id, name="bench")
    jobs = [(ids[n % INSTANCES], dict(VALUE, percent=n)) for n in range(UPDATES)]
    loop = asyncio.new_event_loop()

    async def async_run() -> None:
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one(instance_id: str, value: dict[str, Any]) -> None:
            async with gate:
                await aio.set_custom_status(instance_id, value)

        await asyncio.gather(*(one(*job) for job in jobs))

    def sync_run() -> None:
        with ThreadPoolExecutor(SYNC_THREADS) as pool:
            list(pool.map(lambda job: store.set_custom_status(*job), jobs))

    try:
        async_wall, async_cpu = _clock(lambda: loop.run_until_complete(async_run()))
        sync_wall, sync_cpu = _clock(sync_run)
        loop.run_until_complete(aio.purge_by(prefix=ids[0].rsplit("-", 1)[0] + "-"))
        loop.run_until_complete(aio.close())
    finally:
        loop.close()
    m = _measurement(
        spec,
        "async_updates_100_in_flight",
        sync_threads=SYNC_THREADS,
        sync_updates_per_s=round(UPDATES / sync_wall, 1),
        sync_cpu_us=round(sync_cpu / UPDATES * 1e6, 2),
        throughput_ratio_vs_sync=round(sync_wall / async_wall, 3),
        cpu_ratio_vs_sync=round(async_cpu / sync_cpu, 3),
    )
    m.ops, m.ops_per_s, m.cpu_us = UPDATES, UPDATES / async_wall, async_cpu / UPDATES * 1e6
    return m


def reporter_threads(spec: BackendSpec, quick: bool) -> Measurement:
    """Threads added while 1,000 reporters (sync, then async) report for 0.3 s."""
    store, aio = _stores(spec)
    ids = _ids("rep", REPORTERS)
    for instance_id in ids:
        store.create_instance(instance_id, name="bench")
    added: dict[str, int] = {}

    before = threading.active_count()
    with contextlib.ExitStack() as stack:
        reporters = [stack.enter_context(store.status_reporter(i, min_interval=0.1)) for i in ids]
        for step in range(3):
            for reporter in reporters:
                reporter.report(step)
            time.sleep(0.1)
        added["sync"] = threading.active_count() - before

    async def run_async() -> None:
        start = threading.active_count()
        async with contextlib.AsyncExitStack() as stack:
            async_reporters = [
                await stack.enter_async_context(aio.status_reporter(i, min_interval=0.1))
                for i in ids
            ]
            for step in range(3):
                for reporter in async_reporters:
                    reporter.report(step + 10)
                await asyncio.sleep(0.1)
            added["async"] = threading.active_count() - start
        await aio.purge_by(prefix=ids[0].rsplit("-", 1)[0] + "-")
        await aio.close()

    asyncio.run(run_async())
    m = _measurement(
        spec, "reporters_1000_threads", sync_threads_added=added["sync"], reporters=REPORTERS
    )
    m.extra["async_threads_added"] = added["async"]
    return m


def watch_cost(spec: BackendSpec, quick: bool) -> Measurement:
    """Latency from a write's return to the watcher's yield (median and max of 20 changes),
    and reads per poll interval while 100 watchers of one instance sit idle."""
    interval = 0.1
    counting = CountingBackend(open_backend(spec.url, **spec.options))
    aio = AsyncStateStore(StateStore(counting))
    (instance_id,) = _ids("watch", 1)

    async def run() -> tuple[list[float], float]:
        await aio.create_instance(instance_id, name="bench")
        states = aio.watch(instance_id, poll_interval=interval)
        await anext(states)
        latencies = []
        for n in range(20):
            await aio.set_custom_status(instance_id, n)
            written = time.perf_counter()
            await asyncio.wait_for(anext(states), 10)
            latencies.append(time.perf_counter() - written)
            await asyncio.sleep(0.05)
        watchers = [aio.watch(instance_id, poll_interval=interval) for _ in range(WATCHERS)]
        for watcher in watchers:
            await anext(watcher)
        waiting = [asyncio.ensure_future(anext(watcher)) for watcher in watchers]
        await asyncio.sleep(3 * interval)  # the shared poll settles to its interval
        reads, started = counting.calls["read"], time.perf_counter()
        await asyncio.sleep(2.0)
        intervals = (time.perf_counter() - started) / interval
        per_interval = (counting.calls["read"] - reads) / intervals
        for future in waiting:
            future.cancel()
        await aio.purge(instance_id)
        await aio.close()
        return latencies, per_interval

    latencies, per_interval = asyncio.run(run())
    m = _measurement(
        spec,
        "watch",
        poll_interval_s=interval,
        push=counting.calls["subscribe"] > 0,
        latency_max_ms=round(max(latencies) * 1e3, 2),
        watchers=WATCHERS,
        reads_per_interval=round(per_interval, 2),
    )
    m.ops, m.median_us = len(latencies), statistics.median(latencies) * 1e6
    return m


CELLS = (set_status_one_at_a_time, updates_in_flight, reporter_threads, watch_cost)


def run_async_cells(spec: BackendSpec, quick: bool) -> list[Measurement]:
    """Every async cell on one backend; a cell that fails is recorded with its error."""
    from durastate.bench.async_sdk import (
        async_sdk_in_flight,
        async_sdk_one_at_a_time_aws,
        async_sdk_update,
    )

    out: list[Measurement] = []
    for cell in (*CELLS, async_sdk_update, async_sdk_one_at_a_time_aws, async_sdk_in_flight):
        try:
            measured = cell(spec, quick)
        except Exception as exc:
            failed = _measurement(spec, cell.__name__)
            failed.error = f"{type(exc).__name__}: {exc}"[:500]
            out.append(failed)
            continue
        if measured is not None:  # None: no async SDK installed for this backend
            out.append(measured)
    return out
