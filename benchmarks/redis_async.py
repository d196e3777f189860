"""The async Redis driver before and after its own RESP2 connections, side by side.

Run: ``.venv/bin/python benchmarks/redis_async.py [--profile DIR]``. Starts a redis-server
(`durastate.testing.emulators`), then measures in one run, interleaved round by round
(`async_overhead.measure`: client CPU per call, every thread of this process, medians):

- one small custom-status update at a time: the sync store (redis-py), the async store on
  its lean connections (`aio_connections`, what ships), and the async store driven over
  ``redis.asyncio`` as it was before (`RedisAsyncioDriver`, kept here only as the
  reference); and the bare ``EVALSHA`` the store sends, over redis-py, ``redis.asyncio`` and
  the lean pool, so the client libraries' own cost is visible;
- 1,000 updates over 100 instances with 100 in flight: updates/s and client CPU per update
  for both async drivers, and for the sync store on a pool of 16 threads.

``--profile DIR`` writes a cProfile (by internal time) of 2,000 lean async updates to
``DIR/async-redis-lean.txt``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, from anywhere
from benchmarks.async_overhead import VALUE, measure, median_pairs, on_loop, profile

from durastate import open_store
from durastate.backends.redis import RedisBackend
from durastate.backends.redis.aio import AsyncRedisBackend
from durastate.backends.redis.aio_connections import RespPool, Settings
from durastate.backends.redis.plans import Pipelined
from durastate.core.async_store import AsyncStateStore
from durastate.core.steps import Pause
from durastate.core.store import StateStore
from durastate.testing import emulators

CONCURRENT_UPDATES, INSTANCES, IN_FLIGHT, THREADS = 1000, 100, 100, 16


class RedisAsyncioDriver(AsyncRedisBackend):
    """The async driver as it was: the same plans performed over ``redis.asyncio``."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._execute = self._client.execute_command

    async def _perform(self, step: Any) -> Any:
        if type(step) is tuple:
            return await self._execute(*step)
        if type(step) is Pipelined:
            pipe = self._client.pipeline(transaction=False)
            for command in step.commands:
                pipe.execute_command(*command)
            return await pipe.execute(raise_on_error=False)
        assert type(step) is Pause
        await asyncio.sleep(step.seconds)
        return None


def stores(url: str) -> tuple[StateStore, AsyncStateStore, AsyncStateStore]:
    """The sync store, the async store (lean) and the async store over redis.asyncio, one
    prefix, one instance ``job`` and the instances ``i000``.. for the concurrent runs."""
    store = open_store(url, prefix="bench-async:")
    lean = AsyncStateStore(store)
    assert isinstance(store.backend, RedisBackend)
    before = AsyncStateStore(store, RedisAsyncioDriver(store.backend.target))
    store.create_instance("job", name="bench")
    for number in range(INSTANCES):
        store.create_instance(f"i{number:03d}", name="bench")
    return store, lean, before


def one_at_a_time(
    store: StateStore, lean: AsyncStateStore, before: AsyncStateStore, loop: Any
) -> dict[str, Callable[[int], None]]:
    counter = iter(range(10**9))
    backend = store.backend
    assert isinstance(backend, RedisBackend)
    settings = backend.target.pool_kwargs()
    sync_client = redis.Redis.from_url(backend.target.address, **settings)
    async_client = redis.asyncio.Redis.from_url(
        backend.target.address, retry=AsyncRetry(NoBackoff(), 0), **settings
    )
    pool = redis.asyncio.ConnectionPool.from_url(backend.target.address, **settings)
    lean_pool = RespPool(Settings(pool, backend.target.options.timeout))

    def evalsha(number: int) -> tuple[Any, ...]:
        payload = store.encode_custom_status("job", dict(VALUE, percent=number))
        call = backend.plans.core.custom_status("job", payload, None, store.now())
        return ("EVALSHA", call.script.sha, 1, *call.keys, *call.args)

    def sync_store(calls: int) -> None:
        for _ in range(calls):
            store.set_custom_status("job", dict(VALUE, percent=next(counter)))

    def async_store(face: AsyncStateStore) -> Callable[[int], None]:
        async def run(calls: int) -> None:
            for _ in range(calls):
                await face.set_custom_status("job", dict(VALUE, percent=next(counter)))

        runner: Callable[[int], None] = on_loop(loop, run)
        return runner

    def raw_sync(calls: int) -> None:
        for number in range(calls):
            sync_client.execute_command(*evalsha(number))  # type: ignore[no-untyped-call]

    def raw_async(send: Callable[[tuple[Any, ...]], Awaitable[Any]]) -> Callable[[int], None]:
        async def run(calls: int) -> None:
            for number in range(calls):
                await send(evalsha(number))

        runner: Callable[[int], None] = on_loop(loop, run)
        return runner

    store.set_custom_status("job", 0)  # the script is cached on the server
    return {
        "store sync (redis-py)": sync_store,
        "store async, lean": async_store(lean),
        "store async, redis.asyncio (before)": async_store(before),
        "EVALSHA redis-py": raw_sync,
        "EVALSHA redis.asyncio": raw_async(lambda c: async_client.execute_command(*c)),  # type: ignore[no-untyped-call]
        "EVALSHA lean pool": raw_async(lean_pool.execute),
    }


