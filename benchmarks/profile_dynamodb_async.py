"""Where the client CPU of a DynamoDB custom-status update goes, sync and async.

    .venv/bin/python benchmarks/profile_dynamodb_async.py benchmarks/results/profiles

Starts dynalite, runs 400 ``set_custom_status`` through `StateStore` and through
`AsyncStateStore` (awaited one at a time) under cProfile with a thread-CPU timer, and
writes the top 35 functions by own time of each to ``DIR/dynamodb-set-custom-status-*.txt``.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from durastate import AsyncStateStore, open_store
from durastate.testing import emulators

VALUE = {"stage": "resize", "done": 41, "eta_s": 12.5}
OPS = 400


def main(directory: Path) -> None:
    with emulators.running(emulators.start_dynalite()) as dynalite:
        store = open_store(
            f"dynamodb://prof-{uuid.uuid4().hex[:8]}",
            endpoint_url=dynalite.endpoint,
            aws_access_key_id="k",
            aws_secret_access_key="s",
            region="us-east-1",
        )
        store.create_instance("p", name="wf", custom_status=VALUE)
        aio = AsyncStateStore(store)

        async def updates(count: int) -> None:
            for n in range(count):
                await aio.set_custom_status("p", {**VALUE, "n": n})

        def sync_updates(count: int) -> None:
            for n in range(count):
                store.set_custom_status("p", {**VALUE, "n": n})

        with asyncio.Runner() as runner:
            runner.run(updates(50))  # warm-up: connections, imports
            sync_updates(50)
            faces: dict[str, Callable[[], object]] = {
                "async": lambda: runner.run(updates(OPS)),
                "sync": lambda: sync_updates(OPS),
            }
            for face, run in faces.items():
                profile = cProfile.Profile(time.thread_time)
                profile.enable()
                run()
                profile.disable()
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(35)
                (directory / f"dynamodb-set-custom-status-{face}.txt").write_text(
                    f"# cProfile (thread_time) of {OPS} {face} set_custom_status on dynalite\n"
                    f"# command: .venv/bin/python {' '.join(sys.argv)}\n" + out.getvalue()
                )
            runner.run(aio.close())
        store.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/profiles"))
