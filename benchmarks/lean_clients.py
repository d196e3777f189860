"""Client CPU of one small conditional write: the official SDKs against durastate.transport.

    .venv/bin/python benchmarks/lean_clients.py                 # all services, 15 rounds
    .venv/bin/python benchmarks/lean_clients.py --rounds 30 --ops 20 --only azure

Starts Azurite, dynalite and moto_server (stock, multi-threaded) on free loopback ports and
stops them when done. For every service, each contender writes the same small custom status
with a condition (Azure MERGE + If-Match, DynamoDB UpdateItem + ConditionExpression on a
version, S3 PutObject + If-Match), carrying its etag/version from write to write:

- ``sdk``: the official sync SDK as a user builds it (azure-data-tables ``update_entity``;
  boto3 ``update_item`` / ``put_object(IfMatch=...)``);
- ``sdk-tuned``: the same with durastate's settings today (Azure: no per-call proxy lookup;
  AWS: no client-side parameter validation);
- ``lean-sync``: hand-built request + orjson + our signing + ``HttpDriver`` (http.client);
- ``lean-async``: the same requests through ``AsyncHttpDriver`` (asyncio; aiohttp until
  2026-11-29, see ``benchmarks/async_drivers.py``), awaited one by one
  in a running loop;
- ``lean-urllib3``: the same signed requests through a urllib3 pool (no retry policy): the
  alternative sync transport, to choose between http.client and urllib3.

Rounds are interleaved (every contender runs ``--ops`` writes per round, in rotating order),
CPU is ``thread_time`` of this thread (the emulators are other processes; the async loop runs
in this thread), and the ratio is the median over rounds of contender / ``sdk`` in the same
round, so load from other processes cancels out as far as it can.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import orjson

from durastate.testing import emulators
from durastate.transport import HttpDriver, HttpRequest, TransportOptions
from durastate.transport.aio import AsyncHttpDriver
from durastate.transport.aws_sigv4 import FrozenCredentials, sign_sigv4
from durastate.transport.azure_auth import AccountKey, sign_table_shared_key

AWS_KEYS = FrozenCredentials("bench", "bench-secret")
STATUS = ({"stage": "resize", "done": 41, "eta_s": 12.5}, {"stage": "resize", "done": 42})

#: One batch of writes: ``run(count)`` performs ``count`` conditional writes.
Batch = Callable[[int], None]


class Contender(Protocol):
    def run(self, count: int) -> None: ...

    def close(self) -> None: ...


def boto_client(service: str, endpoint: str, *, validate: bool = True) -> Any:
    """A boto3 client for the emulator (``validate=False``: durastate's setting today)."""
    import boto3
    import botocore.config

    return cast(Any, boto3).client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=AWS_KEYS.access_key,
        aws_secret_access_key=AWS_KEYS.secret_key,
        config=botocore.config.Config(parameter_validation=validate),
    )


# -- request builders: what a backend core will do ------------------------------------------


def azure_merge(
    endpoint: str, key: AccountKey, table: str, pk: str, etag: str, i: int
) -> HttpRequest:
    body = orjson.dumps({"CustomStatus": orjson.dumps(STATUS[i & 1]).decode()})
    request = HttpRequest.to(
        "MERGE",
        endpoint,
        f"/{table}(PartitionKey='{pk}',RowKey='')",
        headers={
            "x-ms-version": "2019-02-02",
            "dataserviceversion": "3.0",
            "content-type": "application/json",
            "accept": "application/json;odata=nometadata",
            "if-match": etag,
        },
        body=body,
    )
    return sign_table_shared_key(request, key)


