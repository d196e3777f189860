"""Client CPU of the rebuilt DynamoDB backend against the official SDK, call for call.

    .venv/bin/python benchmarks/dynamodb_lean.py --rounds 20 --ops 20
    .venv/bin/python benchmarks/dynamodb_lean.py --only dynalite --aio   # + aiobotocore

Starts dynalite and moto_server (stock) on free loopback ports and stops them when done.
For each emulator and operation, the contenders make the same request side by side,
interleaved round by round (`lean_clients.interleave`): CPU is ``thread_time`` of this
thread (the async loop runs in it), the ratio the median over rounds of contender / ``sdk``.

- ``set_custom_status``: ``sdk`` is boto3 ``update_item`` with a ConditionExpression on the
  etag (the same UpdateItem the backend sends, built by hand); ``durastate`` is
  ``StateStore.set_custom_status(..., etag=)``, ``durastate-async`` the same on
  ``AsyncStateStore`` awaited one at a time; ``aio-sdk`` aiobotocore's ``update_item``
  (``--aio``; aiobotocore is not a dependency: ``pip install aiobotocore``).
- ``get_instance``: boto3 ``get_item`` (consistent, the backend's projection) against
  ``StateStore.get_instance``.
- ``query page``: boto3 ``query`` on the index (10 keys) + ``batch_get_item`` of those keys
  against ``StateStore.query(runtime_status=..., page_size=10)``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import statistics
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from durastate import AsyncStateStore, open_store
from durastate.backends.dynamodb import DynamoDBBackend
from durastate.backends.dynamodb.layout import projection
from durastate.core.store import StateStore
from durastate.testing import emulators

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, from anywhere
from benchmarks.lean_clients import (
    AWS_KEYS,
    Contender,
    Figures,
    boto_client,
    interleave,
    table,
)

VALUE = {"stage": "resize", "done": 41, "eta_s": 12.5}
CREDENTIALS: dict[str, Any] = {
    "aws_access_key_id": AWS_KEYS.access_key,
    "aws_secret_access_key": AWS_KEYS.secret_key,
    "region": "us-east-1",
}


class Calls:
    """A contender from a function of the op number."""

    def __init__(self, call: Callable[[int], Any]) -> None:
        self._call = call

    def run(self, count: int) -> None:
        call = self._call
        for i in range(count):
            call(i)

    def close(self) -> None:
        """Closed with the store (see `contenders`)."""


class AsyncCalls:
    """A contender from a coroutine function, awaited one at a time in a private loop."""

    def __init__(
        self, call: Callable[[int], Coroutine[Any, Any, Any]], runner: asyncio.Runner
    ) -> None:
        self._call = call
        self._runner = runner

    async def _batch(self, count: int) -> None:
        call = self._call
        for i in range(count):
            await call(i)

    def run(self, count: int) -> None:
        self._runner.run(self._batch(count))

    def close(self) -> None:
        """Closed with the store (see `contenders`)."""


def update_args(backend: DynamoDBBackend, instance_id: str, etag: str, new: str) -> dict[str, Any]:
    """The UpdateItem the backend sends for a custom status, as boto3 arguments."""
    import orjson

    return {
        "TableName": backend.table,
        "Key": {"instance_id": {"S": instance_id}},
        "UpdateExpression": "SET #cs = :cs, #cse = :enc, #cu = :now, #lu = :now, "
        "#et = :et, #pv = #et",
        "ConditionExpression": "#et = :old AND (attribute_not_exists(#cs) OR #cs <> :cs "
        "OR #cse <> :enc)",
        "ExpressionAttributeNames": {
            "#et": "etag",
            "#pv": "previous_etag",
            "#lu": "last_updated_at",
            "#cu": "custom_status_updated_at",
            "#cs": "custom_status",
            "#cse": "custom_status_encoding",
        },
        "ExpressionAttributeValues": {
            ":enc": {"S": "json"},
            ":now": {"S": "2026-11-29T10:00:00.000Z"},
            ":et": {"S": new},
            ":cs": {"B": orjson.dumps({**VALUE, "n": new})},
            ":old": {"S": etag},
        },
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def contenders(
    endpoint: str, with_aio: bool, closing: contextlib.ExitStack
) -> dict[str, dict[str, Contender]]:
    """Per operation, the contenders (sharing one table; closed by ``closing``)."""
    store: StateStore = open_store(
        f"dynamodb://bench-{uuid.uuid4().hex[:10]}", endpoint_url=endpoint, **CREDENTIALS
    )
    backend = store.backend
    assert isinstance(backend, DynamoDBBackend)
    runner = asyncio.Runner()
    astore = AsyncStateStore(store)
    sdk = boto_client("dynamodb", endpoint)
    closing.callback(runner.close)
    closing.callback(sdk.close)
    closing.callback(store.close)
    closing.callback(lambda: runner.run(astore.close()))
    for name in ("w-sdk", "w-sync", "w-async", "w-aio"):
        store.create_instance(name, name="bench", input={"x": "y" * 200}, custom_status=VALUE)
    for n in range(10):
        store.create_instance(f"q-{n:02d}", name="bench", custom_status=VALUE)
    etags: dict[str, str] = {}

    def sdk_update(i: int) -> None:
        old = etags.get("w-sdk") or store.get_instance("w-sdk").etag  # type: ignore[union-attr]
        new = uuid.uuid4().hex[:24]
        sdk.update_item(**update_args(backend, "w-sdk", old, new))
        etags["w-sdk"] = new

    def sync_update(i: int) -> None:
        etags["w-sync"] = store.set_custom_status(
            "w-sync", {**VALUE, "n": i}, etag=etags.get("w-sync")
        )

    async def async_update(i: int) -> None:
        etags["w-async"] = await astore.set_custom_status(
            "w-async", {**VALUE, "n": i}, etag=etags.get("w-async")
        )

    read_args = {
        "TableName": backend.table,
        "Key": {"instance_id": {"S": "w-sync"}},
        "ConsistentRead": True,
        **projection(False, None),
    }

    def sdk_query(i: int) -> None:
        page = sdk.query(
            TableName=backend.table,
            IndexName="by_status_created",
            KeyConditionExpression="#st = :st",
            ExpressionAttributeNames={"#st": "runtime_status"},
            ExpressionAttributeValues={":st": {"S": "pending"}},
            Limit=10,
        )
        keys = [{"instance_id": item["instance_id"]} for item in page["Items"]]
        request = {"Keys": keys, "ConsistentRead": True, **projection(False, None)}
        sdk.batch_get_item(RequestItems={backend.table: request})

    updates: dict[str, Contender] = {
        "sdk": Calls(sdk_update),
        "durastate": Calls(sync_update),
        "durastate-async": AsyncCalls(async_update, runner),
    }
    if with_aio:
        updates["aio-sdk"] = aio_contender(endpoint, backend, runner, store, closing)
    reads: dict[str, Contender] = {
        "sdk": Calls(lambda i: sdk.get_item(**read_args)),
        "durastate": Calls(lambda i: store.get_instance("w-sync")),
        "durastate-async": AsyncCalls(lambda i: astore.get_instance("w-sync"), runner),
    }
    queries: dict[str, Contender] = {
        "sdk": Calls(sdk_query),
        "durastate": Calls(lambda i: store.query(runtime_status="pending", page_size=10)),
        "durastate-async": AsyncCalls(
            lambda i: astore.query(runtime_status="pending", page_size=10), runner
        ),
    }
    return {"set_custom_status": updates, "get_instance": reads, "query page (10)": queries}


def aio_contender(
    endpoint: str,
    backend: DynamoDBBackend,
    runner: asyncio.Runner,
    store: StateStore,
    closing: contextlib.ExitStack,
) -> Contender:
    """aiobotocore's update_item, the same request (not a dependency: pip install it)."""
    get_session = importlib.import_module("aiobotocore.session").get_session
    holder: dict[str, Any] = {}

    async def opened() -> Any:
        if "client" not in holder:
            context = get_session().create_client(
                "dynamodb",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id=AWS_KEYS.access_key,
                aws_secret_access_key=AWS_KEYS.secret_key,
            )
            holder["context"] = context
            holder["client"] = await context.__aenter__()
            holder["etag"] = store.get_instance("w-aio").etag  # type: ignore[union-attr]
        return holder["client"]

    async def update(i: int) -> None:
        client = await opened()
        new = uuid.uuid4().hex[:24]
        await client.update_item(**update_args(backend, "w-aio", holder["etag"], new))
        holder["etag"] = new

    async def close() -> None:
        if "context" in holder:
            await holder["context"].__aexit__(None, None, None)

    closing.callback(lambda: runner.run(close()))
    return AsyncCalls(update, runner)


