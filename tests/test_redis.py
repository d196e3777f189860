"""Redis backend against a real redis-server started by the session fixture (no mocks)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from durastate import open_async_store, open_store
from durastate.backends.redis import RedisBackend, scripts
from durastate.backends.redis.core import CREATE, CUSTOM_STATUS
from durastate.bench import BackendSpec as BenchSpec
from durastate.bench import BenchConfig, run_bench
from durastate.core.backend import Backend
from durastate.core.records import NewInstance, Payload, RuntimeStatus
from durastate.core.store import StateStore
from durastate.errors import (
    BackendUnavailable,
    ConfigurationError,
    CorruptRecord,
    DurastateError,
    InstanceNotFound,
    InvalidContinuationToken,
    OutcomeUnknown,
)
from durastate.testing import BackendConformance, closing_opener
from durastate.testing.conformance import FakeClock
from durastate.testing.emulators import RunningEmulator, free_port
from tests.reliability.faultproxy import RespFaultProxy

pytestmark = pytest.mark.emulator


def make_backend(server: RunningEmulator, **options: Any) -> RedisBackend:
    """A backend in a namespace of its own (a fresh prefix) on the shared server."""
    options.setdefault("prefix", f"t{uuid.uuid4().hex[:12]}:")
    return RedisBackend.from_url(server.endpoints["redis"], **options)


class TestRedisConformance(BackendConformance):
    @pytest.fixture
    def backend(self, redis_server: RunningEmulator) -> Iterator[RedisBackend]:
        with make_backend(redis_server) as created:
            yield created

    @pytest.fixture
    def open_other_backend(
        self, redis_server: RunningEmulator, backend: RedisBackend
    ) -> Iterator[Callable[[], Backend]]:
        yield from closing_opener(lambda: make_backend(redis_server, prefix=backend.core.prefix))


# -- Redis specifics ---------------------------------------------------------------------------

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _new(instance_id: str, status: bytes = b'{"n":0}') -> NewInstance:
    return NewInstance(instance_id, "wf", RuntimeStatus.RUNNING, NOW, None, Payload(status, "json"))


def _command_calls(server: RunningEmulator) -> dict[str, int]:
    client = redis.Redis.from_url(server.endpoints["redis"])
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def test_a_status_update_is_one_evalsha_and_nothing_else(redis_server: RunningEmulator) -> None:
    with make_backend(redis_server) as backend:
        backend.create(_new("job"))
        etag = backend.write_custom_status("job", Payload(b"1", "json"), etag=None, now=NOW).etag
        before = _command_calls(redis_server)
        for number in range(10):
            etag = backend.write_custom_status(
                "job", Payload(str(number + 2).encode(), "json"), etag=etag, now=NOW
            ).etag
        after = _command_calls(redis_server)
    delta = {name: after[name] - before.get(name, 0) for name in after}
    delta = {name: count for name, count in delta.items() if count}
    # the only other command is the INFO that measured it; the script ran HMGET + HSET inside
    assert delta.pop("evalsha") == 10
    assert delta.pop("info") == 1
    for handshake in ("hello", "client|setinfo", "client"):  # the measuring client's own
        delta.pop(handshake, None)
    assert set(delta) <= {"hmget", "hset", "publish"}, delta


def test_scripts_are_reloaded_after_a_script_flush(redis_server: RunningEmulator) -> None:
    with make_backend(redis_server) as backend:
        backend.create(_new("job"))
        flusher = redis.Redis.from_url(redis_server.endpoints["redis"])
        flusher.script_flush()
        flusher.close()
        assert backend.write_custom_status("job", Payload(b"2", "json"), etag=None, now=NOW).written
        record = backend.read("job")
        assert record is not None
        assert record.custom_status == Payload(b"2", "json")


def test_every_write_publishes_its_etag_on_the_instance_channel(
    redis_server: RunningEmulator,
) -> None:
    with make_backend(redis_server) as backend:
        assert backend.capabilities.push
        listener = redis.Redis.from_url(redis_server.endpoints["redis"])
        pubsub = listener.pubsub()  # type: ignore[no-untyped-call]
        pubsub.subscribe(backend.core.channel("a{b}"))
        subscribed = pubsub.get_message(timeout=2)
        assert subscribed is not None
        assert subscribed["type"] == "subscribe"
        etags = [backend.create(_new("a{b}"))]
        etags.append(
            backend.write_custom_status("a{b}", Payload(b"1", "json"), etag=None, now=NOW).etag
        )
        same = backend.write_custom_status("a{b}", Payload(b"1", "json"), etag=None, now=NOW)
        assert not same.written  # an unchanged write publishes nothing
        etags.append(
            backend.write_runtime_status(
                "a{b}",
                RuntimeStatus.COMPLETED,
                output=None,
                set_output=False,
                etag=None,
                now=NOW,
            )
        )
        backend.delete("a{b}")
        messages = []
        while (message := pubsub.get_message(timeout=1)) is not None:
            messages.append(message["data"].decode())
        pubsub.close()
        listener.close()
    assert messages == [*etags, ""]  # every etag in order, then the deletion


def test_instances_expire_and_leave_no_index_entries(redis_server: RunningEmulator) -> None:
    with make_backend(redis_server, ttl_seconds=1) as backend:
        assert backend.capabilities.ttl
        store = StateStore(backend)
        store.create_instance("short", name="wf", custom_status=1)
        store.set_runtime_status("short", RuntimeStatus.RUNNING)
        client = redis.Redis.from_url(redis_server.endpoints["redis"])
        ttl_ms = client.pttl(backend.core.instance_key("short"))
        assert 0 < ttl_ms <= 1000
        time.sleep(1.2)
        assert store.get_instance("short") is None
        assert list(store.iter_instances()) == []
        assert list(store.iter_instances(runtime_status="running")) == []
        # the query removed the stale index entries on its way
        assert client.zcard(backend.core.all_key) == 0
        assert client.zcard(backend.core.created_key) == 0
        assert all(client.zcard(key) == 0 for key in backend.core.status_keys)
        client.close()
    with make_backend(redis_server) as lasting:
        lasting.create(_new("kept"))
        client = redis.Redis.from_url(redis_server.endpoints["redis"])
        assert client.pttl(lasting.core.instance_key("kept")) == -1  # no expiry unless asked
        client.close()


def test_queries_walk_indexes_not_the_keyspace(redis_server: RunningEmulator) -> None:
    with make_backend(redis_server) as backend:
        store = StateStore(backend)
        for number in range(30):
            store.create_instance(f"q{number:02d}", name="wf")
        before = _command_calls(redis_server)
        assert len(store.query(prefix="q1", page_size=100).items) == 10
        after = _command_calls(redis_server)
    assert after.get("scan", 0) == before.get("scan", 0)
    assert after.get("keys", 0) == before.get("keys", 0)


def test_forged_continuation_tokens_are_refused(redis_server: RunningEmulator) -> None:
    with make_backend(redis_server) as backend:
        store = StateStore(backend)
        for number in range(5):
            store.create_instance(f"t{number}", name="wf")
        page = store.query(page_size=2)
        assert page.continuation is not None
        for forged in ("", "garbage!", page.continuation[:-3], page.continuation + "x"):
            with pytest.raises(InvalidContinuationToken):
                store.query(page_size=2, continuation=forged)
        with pytest.raises(InvalidContinuationToken):
            store.query(page_size=2, prefix="t", continuation=page.continuation)


def test_url_forms_and_no_password_in_repr_or_errors(redis_server: RunningEmulator) -> None:
    unix = open_store(redis_server.endpoints["unix"], prefix=f"u{uuid.uuid4().hex[:8]}:")
    unix.create_instance("over-a-socket", name="wf", custom_status=1)
    assert unix.get_custom_status("over-a-socket") == 1
    unix.close()
    secret = "s3cr3t-Pa55"
    port = redis_server.endpoints["redis"].split(":")[2].split("/")[0]
    backend = RedisBackend.from_url(f"redis://user:{secret}@127.0.0.1:{port}/0", timeout=1)
    assert secret not in repr(backend)
    assert "user:***@" in repr(backend)
    no_user = RedisBackend.from_url(f"redis://:{secret}@127.0.0.1:{port}/0")
    assert (
        repr(no_user) == f"RedisBackend(url='redis://:***@127.0.0.1:{port}/0', prefix='durastate:')"
    )
    no_user.close()
    with pytest.raises(DurastateError) as raised:
        backend.read("job")  # the server has no such user
    assert secret not in str(raised.value)
    assert isinstance(raised.value, ConfigurationError)
    backend.close()
    with pytest.raises(ConfigurationError, match="colour"):
        RedisBackend.from_url(redis_server.endpoints["redis"], colour="blue")
    with pytest.raises(ConfigurationError):
        RedisBackend.from_url("redis://")
    with pytest.raises(ConfigurationError, match="ttl_seconds"):
        RedisBackend.from_url(redis_server.endpoints["redis"] + "?ttl_seconds=-1")


def test_a_dead_server_is_unavailable_within_the_timeout() -> None:
    backend = RedisBackend.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    for operation in (
        lambda: backend.read("job"),
        lambda: backend.write_custom_status("job", Payload(b"1", "json"), etag=None, now=NOW),
        lambda: backend.create(_new("job")),
    ):
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="job"):
            operation()
        assert time.monotonic() - started < 1.5
    backend.close()


# -- lost answers, with a second writer acting before the retry ---------------------------------


@pytest.fixture
def proxy(redis_server: RunningEmulator) -> Iterator[RespFaultProxy]:
    writes = frozenset(f"EVALSHA {script.sha}" for script in (CREATE, CUSTOM_STATUS))
    with RespFaultProxy(
        redis_server.endpoints["redis"], "redis", seed=7, methods=writes
    ) as running:
        yield running


def _lose_next_answer(proxy: RespFaultProxy, between: Callable[[], object]) -> None:
    """The next create or status write is applied, its answer withheld while ``between``
    runs, then lost (reads pass untouched)."""

    def once() -> None:
        proxy.configure(rate=0.0)
        between()

    proxy.between = once
    proxy.configure(rate=1.0, faults={"drop_after": 1.0})


@pytest.fixture
def two_writers(
    redis_server: RunningEmulator, proxy: RespFaultProxy
) -> Iterator[tuple[StateStore, StateStore]]:
    """The same store twice: straight to the server, and through the proxy; a counter at 0
    (written once, so the scripts are loaded and EVALSHA runs)."""
    prefix = f"l{uuid.uuid4().hex[:8]}:"
    direct = StateStore(RedisBackend.from_url(redis_server.endpoints["redis"], prefix=prefix))
    through = StateStore(RedisBackend.from_url(proxy.url, prefix=prefix))
    direct.create_instance("counter", name="wf", custom_status={"n": -1})
    direct.set_custom_status("counter", {"n": 0})
    yield direct, through
    direct.close()
    through.close()


def test_a_lost_answer_is_recognised_after_another_writer_wrote(
    two_writers: tuple[StateStore, StateStore], proxy: RespFaultProxy
) -> None:
    direct, through = two_writers
    _lose_next_answer(proxy, lambda: direct.set_custom_status("counter", {"n": 100}))
    through.update("counter", lambda value: {"n": value["n"] + 1})
    assert proxy.counters["drop_after"] == 1, dict(proxy.counters)
    # our increment landed once (0 -> 1), the other writer's 100 came after it; a blind
    # retry would have met a stale etag and applied the increment again (101)
    assert direct.get_custom_status("counter") == {"n": 100}

    _lose_next_answer(proxy, lambda: None)
    with pytest.raises(InstanceNotFound):  # a lost "missing" answer stays InstanceNotFound
        through.set_custom_status("fresh", "y")

    _lose_next_answer(proxy, lambda: direct.set_custom_status("made", "by the other writer"))
    through.create_instance("made", name="wf", custom_status="ours")  # not InstanceExists
    assert direct.get_custom_status("made") == "by the other writer"


def test_an_undecidable_lost_answer_raises_outcome_unknown(
    two_writers: tuple[StateStore, StateStore], proxy: RespFaultProxy
) -> None:
    direct, through = two_writers

    def many_writes() -> None:  # more than the hash remembers: our write id is pushed out
        for number in range(scripts.RECENT_WRITES + 1):
            direct.set_custom_status("counter", {"n": 1000 + number})

    _lose_next_answer(proxy, many_writes)
    with pytest.raises(OutcomeUnknown, match="outcome is unknown"):  # a BackendUnavailable
        through.update("counter", lambda value: {"n": value["n"] + 1})
    assert direct.get_custom_status("counter") == {"n": 1000 + scripts.RECENT_WRITES}


def test_bench_runs_redis_cells_with_anchors_and_the_celery_peer(
    redis_server: RunningEmulator, tmp_path: Path
) -> None:
    spec = BenchSpec(redis_server.endpoints["redis"], {"prefix": f"b{uuid.uuid4().hex[:8]}:"})
    config = BenchConfig(
        backends=[spec],
        serializers=["json"],
        payloads=["150B"],
        kinds=["dict"],
        quick=True,
        output=tmp_path / "out",
        operations=["update_cas", "update_lww"],
        repeat=20,
        chart=False,
    )
    result = run_bench(config, progress=False)
    found = {m.operation: m for m in result.durastate() if m.backend == "redis"}
    assert all(m.ok for m in found.values()), [m.error for m in found.values()]
    assert found["update_cas"].backend_writes == 1.0
    refs = {m.name: m for m in result.measurements if m.subject != "durastate"}
    assert set(refs) == {
        "redis-py HSET (default client)",
        "redis-py evalsha hand-written Lua CAS (default client)",
        "redis-py evalsha hand-written Lua CAS (durastate's client settings)",
        "celery store_result (redis)",
    }
    assert all(m.ok for m in refs.values()), [m.error for m in refs.values()]
    assert all(m.extra["ratio_cpu"] > 0 for m in refs.values())


ACL_COMMANDS = [
    "+evalsha",
    "+eval",
    "+hmget",
    "+hset",
    "+hdel",
    "+del",
    "+zadd",
    "+zrem",
    "+zrangebylex",
    "+zrangebyscore",
    "+pexpireat",
    "+publish",
]


def _acl_user(server: RunningEmulator, name: str, prefix: str, commands: list[str]) -> str:
    password = f"pw-{uuid.uuid4().hex}"
    admin = redis.Redis.from_url(server.endpoints["redis"])
    admin.execute_command(  # type: ignore[no-untyped-call]
        "ACL",
        "SETUSER",
        name,
        "reset",
        "resetchannels",  # Redis 6.2 starts a user with all channels
        "on",
        f">{password}",
        f"~{prefix}*",
        f"&{prefix}i:*",
        *commands,
    )
    admin.close()
    return password


def test_the_documented_acl_is_enough_and_a_missing_permission_is_named(
    redis_server: RunningEmulator,
) -> None:
    """The ACL list in the README: everything works with exactly it; without one command
    a clear ConfigurationError (NOPERM), never a raw redis error, and no password shown."""
    prefix = f"acl{uuid.uuid4().hex[:8]}:"
    password = _acl_user(redis_server, "durastate-app", prefix, ACL_COMMANDS)
    host = redis_server.endpoints["redis"].removeprefix("redis://")
    url = f"redis://durastate-app:{password}@{host}"
    store = open_store(url, prefix=prefix, ttl_seconds=60)
    store.create_instance("job", name="wf", input=1, custom_status="a")
    store.set_custom_status("job", "b")
    store.update("job", lambda value: value + "!")
    store.set_runtime_status("job", RuntimeStatus.COMPLETED, output=2)
    store.create_instance("job", name="wf", restart_if_terminal=True)
    assert [item.instance_id for item in store.query(runtime_status="pending")] == ["job"]
    assert [item.instance_id for item in store.query(prefix="jo")] == ["job"]
    assert store.purge_by(runtime_status="pending") == 1
    store.create_instance("other", name="wf")
    assert store.purge("other")
    store.close()

    async def on_the_async_store(url: str, prefix: str) -> Any:
        async with open_async_store(url, prefix=prefix, ttl_seconds=60) as aio:
            await aio.create_instance("async-job", name="wf", input=1, custom_status="a")
            await aio.set_custom_status("async-job", "b")
            await aio.update("async-job", lambda value: value + "!")
            listed = [item.instance_id async for item in aio.iter_instances(prefix="async")]
            assert await aio.purge("async-job")
            return listed

    assert asyncio.run(on_the_async_store(url, prefix)) == ["async-job"]

    weak_prefix = f"weak{uuid.uuid4().hex[:8]}:"
    weak = [command for command in ACL_COMMANDS if command != "+hmget"]
    weak_password = _acl_user(redis_server, "durastate-weak", weak_prefix, weak)
    weak_store = open_store(f"redis://durastate-weak:{weak_password}@{host}", prefix=weak_prefix)
    with pytest.raises(ConfigurationError, match="NOPERM") as raised:
        weak_store.create_instance("job", name="wf")
    assert weak_password not in str(raised.value)
    weak_store.close()
    weak_url = f"redis://durastate-weak:{weak_password}@{host}"
    with pytest.raises(ConfigurationError, match="NOPERM") as raised:
        asyncio.run(on_the_async_store(weak_url, weak_prefix))
    assert weak_password not in str(raised.value)
    admin = redis.Redis.from_url(redis_server.endpoints["redis"])
    assert admin.keys(f"{weak_prefix}*") == []  # refused at its first command: nothing written
    admin.close()


def test_a_foreign_value_at_an_instance_key_is_a_corrupt_record_of_that_instance(
    redis_server: RunningEmulator,
) -> None:
    with make_backend(redis_server) as backend:
        store = StateStore(backend)
        store.create_instance("good", name="wf", custom_status=1)
        other = redis.Redis.from_url(redis_server.endpoints["redis"])
        other.set(backend.core.instance_key("squatted"), b"not a hash")
        other.close()
        for operation in (
            lambda: store.get_instance("squatted"),
            lambda: store.set_custom_status("squatted", 2),
            lambda: store.create_instance("squatted", name="wf"),
        ):
            with pytest.raises(CorruptRecord, match="squatted"):
                operation()
        assert store.get_custom_status("good") == 1


def test_created_time_pages_split_ties_exactly_once(redis_server: RunningEmulator) -> None:
    """Many instances created in the same microsecond: the created-time walk resumes inside
    a run of equal scores without skipping or repeating one."""
    with make_backend(redis_server) as backend:
        clock = FakeClock()
        store = StateStore(backend, clock=clock)
        same_time = [f"tie-{number:02d}" for number in range(11)]
        for instance_id in reversed(same_time):
            store.create_instance(instance_id, name="wf")
        clock.advance(seconds=1)
        store.create_instance("later", name="wf")
        seen: list[str] = []
        continuation = None
        while True:
            page = store.query(created_from=NOW, page_size=3, continuation=continuation)
            seen.extend(item.instance_id for item in page.items)
            continuation = page.continuation
            if continuation is None:
                break
        assert seen == [*same_time, "later"]  # created order, ties in byte order
        before = store.query(created_to=NOW + timedelta(microseconds=1), page_size=4)
        assert [item.instance_id for item in before.items] == same_time[:4]