def dynamodb_update(endpoint: str, table: str, pk: str, version: int, i: int) -> HttpRequest:
    body = orjson.dumps(
        {
            "TableName": table,
            "Key": {"pk": {"S": pk}},
            "UpdateExpression": "SET cs = :cs, ver = :new",
            "ConditionExpression": "ver = :old",
            "ExpressionAttributeValues": {
                ":cs": {"S": orjson.dumps(STATUS[i & 1]).decode()},
                ":new": {"N": str(version + 1)},
                ":old": {"N": str(version)},
            },
        }
    )
    request = HttpRequest.to(
        "POST",
        endpoint,
        "/",
        headers={
            "content-type": "application/x-amz-json-1.0",
            "x-amz-target": "DynamoDB_20120810.UpdateItem",
        },
        body=body,
    )
    return sign_sigv4(request, AWS_KEYS, "us-east-1", "dynamodb")


def s3_put(endpoint: str, bucket: str, key: str, etag: str, i: int) -> HttpRequest:
    request = HttpRequest.to(
        "PUT",
        endpoint,
        f"/{bucket}/{key}",
        headers={"content-type": "application/json", "if-match": etag},
        body=orjson.dumps(STATUS[i & 1]),
    )
    return sign_sigv4(request, AWS_KEYS, "us-east-1", "s3", s3=True)


# -- one service: setup and the write each contender repeats ---------------------------------


@dataclass
class Service:
    """How to make the next conditional request from the last answer, per service."""

    name: str
    endpoint: str
    first_state: Callable[[], str]
    request: Callable[[str, int], HttpRequest]
    next_state: Callable[[str, int, int, dict[str, str]], str]
    sdk: Callable[[bool], Contender]


#: What a contender reads from an answer: the status and the lower-case headers.
Answer = tuple[int, dict[str, str]]


class SyncLean:
    """Repeats the service's conditional write; subclasses say how one request is sent."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.state = service.first_state()

    def exchange(self, request: HttpRequest) -> Answer:
        raise NotImplementedError

    def run(self, count: int) -> None:
        service = self.service
        for i in range(count):
            status, headers = self.exchange(service.request(self.state, i))
            self.state = service.next_state(self.state, i, status, headers)


class AsyncLean:
    """The same from coroutines, awaited one by one in a private, running loop."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.runner = asyncio.Runner()
        self.state = service.first_state()

    async def exchange(self, request: HttpRequest) -> Answer:
        raise NotImplementedError

    async def _batch(self, count: int) -> None:
        service = self.service
        for i in range(count):
            status, headers = await self.exchange(service.request(self.state, i))
            self.state = service.next_state(self.state, i, status, headers)

    def run(self, count: int) -> None:
        self.runner.run(self._batch(count))


class LeanSync(SyncLean):
    def __init__(self, service: Service) -> None:
        super().__init__(service)
        self.driver = HttpDriver(TransportOptions())

    def exchange(self, request: HttpRequest) -> Answer:
        response = self.driver.send(request)
        return response.status, dict(response.headers)

    def close(self) -> None:
        self.driver.close()


class LeanAsync(AsyncLean):
    """Over durastate's async driver, or any driver with the same ``send`` and ``close``."""

    def __init__(self, service: Service, driver: Any = None) -> None:
        super().__init__(service)
        self.driver = driver if driver is not None else AsyncHttpDriver(TransportOptions())

    async def exchange(self, request: HttpRequest) -> Answer:
        response = await self.driver.send(request)
        return response.status, dict(response.headers)

    def close(self) -> None:
        self.runner.run(self.driver.close())
        self.runner.close()


class LeanHttpx(AsyncLean):
    """The same requests through ``httpx.AsyncClient`` (``--httpx``; httpx is not a
    dependency of durastate: ``pip install httpx`` to measure it)."""

    def __init__(self, service: Service) -> None:
        super().__init__(service)
        httpx: Any = importlib.import_module("httpx")
        self.client = self.runner.run(self._client(httpx))

    @staticmethod
    async def _client(httpx: Any) -> Any:
        return httpx.AsyncClient(trust_env=False)

    async def exchange(self, request: HttpRequest) -> Answer:
        answer = await self.client.request(
            request.method,
            request.url,
            content=request.body or None,
            headers=dict(request.headers),
        )
        return answer.status_code, {k.lower(): v for k, v in answer.headers.items()}

    def close(self) -> None:
        self.runner.run(self.client.aclose())
        self.runner.close()


