"""azure-tables:// against the official SDKs: client CPU of an update, a read and a query page.

    .venv/bin/python benchmarks/azure_tables_store.py --rounds 20 --ops 20

Starts Azurite on a free loopback port (stopped when done). In one run against that one
emulator, interleaved rounds (every contender runs ``--ops`` calls per round, in rotating
order), client CPU as ``thread_time`` of this thread (the async loop runs in it too), and
each ratio the median over rounds of contender / the sync SDK's equivalent call in the same
round, so the load of other processes cancels out as far as it can.

- update: ``StateStore.set_custom_status(etag=...)`` (sync) and ``AsyncStateStore`` (awaited
  one at a time) against azure-data-tables ``TableClient.update_entity`` MERGE + If-Match
  (sync and ``aio``), and the lean limit: one hand-signed MERGE over ``HttpDriver``;
- read: ``StateStore.get_instance`` against ``TableClient.get_entity`` with the same columns;
- query page: ``StateStore.query(page_size=20)`` against the first page of
  ``TableClient.query_entities`` with the same filter, columns and page size.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.data.tables import TableClient, UpdateMode
from azure.data.tables.aio import TableClient as AioTableClient

from durastate import AsyncStateStore, open_store
from durastate.backends.azure_tables import partition_key
from durastate.backends.azure_tables.layout import SELECT_LIGHT
from durastate.backends.azure_tables.queries import odata_filter
from durastate.core.records import InstanceQuery
from durastate.testing import emulators
from durastate.transport import HttpDriver, HttpRequest, TransportOptions
from durastate.transport.aio import AsyncHttpDriver
from durastate.transport.azure_auth import AccountKey, sign_table_shared_key

VALUES = ({"stage": "resize", "done": 41, "eta_s": 12.5}, {"stage": "resize", "done": 42})
PAGE = 20

#: The ratios printed besides the table: the async store against the ``aio`` SDK and
#: against the sync store, each store against its lean limit, the two drivers' own ratio.
PAIRS = (
    ("durastate async set_custom_status", "sdk aio update_entity"),
    ("durastate async set_custom_status", "durastate sync set_custom_status"),
    ("durastate sync set_custom_status", "lean limit (signed MERGE, HttpDriver)"),
    ("durastate async set_custom_status", "lean limit async (AsyncHttpDriver)"),
    ("lean limit async (AsyncHttpDriver)", "lean limit (signed MERGE, HttpDriver)"),
)

#: ``run(count)`` makes ``count`` calls.
Run = Callable[[int], None]


@dataclass
class Figures:
    cpu_us: list[float] = field(default_factory=list)
    wall_us: list[float] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)


class Bench:
    """One table on Azurite, a durastate store on it, and the SDK's clients of it."""

    def __init__(self, azurite: emulators.RunningEmulator) -> None:
        self.connection_string = emulators.azurite_connection_string(azurite)
        self.endpoint = azurite.endpoints["table"]
        self.table = "bench" + uuid.uuid4().hex[:10]
        self.store = open_store(
            f"azure-tables://{self.table}", connection_string=self.connection_string
        )
        self.async_store = AsyncStateStore(self.store)
        self.runner = asyncio.Runner()
        self.sdk = TableClient.from_connection_string(self.connection_string, self.table)
        self.aio_sdk = AioTableClient.from_connection_string(self.connection_string, self.table)
        self.closers: list[Callable[[], Coroutine[Any, Any, None]]] = []
        for number in range(PAGE * 2):
            self.store.create_instance(f"q-{number:03}", name="wf", custom_status=VALUES[0])

    def close(self) -> None:
        for closer in self.closers:
            self.runner.run(closer())
        self.runner.run(self.aio_sdk.close())
        self.runner.run(self.async_store.close())
        self.runner.close()
        self.sdk.close()

    # -- updates ------------------------------------------------------------------------

    def _instance(self) -> tuple[str, str]:
        instance_id = "u-" + uuid.uuid4().hex
        return instance_id, self.store.create_instance(instance_id, name="wf", custom_status=0)

    def durastate_sync(self) -> Run:
        instance_id, first = self._instance()
        etag = [first]
        store = self.store

        def run(count: int) -> None:
            for i in range(count):
                etag[0] = store.set_custom_status(instance_id, VALUES[i & 1], etag=etag[0])

        return run

    def durastate_async(self) -> Run:
        instance_id, first = self._instance()
        etag = [first]
        store = self.async_store

        async def batch(count: int) -> None:
            for i in range(count):
                etag[0] = await store.set_custom_status(instance_id, VALUES[i & 1], etag=etag[0])

        return lambda count: self.runner.run(batch(count))

    def _sdk_entity(self, instance_id: str, i: int) -> dict[str, Any]:
        return {
            "PartitionKey": partition_key(instance_id),
            "RowKey": "",
            "CustomStatus": orjson.dumps(VALUES[i & 1]).decode(),
        }

    def sdk_update(self) -> Run:
        instance_id, first = self._instance()
        etag = [first]

        def run(count: int) -> None:
            for i in range(count):
                etag[0] = self.sdk.update_entity(
                    self._sdk_entity(instance_id, i),
                    mode=UpdateMode.MERGE,
                    etag=etag[0],
                    match_condition=MatchConditions.IfNotModified,
                )["etag"]

        return run

    def aio_sdk_update(self) -> Run:
        instance_id, first = self._instance()
        etag = [first]

        async def batch(count: int) -> None:
            for i in range(count):
                answer = await self.aio_sdk.update_entity(
                    self._sdk_entity(instance_id, i),
                    mode=UpdateMode.MERGE,
                    etag=etag[0],
                    match_condition=MatchConditions.IfNotModified,
                )
                etag[0] = answer["etag"]

        return lambda count: self.runner.run(batch(count))

    def _lean_merge(self, instance_id: str, etag: str, i: int) -> HttpRequest:
        """A hand-built, signed MERGE of the status column: the physical limit."""
        key = AccountKey(emulators.AZURITE_ACCOUNT, emulators.AZURITE_KEY)
        request = HttpRequest.to(
            "PATCH",
            self.endpoint,
            f"/{self.table}(PartitionKey='{partition_key(instance_id)}',RowKey='')",
            headers={
                "content-type": "application/json",
                "accept": "application/json",
                "dataserviceversion": "3.0",
                "x-ms-version": "2019-02-02",
                "if-match": etag,
            },
            body=orjson.dumps({"CustomStatus": orjson.dumps(VALUES[i & 1]).decode()}),
        )
        return sign_table_shared_key(request, key)

    def lean_limit(self) -> Run:
        instance_id, first = self._instance()
        etag = [first]
        driver = HttpDriver(TransportOptions())

        def run(count: int) -> None:
            for i in range(count):
                etag[0] = driver.send(self._lean_merge(instance_id, etag[0], i)).headers["etag"]

        return run

    def lean_limit_async(self) -> Run:
        instance_id, first = self._instance()
        etag = [first]
        driver = AsyncHttpDriver(TransportOptions())
        self.closers.append(driver.close)

        async def batch(count: int) -> None:
            for i in range(count):
                answer = await driver.send(self._lean_merge(instance_id, etag[0], i))
                etag[0] = answer.headers["etag"]

        return lambda count: self.runner.run(batch(count))

    # -- reads and pages ----------------------------------------------------------------

    def durastate_read(self) -> Run:
        def run(count: int) -> None:
            for _ in range(count):
                self.store.get_instance("q-001")

        return run

    def sdk_read(self) -> Run:
        key = partition_key("q-001")

        def run(count: int) -> None:
            for _ in range(count):
                self.sdk.get_entity(key, "", select=SELECT_LIGHT)

        return run

    def durastate_page(self) -> Run:
        def run(count: int) -> None:
            for _ in range(count):
                self.store.query(page_size=PAGE)

        return run

    def sdk_page(self) -> Run:
        odata = odata_filter(InstanceQuery(page_size=PAGE))

        def run(count: int) -> None:
            for _ in range(count):
                pages = self.sdk.query_entities(
                    odata, select=SELECT_LIGHT, results_per_page=PAGE
                ).by_page()
                list(next(pages))

        return run


