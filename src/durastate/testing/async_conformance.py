"""The async store and watch checks of the conformance suite (mixed into BackendConformance).

They use the suite's fixtures (``backend``, ``store``, ``counting``, ``clock``) and run each
coroutine with ``asyncio.run``, so a plugin's test module needs no asyncio test plugin.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

import pytest

from durastate.core.async_backend import SyncBackendAdapter
from durastate.core.async_store import AsyncStateStore
from durastate.core.backend import Backend
from durastate.core.models import InstanceMetadata
from durastate.core.records import Payload, RuntimeStatus
from durastate.core.store import StateStore
from durastate.errors import (
    ConcurrencyError,
    ConfigurationError,
    InstanceExists,
    InstanceNotFound,
    InvalidInstanceId,
    PayloadTooLarge,
    SerializationError,
)
from durastate.testing.capability_checks import assert_writes_are_heard, new_instance
from durastate.testing.counting import CountingBackend

T = TypeVar("T")

WATCH_POLL = 0.05  # seconds: short, so a polled backend shows a change quickly
WAIT = 10.0  # seconds: the most any check waits for something that must happen


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, 60))


def async_store_over(backend: Backend, store: StateStore) -> AsyncStateStore:
    """An async store with ``store``'s configuration, over ``backend``'s own async face."""
    return AsyncStateStore(StateStore(backend, codec=store.codec, clock=store.now))


def has_status(state: InstanceMetadata, value: Any) -> bool:
    return bool(state.custom_status == value)


async def next_state(states: AsyncIterator[InstanceMetadata]) -> InstanceMetadata:
    return await asyncio.wait_for(anext(states), WAIT)


class AsyncAndWatchConformance:
    """The async store and watch, on the backend under test."""

    # -- the async store --------------------------------------------------------------

    def test_async_store_does_what_the_sync_store_does(
        self, backend: Backend, store: StateStore
    ) -> None:
        async def check() -> None:
            aio = async_store_over(backend, store)
            etag = await aio.create_instance("a1", name="wf", input={"n": 1})
            with pytest.raises(InstanceExists):
                await aio.create_instance("a1", name="wf")
            assert (await aio.get_instance("a1")).etag == etag  # type: ignore[union-attr]
            values: list[Any] = [0, "", False, [], {}, None, {"p": 1}]
            for value in values:
                await aio.set_custom_status("a1", value)
                assert await aio.get_custom_status("a1") == value
                assert store.get_custom_status("a1") == value  # one truth for both
            etag = (await aio.get_instance("a1")).etag  # type: ignore[union-attr]
            await aio.set_custom_status("a1", {"p": 2}, etag=etag)
            with pytest.raises(ConcurrencyError):
                await aio.set_custom_status("a1", {"p": 3}, etag=etag)
            with pytest.raises(ConcurrencyError):
                await aio.set_runtime_status("a1", "running", etag=etag)
            await aio.set_runtime_status("a1", RuntimeStatus.COMPLETED, output=[1, 2])
            done = await aio.get_instance("a1", fetch_payloads=True)
            assert done is not None
            assert (done.runtime_status, done.output) == ("completed", [1, 2])
            assert done.input == {"n": 1}
            assert await aio.get_instance("missing") is None
            with pytest.raises(InstanceNotFound):
                await aio.get_custom_status("missing")
            with pytest.raises(InstanceNotFound):
                await aio.update("missing", lambda value: value)
            with pytest.raises(InstanceNotFound):
                await aio.set_custom_status("missing", 1)
            assert await aio.purge("a1") is True
            assert await aio.purge("a1") is False

        run(check())

    def test_async_store_refuses_bad_input_before_any_io(
        self, backend: Backend, store: StateStore
    ) -> None:
        counting = CountingBackend(backend)

        async def check() -> None:
            aio = AsyncStateStore(StateStore(counting, max_custom_status_bytes=64))
            await aio.create_instance("b1", name="wf")
            before = counting.total
            with pytest.raises(PayloadTooLarge):
                await aio.set_custom_status("b1", "x" * 100)
            with pytest.raises(SerializationError):
                await aio.set_custom_status("b1", object())
            with pytest.raises(InvalidInstanceId):
                await aio.get_instance("")
            with pytest.raises(InvalidInstanceId):
                await aio.purge("x" * 10_000)
            assert counting.total == before
            assert await aio.get_custom_status("b1") is None  # nothing stored was lost

        run(check())

    def test_async_update_takes_plain_and_async_functions_and_loses_nothing(
        self, backend: Backend, store: StateStore
    ) -> None:
        store.create_instance("c1", name="wf", custom_status={"n": 0})

        async def bump_later(value: dict[str, int]) -> dict[str, int]:
            await asyncio.sleep(0)
            return {"n": value["n"] + 1}

        def bump(value: dict[str, int]) -> dict[str, int]:
            return {"n": value["n"] + 1}

        async def check() -> None:
            # two store objects, each with its own async face, 8 tasks each
            first, second = async_store_over(backend, store), async_store_over(backend, store)
            tasks = [
                aio.update("c1", fn)
                for aio in (first, second)
                for fn in (bump, bump_later) * 4
                for _ in range(2)
            ]
            await asyncio.gather(*tasks)
            assert await first.get_custom_status("c1") == {"n": 32}

        run(check())

    def test_async_query_iter_and_purge_by(self, backend: Backend, store: StateStore) -> None:
        for index in range(7):
            store.create_instance(f"q/{index}", name="wf", runtime_status="running")
        store.create_instance("other", name="wf")

        async def check() -> None:
            aio = async_store_over(backend, store)
            page = await aio.query(prefix="q/", page_size=3)
            assert 0 < len(page) <= 3
            ids = [item.instance_id async for item in aio.iter_instances(prefix="q/", page_size=2)]
            assert sorted(ids) == [f"q/{index}" for index in range(7)]
            running = [item async for item in aio.iter_instances(runtime_status="running")]
            assert len(running) == 7
            assert await aio.purge_by(prefix="q/") == 7
            assert [item.instance_id async for item in aio.iter_instances()] == ["other"]

        run(check())

    def test_async_count_get_many_filters_and_retention_agree_with_sync(
        self, backend: Backend, clock: Any
    ) -> None:
        """The async store's count, get_many, new filters and purge_expired are the sync
        store's decisions (one StateStore, one retention, one clock)."""
        sync = StateStore(backend, clock=clock, retention=timedelta(hours=1))
        sync.create_instance("r/old", name="a")
        sync.set_runtime_status("r/old", "completed")
        clock.advance(hours=2)  # r/old expired
        middle = clock.advance(minutes=1)
        sync.create_instance("r/run", name="a", runtime_status="running")
        sync.create_instance("r/done", name="b")
        sync.set_runtime_status("r/done", "completed")
        clock.advance(minutes=1)
        sync.create_instance("r/new", name="b")

        async def check() -> None:
            aio = AsyncStateStore(sync)  # the backend's own async face
            filters: list[dict[str, Any]] = [
                {},
                {"name": "a"},
                {"name": "b", "runtime_status": "completed"},
                {"updated_from": middle},
                {"updated_to": middle + timedelta(seconds=30), "prefix": "r/"},
            ]
            for where in filters:
                counts = await aio.count(**where)
                assert counts == sync.count(**where), where
                ids = sorted([i.instance_id async for i in aio.iter_instances(**where)])
                assert ids == sorted(i.instance_id for i in sync.iter_instances(**where)), where
                page = await aio.query(page_size=100, **where)
                assert sorted(i.instance_id for i in page.items) == ids or page.continuation
            assert (await aio.count(name="a"))[RuntimeStatus.COMPLETED] == 0  # r/old expired
            assert (await aio.count())[RuntimeStatus.RUNNING] == 1
            wanted = ["r/run", "r/old", "missing", "r/run", "r/done"]
            found = await aio.get_many(wanted, fetch_payloads=True)
            expected = sync.get_many(wanted, fetch_payloads=True)
            assert list(found) == list(expected) == ["r/run", "r/old", "missing", "r/done"]
            assert {k: v and v.etag for k, v in found.items()} == {
                k: v and v.etag for k, v in expected.items()
            }
            assert found["r/old"] is None
            assert found["r/run"] is not None
            assert await aio.get_instance("r/old") is None
            with pytest.raises(InstanceNotFound):
                await aio.set_custom_status("r/old", 1)
            with pytest.raises(InstanceNotFound):
                await aio.set_runtime_status("r/old", "running")
            assert await aio.purge_expired() == 1
            assert sync.purge_expired() == 0
            clock.advance(hours=2)  # r/done expired too: its id can be created again
            await aio.create_instance("r/done", name="c")
            again = await aio.get_instance("r/done")
            assert again is not None
            assert (again.name, again.runtime_status) == ("c", "pending")
            with pytest.raises(InstanceExists):
                await aio.create_instance("r/run", name="a")  # running: never expires
            assert await aio.count() == sync.count()
            assert sync.count()[RuntimeStatus.RUNNING] == 1

        run(check())

    def test_async_face_declares_and_honours_the_same_capabilities(
        self, backend: Backend, open_other_backend: Callable[[], Backend], clock: Any
    ) -> None:
        """The async face (``to_async``) declares what the backend declares and keeps it:
        ``skips_unchanged`` (the same bytes without an etag), ``ttl`` (its
        ``purge_expired``; the async store's asks for a retention without it) and ``push``
        (its ``subscribe`` notifies a write by another backend object of the store, or
        raises NotImplementedError)."""
        caps = backend.capabilities
        other = open_other_backend()

        async def check() -> None:
            face = backend.to_async()
            try:
                assert face.capabilities == caps
                await face.create(new_instance("face", clock.now))
                status = Payload(b'{"face":1}', "json")
                first = await face.write_custom_status("face", status, etag=None, now=clock.now)
                assert first.written
                clock.advance(seconds=1)
                blind = await face.write_custom_status(
                    "face", Payload(b'{"face":1}', "json"), etag=None, now=clock.now
                )
                assert blind.written is not caps.skips_unchanged
                if caps.ttl:
                    assert await face.purge_expired() >= 0
                else:
                    assert await face.purge_expired() == 0
                    with pytest.raises(ConfigurationError, match="retention"):
                        await AsyncStateStore(StateStore(backend), face).purge_expired()
                assert await face.read("face") is not None  # nothing live was swept
                if not caps.push:
                    with pytest.raises(NotImplementedError):
                        face.subscribe("face", lambda: None)
                    return
                changed = threading.Event()
                unsubscribe = face.subscribe("face", changed.set)  # on the loop: it may start
                try:  # a task; the writes of the other object run beside the loop
                    await asyncio.to_thread(
                        assert_writes_are_heard, changed, other, "face", clock.now
                    )
                finally:
                    unsubscribe()
            finally:
                if not isinstance(face, SyncBackendAdapter):  # an adapter is the backend's
                    await face.close()

        run(check())

    # -- watch ----------------------------------------------------------------------------

    def test_watch_yields_current_then_each_change_until_terminal(
        self, backend: Backend, store: StateStore
    ) -> None:
        store.create_instance("w1", name="wf", custom_status={"p": 0})

        async def check() -> None:
            aio = async_store_over(backend, store)
            states = aio.watch("w1", poll_interval=WATCH_POLL)
            first = await next_state(states)
            assert first.custom_status == {"p": 0}  # the current state first
            seen = [first]

            async def until(wanted: Callable[[InstanceMetadata], bool]) -> None:
                while not wanted(seen[-1]):
                    seen.append(await next_state(states))

            for value in ({"p": 1}, {"p": 2}):
                await aio.set_custom_status("w1", value)
                await until(functools.partial(has_status, value=value))
            print("write running", await aio.set_runtime_status("w1", "running"))
            await until(lambda state: state.runtime_status == "running")
            print("write completed", await aio.set_runtime_status("w1", "completed", output=1))
            await until(lambda state: state.runtime_status == "completed")
            with pytest.raises(StopAsyncIteration):
                await next_state(states)  # it ended after the terminal status
            etags = [state.etag for state in seen]
            assert len(set(etags)) == len(etags)  # never the same etag twice

        run(check())

    def test_watch_since_current_etag_waits_for_the_next_change(
        self, backend: Backend, store: StateStore
    ) -> None:
        etag = store.create_instance("w2", name="wf", custom_status="old")

        async def check() -> None:
            aio = async_store_over(backend, store)
            states = aio.watch("w2", since_etag=etag, poll_interval=WATCH_POLL)
            waiting = asyncio.ensure_future(next_state(states))
            await asyncio.sleep(3 * WATCH_POLL)
            assert not waiting.done()  # the current state is not yielded again
            await aio.set_custom_status("w2", "new")
            assert (await waiting).custom_status == "new"

        run(check())

    def test_watch_raises_not_found_when_purged(self, backend: Backend, store: StateStore) -> None:
        store.create_instance("w3", name="wf")

        async def check() -> None:
            aio = async_store_over(backend, store)
            with pytest.raises(InstanceNotFound):
                await next_state(aio.watch("never-created", poll_interval=WATCH_POLL))
            states = aio.watch("w3", poll_interval=WATCH_POLL)
            await next_state(states)
            await aio.purge("w3")
            with pytest.raises(InstanceNotFound):
                await next_state(states)

        run(check())

    def test_sync_watch_sees_a_write_made_right_after_the_first_read(
        self, backend: Backend, store: StateStore
    ) -> None:
        """Subscribe, then read: a write between the first yield and the wait is not lost,
        and a writer in another store object is seen too."""
        store.create_instance("w4", name="wf")
        writer = StateStore(backend, codec=store.codec)
        seen: queue.Queue[InstanceMetadata | BaseException] = queue.Queue()

        def consume() -> None:
            try:
                for state in store.watch("w4", poll_interval=WATCH_POLL):
                    seen.put(state)
                    if state.custom_status is None:
                        writer.set_custom_status("w4", "written in between")
            except BaseException as exc:  # handed to the test thread
                seen.put(exc)

        thread = threading.Thread(target=consume, daemon=True)
        thread.start()
        first = seen.get(timeout=WAIT)
        assert isinstance(first, InstanceMetadata)
        assert first.custom_status is None
        second = seen.get(timeout=WAIT)
        assert isinstance(second, InstanceMetadata)
        assert second.custom_status == "written in between"
        writer.set_runtime_status("w4", "failed")
        third = seen.get(timeout=WAIT)
        assert isinstance(third, InstanceMetadata)
        assert third.runtime_status == "failed"
        thread.join(WAIT)
        assert not thread.is_alive()  # ended after the terminal status

    def test_watchers_of_one_instance_share_one_poll(
        self, backend: Backend, store: StateStore
    ) -> None:
        """20 watchers: reads over an idle second stay at one per interval (none on push)."""
        store.create_instance("w5", name="wf")
        counting = CountingBackend(backend)
        interval = 0.1

        async def check() -> None:
            aio = AsyncStateStore(StateStore(counting, codec=store.codec))
            watchers = [aio.watch("w5", poll_interval=interval) for _ in range(20)]
            for states in watchers:
                await next_state(states)
            pending = [asyncio.ensure_future(next_state(states)) for states in watchers]
            await asyncio.sleep(0.3)  # the poll settles to its full interval
            reads, started = counting.calls["read"], time.monotonic()
            await asyncio.sleep(1.0)
            idle_reads = counting.calls["read"] - reads
            elapsed = time.monotonic() - started
            if counting.calls["subscribe"]:
                assert idle_reads == 0  # pushed: nobody polls
            else:
                assert idle_reads <= elapsed / interval + 2
            await aio.set_custom_status("w5", "moved")
            for waiting in pending:
                assert (await waiting).custom_status == "moved"

        run(check())
