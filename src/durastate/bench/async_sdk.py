"""The async cell next to the async SDK: durastate's async ``set_custom_status`` against the
official async SDK call and the lean async limit, where the async SDK is installed.

Installed here: azure-data-tables' ``aio.TableClient`` (it needs aiohttp, the ``async``
extra). aiobotocore is not a dependency, so DynamoDB and S3 get no such cell (none is
recorded, rather than an error). One conditional write at a time on one instance each:

- durastate: ``AsyncStateStore.set_custom_status(id, value, etag=last)``;
- async SDK: ``aio.TableClient.update_entity`` (MERGE, If-Match);
- lean async: the hand-signed MERGE (`durastate.bench.lean_anchors.azure_merge`) sent by
  ``AsyncHttpDriver`` (aiohttp).

All three run in one event loop in interleaved rounds; CPU is the process's (every thread:
an async store that runs a sync backend in worker threads pays for them too).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from durastate.bench.anchors import RAW_TABLE
from durastate.bench.lean_anchors import azure_endpoint_and_key, azure_entity_path, azure_merge
from durastate.bench.matrix import BackendSpec
from durastate.bench.results import Measurement
from durastate.core.async_store import AsyncStateStore
from durastate.core.store import StateStore
from durastate.opening import open_backend

VALUE = {"percent": 42, "stage": "resize", "eta_s": 12.5, "detail": "x" * 90}  # ~150 B
ROUNDS = 3


def _installed() -> bool:
    try:
        import aiohttp  # noqa: F401
        from azure.data.tables.aio import TableClient  # noqa: F401
    except ImportError:
        return False
    return True


def async_sdk_update(spec: BackendSpec, quick: bool) -> Measurement | None:
    """The cell on Azure Tables; ``None`` where no async SDK is installed for the backend."""
    if spec.scheme != "azure-tables" or not _installed():
        return None
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceExistsError
    from azure.data.tables import TableServiceClient, UpdateMode
    from azure.data.tables.aio import TableClient

    from durastate.transport import TransportOptions
    from durastate.transport.aio import AsyncHttpDriver

    connection_string = str(spec.options["connection_string"])
    with TableServiceClient.from_connection_string(connection_string) as service:
        with contextlib.suppress(ResourceExistsError):
            service.create_table(RAW_TABLE)
        table = service.get_table_client(RAW_TABLE)
        run = uuid.uuid4().hex[:8]
        sdk_key, lean_key = f"aio-sdk-{run}", f"aio-lean-{run}"
        first = {key: str(table.upsert_entity({"PartitionKey": key, "RowKey": "",
                                               "CustomStatus": "{}"})["etag"])
                 for key in (sdk_key, lean_key)}
    ops = 60 if quick else 200
    values = [dict(VALUE, percent=n) for n in range(ops)]  # every write really writes
    store = StateStore(open_backend(spec.url, **spec.options))
    aio = AsyncStateStore(store)
    instance_id = f"bench-aio-{run}"
    etags = {"durastate": store.create_instance(instance_id, name="bench"),
             "sdk": first[sdk_key], "lean": first[lean_key]}
    endpoint, account = azure_endpoint_and_key(connection_string)
    lean_path = azure_entity_path(RAW_TABLE, lean_key)
    merge, if_match = UpdateMode.MERGE, MatchConditions.IfNotModified

    async def run_all() -> dict[str, list[tuple[float, float]]]:
        client = TableClient.from_connection_string(connection_string, RAW_TABLE)
        driver = AsyncHttpDriver(TransportOptions())

        async def durastate_writes() -> None:
            for value in values:
                etags["durastate"] = await aio.set_custom_status(
                    instance_id, value, etag=etags["durastate"])

        async def sdk_writes() -> None:
            for value in values:
                entity = {"PartitionKey": sdk_key, "RowKey": "",
                          "CustomStatus": orjson.dumps(value).decode()}
                answer = await client.update_entity(entity, mode=merge, etag=etags["sdk"],
                                                    match_condition=if_match)
                etags["sdk"] = str(answer["etag"])

        async def lean_writes() -> None:
            for value in values:
                answer = await driver.send(azure_merge(endpoint, account, lean_path,
                                                       orjson.dumps(value), etags["lean"]))
                if answer.status != 204:
                    raise RuntimeError(f"Azure MERGE: HTTP {answer.status}, expected 204")
                etags["lean"] = str(answer.header("etag"))

        contenders: dict[str, Callable[[], Awaitable[None]]] = {
            "durastate": durastate_writes, "sdk": sdk_writes, "lean": lean_writes}
        rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
        try:
            for round_no in range(ROUNDS):  # interleaved, rotating who goes first
                names = list(contenders)
                for name in names[round_no % 3:] + names[:round_no % 3]:
                    wall, cpu = time.perf_counter(), time.process_time()
                    await contenders[name]()
                    rounds[name].append((time.perf_counter() - wall,
                                         time.process_time() - cpu))
        finally:
            await client.close()
            await driver.close()
            await aio.purge(instance_id)
            await aio.close()
        return rounds

    rounds = asyncio.run(run_all())
    per_op = {name: (statistics.median(w for w, _ in runs) / ops * 1e6,
                     statistics.median(c for _, c in runs) / ops * 1e6)
              for name, runs in rounds.items()}
    extra: dict[str, Any] = {
        "sdk": "azure-data-tables aio.TableClient.update_entity (MERGE, If-Match)",
        "sdk_wall_us": round(per_op["sdk"][0], 1), "sdk_cpu_us": round(per_op["sdk"][1], 1),
        "lean_wall_us": round(per_op["lean"][0], 1), "lean_cpu_us": round(per_op["lean"][1], 1),
        "cpu_ratio_vs_async_sdk": round(per_op["durastate"][1] / per_op["sdk"][1], 3),
        "lean_cpu_ratio_vs_async_sdk": round(per_op["lean"][1] / per_op["sdk"][1], 3),
        "rounds": ROUNDS,
    }
    m = Measurement("durastate", "durastate", spec.name, "json", "150B", "dict",
                    "async_update_vs_sdk", extra=extra)
    m.ops, m.median_us, m.cpu_us = ops, per_op["durastate"][0], per_op["durastate"][1]
    m.ops_per_s = 1e6 / per_op["durastate"][0]
    return m
