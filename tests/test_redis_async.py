"""The async driver (its own RESP2 connections) against the real server: same core, same semantics.

The async store and ``watch`` (issue 12) will run the conformance suite on it; until then
these tests drive ``AsyncRedisBackend`` directly, beside the sync driver on the same keys.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
import redis
from redis.connection import AbstractConnection as SyncConnection

from durastate.backends.redis import RedisBackend
from durastate.backends.redis.aio import AsyncRedisBackend
from durastate.backends.redis.aio_connections import RespConnection
from durastate.backends.redis.core import CUSTOM_STATUS, READ
from durastate.core.records import InstanceQuery, NewInstance, Payload, RuntimeStatus
from durastate.errors import (
    BackendUnavailable,
    ConcurrencyError,
    InstanceExists,
    InstanceNotFound,
    InvalidContinuationToken,
)
from durastate.testing.emulators import RunningEmulator, free_port, running, start_redis
from tests.reliability.faultproxy import RespFaultProxy

pytestmark = pytest.mark.emulator

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _new(
    instance_id: str, *, status: RuntimeStatus = RuntimeStatus.RUNNING, minute: int = 0
) -> NewInstance:
    return NewInstance(
        instance_id,
        "wf",
        status,
        NOW + timedelta(minutes=minute),
        Payload(b'{"in":1}', "json"),
        Payload(b'{"n":0}', "json"),
    )


def _prefix() -> str:
    return f"a{uuid.uuid4().hex[:12]}:"


def test_async_driver_writes_reads_and_checks_etags(redis_server: RunningEmulator) -> None:
    prefix = _prefix()

    async def scenario() -> None:
        async with AsyncRedisBackend.from_url(redis_server.endpoints["redis"], prefix=prefix) as db:
            etag = await db.create(_new("job"))
            with pytest.raises(InstanceExists):
                await db.create(_new("job"))
            written = await db.write_custom_status(
                "job", Payload(b'{"n":1}', "json"), etag=etag, now=NOW
            )
            assert written.written
            same = await db.write_custom_status(
                "job", Payload(b'{"n":1}', "json"), etag=written.etag, now=NOW
            )
            assert (same.etag, same.written) == (written.etag, False)
            with pytest.raises(ConcurrencyError):
                await db.write_custom_status("job", Payload(b"2", "json"), etag=etag, now=NOW)
            with pytest.raises(InstanceNotFound):
                await db.write_custom_status("nope", Payload(b"2", "json"), etag=None, now=NOW)
            done = await db.write_runtime_status(
                "job",
                RuntimeStatus.COMPLETED,
                output=Payload(b'"out"', "json"),
                set_output=True,
                etag=written.etag,
                now=NOW,
            )
            record = await db.read("job", fetch_payloads=True)
            assert record is not None
            assert record.etag == done
            assert record.runtime_status is RuntimeStatus.COMPLETED
            assert record.custom_status == Payload(b'{"n":1}', "json")
            assert record.input == Payload(b'{"in":1}', "json")
            assert record.output == Payload(b'"out"', "json")
            assert await db.delete("job") is True
            assert await db.read("job") is None

    asyncio.run(scenario())


def test_sync_and_async_drivers_share_one_layout(redis_server: RunningEmulator) -> None:
    prefix = _prefix()
    sync = RedisBackend.from_url(redis_server.endpoints["redis"], prefix=prefix)
    etag = sync.create(_new("shared"))

    async def scenario() -> str:
        async with AsyncRedisBackend.from_url(redis_server.endpoints["redis"], prefix=prefix) as db:
            record = await db.read("shared")
            assert record is not None
            assert record.etag == etag
            result = await db.write_custom_status(
                "shared", Payload(b'"from async"', "json"), etag=etag, now=NOW
            )
            return result.etag

    new_etag = asyncio.run(scenario())
    record = sync.read("shared")
    assert record is not None
    assert record.etag == new_etag
    assert record.custom_status == Payload(b'"from async"', "json")
    sync.close()


def test_concurrent_async_writers_lose_no_increment(redis_server: RunningEmulator) -> None:
    """Two driver objects (two pools), 20 tasks each, compare-and-swap increments."""
    prefix = _prefix()
    url = redis_server.endpoints["redis"]

    async def increment(db: AsyncRedisBackend) -> None:
        while True:
            record = await db.read("counter")
            assert record is not None
            assert record.custom_status is not None
            value = int(record.custom_status.data.split(b":")[1].rstrip(b"}"))
            payload = Payload(b'{"n":%d}' % (value + 1), "json")
            try:
                await db.write_custom_status("counter", payload, etag=record.etag, now=NOW)
                return
            except ConcurrencyError:
                await asyncio.sleep(0)

    async def scenario() -> bytes:
        first = AsyncRedisBackend.from_url(url, prefix=prefix)
        second = AsyncRedisBackend.from_url(url, prefix=prefix)
        await first.create(_new("counter"))
        await asyncio.gather(*(increment(db) for db in (first, second) for _ in range(20)))
        record = await first.read("counter")
        await first.close()
        await second.close()
        assert record is not None
        assert record.custom_status is not None
        return record.custom_status.data

    assert asyncio.run(scenario()) == b'{"n":40}'


def test_async_queries_page_and_purge(redis_server: RunningEmulator) -> None:
    prefix = _prefix()

    async def scenario() -> None:
        async with AsyncRedisBackend.from_url(redis_server.endpoints["redis"], prefix=prefix) as db:
            for number in range(12):
                status = RuntimeStatus.COMPLETED if number % 2 else RuntimeStatus.RUNNING
                await db.create(_new(f"job-{number:02d}", status=status, minute=number))
            seen: list[str] = []
            query = InstanceQuery(
                runtime_status=frozenset({RuntimeStatus.COMPLETED}),
                created_from=NOW + timedelta(minutes=3),
                page_size=2,
            )
            while True:
                page = await db.query(query)
                seen.extend(record.instance_id for record in page.items)
                if page.continuation is None:
                    break
                query = replace(query, continuation=page.continuation)
            assert seen == ["job-03", "job-05", "job-07", "job-09", "job-11"]
            with pytest.raises(InvalidContinuationToken):
                await db.query(replace(query, continuation="forged"))
            purged = await db.purge_by(InstanceQuery(created_to=NOW + timedelta(minutes=4)))
            assert purged == 4
            rest = await db.query(InstanceQuery(page_size=100))
            assert len(rest.items) == 8

    asyncio.run(scenario())


def test_async_dead_server_is_unavailable_in_time() -> None:
    async def scenario() -> None:
        db = AsyncRedisBackend.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(BackendUnavailable, match="job"):
            await db.write_custom_status("job", Payload(b"1", "json"), etag=None, now=NOW)
        assert loop.time() - started < 1.5
        await db.close()

    asyncio.run(scenario())


def test_async_lost_answer_is_recognised_after_another_writer_wrote(
    redis_server: RunningEmulator,
) -> None:
    """The async driver shares the retry policy: its write lands, the answer is lost while a
    second writer writes, and the retry recognises the landed write instead of failing."""
    prefix = _prefix()
    writes = frozenset({f"EVALSHA {CUSTOM_STATUS.sha}"})
    sync = RedisBackend.from_url(redis_server.endpoints["redis"], prefix=prefix)
    sync.create(_new("job"))
    sync.write_custom_status("job", Payload(b"0", "json"), etag=None, now=NOW)  # load scripts
    first = sync.write_custom_status("job", Payload(b"1", "json"), etag=None, now=NOW).etag
    with RespFaultProxy(redis_server.endpoints["redis"], "redis", methods=writes) as proxy:

        def other_writer() -> None:
            proxy.configure(rate=0.0)
            sync.write_custom_status("job", Payload(b'"other"', "json"), etag=None, now=NOW)

        proxy.between = other_writer
        proxy.configure(rate=1.0, faults={"drop_after": 1.0})

        async def scenario() -> str:
            async with AsyncRedisBackend.from_url(proxy.url, prefix=prefix) as db:
                result = await db.write_custom_status(
                    "job", Payload(b"2", "json"), etag=first, now=NOW
                )
                return result.etag

        ours = asyncio.run(scenario())
    assert proxy.counters["drop_after"] == 1
    record = sync.read("job")
    assert record is not None
    assert record.custom_status == Payload(b'"other"', "json")  # ours landed, then theirs
    assert record.etag != ours
    sync.close()


def test_a_late_answer_never_reaches_the_next_call(redis_server: RunningEmulator) -> None:
    """A read times out (or its caller is cancelled) and its answer arrives later on the same
    connection: the driver must have dropped that connection, or the next call (another
    instance) would read the stale answer. One connection in the pool, so a kept connection
    would be reused."""
    prefix = _prefix()
    sync = RedisBackend.from_url(redis_server.endpoints["redis"], prefix=prefix)
    sync.create(_new("a"))
    sync.create(_new("b"))
    sync.read("a")  # the read script is loaded: the proxy sees EVALSHA
    reads = frozenset({f"EVALSHA {READ.sha}"})
    with RespFaultProxy(redis_server.endpoints["redis"], "redis", methods=reads) as proxy:

        def pause() -> None:
            proxy.configure(rate=0.0)
            time.sleep(0.8)

        proxy.between = pause
        options = {"prefix": prefix, "timeout": 0.3, "max_connections": 1}

        async def scenario() -> tuple[str | None, str | None]:
            async with AsyncRedisBackend.from_url(proxy.url, **options) as db:
                proxy.configure(rate=1.0, faults={"late": 1.0})
                with pytest.raises(BackendUnavailable, match="timed out"):
                    await db.read("a")
                await asyncio.sleep(0.8)  # the late answer has arrived by now
                record = await db.read("b")
                after_timeout = None if record is None else record.instance_id
                proxy.configure(rate=1.0, faults={"late": 1.0})
                with pytest.raises(asyncio.TimeoutError):  # the caller gives up first
                    await asyncio.wait_for(db.read("a"), 0.1)
                await asyncio.sleep(0.8)
                record = await db.read("b")
                return after_timeout, None if record is None else record.instance_id

        assert asyncio.run(scenario()) == ("b", "b")
        assert proxy.counters["late"] == 2

        proxy.configure(rate=1.0, faults={"late": 1.0})
        with RedisBackend.from_url(proxy.url, **options) as backend:
            with pytest.raises(BackendUnavailable, match="timed out"):
                backend.read("a")
            time.sleep(0.8)
            record = backend.read("b")
            assert record is not None
            assert record.instance_id == "b"
    sync.close()


def test_async_frozen_server_is_unavailable_within_the_timeout() -> None:
    """A server stopped with SIGSTOP accepts connections and never answers: every call of
    the async driver raises BackendUnavailable within the timeout + 1 s."""
    with running(start_redis()) as server:

        async def scenario() -> list[str]:
            async with AsyncRedisBackend.from_url(
                server.endpoints["redis"], prefix=_prefix(), timeout=0.5
            ) as db:
                await db.create(_new("job"))
                os.killpg(server.pid, signal.SIGSTOP)
                problems: list[str] = []
                try:
                    for name, call in (
                        ("read", lambda: db.read("job")),
                        (
                            "status",
                            lambda: db.write_custom_status(
                                "job", Payload(b"2", "json"), etag=None, now=NOW
                            ),
                        ),
                        ("query", lambda: db.query(InstanceQuery())),
                    ):
                        started = time.monotonic()
                        try:
                            await call()
                        except BackendUnavailable:
                            pass
                        else:
                            problems.append(f"{name} succeeded")
                        if time.monotonic() - started > 1.5:
                            problems.append(f"{name} took too long")
                finally:
                    os.killpg(server.pid, signal.SIGCONT)
                return problems

        assert asyncio.run(scenario()) == []


# -- round trips: the async driver sends what the sync one sends -------------------------


class RoundTrips:
    """Counts what each driver writes to its sockets: redis-py's ``send_packed_command``
    (sync) and the async driver's ``RespConnection.request``, one per round trip (a
    pipeline packs all its commands into one)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent = 0
        original = SyncConnection.send_packed_command
        monkeypatch.setattr(SyncConnection, "send_packed_command", self._counting(original))
        monkeypatch.setattr(RespConnection, "request", self._counting(RespConnection.request))

    def _counting(self, original: Any) -> Any:
        def send_packed_command(connection: Any, *args: Any, **kwargs: Any) -> Any:
            self.sent += 1
            return original(connection, *args, **kwargs)

        return send_packed_command

    def during(self, call: Callable[[], T]) -> tuple[T, int]:
        before = self.sent
        result = call()
        return result, self.sent - before


