"""Where the async SQLite store's client CPU goes: the event loop's thread, the connection
thread that runs the statement, and what the sync store spends on the same update.

Run: ``.venv/bin/python benchmarks/sqlite_async_hop.py``. SQLite's async face runs each
statement on one of its own connection threads (the event loop never waits on a locked
file), so every call crosses two threads and back: a queue put and a futex wake on the way
there, ``call_soon_threadsafe`` (a self-pipe write and an epoll wake) on the way back. The
split below shows that hop, not SQLite or durastate's work, is what the async face adds.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from durastate import open_store
from durastate.core.async_store import AsyncStateStore

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


if __name__ == "__main__":
    main()
