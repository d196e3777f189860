"""Where the async SQLite store's client CPU goes: the event loop's thread, the connection
thread that runs the statement, and what the sync store spends on the same update.

Run: ``.venv/bin/python benchmarks/sqlite_async_hop.py``. SQLite's async face runs each
statement on one of its own connection threads (the event loop never waits on a locked
file), so every call crosses two threads and back: a queue put and a futex wake on the way
there, ``call_soon_threadsafe`` (a self-pipe write and an epoll wake) on the way back. The
split below shows that hop, not SQLite or durastate's work, is what the async face adds.
The hop alone is measured too: a call that does nothing, through the same kind of workers
(`durastate.core.async_backend.Workers`) and through ``loop.run_in_executor``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from durastate import open_store
from durastate.core.async_backend import Workers
from durastate.core.async_store import AsyncStateStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, from anywhere
from benchmarks.async_overhead import median_pairs

CALLS, ROUNDS = 2000, 5
VALUE = {"percent": 42, "stage": "resize", "eta_s": 12.5, "detail": "x" * 90}


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'hop.db'}")
        aio = AsyncStateStore(store)
        store.create_instance("job", name="bench")
        loop = asyncio.new_event_loop()

        async def async_calls() -> float:
            loop_cpu = time.thread_time()
            for number in range(CALLS):
                await aio.set_custom_status("job", dict(VALUE, percent=number))
            return time.thread_time() - loop_cpu

        samples: dict[str, list[float]] = {"sync": [], "async": [], "async loop thread": []}
        for _ in range(ROUNDS):
            started = time.process_time()
            for number in range(CALLS):
                store.set_custom_status("job", dict(VALUE, percent=-number))
            samples["sync"].append(time.process_time() - started)
            started = time.process_time()
            on_loop = loop.run_until_complete(async_calls())
            samples["async"].append(time.process_time() - started)
            samples["async loop thread"].append(on_loop)
        hops = hop_alone(loop)
        loop.run_until_complete(aio.close())
        loop.close()
    per_call = {face: statistics.median(s) / CALLS * 1e6 for face, s in samples.items()}
    print(f"sqlite: client CPU per update, µs (median of {ROUNDS} rounds of {CALLS})")
    print(f"  sync store                          {per_call['sync']:7.1f}")
    print(f"  async store, all threads            {per_call['async']:7.1f}")
    print(f"    of which the event loop's thread  {per_call['async loop thread']:7.1f}")
    print(
        "    of which the connection thread    "
        f"{per_call['async'] - per_call['async loop thread']:7.1f}"
    )
    print(f"  async / sync                        {per_call['async'] / per_call['sync']:7.2f}")
    print("a call that does nothing, on another thread and back (the hop alone), µs CPU")
    for face, (every_thread, loop_thread) in hops.items():
        print(f"  {face:<30} all threads {every_thread:6.1f}, the loop's {loop_thread:6.1f}")


def hop_alone(loop: asyncio.AbstractEventLoop) -> dict[str, tuple[float, float]]:
    """CPU per no-op call (every thread, and the loop's own), medians of interleaved rounds."""
    workers, executor = Workers(1, "hop"), ThreadPoolExecutor(1)

    def nothing() -> None:
        return None

    async def through_workers() -> None:
        for _ in range(CALLS):
            await workers.run(nothing)

    async def through_executor() -> None:
        for _ in range(CALLS):
            await loop.run_in_executor(executor, nothing)

    faces = {"durastate's Workers": through_workers, "loop.run_in_executor": through_executor}
    samples: dict[str, list[tuple[float, float]]] = {face: [] for face in faces}
    for _ in range(ROUNDS):
        for face, calls in faces.items():
            every, own = time.process_time(), time.thread_time()
            loop.run_until_complete(calls())
            every, own = time.process_time() - every, time.thread_time() - own
            samples[face].append((every / CALLS * 1e6, own / CALLS * 1e6))
    workers.shutdown()
    executor.shutdown()
    return median_pairs(samples)


if __name__ == "__main__":
    main()
