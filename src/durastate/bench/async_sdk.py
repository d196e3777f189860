"""The async cells next to the official async SDKs: durastate's async ``set_custom_status``
against the async SDK's call, one at a time and with 100 in flight, where the SDK is installed.

azure-data-tables' ``aio.TableClient`` comes with the ``azure`` extra and aiohttp (``bench``);
aiobotocore (DynamoDB, S3) is not a dependency (its botocore pin is narrow): without it those
backends record no such cell, rather than an error. On Azure Tables, one conditional write at
a time on one instance each:

- durastate: ``AsyncStateStore.set_custom_status(id, value, etag=last)``;
- async SDK: ``aio.TableClient.update_entity`` (MERGE, If-Match);
- lean async: the hand-signed MERGE (`durastate.bench.lean_anchors.azure_merge`) sent by
  ``AsyncHttpDriver`` (durastate's asyncio driver).

All three run in one event loop in interleaved rounds; CPU is the process's (every thread:
an async store that runs a sync backend in worker threads pays for them too).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from durastate.bench.anchors import RAW_BUCKET, RAW_DYNAMO_TABLE, RAW_TABLE
from durastate.bench.async_cells import IN_FLIGHT, INSTANCES, UPDATES, VALUE
from durastate.bench.lean_anchors import azure_endpoint_and_key, azure_entity_path, azure_merge
from durastate.bench.matrix import BackendSpec
from durastate.bench.references import AwsTarget
from durastate.bench.results import Measurement
from durastate.core.async_store import AsyncStateStore
from durastate.core.store import StateStore
from durastate.opening import open_backend

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


# --- the official async SDKs at work: one at a time on AWS, and 100 in flight everywhere ---

SdkWrite = Callable[[str, bytes], Awaitable[None]]


def _aiobotocore() -> Any | None:
    """aiobotocore's session module, or ``None``: it is not a dependency of durastate (its
    botocore pin is narrow); `pip install aiobotocore` next to durastate[aws] adds the cells."""
    try:
        return importlib.import_module("aiobotocore.session")
    except ImportError:
        return None


def _has_async_sdk(spec: BackendSpec) -> bool:
    if spec.scheme == "azure-tables":
        return _installed()
    return spec.scheme in ("dynamodb", "s3") and _aiobotocore() is not None


@contextlib.asynccontextmanager
async def _sdk_writer(spec: BackendSpec, keys: list[str]) -> AsyncIterator[tuple[str, SdkWrite]]:
    """What the official async SDK's call is, and that call writing a status to one of
    ``keys`` (each created first), with a connection pool of ``IN_FLIGHT``. Its condition
    is the one durastate's write without an etag has: the record exists (Azure: MERGE needs
    the entity; DynamoDB: ``attribute_exists``; S3: none, a plain ``put_object``)."""
    if spec.scheme == "azure-tables":
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode
        from azure.data.tables.aio import TableClient

        client = TableClient.from_connection_string(
            str(spec.options["connection_string"]), RAW_TABLE)
        async with client:
            with contextlib.suppress(Exception):  # exists already
                await client.create_table()
            for key in keys:
                await client.upsert_entity({"PartitionKey": key, "RowKey": "",
                                            "CustomStatus": "{}"})

            async def merge(key: str, value: bytes) -> None:
                await client.update_entity(
                    {"PartitionKey": key, "RowKey": "", "CustomStatus": value.decode()},
                    mode=UpdateMode.MERGE, match_condition=MatchConditions.Unconditionally)

            yield "azure-data-tables aio.TableClient.update_entity (MERGE)", merge
        return
    session_module = _aiobotocore()
    assert session_module is not None
    config = importlib.import_module("aiobotocore.config").AioConfig(
        max_pool_connections=IN_FLIGHT)
    kwargs = {**AwsTarget.from_options(spec.url, dict(spec.options)).client_kwargs(),
              "config": config}
    session = session_module.get_session()
    if spec.scheme == "dynamodb":
        async with session.create_client("dynamodb", **kwargs) as dynamo:
            if RAW_DYNAMO_TABLE not in (await dynamo.list_tables())["TableNames"]:
                await dynamo.create_table(
                    TableName=RAW_DYNAMO_TABLE,
                    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST")
                await dynamo.get_waiter("table_exists").wait(
                    TableName=RAW_DYNAMO_TABLE, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
            for key in keys:
                await dynamo.put_item(TableName=RAW_DYNAMO_TABLE,
                                      Item={"pk": {"S": key}, "cs": {"B": b"{}"}})

            async def update_item(key: str, value: bytes) -> None:
                await dynamo.update_item(
                    TableName=RAW_DYNAMO_TABLE, Key={"pk": {"S": key}},
                    UpdateExpression="SET cs = :v", ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":v": {"B": value}})

            yield "aiobotocore dynamodb update_item (attribute_exists)", update_item
        return
    async with session.create_client("s3", **kwargs) as s3:
        with contextlib.suppress(Exception):  # exists already
            await s3.create_bucket(Bucket=RAW_BUCKET)

        async def put_object(key: str, value: bytes) -> None:
            await s3.put_object(Bucket=RAW_BUCKET, Key=key, Body=value)

        yield "aiobotocore s3 put_object", put_object


def _durastate_and_sdk(
    spec: BackendSpec, instances: int, jobs: Callable[[list[str]], list[tuple[str, bytes]]],
    concurrency: int, rounds: int,
) -> tuple[str, dict[str, list[tuple[float, float]]]]:
    """Wall and CPU seconds of each round of ``jobs`` (instance index, value), durastate's
    async store and the async SDK interleaved in one event loop, ``concurrency`` in flight.
    Both get a pool of ``concurrency`` connections (durastate's ``max_pool_connections``,
    100 by default on every network backend; aiobotocore's ``max_pool_connections``,
    aiohttp's 100 for the aio TableClient)."""
    options = dict(spec.options)
    if spec.scheme in ("dynamodb", "s3"):
        options.setdefault("max_pool_connections", max(concurrency, 10))
    store = StateStore(open_backend(spec.url, **options))
    aio = AsyncStateStore(store)
    run = uuid.uuid4().hex[:8]
    ids = [f"bench-aiosdk-{run}-{n}" for n in range(instances)]
    for instance_id in ids:
        store.create_instance(instance_id, name="bench")
    work = jobs(ids)

    async def run_all() -> tuple[str, dict[str, list[tuple[float, float]]]]:
        keys = [f"aio-sdk-{run}-{n}" for n in range(instances)]
        key_of = dict(zip(ids, keys, strict=True))
        async with _sdk_writer(spec, keys) as (sdk_name, sdk_write):
            gate = asyncio.Semaphore(concurrency)

            async def durastate_one(instance_id: str, value: bytes) -> None:
                async with gate:
                    await aio.set_custom_status(instance_id, orjson.loads(value))

            async def sdk_one(instance_id: str, value: bytes) -> None:
                async with gate:
                    await sdk_write(key_of[instance_id], value)

            contenders = {"durastate": durastate_one, "sdk": sdk_one}
            clocks: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
            try:
                for round_no in range(rounds + 1):  # the first round warms connections up
                    order = list(contenders)[round_no % 2:] + list(contenders)[:round_no % 2]
                    for name in order:
                        wall, cpu = time.perf_counter(), time.process_time()
                        await asyncio.gather(*(contenders[name](*job) for job in work))
                        if round_no:
                            clocks[name].append((time.perf_counter() - wall,
                                                 time.process_time() - cpu))
            finally:
                await aio.purge_by(prefix=f"bench-aiosdk-{run}-")
                await aio.close()
        return sdk_name, clocks

    return asyncio.run(run_all())


def _median_per_op(runs: list[tuple[float, float]], ops: int) -> tuple[float, float]:
    return (statistics.median(w for w, _ in runs) / ops * 1e6,
            statistics.median(c for _, c in runs) / ops * 1e6)


def async_sdk_one_at_a_time_aws(spec: BackendSpec, quick: bool) -> Measurement | None:
    """DynamoDB and S3: durastate's async ``set_custom_status`` one at a time vs aiobotocore's
    call (Azure's is `async_sdk_update`, with the lean limit beside it)."""
    if spec.scheme not in ("dynamodb", "s3") or not _has_async_sdk(spec):
        return None
    ops = 60 if quick else 200
    sdk_name, clocks = _durastate_and_sdk(
        spec, 1, lambda ids: [(ids[0], orjson.dumps(dict(VALUE, percent=n)))
                              for n in range(ops)], 1, ROUNDS)
    return _versus_sdk(spec, "async_update_vs_sdk", sdk_name, clocks, ops)


def async_sdk_in_flight(spec: BackendSpec, quick: bool) -> Measurement | None:
    """1,000 updates over 100 instances, 100 in flight: durastate's async store vs the
    official async SDK at the same concurrency (updates/s and CPU per update)."""
    if not _has_async_sdk(spec):
        return None
    sdk_name, clocks = _durastate_and_sdk(
        spec, INSTANCES, lambda ids: [(ids[n % INSTANCES], orjson.dumps(dict(VALUE, percent=n)))
                                      for n in range(UPDATES)], IN_FLIGHT, 1 if quick else ROUNDS)
    m = _versus_sdk(spec, "async_in_flight_vs_sdk", sdk_name, clocks, UPDATES)
    m.extra["in_flight"] = IN_FLIGHT
    m.extra["throughput_ratio_vs_async_sdk"] = round(
        m.extra["sdk_wall_us"] / (m.median_us or 1.0), 3)
    return m


def _versus_sdk(spec: BackendSpec, operation: str, sdk_name: str,
                clocks: dict[str, list[tuple[float, float]]], ops: int) -> Measurement:
    ours, sdk = _median_per_op(clocks["durastate"], ops), _median_per_op(clocks["sdk"], ops)
    m = Measurement("durastate", "durastate", spec.name, "json", "150B", "dict", operation,
                    extra={"sdk": sdk_name, "sdk_wall_us": round(sdk[0], 1),
                           "sdk_cpu_us": round(sdk[1], 1),
                           "cpu_ratio_vs_async_sdk": round(ours[1] / sdk[1], 3),
                           "rounds": len(clocks["sdk"])})
    m.ops, m.median_us, m.cpu_us, m.ops_per_s = ops, ours[0], ours[1], 1e6 / ours[0]
    return m
