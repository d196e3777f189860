"""Where the async store's client CPU goes on Redis and PostgreSQL, against the raw clients.

Run: ``.venv/bin/python benchmarks/async_overhead.py [redis] [postgres] [--profile DIR]``.
One small custom-status update, client CPU per call (process time: every thread), medians of
interleaved rounds in one run, four ways on the same server: the raw sync client, the raw
async client (the same statement or script call; on Redis the async store's own RESP2
pool), durastate's sync store, its async store (on PostgreSQL also the async store as it
was, with a new cursor per statement).
So ``async store / sync store`` splits into what the async client library costs on its own
(``raw async / raw sync``) and what durastate adds on either face. ``--profile DIR`` also
writes a cProfile of the async store's calls (``pstats`` text, by internal time) there.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import redis
import redis.asyncio

from durastate import open_store
from durastate.backends.postgres import core
from durastate.backends.postgres.aio import AsyncPostgresBackend
from durastate.backends.postgres.plans import Execute
from durastate.backends.redis.aio_connections import RespPool, Settings
from durastate.core.async_store import AsyncStateStore
from durastate.testing import emulators

ROUNDS, CALLS = 7, 300
VALUE = {"percent": 42, "stage": "resize", "eta_s": 12.5, "detail": "x" * 90}


def cpu_per_call(run: Callable[[int], None]) -> float:
    started = time.process_time()
    run(CALLS)
    return (time.process_time() - started) / CALLS * 1e6


def measure(faces: dict[str, Callable[[int], None]]) -> dict[str, float]:
    samples: dict[str, list[float]] = {face: [] for face in faces}
    for _ in range(ROUNDS):  # interleaved: every face sees the same machine
        for face, run in faces.items():
            samples[face].append(cpu_per_call(run))
    return {face: statistics.median(values) for face, values in samples.items()}


def median_pairs(samples: dict[str, list[tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    """Per face, the median of each of two figures sampled together round by round."""
    return {
        face: (
            statistics.median(first for first, _ in values),
            statistics.median(second for _, second in values),
        )
        for face, values in samples.items()
    }


def on_loop(loop: asyncio.AbstractEventLoop, call: Callable[[int], Awaitable[None]]) -> Any:
    return lambda calls: loop.run_until_complete(call(calls))


def store_faces(url: str, options: dict[str, Any], loop: asyncio.AbstractEventLoop) -> Any:
    store = open_store(url, **options)
    aio = AsyncStateStore(store)
    store.create_instance("job", name="bench")
    counter = iter(range(10**9))

    def sync_store(calls: int) -> None:
        for _ in range(calls):
            store.set_custom_status("job", dict(VALUE, percent=next(counter)))

    async def async_store(calls: int) -> None:
        for _ in range(calls):
            await aio.set_custom_status("job", dict(VALUE, percent=next(counter)))

    return store, aio, sync_store, on_loop(loop, async_store)


def redis_faces(url: str, loop: asyncio.AbstractEventLoop) -> Any:
    """The raw face runs the store's own script (EVALSHA) with the store's connection
    settings, so only durastate differs."""
    store, aio, sync_store, async_store = store_faces(url, {}, loop)
    call = store.backend.plans.core.custom_status
    settings = store.backend.target.pool_kwargs()  # the store's (RESP2, timeouts)
    sync_client = redis.Redis.from_url(url, **settings)
    # the async store's own connections (`aio_connections`); redis.asyncio beside them:
    # benchmarks/redis_async.py
    pool = redis.asyncio.ConnectionPool.from_url(url, **settings)
    async_client = RespPool(Settings(pool, store.backend.target.options.timeout))
    store.set_custom_status("job", 0)  # the script is cached on the server

    def evalsha(number: int) -> tuple[Any, ...]:
        script = call(
            "job", store.encode_custom_status("job", dict(VALUE, percent=number)), None, store.now()
        )
        return ("EVALSHA", script.script.sha, 1, *script.keys, *script.args)

    def raw_sync(calls: int) -> None:
        for number in range(calls):
            sync_client.execute_command(*evalsha(number))  # type: ignore[no-untyped-call]

    async def raw_async(calls: int) -> None:
        for number in range(calls):
            await async_client.execute(evalsha(number))

    faces = {"raw sync": raw_sync, "raw async": on_loop(loop, raw_async)}
    return store, aio, faces | {"store sync": sync_store, "store async": async_store}


def postgres_faces(url: str, table: str, loop: asyncio.AbstractEventLoop) -> Any:
    """The raw face runs the store's own prepared UPDATE on one connection made with the
    store's conninfo."""
    store, aio, sync_store, async_store = store_faces(url, {"table": table}, loop)
    sql = store.backend.plans.stmts.write_status
    conninfo = store.backend._connecting.conninfo  # the store's (timeouts, UTC)
    sync_conn = psycopg.connect(conninfo, autocommit=True)
    connecting = psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    async_conn = loop.run_until_complete(connecting)

    def row(number: int) -> dict[str, Any]:
        payload = store.encode_custom_status("job", dict(VALUE, percent=number))
        return core.status_params("job", payload, None, store.now(), core.new_etag(), None)

    def raw_sync(calls: int) -> None:
        for number in range(calls):
            sync_conn.execute(sql, row(number), prepare=True).fetchone()

    async def raw_async(calls: int) -> None:
        for number in range(calls):
            await (await async_conn.execute(sql, row(number), prepare=True)).fetchone()

    before = AsyncStateStore(store, FreshCursors(store.backend._connecting, store.backend.options))

    async def async_before(calls: int) -> None:
        for number in range(calls):
            await before.set_custom_status("job", dict(VALUE, percent=number))

    faces = {"raw sync": raw_sync, "raw async": on_loop(loop, raw_async)}
    return (
        store,
        aio,
        faces
        | {"store sync": sync_store, "store async": async_store}
        | {"async before": on_loop(loop, async_before)},
        before,
    )


