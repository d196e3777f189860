"""The async driver: the same core's script calls over one ``redis.asyncio`` pool.

The async store (``AsyncStateStore``) builds on this; until then it is used directly. Every
decision (keys, scripts, replies, errors, lost-answer retry) is the core's or the sync
driver's helper: this module only awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Self

import redis.asyncio
from redis import exceptions
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from durastate.backends.redis.backend import capabilities_for
from durastate.backends.redis.core import RedisCore, Reply, ScriptCall
from durastate.backends.redis.failures import Attempts
from durastate.backends.redis.options import RedisTarget
from durastate.core.async_backend import AsyncBackend
from durastate.core.push import Listeners, reconnect_delay
from durastate.core.records import (
    InstanceQuery,
    InstanceRecord,
    NewInstance,
    Payload,
    RecordPage,
    RuntimeStatus,
    WriteResult,
)

log = logging.getLogger(__name__)


class AsyncRedisPush:
    """`RedisPush` on an event loop: one pub/sub connection per backend, read by one task
    (started by the first subscription, on the loop that makes it). SUBSCRIBE/UNSUBSCRIBE
    go out from small tasks under a lock; confirmations notify (see
    ``RedisCore.pushed_channel``), so a re-subscription after a drop makes every watcher
    re-read once."""

    def __init__(self, client: redis.asyncio.Redis, core: RedisCore) -> None:
        self._client = client
        self._core = core
        self.listeners = Listeners()
        self._lock: asyncio.Lock | None = None  # made on the loop of the first subscriber
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._commands: set[asyncio.Task[None]] = set()
        self._closed = False

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        if self._closed:
            raise NotImplementedError("the backend is closed: poll")
        loop = asyncio.get_running_loop()
        channel = self._core.channel(instance_id)
        if self._lock is None:
            self._lock = asyncio.Lock()
        if self.listeners.add(channel, notify) and self._task is not None:
            self._send(loop, "subscribe", channel)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._listen(), name="durastate-redis-push")

        def unsubscribe() -> None:
            if self.listeners.remove(channel, notify) and not self._closed:
                self._send(loop, "unsubscribe", channel)

        return unsubscribe

    def _send(self, loop: asyncio.AbstractEventLoop, name: str, channel: str) -> None:
        task = loop.create_task(self._command(name, channel))
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _command(self, name: str, channel: str) -> None:
        assert self._lock is not None
        async with self._lock:
            if self._pubsub is None:  # (re)connecting: the listener subscribes to all wanted
                return
            try:
                await getattr(self._pubsub, name)(channel)
            except (exceptions.RedisError, OSError):
                log.debug("redis push: %s failed; the listener reconnects", name, exc_info=True)

    async def _connect(self) -> PubSub | None:
        assert self._lock is not None
        async with self._lock:
            pubsub = self._client.pubsub()
            # none left: the channel of the id "" (no instance has it) keeps the connection open
            channels = self.listeners.keys() or [self._core.channel("")]
            try:
                await pubsub.subscribe(*channels)
            except BaseException:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                raise
            self._pubsub = pubsub
            return pubsub

    async def _listen(self) -> None:
        failures = 0
        while not self._closed:
            pubsub = self._pubsub
            if pubsub is None:
                try:
                    pubsub = await self._connect()
                except (exceptions.RedisError, OSError) as exc:
                    failures += 1
                    log.warning("redis push: cannot reconnect (%s)", type(exc).__name__)
                    await asyncio.sleep(reconnect_delay(failures))
                    continue
            assert pubsub is not None
            try:
                message = await pubsub.get_message(timeout=None)
            except (exceptions.RedisError, OSError, RuntimeError) as exc:
                if self._closed:
                    return
                log.info("redis push: connection lost (%s); reconnecting", type(exc).__name__)
                if self._pubsub is pubsub:
                    self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                continue
            failures = 0
            channel = self._core.pushed_channel(message)
            if channel is not None:
                self.listeners.dispatch(channel)

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]


class AsyncRedisBackend(AsyncBackend):
    """The coroutine twin of ``RedisBackend``: same URL, options, layout and semantics; the
    async face `RedisBackend.to_async` gives `AsyncStateStore`."""

    scheme = "redis"

    def __init__(self, target: RedisTarget) -> None:
        self.target = target
        self.core = RedisCore(target.options.prefix, target.options.ttl_seconds)
        self.capabilities = capabilities_for(target)
        self._pool = redis.asyncio.ConnectionPool.from_url(
            target.address, retry=AsyncRetry(NoBackoff(), 0), **target.pool_kwargs()
        )
        self._client = redis.asyncio.Redis(connection_pool=self._pool)
        self._execute: Callable[..., Any] = self._client.execute_command
        self._push = AsyncRedisPush(self._client, self.core)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        return cls(RedisTarget(url, options))

    def __repr__(self) -> str:
        return f"AsyncRedisBackend(url={self.target.redacted!r}, prefix={self.core.prefix!r})"

    async def close(self) -> None:
        await self._push.close()
        await self._pool.disconnect()

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        """Push through Redis pub/sub, read by a task on the caller's loop (`AsyncRedisPush`)."""
        return self._push.subscribe(instance_id, notify)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- sending --------------------------------------------------------------------------

    async def _evalsha(self, call: ScriptCall) -> Reply:
        try:
            return await self._execute(
                "EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args
            )
        except exceptions.NoScriptError:
            return await self._execute(
                "EVAL", call.script.source, len(call.keys), *call.keys, *call.args
            )

    async def _send(self, call: ScriptCall, operation: str) -> Reply:
        """As the sync driver: once more with the retry flag after a dropped connection."""
        attempts: Attempts | None = None  # made on the first failure: none on the hot path
        while True:
            try:
                return await self._evalsha(call)
            except exceptions.RedisError as exc:
                attempts = attempts or Attempts(call, operation, self.target)
                call, pause = attempts.after(exc)
            if pause:
                await asyncio.sleep(pause)

    # -- the backend contract, as coroutines ----------------------------------------------

    async def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        call = self.core.create(new, restart=restart_if_terminal)
        return self.core.created(call, await self._send(call, "create"))

    async def read(
        self, instance_id: str, *, fetch_payloads: bool = False
    ) -> InstanceRecord | None:
        call = self.core.read(instance_id, fetch_payloads)
        values = await self._send(call, "read")
        return self.core.record(values, fetch_payloads, instance_id)

    async def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        call = self.core.custom_status(instance_id, payload, etag, now)
        return self.core.status_written(call, await self._send(call, "custom-status update"))

    async def write_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus,
        *,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> str:
        call = self.core.runtime_status(
            instance_id, status, output=output, set_output=set_output, etag=etag, now=now
        )
        return self.core.runtime_written(call, await self._send(call, "runtime-status update"))

    async def delete(self, instance_id: str) -> bool:
        return self.core.deleted(await self._send(self.core.delete(instance_id), "delete"))

    async def query(self, query: InstanceQuery) -> RecordPage:
        return self.core.page(query, await self._send(self.core.query(query), "query"))

    async def purge_by(self, query: InstanceQuery) -> int:
        total = 0
        next_query: InstanceQuery | None = query
        while next_query is not None:
            reply = await self._send(self.core.query(next_query, purge=True), "purge")
            count, next_query = self.core.purged(query, reply)
            total += count
        return total
