"""Where an async S3 ``set_custom_status`` spends its client CPU, against the sync one.

cProfile with a CPU clock (``thread_time``: moto_server's own work and the wait for it do
not count), 200 updates carrying their etag, one at a time, on moto_server started here.
Writes the two top-25 tables to ``benchmarks/results/profiles/``.

Run from the checkout: ``.venv/bin/python -m benchmarks.s3_async_profile``
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import time
import uuid
from pathlib import Path

from durastate.core.async_store import AsyncStateStore
from durastate.core.store import StateStore
from durastate.opening import open_store
from durastate.testing import emulators

OUT = Path(__file__).parent / "results" / "profiles"
OPS = 200


def _table(profile: cProfile.Profile, title: str) -> str:
    text = io.StringIO()
    text.write(f"# {title}: {OPS} updates, CPU clock (thread_time), top 25 by own time\n")
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(25)
    return text.getvalue()


def main() -> None:
    with emulators.running(emulators.start_moto(serialized=False)) as moto:
        store: StateStore = open_store(
            f"s3://prof-{uuid.uuid4().hex[:8]}/p",
            endpoint_url=moto.endpoint,
            region="us-east-1",
            aws_access_key_id="a",
            aws_secret_access_key="b",
        )
        etag = store.create_instance("i", name="wf")
        for n in range(20):  # warm up
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
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "s3_set_custom_status_sync.txt").write_text(_table(sync, "sync StateStore"))
    (OUT / "s3_set_custom_status_async.txt").write_text(_table(profile, "AsyncStateStore"))


if __name__ == "__main__":
    main()