def side_ratios(figures: dict[str, Figures]) -> str:
    """The async targets: durastate-async against the sync store and the async SDK, as
    medians of per-round ratios."""
    lines = []
    for other in ("durastate", "aio-sdk"):
        if other in figures:
            ratios = [
                a / b
                for a, b in zip(
                    figures["durastate-async"].cpu_us, figures[other].cpu_us, strict=True
                )
            ]
            lines.append(f"durastate-async / {other}: {statistics.median(ratios):.2f}")
    return "\n" + "; ".join(lines) + " (client CPU, median of per-round ratios)"


@contextlib.contextmanager
def started(only: set[str]) -> Iterator[list[tuple[str, str]]]:
    with contextlib.ExitStack() as stack:
        found: list[tuple[str, str]] = []
        if "dynalite" in only:
            dynalite = stack.enter_context(emulators.running(emulators.start_dynalite()))
            found.append(("dynalite", dynalite.endpoint))
        if "moto" in only:
            moto = stack.enter_context(emulators.running(emulators.start_moto(serialized=False)))
            found.append(("moto", moto.endpoint))
        yield found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ops", type=int, default=20, help="calls per contender per round")
    parser.add_argument("--aio", action="store_true", help="also aiobotocore (pip install it)")
    parser.add_argument("--only", action="append", choices=["dynalite", "moto"])
    args = parser.parse_args(argv)
    print(
        f"# DynamoDB backend vs SDK: {args.rounds} interleaved rounds x {args.ops} calls, "
        f"command: {' '.join(sys.argv)}"
    )
    with started(set(args.only or ["dynalite", "moto"])) as servers:
        for label, endpoint in servers:
            with contextlib.ExitStack() as closing:
                for operation, group in contenders(endpoint, args.aio, closing).items():
                    figures = interleave(group, args.rounds, args.ops)
                    print(table(f"{operation} ({label})", figures), flush=True)
                    print(side_ratios(figures), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
