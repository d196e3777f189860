"""One reporter writer per process: a thread for sync stores, a task per loop for async ones.

1,000 reporters add at most 2 threads; every reporter's last value lands; writes per
instance stay within elapsed / interval + 2; failures are kept, retried and raised at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path

import pytest

from durastate import AsyncStateStore, StateStore, open_async_store, open_store
from durastate.backends.memory import MemoryBackend
from durastate.errors import BackendUnavailable, SerializationError
from durastate.testing import CountingBackend
from tests.test_reporter import FlakyBackend

REPORTERS = 1000


def test_a_thousand_sync_reporters_add_at_most_two_threads() -> None:
    store = open_store("memory://")
    for n in range(REPORTERS):
        store.create_instance(f"job{n}", name="wf")
    before = threading.active_count()
    with contextlib.ExitStack() as stack:
        reporters = [
            stack.enter_context(store.status_reporter(f"job{n}", min_interval=0.05))
            for n in range(REPORTERS)
        ]
        for step in range(3):
            for reporter in reporters:
                reporter.report({"step": step})
            time.sleep(0.06)
        added = threading.active_count() - before
    assert added <= 2
    assert all(store.get_custom_status(f"job{n}") == {"step": 2} for n in range(REPORTERS))


@pytest.mark.parametrize("scheme", ["memory", "sqlite"])
def test_a_thousand_async_reporters_add_at_most_two_threads(scheme: str, tmp_path: Path) -> None:
    url = "memory://" if scheme == "memory" else f"sqlite:///{tmp_path / 'r.db'}"

    async def check() -> int:
        aio = open_async_store(url)
        await asyncio.gather(*(aio.create_instance(f"job{n}", name="wf") for n in range(REPORTERS)))
        before = threading.active_count()
        async with contextlib.AsyncExitStack() as stack:
            reporters = [
                await stack.enter_async_context(aio.status_reporter(f"job{n}", min_interval=0.05))
                for n in range(REPORTERS)
            ]
            for step in range(3):
                for reporter in reporters:
                    reporter.report({"step": step})
                await asyncio.sleep(0.06)
            added = threading.active_count() - before
        for n in range(0, REPORTERS, 97):
            assert await aio.get_custom_status(f"job{n}") == {"step": 2}
        await aio.close()
        return added

    assert asyncio.run(check()) <= 2


def test_async_hot_loop_is_coalesced_and_last_value_lands() -> None:
    counting = CountingBackend(MemoryBackend())
    aio = AsyncStateStore(StateStore(counting))
    interval = 0.05

    async def check() -> tuple[float, int]:
        await aio.create_instance("job", name="wf")
        counting.calls.clear()
        started = time.monotonic()
        async with aio.status_reporter("job", min_interval=interval) as reporter:
            step = 0
            while time.monotonic() - started < 0.5:
                reporter.report({"step": step})
                step += 1
                await asyncio.sleep(0)
        assert await aio.get_custom_status("job") == {"step": step - 1}
        assert reporter.writes == counting.calls["write_custom_status"]
        return time.monotonic() - started, reporter.writes

    elapsed, writes = asyncio.run(check())
    assert 2 <= writes <= elapsed / interval + 2  # it wrote during the loop, within the bound


def test_async_reporter_keeps_a_failed_value_and_writes_it_later() -> None:
    backend = FlakyBackend()
    aio = AsyncStateStore(StateStore(backend))

    async def check() -> None:
        await aio.create_instance("job", name="wf")
        backend.failing.set()
        async with aio.status_reporter("job", min_interval=0.02) as reporter:
            reporter.report("survives the outage")
            with pytest.raises(SerializationError):
                reporter.report(object())  # raised at the call, not in the writer
            await asyncio.sleep(0.15)  # several failed attempts in the writer task
            assert reporter.failures >= 1
            assert reporter.pending
            backend.failing.clear()
        assert await aio.get_custom_status("job") == "survives the outage"

    asyncio.run(check())


def test_async_reporter_raises_at_exit_when_the_last_value_cannot_be_written() -> None:
    backend = FlakyBackend()
    aio = AsyncStateStore(StateStore(backend))

    async def check() -> None:
        await aio.create_instance("job", name="wf", custom_status="old")
        backend.failing.set()
        with pytest.raises(BackendUnavailable):  # noqa: PT012 - the exit is the subject
            async with aio.status_reporter("job", min_interval=60) as reporter:
                reporter._exit_retries = 1
                reporter.report("never stored")
        assert reporter.pending  # kept, not dropped
        assert await aio.get_custom_status("job") == "old"

    asyncio.run(check())
