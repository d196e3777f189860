"""watch on Redis pub/sub and PostgreSQL LISTEN, against the real servers: changes arrive
pushed (a poll interval of 30 s would otherwise hide them), one subscription per instance and
backend, nothing lost across a connection killed server-side, unsubscribed when the last
watcher leaves."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from typing import Any

import psycopg
import pytest
import redis

from durastate import AsyncStateStore, StateStore
from durastate.backends.postgres import PostgresBackend, PostgresOptions, core
from durastate.backends.redis import RedisBackend
from durastate.core.backend import Backend
from durastate.core.models import InstanceMetadata
from durastate.testing import CountingBackend
from durastate.testing.emulators import RunningEmulator

pytestmark = pytest.mark.emulator

NEVER = 30.0  # poll interval: a change seen within ARRIVES was pushed
ARRIVES = 1.0
RECONNECTED = 5.0  # a change after a killed connection: reconnect backoff + one re-read


@pytest.fixture(params=["redis", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(kind: str, request: pytest.FixtureRequest) -> RunningEmulator:
    server: RunningEmulator = request.getfixturevalue(f"{kind}_server")
    return server


@pytest.fixture
def backend(kind: str, server: RunningEmulator) -> Iterator[Backend]:
    made: Backend
    if kind == "redis":
        made = RedisBackend.from_url(server.endpoints["redis"], prefix=f"t{uuid.uuid4().hex[:12]}:")
    else:
        table = "t_" + uuid.uuid4().hex[:16]
        made = PostgresBackend(server.endpoint, PostgresOptions(table=table))
    yield made
    made.close()


# -- the server's view: subscriptions and killing them ---------------------------------------


def subscriptions(server: RunningEmulator, backend: Backend, instance_id: str) -> int:
    """Redis: subscribers of the instance's channel. PostgreSQL: sessions LISTENing on the
    table's channel (their last statement is the LISTEN)."""
    if isinstance(backend, RedisBackend):
        with redis.Redis.from_url(server.endpoints["redis"]) as client:
            counts = client.pubsub_numsub(backend.core.channel(instance_id))
        return int(counts[0][1])
    assert isinstance(backend, PostgresBackend)
    with psycopg.connect(server.endpoint, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query = %s",
            (core.listen_statement(backend.options),),
        ).fetchone()
    assert row is not None
    return int(row[0])


def kill_push_connection(server: RunningEmulator, backend: Backend) -> None:
    if isinstance(backend, RedisBackend):
        with redis.Redis.from_url(server.endpoints["redis"]) as client:
            assert client.execute_command("CLIENT KILL TYPE pubsub") >= 1
        return
    assert isinstance(backend, PostgresBackend)
    with psycopg.connect(server.endpoint, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s",
            (core.listen_statement(backend.options),),
        ).fetchall()
    assert killed == [(True,)]