def concurrent(
    store: StateStore, lean: AsyncStateStore, before: AsyncStateStore, loop: Any
) -> dict[str, tuple[float, float]]:
    """Updates/s and client CPU µs per update, 1,000 updates over 100 instances (median of
    3 interleaved rounds)."""
    ids = [f"i{number % INSTANCES:03d}" for number in range(CONCURRENT_UPDATES)]

    async def gathered(face: AsyncStateStore) -> None:
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one(number: int, instance_id: str) -> None:
            async with gate:
                await face.set_custom_status(instance_id, dict(VALUE, percent=number))

        await asyncio.gather(*(one(number, name) for number, name in enumerate(ids)))

    threads = ThreadPoolExecutor(THREADS)

    def threaded() -> None:
        list(
            threads.map(
                lambda pair: store.set_custom_status(pair[1], dict(VALUE, percent=pair[0])),
                enumerate(ids),
            )
        )

    faces: dict[str, Callable[[], None]] = {
        "async lean, 100 in flight": lambda: loop.run_until_complete(gathered(lean)),
        "async redis.asyncio, 100 in flight": lambda: loop.run_until_complete(gathered(before)),
        f"sync store, {THREADS} threads": threaded,
    }
    for run in faces.values():
        run()  # warm: connections opened
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in faces}
    for _ in range(3):
        for name, run in faces.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            samples[name].append((CONCURRENT_UPDATES / wall, cpu / CONCURRENT_UPDATES * 1e6))
    threads.shutdown()
    return median_pairs(samples)


def main(profile_dir: Path | None) -> None:
    loop = asyncio.new_event_loop()
    with emulators.running(emulators.start_redis()) as server:
        store, lean, before = stores(server.endpoints["redis"])
        try:
            figures = measure(one_at_a_time(store, lean, before, loop))
            sync = figures["store sync (redis-py)"]
            print("redis: client CPU per update, µs (median of interleaved rounds; / sync store)")
            for face, value in figures.items():
                print(f"  {face:<38} {value:8.1f}  {value / sync:5.2f}x")
            rates = concurrent(store, lean, before, loop)
            threaded = rates[f"sync store, {THREADS} threads"]
            print(
                f"redis: {CONCURRENT_UPDATES} updates over {INSTANCES} instances "
                "(median of 3 rounds; / sync store on threads)"
            )
            for face, (rate, cpu) in rates.items():
                print(
                    f"  {face:<38} {rate:8.0f} updates/s ({rate / threaded[0]:4.2f}x)"
                    f"  {cpu:7.1f} µs CPU/update ({cpu / threaded[1]:4.2f}x)"
                )
            if profile_dir is not None:
                (profile_dir / "async-redis-lean.txt").write_text(profile(lean, loop))
        finally:
            loop.run_until_complete(lean.close())
            loop.run_until_complete(before.close())
            store.close()
            loop.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    folder = None
    if "--profile" in args:
        folder = Path(args[args.index("--profile") + 1])
        folder.mkdir(parents=True, exist_ok=True)
    main(folder)
