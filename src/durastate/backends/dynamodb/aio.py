"""The async DynamoDB backend: the same core's plans, run over `AsyncHttpDriver` (asyncio).

`DynamoDBBackend.to_async` builds it over the sync backend's core, so both faces make the
same requests and the same decisions; this class only awaits. Needs the ``async`` extra.
"""

from __future__ import annotations

from typing import Any

from durastate.backends.dynamodb.options import Connection
from durastate.backends.dynamodb.plans import DynamoCore
from durastate.core.planned import AsyncPlannedBackend
from durastate.core.records import Capabilities
from durastate.transport.aio import AsyncHttpDriver
from durastate.transport.plans import Step, aperform

__all__ = ["AsyncDynamoDBBackend"]


class AsyncDynamoDBBackend(AsyncPlannedBackend):
    """Instances in one DynamoDB table, from coroutines (the sync backend's core)."""

    plans: DynamoCore

    def __init__(
        self, core: DynamoCore, connection: Connection, capabilities: Capabilities, name: str
    ) -> None:
        self.core = self.plans = core
        self.capabilities = capabilities
        self.driver = AsyncHttpDriver(connection.transport)
        self._name = name

    def __repr__(self) -> str:
        return f"Async{self._name}"

    async def _perform(self, step: Step) -> Any:
        return await aperform(step, self.driver)

    async def close(self) -> None:
        await self.driver.close()