def eventually(check: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


# -- sync watch: a thread collecting what it yields -------------------------------------------


class Watcher:
    def __init__(self, store: StateStore, instance_id: str) -> None:
        self.seen: queue.Queue[InstanceMetadata | BaseException] = queue.Queue()
        self._states = store.watch(instance_id, poll_interval=NEVER)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for state in self._states:
                self.seen.put(state)
        except BaseException as exc:  # handed to the test
            self.seen.put(exc)

    def next(self, within: float = ARRIVES) -> InstanceMetadata:
        started = time.monotonic()
        item = self.seen.get(timeout=within)
        assert time.monotonic() - started <= within
        assert isinstance(item, InstanceMetadata), item
        return item


def test_a_sync_watcher_is_pushed_each_change(backend: Backend) -> None:
    counting = CountingBackend(backend)
    store = StateStore(counting)
    store.create_instance("job", name="wf")
    watcher = Watcher(store, "job")
    assert watcher.next(5.0).custom_status is None
    for step in range(1, 4):
        time.sleep(0.2)  # the change is seen alone, not coalesced with the next one
        store.set_custom_status("job", step)
        assert watcher.next().custom_status == step
    reads = counting.calls["read"]
    time.sleep(0.5)
    assert counting.calls["read"] == reads  # idle: nobody polls
    assert counting.calls["subscribe"] == 1
    store.set_runtime_status("job", "completed")
    assert watcher.next().runtime_status == "completed"
    watcher.thread.join(ARRIVES)
    assert not watcher.thread.is_alive()


def test_an_async_watcher_is_pushed_each_change(backend: Backend) -> None:
    store = StateStore(backend)
    store.create_instance("job", name="wf")

    async def check() -> None:
        aio = AsyncStateStore(store)
        try:
            states = aio.watch("job", poll_interval=NEVER)
            assert (await asyncio.wait_for(anext(states), 5.0)).custom_status is None
            for step in range(1, 4):
                await asyncio.sleep(0.2)
                await aio.set_custom_status("job", step)
                state = await asyncio.wait_for(anext(states), ARRIVES)
                assert state.custom_status == step
            await aio.set_runtime_status("job", "completed")
            assert (await asyncio.wait_for(anext(states), ARRIVES)).runtime_status == "completed"
            with pytest.raises(StopAsyncIteration):
                await anext(states)
        finally:
            await aio.backend.close()

    asyncio.run(check())


def test_100_watchers_of_one_instance_share_one_subscription(
    backend: Backend, server: RunningEmulator
) -> None:
    store = StateStore(backend)
    store.create_instance("job", name="wf")
    notified = [threading.Event() for _ in range(100)]
    ends = [backend.subscribe("job", event.set) for event in notified]
    eventually(lambda: subscriptions(server, backend, "job") == 1)
    time.sleep(0.3)  # a second subscription would show by now
    assert subscriptions(server, backend, "job") == 1
    for event in notified:
        event.clear()  # (a subscription's confirmation notifies too)
    store.set_custom_status("job", "moved")
    for event in notified:
        assert event.wait(ARRIVES)
    for end in ends[:-1]:
        end()
    time.sleep(0.3)
    assert subscriptions(server, backend, "job") == 1  # one watcher is left
    ends[-1]()
    if isinstance(backend, RedisBackend):
        eventually(lambda: subscriptions(server, backend, "job") == 0)
    for event in notified:
        event.clear()
    store.set_custom_status("job", "unheard")
    time.sleep(0.5)
    assert not any(event.is_set() for event in notified)


def test_100_sync_watchers_through_one_store_make_one_subscription(backend: Backend) -> None:
    counting = CountingBackend(backend)
    store = StateStore(counting)
    store.create_instance("job", name="wf")
    watchers = [Watcher(store, "job") for _ in range(100)]
    for watcher in watchers:
        assert watcher.next(10.0).custom_status is None
    assert counting.calls["subscribe"] == 1
    store.set_custom_status("job", "moved")
    for watcher in watchers:
        assert watcher.next(5.0).custom_status == "moved"
    store.set_runtime_status("job", "completed")  # every watcher ends
    for watcher in watchers:
        assert watcher.next(5.0).runtime_status == "completed"
        watcher.thread.join(5.0)
        assert not watcher.thread.is_alive()


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_change_after_a_killed_connection_is_not_lost(
    backend: Backend, server: RunningEmulator, face: str
) -> None:
    store = StateStore(backend)
    store.create_instance("job", name="wf")
    if face == "sync":
        watcher = Watcher(store, "job")
        assert watcher.next(5.0).custom_status is None
        eventually(lambda: subscriptions(server, backend, "job") == 1)
        kill_push_connection(server, backend)
        store.set_custom_status("job", "after the kill")  # published to nobody
        assert watcher.next(RECONNECTED).custom_status == "after the kill"
        eventually(lambda: subscriptions(server, backend, "job") == 1)
        store.set_custom_status("job", "pushed again")
        assert watcher.next().custom_status == "pushed again"
        return

    async def check() -> None:
        aio = AsyncStateStore(store)
        try:
            states = aio.watch("job", poll_interval=NEVER)
            assert (await asyncio.wait_for(anext(states), 5.0)).custom_status is None
            await asyncio.sleep(0.3)
            assert await asyncio.to_thread(subscriptions, server, backend, "job") == 1
            await asyncio.to_thread(kill_push_connection, server, backend)
            await aio.set_custom_status("job", "after the kill")
            state = await asyncio.wait_for(anext(states), RECONNECTED)
            assert state.custom_status == "after the kill"
            await asyncio.sleep(0.5)
            await aio.set_custom_status("job", "pushed again")
            state = await asyncio.wait_for(anext(states), ARRIVES)
            assert state.custom_status == "pushed again"
        finally:
            await aio.backend.close()

    asyncio.run(check())


def test_the_last_watcher_leaving_unsubscribes(backend: Backend, server: RunningEmulator) -> None:
    store = StateStore(backend)
    store.create_instance("job", name="wf")
    states = store.watch("job", poll_interval=NEVER)
    assert isinstance(states, Generator)
    assert next(states).custom_status is None
    eventually(lambda: subscriptions(server, backend, "job") == 1)
    listeners: Any = backend._push.listeners if isinstance(backend, RedisBackend) else None
    if isinstance(backend, PostgresBackend):
        listeners = backend._listener.listeners
    assert len(listeners) == 1
    states.close()  # the watcher leaves
    assert len(listeners) == 0
    if isinstance(backend, RedisBackend):
        eventually(lambda: subscriptions(server, backend, "job") == 0)


# -- Redis without +subscribe: push refused, watch polls ---------------------------------------


@pytest.fixture
def no_subscribe_url(redis_server: RunningEmulator) -> Iterator[str]:
    """A Redis user allowed every command and key but SUBSCRIBE (an ACL set at runtime)."""
    name = f"nosub{uuid.uuid4().hex[:8]}"
    with redis.Redis.from_url(redis_server.endpoints["redis"]) as admin:
        admin.execute_command(
            "ACL", "SETUSER", name, "on", ">secret-pw", "~*", "&*", "+@all", "-subscribe"
        )
        try:
            yield redis_server.endpoints["redis"].replace("://", f"://{name}:secret-pw@", 1)
        finally:
            admin.execute_command("ACL", "DELUSER", name)


def refusal_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelname == "WARNING" and "redis push" in record.getMessage()
    ]


