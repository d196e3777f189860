"""The async driver: the same core's script calls over one ``redis.asyncio`` pool.

The async store (``AsyncStateStore``) builds on this; until then it is used directly. Every
decision (keys, scripts, replies, errors, lost-answer retry) is the core's or the sync
driver's helper: this module only awaits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any, Self

import redis.asyncio
from redis import exceptions
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from durastate.backends.redis.backend import capabilities_for
from durastate.backends.redis.core import RedisCore, Reply, ScriptCall
from durastate.backends.redis.failures import Attempts
from durastate.backends.redis.options import RedisTarget
from durastate.core.async_backend import AsyncBackend
from durastate.core.records import (
    InstanceQuery,
    InstanceRecord,
    NewInstance,
    Payload,
    RecordPage,
    RuntimeStatus,
    WriteResult,
)


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

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        return cls(RedisTarget(url, options))

    def __repr__(self) -> str:
        return f"AsyncRedisBackend(url={self.target.redacted!r}, prefix={self.core.prefix!r})"

    async def close(self) -> None:
        await self._pool.disconnect()

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
