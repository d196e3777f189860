"""redis:// — the sync driver: performs the plans of `RedisPlans` over one redis-py pool.

A custom-status update is one EVALSHA (one round trip, no read first). redis-py's own
retries are off: a write whose connection drops is sent again with the retry flag, and the
script recognises the first attempt by its write id (see ``scripts`` and ``plans``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from durastate.backends.redis.options import RedisTarget
from durastate.backends.redis.plans import MAX_VALUE_BYTES, Pipelined, RedisPlans, Step
from durastate.backends.redis.push import RedisPush
from durastate.core.planned import PlannedBackend
from durastate.core.records import (
    Capabilities,
)
from durastate.core.steps import Pause

if TYPE_CHECKING:
    from durastate.core.async_backend import AsyncBackend


def no_retries() -> Retry:
    """redis-py retries a failed command by default; a lost write answer must not be re-sent
    blindly, so the plans do their own (recognising) retry instead. (The async driver's
    ``redis.asyncio`` pub/sub pool gets ``redis.asyncio.retry.Retry``, whose retry awaits.)"""
    return Retry(NoBackoff(), 0)


class RedisBackend(PlannedBackend):
    """Instances as Redis hashes with sorted-set indexes (see ``core`` for the layout)."""

    scheme = "redis"
    # what the backend can do with its options (the CLI lists this); an instance says
    # whether expiry is on
    capabilities = Capabilities(max_payload_bytes=MAX_VALUE_BYTES, ttl=True, push=True)
    async_mode: ClassVar[str] = "native"

    plans: RedisPlans

    def __init__(self, target: RedisTarget) -> None:
        self.plans = RedisPlans(target)
        self.target, self.core, self.capabilities = target, self.plans.core, self.plans.capabilities
        self._pool = redis.ConnectionPool.from_url(
            target.address, retry=no_retries(), **target.pool_kwargs()
        )
        self._client = redis.Redis(connection_pool=self._pool)
        self._execute: Callable[..., Any] = self._client.execute_command
        self._push = RedisPush(self._client, self.core)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        return cls(RedisTarget(url, options))

    def __repr__(self) -> str:
        return f"RedisBackend(url={self.target.redacted!r}, prefix={self.core.prefix!r})"

    def to_async(self) -> AsyncBackend:
        """The async driver over the same plans (its own connections, same URL and options)."""
        from durastate.backends.redis.aio import AsyncRedisBackend

        return AsyncRedisBackend(self.target)

    def close(self) -> None:
        self._push.close()
        self._pool.disconnect()

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        """Push through Redis pub/sub: one connection per backend object (see `RedisPush`)."""
        return self._push.subscribe(instance_id, notify)

    def _perform(self, step: Step) -> Any:
        if type(step) is tuple:
            return self._execute(*step)
        if type(step) is Pipelined:
            pipe = self._client.pipeline(transaction=False)
            for command in step.commands:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            return pipe.execute(raise_on_error=False)
        assert type(step) is Pause
        time.sleep(step.seconds)
        return None
