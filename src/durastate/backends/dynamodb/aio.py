"""The async DynamoDB backend: the same core's plans, run over `AsyncHttpDriver` (aiohttp).

`DynamoDBBackend.to_async` builds it over the sync backend's core, so both faces make the
same requests and the same decisions; this class only awaits. Needs the ``async`` extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from durastate.backends.dynamodb.options import Connection
from durastate.backends.dynamodb.plans import DynamoCore
from durastate.core.async_backend import AsyncBackend
from durastate.core.records import (
    Capabilities,
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

__all__ = ["AsyncDynamoDBBackend"]


class AsyncDynamoDBBackend(AsyncBackend):
    """Instances in one DynamoDB table, from coroutines (the sync backend's core)."""

    def __init__(
        self, core: DynamoCore, connection: Connection, capabilities: Capabilities, name: str
    ) -> None:
        self.core = core
        self.capabilities = capabilities
        self.driver = AsyncHttpDriver(connection.transport)
        self._name = name

    def __repr__(self) -> str:
        return f"Async{self._name}"

    async def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        return await arun(self.core.create(new, restart_if_terminal), self.driver)

    async def read(
        self, instance_id: str, *, fetch_payloads: bool = False
    ) -> InstanceRecord | None:
        return await arun(self.core.read(instance_id, fetch_payloads), self.driver)

    async def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        return await arun(self.core.read_many(instance_ids, fetch_payloads), self.driver)

    async def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
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
        plan = self.core.write_runtime_status(instance_id, status, output, set_output, etag, now)
        return await arun(plan, self.driver)

    async def delete(self, instance_id: str) -> bool:
        return await arun(self.core.delete(instance_id), self.driver)

    async def query(self, query: InstanceQuery) -> RecordPage:
        return await arun(self.core.query(query), self.driver)

    async def purge_by(self, query: InstanceQuery) -> int:
        return await arun(self.core.purge_by(query), self.driver)

    async def close(self) -> None:
        await self.driver.close()