class LeanUrllib3(SyncLean):
    """The same signed requests through urllib3's pool, retries off (no policy at all)."""

    def __init__(self, service: Service) -> None:
        import urllib3

        super().__init__(service)
        self.pool = urllib3.PoolManager(maxsize=10, retries=False)

    def exchange(self, request: HttpRequest) -> Answer:
        answer = self.pool.urlopen(
            request.method,
            request.url,
            body=request.body or None,
            headers=dict(request.headers),
            retries=False,
            redirect=False,
        )
        return answer.status, {k.lower(): v for k, v in answer.headers.items()}

    def close(self) -> None:
        self.pool.clear()


def _checked(status: int, expected: int, what: str) -> None:
    if status != expected:
        raise RuntimeError(f"{what}: HTTP {status}, expected {expected}")


def azure_service(azurite: emulators.RunningEmulator) -> Service:
    from azure.core import MatchConditions
    from azure.core.pipeline.transport import RequestsTransport
    from azure.data.tables import TableClient, UpdateMode

    endpoint = azurite.endpoints["table"]
    key = AccountKey(emulators.AZURITE_ACCOUNT, emulators.AZURITE_KEY)
    connection_string = emulators.azurite_connection_string(azurite)
    table = "lean" + uuid.uuid4().hex[:10]
    with TableClient.from_connection_string(connection_string, table) as client:
        client.create_table()

    def first_state() -> str:
        pk = uuid.uuid4().hex
        with TableClient.from_connection_string(connection_string, table) as client:
            etag = client.upsert_entity({"PartitionKey": pk, "RowKey": "", "CustomStatus": "{}"})
        return f"{pk}|{etag['etag']}"

    def request(state: str, i: int) -> HttpRequest:
        pk, etag = state.split("|", 1)
        return azure_merge(endpoint, key, table, pk, etag, i)

    def next_state(state: str, i: int, status: int, headers: dict[str, str]) -> str:
        _checked(status, 204, "Azure MERGE")
        return f"{state.split('|', 1)[0]}|{headers['etag']}"

    class Sdk:
        def __init__(self, tuned: bool) -> None:
            kwargs: dict[str, Any] = {}
            if tuned:
                kwargs["transport"] = RequestsTransport(use_env_settings=False)
            self.client = TableClient.from_connection_string(connection_string, table, **kwargs)
            self.pk, self.etag = first_state().split("|", 1)

        def run(self, count: int) -> None:
            client, pk, dumps = self.client, self.pk, orjson.dumps
            for i in range(count):
                entity = {
                    "PartitionKey": pk,
                    "RowKey": "",
                    "CustomStatus": dumps(STATUS[i & 1]).decode(),
                }
                self.etag = client.update_entity(
                    entity,
                    mode=UpdateMode.MERGE,
                    etag=self.etag,
                    match_condition=MatchConditions.IfNotModified,
                )["etag"]

        def close(self) -> None:
            self.client.close()

    return Service(
        "Azure Tables MERGE + If-Match (Azurite)", endpoint, first_state, request, next_state, Sdk
    )


def dynamodb_service(label: str, endpoint: str) -> Service:
    table = "lean-" + uuid.uuid4().hex[:10]
    admin = boto_client("dynamodb", endpoint)
    admin.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    admin.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1})

    def first_state() -> str:
        pk = uuid.uuid4().hex
        admin.put_item(TableName=table, Item={"pk": {"S": pk}, "ver": {"N": "0"}})
        return f"{pk}|0"

    def request(state: str, i: int) -> HttpRequest:
        pk, version = state.split("|")
        return dynamodb_update(endpoint, table, pk, int(version), i)

    def next_state(state: str, i: int, status: int, headers: dict[str, str]) -> str:
        _checked(status, 200, "DynamoDB UpdateItem")
        pk, version = state.split("|")
        return f"{pk}|{int(version) + 1}"

    class Sdk:
        def __init__(self, tuned: bool) -> None:
            self.client = boto_client("dynamodb", endpoint, validate=not tuned)
            pk, version = first_state().split("|")
            self.pk, self.version = pk, int(version)

        def run(self, count: int) -> None:
            client, dumps = self.client, orjson.dumps
            for i in range(count):
                client.update_item(
                    TableName=table,
                    Key={"pk": {"S": self.pk}},
                    UpdateExpression="SET cs = :cs, ver = :new",
                    ConditionExpression="ver = :old",
                    ExpressionAttributeValues={
                        ":cs": {"S": dumps(STATUS[i & 1]).decode()},
                        ":new": {"N": str(self.version + 1)},
                        ":old": {"N": str(self.version)},
                    },
                )
                self.version += 1

        def close(self) -> None:
            self.client.close()

    return Service(label, endpoint, first_state, request, next_state, Sdk)