class FreshCursors(AsyncPostgresBackend):
    """The async driver before it kept a cursor per connection: a new cursor per statement."""

    def _cursor(self, step: Execute) -> psycopg.AsyncCursor[Any]:
        cursor: psycopg.AsyncCursor[Any] = step.connection.cursor()
        return cursor


def report(name: str, figures: dict[str, float]) -> str:
    lines = [f"{name}: client CPU per update, µs (median of {ROUNDS} rounds of {CALLS})"]
    lines += [f"  {face:<12} {value:8.1f}" for face, value in figures.items()]
    raw = figures["raw async"] / figures["raw sync"]
    ours = figures["store async"] / figures["store sync"]
    lines.append(f"  raw async / raw sync       {raw:.2f}  (the client library alone)")
    lines.append(f"  store async / store sync   {ours:.2f}")
    if "async before" in figures:
        earlier = figures["async before"] / figures["store sync"]
        lines.append(f"  async before / store sync  {earlier:.2f}  (a new cursor per statement)")
    lines.append(
        "  durastate adds             sync {:.1f} µs, async {:.1f} µs".format(
            figures["store sync"] - figures["raw sync"],
            figures["store async"] - figures["raw async"],
        )
    )
    return "\n".join(lines)


def profile(aio: AsyncStateStore, loop: asyncio.AbstractEventLoop) -> str:
    async def calls() -> None:
        for number in range(2000):
            await aio.set_custom_status("job", dict(VALUE, percent=number))

    profiler = cProfile.Profile()
    profiler.enable()
    loop.run_until_complete(calls())
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    return text.getvalue()


def main(which: list[str], profile_dir: Path | None) -> None:
    loop = asyncio.new_event_loop()
    try:
        if "redis" in which:
            with emulators.running(emulators.start_redis()) as server:
                url = server.endpoints["redis"]
                _, aio, faces = redis_faces(url, loop)
                print(report("redis", measure(faces)), flush=True)
                if profile_dir is not None:
                    (profile_dir / "async-redis.txt").write_text(profile(aio, loop))
                loop.run_until_complete(aio.close())
        if "postgres" in which:
            with emulators.running(emulators.start_postgres()) as server:
                _, aio, faces, before = postgres_faces(server.endpoint, "bench_overhead", loop)
                print(report("postgresql", measure(faces)), flush=True)
                if profile_dir is not None:
                    (profile_dir / "async-postgres.txt").write_text(profile(aio, loop))
                loop.run_until_complete(aio.close())
                loop.run_until_complete(before.close())
    finally:
        loop.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    folder = None
    if "--profile" in args:
        at = args.index("--profile")
        folder = Path(args[at + 1])
        folder.mkdir(parents=True, exist_ok=True)
        del args[at : at + 2]
    main(args or ["redis", "postgres"], folder)
