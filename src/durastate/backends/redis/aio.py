"""The async driver: performs the plans of `RedisPlans` over its own RESP2 connections.

Every decision (keys, scripts, replies, errors, lost-answer retry) is the plans' and the
core's: this module only awaits. Commands and pipelines go over `aio_connections` (lean:
one write and one future per round trip); the ``redis.asyncio`` pool made from the same URL
supplies the connection settings and serves pub/sub (``push``), which is off the hot path.
``RedisBackend.to_async()`` gives one to `AsyncStateStore`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Self

import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from durastate.backends.redis.aio_connections import RespPool, Settings
from durastate.backends.redis.options import RedisTarget
from durastate.backends.redis.plans import Pipelined, RedisPlans, Step
from durastate.backends.redis.push import AsyncRedisPush
from durastate.core.planned import AsyncPlannedBackend
from durastate.core.steps import Pause


class AsyncRedisBackend(AsyncPlannedBackend):
    """``RedisBackend`` as coroutines: same URL, options, layout, plans and semantics; the
    async face `RedisBackend.to_async` gives `AsyncStateStore`."""

    scheme = "redis"

    plans: RedisPlans

    def __init__(self, target: RedisTarget) -> None:
        self.plans = RedisPlans(target)
        self.target, self.core, self.capabilities = target, self.plans.core, self.plans.capabilities
        self._pool = redis.asyncio.ConnectionPool.from_url(
            target.address, retry=AsyncRetry(NoBackoff(), 0), **target.pool_kwargs()
        )
        self._client = redis.asyncio.Redis(connection_pool=self._pool)
        self._connections = RespPool(Settings(self._pool, target.options.timeout))
        self._execute: Callable[..., Any] = self._connections.execute
        self._push = AsyncRedisPush(self._client, self.core)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        return cls(RedisTarget(url, options))

    def __repr__(self) -> str:
        return f"AsyncRedisBackend(url={self.target.redacted!r}, prefix={self.core.prefix!r})"

    async def close(self) -> None:
        await self._push.close()
        await self._connections.close()
        await self._pool.disconnect()

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        """Push through Redis pub/sub, read by a task on the caller's loop (`AsyncRedisPush`)."""
        return self._push.subscribe(instance_id, notify)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _perform(self, step: Step) -> Any:
        if type(step) is tuple:
            return await self._execute(step)
        if type(step) is Pipelined:
            return await self._connections.execute_many(step.commands)
        assert type(step) is Pause
        await asyncio.sleep(step.seconds)
        return None