def test_sync_watch_without_subscribe_permission_polls_and_warns_once(
    no_subscribe_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """NOPERM stops the push (no reconnecting): the watchers already subscribed are
    notified every second, later ones poll; one WARNING, however many watchers."""
    caplog.set_level("WARNING")
    prefix = f"n{uuid.uuid4().hex[:12]}:"
    with StateStore(RedisBackend.from_url(no_subscribe_url, prefix=prefix)) as store:
        store.create_instance("job", name="wf")
        store.create_instance("other", name="wf")
        first = Watcher(store, "job")
        assert first.next(5.0).custom_status is None
        store.set_custom_status("job", 1)
        assert first.next(5.0).custom_status == 1
        later = store.watch("other", poll_interval=0.1)
        assert next(later).custom_status is None
        store.set_custom_status("other", 2)
        assert next(later).custom_status == 2
        store.set_runtime_status("job", "completed")
        assert first.next(5.0).runtime_status == "completed"
        time.sleep(1.5)  # a push that kept reconnecting would warn again meanwhile
    assert len(refusal_warnings(caplog)) == 1, caplog.records


def test_async_watch_without_subscribe_permission_polls_and_warns_once(
    no_subscribe_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING")
    prefix = f"n{uuid.uuid4().hex[:12]}:"

    async def scenario() -> None:
        sync = StateStore(RedisBackend.from_url(no_subscribe_url, prefix=prefix))
        async with AsyncStateStore(sync) as store:
            await store.create_instance("job", name="wf")
            await store.create_instance("other", name="wf")
            first = store.watch("job", poll_interval=NEVER)
            assert (await asyncio.wait_for(anext(first), 5.0)).custom_status is None
            await store.set_custom_status("job", 1)
            assert (await asyncio.wait_for(anext(first), 5.0)).custom_status == 1
            later = store.watch("other", poll_interval=0.1)
            assert (await asyncio.wait_for(anext(later), 5.0)).custom_status is None
            await store.set_custom_status("other", 2)
            assert (await asyncio.wait_for(anext(later), 5.0)).custom_status == 2
            await asyncio.sleep(1.5)  # a push that kept reconnecting would warn again
            for instance_id, states in (("job", first), ("other", later)):
                await store.set_runtime_status(instance_id, "completed")
                state = await asyncio.wait_for(anext(states), 5.0)
                assert state.runtime_status == "completed"
        sync.close()

    asyncio.run(scenario())
    assert len(refusal_warnings(caplog)) == 1, caplog.records