def s3_service(moto: emulators.RunningEmulator) -> Service:
    endpoint = moto.endpoint
    bucket = "lean-" + uuid.uuid4().hex[:10]
    admin = boto_client("s3", endpoint)
    admin.create_bucket(Bucket=bucket)

    def first_state() -> str:
        key = f"status/{uuid.uuid4().hex}.json"
        etag = admin.put_object(Bucket=bucket, Key=key, Body=b"{}")["ETag"]
        return f"{key}|{etag}"

    def request(state: str, i: int) -> HttpRequest:
        key, etag = state.split("|", 1)
        return s3_put(endpoint, bucket, key, etag, i)

    def next_state(state: str, i: int, status: int, headers: dict[str, str]) -> str:
        _checked(status, 200, "S3 PutObject")
        return f"{state.split('|', 1)[0]}|{headers['etag']}"

    class Sdk:
        def __init__(self, tuned: bool) -> None:
            self.client = boto_client("s3", endpoint, validate=not tuned)
            self.key, self.etag = first_state().split("|", 1)

        def run(self, count: int) -> None:
            client, dumps = self.client, orjson.dumps
            for i in range(count):
                self.etag = client.put_object(
                    Bucket=bucket,
                    Key=self.key,
                    Body=dumps(STATUS[i & 1]),
                    ContentType="application/json",
                    IfMatch=self.etag,
                )["ETag"]

        def close(self) -> None:
            self.client.close()

    return Service(
        "S3 PutObject + If-Match (moto)", endpoint, first_state, request, next_state, Sdk
    )


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Figures:
    cpu_us: list[float] = field(default_factory=list)
    wall_us: list[float] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)


def contenders(service: Service, with_httpx: bool) -> dict[str, Contender]:
    running: dict[str, Contender] = {
        "sdk": service.sdk(False),
        "sdk-tuned": service.sdk(True),
        "lean-sync": LeanSync(service),
        "lean-async": LeanAsync(service),
        "lean-urllib3": LeanUrllib3(service),
    }
    if with_httpx:
        running["lean-httpx"] = LeanHttpx(service)
    return running


def measure(
    service: Service, rounds: int, ops: int, with_httpx: bool = False
) -> dict[str, Figures]:
    return interleave(contenders(service, with_httpx), rounds, ops)


