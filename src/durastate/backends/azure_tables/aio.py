"""The async store: the sync store's core and plans, run over aiohttp (`arun`).

Made by `AzureTablesBackend.to_async` (what `AsyncStateStore` uses). The table is created
once by the sync store's SDK client, on a worker thread so the loop never waits on it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from durastate.backends.azure_tables import plans
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
from durastate.transport.plans import Plan, arun

if TYPE_CHECKING:
    from durastate.backends.azure_tables.backend import AzureTablesBackend

T = TypeVar("T")


class AsyncAzureTablesBackend(AsyncBackend):
    """Azure Table Storage with coroutines: the semantics, layout and errors of the sync
    store, because it runs the very same plans."""

    scheme = "azure-tables"

    def __init__(self, sync: AzureTablesBackend) -> None:
        self.sync = sync
        self.core = sync.core
        self.capabilities = sync.capabilities
        self._driver = AsyncHttpDriver(sync.options.transport())
        self._bearer = sync.account.bearer

    def __repr__(self) -> str:
        return f"Async{self.sync!r}"

    async def close(self) -> None:
        await self._driver.close()
        await asyncio.to_thread(self.sync.close)

    async def _run(self, plan: Plan[T], instance_id: str | None = None) -> T:
        if not self.sync.tables.ready:
            await asyncio.to_thread(self.sync.ensure_table, instance_id)
        if self._bearer is not None:
            await self._bearer.header_async()  # an AsyncTokenCredential is awaited here
        return await arun(plan, self._driver)

    async def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        plan = plans.create(self.core, new, restart_if_terminal)
        return await self._run(plan, new.instance_id)

    async def read(
        self, instance_id: str, *, fetch_payloads: bool = False
    ) -> InstanceRecord | None:
        return await self._run(plans.read(self.core, instance_id, fetch_payloads), instance_id)

    async def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        plan = plans.write_custom_status(self.core, instance_id, payload, etag, now)
        return await self._run(plan, instance_id)

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
        plan = plans.write_runtime_status(
            self.core, instance_id, status, output, set_output, etag, now
        )
        return await self._run(plan, instance_id)

    async def delete(self, instance_id: str) -> bool:
        return await self._run(plans.delete(self.core, instance_id), instance_id)

    async def query(self, query: InstanceQuery) -> RecordPage:
        return await self._run(plans.query(self.core, query))

    async def purge_by(self, query: InstanceQuery) -> int:
        return await self._run(plans.purge_by(self.core, query))