T = TypeVar("T")
MANY = 2_500  # more than a page of the generic count (1,000): it would take 3 round trips


def test_async_count_and_read_many_take_the_sync_drivers_round_trips(
    redis_server: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both are native on both drivers: ``count`` one script call for 2,500 instances
    (counted on the server, no record sent), ``read_many`` one pipeline for 40 ids."""
    url, prefix = redis_server.endpoints["redis"], _prefix()
    sync = RedisBackend.from_url(url, prefix=prefix)
    client = redis.Redis.from_url(url)
    try:
        statuses = [RuntimeStatus.RUNNING, RuntimeStatus.COMPLETED, RuntimeStatus.FAILED]
        for number in range(MANY):
            sync.create(_new(f"i{number:05}", status=statuses[number % 3], minute=number % 60))
        ids = [f"i{number:05}" for number in range(0, 80, 2)]
        query = InstanceQuery(runtime_status=frozenset(statuses[:2]), page_size=1000)
        trips = RoundTrips(monkeypatch)

        async def async_side() -> tuple[Any, int, Any, int]:
            async with AsyncRedisBackend.from_url(url, prefix=prefix) as db:
                await db.read("i00000")  # the connection's handshake, outside the count
                before = trips.sent
                counted = await db.count(query)
                middle = trips.sent
                found = await db.read_many(ids)
                return counted, middle - before, found, trips.sent - middle

        sync.read("i00000")
        sync.query(InstanceQuery(page_size=1))  # the server caches the query script
        sync_counts, sync_count_trips = trips.during(lambda: sync.count(query))
        sync_found, sync_read_trips = trips.during(lambda: sync.read_many(ids))
        async_counts, async_count_trips, async_found, async_read_trips = asyncio.run(async_side())
    finally:
        client.close()
        sync.close()
    assert (
        sync_counts
        == async_counts
        == {
            RuntimeStatus.RUNNING: (MANY + 2) // 3,
            RuntimeStatus.COMPLETED: (MANY + 1) // 3,
        }
    )
    assert sync_found == async_found
    assert [record.instance_id for record in sync_found.values() if record] == ids
    assert (sync_count_trips, sync_read_trips) == (1, 1)
    assert (async_count_trips, async_read_trips) == (1, 1)
