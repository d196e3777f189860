"""`AsyncS3Backend`: the async face. The same plans as `S3Backend`, awaited over aiohttp
(`durastate.transport.aio`, the ``async`` extra); the bucket check of first use runs once in
a thread (it goes through boto3)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import ClassVar

from durastate.backends.s3.backend import CAPABILITIES
from durastate.backends.s3.bucket import BucketAdmin
from durastate.backends.s3.options import S3Options
from durastate.backends.s3.plans import S3Core
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
from durastate.transport.aio import AsyncHttpDriver
from durastate.transport.plans import arun

__all__ = ["AsyncS3Backend"]


class AsyncS3Backend(AsyncBackend):
    """Made by `S3Backend.to_async`: shares its plans, options and known etags."""

    capabilities = CAPABILITIES
    async_mode: ClassVar[str] = "native"

    def __init__(self, core: S3Core, admin: BucketAdmin, options: S3Options, shown: str) -> None:
        self.core = core
        self.admin = admin
        self._shown = shown
        self.driver = AsyncHttpDriver(options.transport())

    def __repr__(self) -> str:
        return f"Async{self._shown}"

    async def close(self) -> None:
        await self.driver.close()

    async def _ready(self) -> None:
        if not self.admin.ready:
            await asyncio.to_thread(self.admin.ensure)

    async def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        await self._ready()
        return await arun(self.core.create(new, restart_if_terminal), self.driver)

    async def read(
        self, instance_id: str, *, fetch_payloads: bool = False
    ) -> InstanceRecord | None:
        await self._ready()
        return await arun(self.core.read(instance_id, fetch_payloads), self.driver)

    async def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        await self._ready()
        plan = self.core.write_custom_status(instance_id, payload, etag, now)
        return await arun(plan, self.driver)

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
        await self._ready()
        plan = self.core.write_runtime_status(instance_id, status, output, set_output, etag, now)
        return await arun(plan, self.driver)

    async def delete(self, instance_id: str) -> bool:
        await self._ready()
        return await arun(self.core.delete(instance_id), self.driver)

    async def query(self, query: InstanceQuery) -> RecordPage:
        await self._ready()
        return await arun(self.core.query(query), self.driver)

    async def purge_by(self, query: InstanceQuery) -> int:
        await self._ready()
        return await arun(self.core.purge_by(query), self.driver)