def measure(contenders: dict[str, Run], rounds: int, ops: int) -> dict[str, Figures]:
    """Interleaved rounds; the first contender is the baseline of the ratios."""
    for run in contenders.values():
        run(max(ops // 2, 3))  # warm-up: connections, caches, imports
    names = list(contenders)
    figures = {name: Figures() for name in names}
    for round_number in range(rounds):
        shift = round_number % len(names)
        cpu_of_round: dict[str, float] = {}
        for name in names[shift:] + names[:shift]:
            wall0, cpu0 = time.perf_counter_ns(), time.thread_time_ns()
            contenders[name](ops)
            cpu = (time.thread_time_ns() - cpu0) / ops / 1000
            figures[name].wall_us.append((time.perf_counter_ns() - wall0) / ops / 1000)
            figures[name].cpu_us.append(cpu)
            cpu_of_round[name] = cpu
        for name in names:
            figures[name].ratio.append(cpu_of_round[name] / cpu_of_round[names[0]])
    return figures


def pair(figures: dict[str, Figures], name: str, baseline: str) -> str:
    """``name`` against ``baseline``: the median of their per-round CPU ratios."""
    ratios = [a / b for a, b in zip(figures[name].cpu_us, figures[baseline].cpu_us, strict=True)]
    return f"- {name} / {baseline}: {statistics.median(ratios):.2f}"


def report(title: str, figures: dict[str, Figures]) -> str:
    baseline = next(iter(figures))
    lines = [
        f"\n### {title}\n",
        f"| contender | client CPU µs | wall µs | CPU ratio to {baseline} |",
        "|---|---|---|---|",
    ]
    for name, figure in figures.items():
        lines.append(
            f"| {name} | {statistics.median(figure.cpu_us):,.0f} | "
            f"{statistics.median(figure.wall_us):,.0f} | {statistics.median(figure.ratio):.2f} |"
        )
    return "\n".join(lines)


def profile(face: str, count: int = 1000) -> int:
    """A cProfile of ``count`` updates: where a sync or async update spends its time."""
    print(f"# cProfile of {count} {face} set_custom_status(etag=...) on Azurite, one at a time")
    print(f"# command: {' '.join(sys.argv)}  ('poll' is waiting for the emulator)")
    with emulators.running(emulators.start_azurite()) as azurite:
        bench = Bench(azurite)
        try:
            run = bench.durastate_async() if face == "async" else bench.durastate_sync()
            run(50)
            profiler = cProfile.Profile()
            profiler.enable()
            run(count)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
        finally:
            bench.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ops", type=int, default=20, help="calls per contender per round")
    parser.add_argument(
        "--profile",
        choices=["sync", "async"],
        help="print a cProfile (cumulative) of 1000 updates of that store instead",
    )
    args = parser.parse_args(argv)
    if args.profile:
        return profile(args.profile)
    print(f"# azure-tables vs the SDKs: {args.rounds} interleaved rounds x {args.ops} calls")
    print(f"command: {' '.join(sys.argv)}")
    with emulators.running(emulators.start_azurite()) as azurite:
        bench = Bench(azurite)
        try:
            updates = {
                "sdk update_entity MERGE If-Match": bench.sdk_update(),
                "durastate sync set_custom_status": bench.durastate_sync(),
                "durastate async set_custom_status": bench.durastate_async(),
                "sdk aio update_entity": bench.aio_sdk_update(),
                "lean limit (signed MERGE, HttpDriver)": bench.lean_limit(),
                "lean limit async (AsyncHttpDriver)": bench.lean_limit_async(),
            }
            figures = measure(updates, args.rounds, args.ops)
            print(report("update (Azurite)", figures))
            print("\nCPU per update, medians of per-round ratios:\n")
            for name, baseline in PAIRS:
                print(pair(figures, name, baseline))
            reads = {
                "sdk get_entity": bench.sdk_read(),
                "durastate get_instance": bench.durastate_read(),
            }
            print(report("read (Azurite)", measure(reads, args.rounds, args.ops)), flush=True)
            pages = {
                f"sdk query_entities, first page of {PAGE}": bench.sdk_page(),
                f"durastate query(page_size={PAGE})": bench.durastate_page(),
            }
            print(report("query page", measure(pages, args.rounds, max(args.ops // 4, 3))))
        finally:
            bench.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
