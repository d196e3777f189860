"""The async store's bounded thread pool (`Workers`): a call that finishes after its event
loop closed must not cost the pool its thread."""

from __future__ import annotations

import asyncio
import threading
import time

from durastate.core.async_backend import Workers


def test_a_worker_outlives_the_closed_loop_of_its_last_call() -> None:
    workers = Workers(1, "outlive")
    release = threading.Event()
    first = asyncio.new_event_loop()

    async def start_a_slow_call() -> asyncio.Future[bool]:
        return workers.run(lambda: release.wait(5))

    first.run_until_complete(start_a_slow_call())
    first.close()  # e.g. asyncio.run() ending, or a benchmark closing its loop
    release.set()
    time.sleep(0.2)  # the worker finishes and finds its loop closed

    async def next_call() -> int:
        return await asyncio.wait_for(workers.run(lambda: 42), 5)

    try:
        assert asyncio.run(next_call()) == 42  # the pool's one thread still serves
    finally:
        workers.shutdown()
