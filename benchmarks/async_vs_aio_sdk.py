"""durastate's async ``set_custom_status`` vs azure-data-tables' ``aio.TableClient``.

One update at a time on Azurite (started and stopped here), three interleaved rounds of 200
each, client CPU (process time) and wall time per update. aiobotocore is not compared: it is
not a dependency. Run: ``.venv/bin/python benchmarks/async_vs_aio_sdk.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import orjson
from azure.core import MatchConditions
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableServiceClient

from durastate import open_async_store
from durastate.testing import emulators
from durastate.testing.emulators import azurite_connection_string

OPS = 200
VALUE = {"percent": 42, "stage": "resize", "eta_s": 12.5, "detail": "x" * 90}


async def main(connection_string: str) -> None:
    table_name = f"dsaio{uuid.uuid4().hex[:8]}"
    store = open_async_store(f"azure-tables://{table_name}", connection_string=connection_string)
    await store.create_instance("i", name="bench")
    service = TableServiceClient.from_connection_string(connection_string)
    table = await service.create_table_if_not_exists(f"raw{uuid.uuid4().hex[:8]}")
    created = await table.create_entity({"PartitionKey": "i", "RowKey": "", "CustomStatus": ""})
    etag = [created["etag"]]

    async def durastate_updates() -> None:
        for n in range(OPS):
            await store.set_custom_status("i", dict(VALUE, percent=n))

    async def aio_sdk_updates() -> None:
        for n in range(OPS):
            entity = {
                "PartitionKey": "i",
                "RowKey": "",
                "CustomStatus": orjson.dumps(dict(VALUE, percent=n)).decode(),
            }
            answer = await table.update_entity(
                entity,
                mode=UpdateMode.MERGE,
                etag=etag[0],
                match_condition=MatchConditions.IfNotModified,
            )
            etag[0] = answer["etag"]

    contenders: dict[str, Callable[[], Awaitable[None]]] = {
        "durastate AsyncStateStore.set_custom_status": durastate_updates,
        "azure-data-tables aio TableClient.update_entity If-Match": aio_sdk_updates,
    }
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    for run in contenders.values():
        await run()  # warm up connections
    for _ in range(3):
        for name, run in contenders.items():
            wall, cpu = time.perf_counter(), time.process_time()
            await run()
            per_op = ((time.perf_counter() - wall) / OPS, (time.process_time() - cpu) / OPS)
            rounds[name].append(per_op)
    for name, runs in rounds.items():
        wall_us = statistics.median(r[0] for r in runs) * 1e6
        cpu_us = statistics.median(r[1] for r in runs) * 1e6
        print(f"{name}: wall {wall_us:,.0f} µs, client CPU {cpu_us:,.0f} µs per update")
    await table.close()
    await service.close()
    await store.close()


if __name__ == "__main__":
    with emulators.running(emulators.start_azurite()) as azurite:
        asyncio.run(main(azurite_connection_string(azurite)))
