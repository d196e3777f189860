"""open_async_store and AsyncStateStore: configured like open_store, async faces per backend,
SQLite off the event loop. The behaviour of every call on every backend is in the
conformance suite (src/durastate/testing/async_conformance.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import durastate
from durastate import AsyncStateStore, StateStore, open_async_store, open_store
from durastate.backends.memory import MemoryBackend
from durastate.core.async_backend import InlineAsyncBackend, ThreadPoolAsyncBackend
from durastate.core.records import InstanceRecord
from durastate.errors import BackendUnavailable, ConfigurationError, PayloadTooLarge


def test_open_async_store_is_configured_exactly_like_open_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("DURASTATE_URL", url)
    monkeypatch.setenv("DURASTATE_MAX_CUSTOM_STATUS_BYTES", "64")
    sync = open_store(serializer="msgpack")

    async def check() -> None:
        aio = open_async_store(serializer="msgpack")  # the URL and limit from the environment
        assert isinstance(aio, AsyncStateStore)
        assert aio.codec.writer.id == "msgpack"
        assert aio.max_custom_status_bytes == 64
        await aio.create_instance("i", name="wf", custom_status={"a": 1})
        with pytest.raises(PayloadTooLarge):
            await aio.set_custom_status("i", "x" * 100)
        assert sync.get_custom_status("i") == {"a": 1}  # one file, one format
        await aio.close()

    asyncio.run(check())
    sync.close()


def test_open_async_store_refuses_what_open_store_refuses() -> None:
    cases: list[tuple[str, dict[str, Any]]] = [("nosuch://x", {}), ("memory://", {"bogus": 1})]
    for url, options in cases:
        with pytest.raises(ConfigurationError) as sync_error:
            open_store(url, **options)
        with pytest.raises(ConfigurationError) as async_error:
            open_async_store(url, **options)
        assert str(async_error.value) == str(sync_error.value)


def test_each_backend_has_the_async_face_it_declares(tmp_path: Path) -> None:
    memory = open_async_store("memory://")
    assert type(memory.backend) is InlineAsyncBackend  # inline: never blocks
    assert type(memory.store.backend).async_mode == "native"
    sqlite = open_async_store(f"sqlite:///{tmp_path / 's.db'}")
    assert isinstance(sqlite.backend, ThreadPoolAsyncBackend)
    assert sqlite.backend.max_workers == 4  # its own connection threads
    assert type(sqlite.store.backend).async_mode == "connection threads"
    asyncio.run(sqlite.close())


def test_memory_async_calls_start_no_thread() -> None:
    async def check() -> int:
        before = set(threading.enumerate())
        async with open_async_store("memory://") as aio:
            await asyncio.gather(
                *(aio.create_instance(f"i{n}", name="wf") for n in range(200)),
            )
            await asyncio.gather(*(aio.set_custom_status(f"i{n}", n) for n in range(200)))
            assert await aio.get_custom_status("i7") == 7
        return len(set(threading.enumerate()) - before)  # threads started meanwhile

    assert asyncio.run(check()) == 0


def test_sqlite_never_blocks_the_event_loop_while_the_file_is_locked(tmp_path: Path) -> None:
    """Another connection holds an exclusive lock: the write waits ``timeout`` on the
    connection threads, then raises BackendUnavailable; the loop keeps ticking meanwhile."""
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    aio = open_async_store(url, timeout=1.0)
    aio.store.create_instance("i", name="wf")
    aio.store.backend.close()  # no connection open: the lock below must be exclusive
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("PRAGMA locking_mode=EXCLUSIVE")
    blocker.execute("BEGIN EXCLUSIVE")

    async def check() -> tuple[int, float]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            await aio.set_custom_status("i", "blocked")
        elapsed = time.monotonic() - started
        ticker.cancel()
        await aio.close()
        return ticks, elapsed

    try:
        ticks, elapsed = asyncio.run(check())
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert elapsed >= 0.9  # it really waited for the lock ...
    assert ticks >= elapsed / 0.01 / 4  # ... and the loop ran all along (loosely: a busy box)


def test_async_store_is_exported() -> None:
    assert durastate.open_async_store is open_async_store
    assert "AsyncStateStore" in durastate.__all__


def test_calls_made_one_after_another_reuse_one_pool_thread() -> None:
    """A writer task or a poller awaits one call after another: one thread serves them all
    (ThreadPoolExecutor counts a thread idle only after its result reached the loop, and so
    grew to its bound), while calls in flight together still spread over the pool."""
    ran_on: set[int] = set()

    class Recording(MemoryBackend):
        def read(self, instance_id: str, *, fetch_payloads: bool = False) -> InstanceRecord | None:
            ran_on.add(threading.get_ident())
            time.sleep(0.001)
            return super().read(instance_id, fetch_payloads=fetch_payloads)

    async def check() -> int:
        backend = Recording()
        aio = AsyncStateStore(StateStore(backend), ThreadPoolAsyncBackend(backend))
        for _ in range(200):
            await aio.get_instance("i")
        one_after_another = len(ran_on)
        await asyncio.gather(*(aio.get_instance("i") for _ in range(64)))
        assert len(ran_on) > 1  # concurrent calls use more threads
        await aio.close()
        return one_after_another

    assert asyncio.run(check()) == 1
