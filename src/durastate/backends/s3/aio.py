"""`AsyncS3Backend`: the async face. The same plans as `S3Backend`, awaited over `AsyncHttpDriver`
(`durastate.transport.aio`, the ``async`` extra); the bucket check of first use runs once in
a thread (it goes through boto3)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, TypeVar

from durastate.backends.s3.backend import CAPABILITIES
from durastate.backends.s3.bucket import BucketAdmin
from durastate.backends.s3.options import S3Options
from durastate.backends.s3.plans import S3Core
from durastate.core.async_backend import AsyncBackend
from durastate.core.planned import AsyncPlannedBackend
from durastate.core.steps import Plan
from durastate.transport.aio import AsyncHttpDriver
from durastate.transport.plans import Step, aperform

__all__ = ["AsyncS3Backend"]

T = TypeVar("T")


class AsyncS3Backend(AsyncPlannedBackend):
    """Made by `S3Backend.to_async`: shares its plans, options and known etags."""

    plans: S3Core
    capabilities = CAPABILITIES
    async_mode: ClassVar[str] = "native"

    def __init__(self, core: S3Core, admin: BucketAdmin, options: S3Options, shown: str) -> None:
        self.core = self.plans = core
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

    async def _drive(self, plan: Plan[Any, T], instance_id: str | None = None) -> T:
        await self._ready()
        return await super()._drive(plan, instance_id)

    async def _perform(self, step: Step) -> Any:
        return await aperform(step, self.driver)

    # no batched read in this service: the reads, all at once
    read_many = AsyncBackend.read_many