def interleave(
    running: dict[str, Contender], rounds: int, ops: int, baseline: str = "sdk"
) -> dict[str, Figures]:
    """Runs every contender ``ops`` times per round, in rotating order; CPU and wall per
    op, and the ratio of each contender's CPU to ``baseline``'s in the same round. Closes
    the contenders when done."""
    try:
        for contender in running.values():
            contender.run(max(ops // 2, 3))  # warm-up: connections, caches, imports
        figures = {name: Figures() for name in running}
        names = list(running)
        for round_number in range(rounds):
            shift = round_number % len(names)
            cpu_of_round: dict[str, float] = {}
            for name in names[shift:] + names[:shift]:
                wall0, cpu0 = time.perf_counter_ns(), time.thread_time_ns()
                running[name].run(ops)
                cpu = (time.thread_time_ns() - cpu0) / ops / 1000
                figures[name].wall_us.append((time.perf_counter_ns() - wall0) / ops / 1000)
                figures[name].cpu_us.append(cpu)
                cpu_of_round[name] = cpu
            for name in names:
                figures[name].ratio.append(cpu_of_round[name] / cpu_of_round[baseline])
        return figures
    finally:
        for contender in running.values():
            contender.close()


def report(service: Service, figures: dict[str, Figures]) -> str:
    return table(service.name, figures)


def table(title: str, figures: dict[str, Figures], baseline: str = "sdk") -> str:
    lines = [
        f"\n### {title}\n",
        f"| contender | client CPU µs | wall µs | CPU ratio to {baseline} "
        "(median of per-round ratios) |",
        "|---|---|---|---|",
    ]
    for name, figure in figures.items():
        lines.append(
            f"| {name} | {statistics.median(figure.cpu_us):,.0f} | "
            f"{statistics.median(figure.wall_us):,.0f} | {statistics.median(figure.ratio):.2f} |"
        )
    return "\n".join(lines)


def signing_report(repeat: int = 3000) -> str:
    """CPU per signature of one DynamoDB UpdateItem: ours against botocore's ``SigV4Auth``
    (what a lean client would otherwise borrow), medians of 7 runs."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    unsigned = dynamodb_update("https://dynamodb.us-east-1.amazonaws.com", "t", "pk", 7, 0)
    unsigned = unsigned.with_all_headers(
        {k: v for k, v in unsigned.headers.items() if k in ("content-type", "x-amz-target")}
    )
    botocore_signer = SigV4Auth(Credentials(*AWS_KEYS[:2]), "dynamodb", "us-east-1")

    def ours() -> None:
        sign_sigv4(unsigned, AWS_KEYS, "us-east-1", "dynamodb")

    def botocore() -> None:
        request = AWSRequest(
            method="POST", url=unsigned.url, headers=dict(unsigned.headers), data=unsigned.body
        )
        botocore_signer.add_auth(request)

    lines = [
        "\n### SigV4 signing of one UpdateItem (CPU µs per signature)\n",
        "| signer | µs |",
        "|---|---|",
    ]
    for name, sign in (("durastate.transport.aws_sigv4", ours), ("botocore SigV4Auth", botocore)):
        runs = []
        for _ in range(7):
            cpu0 = time.thread_time_ns()
            for _ in range(repeat):
                sign()
            runs.append((time.thread_time_ns() - cpu0) / repeat / 1000)
        lines.append(f"| {name} | {statistics.median(runs):.1f} |")
    return "\n".join(lines)


@contextlib.contextmanager
def started(only: set[str]) -> Iterator[list[Service]]:
    with contextlib.ExitStack() as stack:
        services: list[Service] = []
        if "azure" in only:
            azurite = stack.enter_context(emulators.running(emulators.start_azurite()))
            services.append(azure_service(azurite))
        if "dynalite" in only:
            dynalite = stack.enter_context(emulators.running(emulators.start_dynalite()))
            services.append(
                dynamodb_service("DynamoDB UpdateItem + condition (dynalite)", dynalite.endpoint)
            )
        if only & {"moto", "s3"}:
            moto = stack.enter_context(emulators.running(emulators.start_moto(serialized=False)))
            if "moto" in only:
                services.append(
                    dynamodb_service("DynamoDB UpdateItem + condition (moto)", moto.endpoint)
                )
            if "s3" in only:
                services.append(s3_service(moto))
        yield services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ops", type=int, default=20, help="writes per contender per round")
    parser.add_argument(
        "--httpx", action="store_true", help="also measure httpx.AsyncClient (pip install httpx)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=["azure", "dynalite", "moto", "s3"],
        help="services to measure (default: all)",
    )
    args = parser.parse_args(argv)
    only = set(args.only or ["azure", "dynalite", "moto", "s3"])
    print(
        f"# lean clients: {args.rounds} interleaved rounds x {args.ops} writes, "
        f"command: {' '.join(sys.argv)}"
    )
    print(signing_report(), flush=True)
    with started(only) as services:
        for service in services:
            print(report(service, measure(service, args.rounds, args.ops, args.httpx)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
