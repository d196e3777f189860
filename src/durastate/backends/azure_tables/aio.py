"""The async store: the sync store's core and plans, driven over `AsyncHttpDriver` (`aperform`).

Made by `AzureTablesBackend.to_async` (what `AsyncStateStore` uses). The table is created
once by the sync store's SDK client, on a worker thread so the loop never waits on it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

from durastate.core.async_backend import AsyncBackend
from durastate.core.planned import AsyncPlannedBackend
from durastate.core.steps import Plan
from durastate.transport.aio import AsyncHttpDriver
from durastate.transport.plans import Step, aperform

if TYPE_CHECKING:
    from durastate.backends.azure_tables.backend import AzureTablesBackend

T = TypeVar("T")


class AsyncAzureTablesBackend(AsyncPlannedBackend):
    """Azure Table Storage with coroutines: the semantics, layout and errors of the sync
    store, because it runs the very same plans."""

    scheme = "azure-tables"

    def __init__(self, sync: AzureTablesBackend) -> None:
        self.sync = sync
        self.core = sync.core
        self.plans = sync.plans
        self.capabilities = sync.capabilities
        self._driver = AsyncHttpDriver(sync.options.transport())
        self._bearer = sync.account.bearer

    def __repr__(self) -> str:
        return f"Async{self.sync!r}"

    async def close(self) -> None:
        await self._driver.close()
        await asyncio.to_thread(self.sync.close)

    async def _drive(self, plan: Plan[Any, T], instance_id: str | None = None) -> T:
        if not self.sync.tables.ready:
            await asyncio.to_thread(self.sync.ensure_table, instance_id)
        if self._bearer is not None:
            await self._bearer.header_async()  # an AsyncTokenCredential is awaited here
        return await super()._drive(plan, instance_id)

    async def _perform(self, step: Step) -> Any:
        return await aperform(step, self._driver)

    # no batched read in this service: the reads, all at once
    read_many = AsyncBackend.read_many
