"""The async driver (psycopg AsyncConnection + AsyncConnectionPool) on a real server.

The whole sync conformance suite runs against the async driver through a thin adapter that
awaits each call on an event loop in another thread, so both drivers are held to the same
contract. The async store (``AsyncStateStore``) reaches PostgreSQL through this driver too
(``PostgresBackend.to_async()``); the conformance run of test_postgres.py covers it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

import pytest

from durastate import open_async_store, open_store
from durastate.backends.postgres.aio import AsyncPostgresBackend
from durastate.core.backend import Backend
from durastate.core.records import (
    InstanceQuery,
    InstanceRecord,
    NewInstance,
    Payload,
    RecordPage,
    RuntimeStatus,
    WriteResult,
)
from durastate.core.store import StateStore
from durastate.errors import BackendUnavailable, ConcurrencyError, InstanceExists
from durastate.testing import BackendConformance, closing_opener
from durastate.testing.emulators import RunningEmulator
from tests.reliability.conftest import PrivateEmulator
from tests.reliability.faultproxy import Fault
from tests.reliability.pgproxy import proxy_for, with_port
from tests.test_postgres import fresh_table

T = TypeVar("T")


class AwaitedBackend(Backend):
    """The async driver behind the sync contract: every call awaited on a private loop."""

    scheme = "postgresql"

    def __init__(self, url: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.inner = self._await(AsyncPostgresBackend.open(url, **options))
        self.capabilities = self.inner.capabilities

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        return cls(url, **options)

    def _await(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        return self._await(self.inner.create(new, restart_if_terminal=restart_if_terminal))

    def read(self, instance_id: str, *, fetch_payloads: bool = False) -> InstanceRecord | None:
        return self._await(self.inner.read(instance_id, fetch_payloads=fetch_payloads))

    def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        return self._await(self.inner.write_custom_status(instance_id, payload, etag=etag, now=now))

    def write_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus,
        *,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> str:
        return self._await(
            self.inner.write_runtime_status(
                instance_id, status, output=output, set_output=set_output, etag=etag, now=now
            )
        )

    def delete(self, instance_id: str) -> bool:
        return self._await(self.inner.delete(instance_id))

    def query(self, query: InstanceQuery) -> RecordPage:
        return self._await(self.inner.query(query))

    def purge_by(self, query: InstanceQuery) -> int:
        return self._await(self.inner.purge_by(query))

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        """The driver's LISTEN, started on its loop (it declares ``push``)."""

        async def on_the_loop() -> Callable[[], None]:
            return self.inner.subscribe(instance_id, notify)

        return self._await(on_the_loop())

    def close(self) -> None:
        self._await(self.inner.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


class TestAsyncDriverConformance(BackendConformance):
    @pytest.fixture
    def backend(self, postgres_server: RunningEmulator) -> Iterator[Backend]:
        backend = AwaitedBackend(postgres_server.endpoint, table=fresh_table())
        yield backend
        backend.close()

    @pytest.fixture
    def open_other_backend(
        self, postgres_server: RunningEmulator, backend: AwaitedBackend
    ) -> Iterator[Callable[[], Backend]]:
        table = backend.inner.options.table
        yield from closing_opener(lambda: AwaitedBackend(postgres_server.endpoint, table=table))


NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_concurrent_tasks_on_one_loop_keep_compare_and_swap(
    postgres_server: RunningEmulator,
) -> None:
    """40 tasks race compare-and-swap increments on one event loop: every one lands once."""

    async def scenario() -> int:
        async with await AsyncPostgresBackend.open(
            postgres_server.endpoint, table=fresh_table(), max_pool_size=8
        ) as backend:
            new = NewInstance("c", "wf", RuntimeStatus.RUNNING, NOW, None, Payload(b"0", "json"))
            await backend.create(new)
            with pytest.raises(InstanceExists):
                await backend.create(new)

            async def increment() -> None:
                while True:
                    record = await backend.read("c")
                    assert record is not None
                    assert record.custom_status is not None
                    value = int(record.custom_status.data) + 1
                    payload = Payload(str(value).encode(), "json")
                    try:
                        await backend.write_custom_status("c", payload, etag=record.etag, now=NOW)
                        return
                    except ConcurrencyError:
                        continue

            await asyncio.gather(*(increment() for _ in range(40)))
            final = await backend.read("c")
            assert final is not None
            assert final.custom_status is not None
            return int(final.custom_status.data)

    assert asyncio.run(scenario()) == 40


def test_cursors_are_kept_only_for_held_connections_and_never_hold_a_large_row(
    postgres_server: RunningEmulator,
) -> None:
    """The driver reuses one cursor per connection it holds (its spares) for one-row
    statements. A connection handed back to the pool, or closed (the schema check's own),
    drops its cursor; a read with input and output uses a fresh cursor, so no idle
    connection keeps a large row alive; ``close`` drops them all."""

    async def scenario() -> tuple[set[Any], set[Any], list[int], int]:
        backend = await AsyncPostgresBackend.open(
            postgres_server.endpoint, table=fresh_table(), max_pool_size=3
        )
        large = Payload(b'"' + b"x" * 200_000 + b'"', "json")
        await backend.create(
            NewInstance("c", "wf", RuntimeStatus.RUNNING, NOW, large, Payload(b"0", "json"))
        )
        writes = (
            backend.write_custom_status("c", Payload(b"%d" % n, "json"), etag=None, now=NOW)
            for n in range(30)
        )
        reads = (backend.read("c", fetch_payloads=True) for _ in range(10))
        await asyncio.gather(*writes, *reads)
        for number in range(3):  # one at a time: the connection is kept as a spare
            await backend.write_custom_status(
                "c", Payload(b"%d" % number, "json"), etag=None, now=NOW
            )
            await backend.read("c", fetch_payloads=True)
        cursors = backend._cursors
        largest = [
            max(len(result.get_value(0, column) or b"") for column in range(result.nfields))
            for result in (cursor.pgresult for cursor in cursors.values())
            if result is not None and result.ntuples
        ]
        kept, held = set(cursors), set(backend._spare._idle)
        await backend.close()
        return kept, held, largest, len(cursors)

    kept, held, largest, after_close = asyncio.run(scenario())
    assert kept
    assert kept <= held  # none for a connection in the pool or closed
    assert max(largest, default=0) < 1000  # a write's etag, never the 200 KB input
    assert after_close == 0


def test_the_async_store_runs_on_the_async_driver(postgres_server: RunningEmulator) -> None:
    """``PostgresBackend.to_async()`` is the psycopg async driver (``native``): its pool
    opens on the first call, on the caller's loop; 40 tasks' ``update``s all land once."""
    table = fresh_table()

    async def scenario() -> tuple[int, bool]:
        async with open_async_store(postgres_server.endpoint, table=table) as aio:
            assert isinstance(aio.backend, AsyncPostgresBackend)
            assert type(aio.store.backend).async_mode == "native"
            await aio.create_instance("a", name="wf", custom_status=0)
            await asyncio.gather(*(aio.update("a", lambda n: n + 1) for _ in range(40)))
            await aio.set_runtime_status("a", "completed", output={"ok": True})
            states = [state async for state in aio.watch("a")]  # terminal: one state
            read = await aio.get_instance("a", fetch_payloads=True)
            assert read is not None
            assert read.output == {"ok": True}
            return int(read.custom_status), len(states) == 1 and states[0].etag == read.etag

    assert asyncio.run(scenario()) == (40, True)
    with open_store(postgres_server.endpoint, table=table) as store:  # the same rows
        assert store.get_custom_status("a") == 40


@pytest.mark.parametrize("fault", ["drop", "drop_after"])
def test_async_driver_recovers_dropped_requests_and_lost_answers_exactly_once(
    postgres_server: RunningEmulator, fault: Fault
) -> None:
    """The async driver runs the same recovery: through the wire proxy, with 25 % of the
    requests dropped (before the server) or their answers lost (after it), 20 increments
    land exactly once and none fails."""
    table = fresh_table()
    direct = AwaitedBackend(postgres_server.endpoint, table=table)
    store = StateStore(direct)
    store.create_instance("counter", name="wf", custom_status={"n": 0})
    with proxy_for(postgres_server, seed=7) as proxy:
        url = with_port(postgres_server.endpoint, proxy.port)
        flaky = AwaitedBackend(url, table=table)
        proxy.configure(rate=0.25, faults={fault: 1.0})
        try:
            flaky_store = StateStore(flaky)
            for _ in range(20):
                flaky_store.update("counter", lambda v: {"n": v["n"] + 1}, retries=100)
        finally:
            proxy.configure(rate=0.0)
            flaky.close()
        assert proxy.counters[fault] > 0
    assert store.get_custom_status("counter") == {"n": 20}
    direct.close()


def test_async_driver_on_a_frozen_server_is_unavailable_in_time() -> None:
    """libpq has no read timeout under asyncio either: the deadline watchdog cuts the call."""
    server = PrivateEmulator("postgres")
    try:
        backend = AwaitedBackend(server.emulator.endpoint, table=fresh_table(), timeout=1.0)
        store = StateStore(backend)
        store.create_instance("job", name="wf", custom_status="before")
        server.freeze()
        try:
            for call in (
                lambda: store.get_instance("job"),
                lambda: store.set_custom_status("job", "during"),
                lambda: store.query(page_size=5),
            ):
                started = time.monotonic()
                with pytest.raises(BackendUnavailable):
                    call()
                assert time.monotonic() - started < 1.0 + 1.0
        finally:
            server.thaw()
        store.set_custom_status("job", "after")
        assert store.get_custom_status("job") == "after"
        backend.close()
    finally:
        server.close()
