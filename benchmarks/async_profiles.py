"""Where an async ``set_custom_status`` spends its client CPU on the asyncio driver, beside
the sync store's, per network backend.

    .venv/bin/python benchmarks/async_profiles.py [azurite] [dynalite] [moto] [s3]

cProfile with a CPU clock (``thread_time``: the emulator's work and the wait for it do not
count), 300 updates carrying their etag, one at a time, on emulators started here. Writes
``benchmarks/results/profiles/lean-aio-<backend>.txt``: the top 30 by own time of each face
(the ncalls of ``AsyncHttpDriver.send`` say how many requests the updates took).
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from durastate.core.async_store import AsyncStateStore
from durastate.core.store import StateStore
from durastate.opening import open_store
from durastate.testing import emulators
from durastate.testing.emulators import azurite_connection_string

OUT = Path(__file__).parent / "results" / "profiles"
ROOT = Path(__file__).resolve().parents[1]
OPS = 300
CREDS = {"aws_access_key_id": "a", "aws_secret_access_key": "b", "region": "us-east-1"}


@contextmanager
def opened(name: str) -> Iterator[StateStore]:
    if name == "azurite":
        with emulators.running(emulators.start_azurite()) as azurite:
            options: dict[str, Any] = {"connection_string": azurite_connection_string(azurite)}
            yield open_store(f"azure-tables://P{uuid.uuid4().hex[:8]}", **options)
        return
    start: Callable[[], emulators.RunningEmulator] = (
        emulators.start_dynalite if name == "dynalite" else emulators.start_moto
    )
    with emulators.running(start()) as emulator:
        options = {"endpoint_url": emulator.endpoint, **CREDS}
        if name == "s3":
            yield open_store(f"s3://prof-{uuid.uuid4().hex[:8]}/p", **options)
        else:
            yield open_store(f"dynamodb://prof-{uuid.uuid4().hex[:8]}", **options)


def _table(profile: cProfile.Profile, title: str) -> str:
    text = io.StringIO()
    text.write(f"## {title}: {OPS} updates, CPU clock (thread_time), top 30 by own time\n")
    stats = pstats.Stats(profile, stream=text)
    total = stats.total_tt  # type: ignore[attr-defined]
    text.write(f"CPU per update: {total / OPS * 1e6:.0f} µs (with the profiler's overhead)\n")
    stats.sort_stats("tottime").print_stats(30)
    return _relative(text.getvalue())


def _relative(text: str) -> str:
    """Paths relative to the checkout (and site-packages), not this machine's."""
    text = re.sub(r"\S*/site-packages/", "site-packages/", text)
    return text.replace(f"{ROOT}/", "")


def profile_one(name: str) -> str:
    with opened(name) as store:
        etag = store.create_instance("i", name="wf")
        for n in range(20):  # warm up: connections, caches
            etag = store.set_custom_status("i", {"p": n, "stage": "resize"}, etag=etag)
        sync = cProfile.Profile(time.thread_time)
        sync.enable()
        for n in range(OPS):
            etag = store.set_custom_status("i", {"p": n, "stage": "resize"}, etag=etag)
        sync.disable()

        aio = AsyncStateStore(store)
        runner = asyncio.Runner()

        async def writes(count: int, etag: str) -> str:
            for n in range(count):
                etag = await aio.set_custom_status("i", {"p": n, "stage": "crop"}, etag=etag)
            return etag

        etag = runner.run(writes(20, etag))
        profile = cProfile.Profile(time.thread_time)
        profile.enable()
        runner.run(writes(OPS, etag))
        profile.disable()
        runner.run(aio.close())
        runner.close()
        store.close()
    return (
        f"# {name}: set_custom_status one at a time, sync store and async store "
        f"(AsyncHttpDriver on asyncio)\n\n"
        + _table(sync, "sync StateStore")
        + "\n"
        + _table(profile, "AsyncStateStore")
    )


def main(names: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names or ["azurite", "dynalite", "moto", "s3"]:
        (OUT / f"lean-aio-{name}.txt").write_text(profile_one(name))
        print("wrote", OUT / f"lean-aio-{name}.txt", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
