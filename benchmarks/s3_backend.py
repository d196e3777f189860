"""The rebuilt S3 backend against boto3, side by side in one run on one moto_server.

Client CPU (``thread_time`` of the calling thread; the async loop runs in it) and wall time
per call, interleaved rounds, the ratio to the SDK being the median of per-round ratios:

- a custom-status update carrying its etag: ``StateStore.set_custom_status`` (sync) and
  ``AsyncStateStore.set_custom_status`` (one at a time) against boto3 ``put_object`` with
  ``IfMatch`` (same ~60-byte JSON), and the lean limits (a signed PUT over ``HttpDriver``,
  and over ``AsyncHttpDriver``);
- ``get_instance``: the store against boto3's two ``get_object`` of the same objects
  (the record's first 8 KiB, the status object);
- a query page of 10 instances: the backend's ``query`` against boto3's ``list_objects_v2``
  and the same 20 ``get_object`` calls.

Run from the checkout: ``.venv/bin/python -m benchmarks.s3_backend [--rounds 15] [--ops 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import uuid
from typing import Any

import orjson
from benchmarks.lean_clients import (
    AWS_KEYS,
    STATUS,
    Contender,
    LeanAsync,
    LeanSync,
    boto_client,
    interleave,
    s3_service,
    table,
)

from durastate.core.async_store import AsyncStateStore
from durastate.core.records import InstanceQuery
from durastate.core.store import StateStore
from durastate.opening import open_store
from durastate.testing import emulators

QUERY_PAGE = 10


def _store(endpoint: str, bucket: str) -> StateStore:
    return open_store(
        f"s3://{bucket}/bench",
        endpoint_url=endpoint,
        region="us-east-1",
        aws_access_key_id=AWS_KEYS.access_key,
        aws_secret_access_key=AWS_KEYS.secret_key,
    )


class StoreWrites:
    """``set_custom_status`` carrying the etag from write to write."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.id = uuid.uuid4().hex
        self.etag = store.create_instance(self.id, name="bench")

    def run(self, count: int) -> None:
        store, instance_id = self.store, self.id
        for i in range(count):
            self.etag = store.set_custom_status(instance_id, STATUS[i & 1], etag=self.etag)

    def close(self) -> None:
        pass


class AsyncStoreWrites:
    """The same from coroutines, awaited one by one in a private, running loop."""

    def __init__(self, store: StateStore) -> None:
        self.runner = asyncio.Runner()
        self.store = AsyncStateStore(store)
        self.id = uuid.uuid4().hex
        self.etag = store.create_instance(self.id, name="bench")

    async def _batch(self, count: int) -> None:
        store, instance_id = self.store, self.id
        for i in range(count):
            self.etag = await store.set_custom_status(instance_id, STATUS[i & 1], etag=self.etag)

    def run(self, count: int) -> None:
        self.runner.run(self._batch(count))

    def close(self) -> None:
        self.runner.run(self.store.close())
        self.runner.close()


class StoreReads:
    def __init__(self, store: StateStore, instance_id: str) -> None:
        self.store, self.id = store, instance_id

    def run(self, count: int) -> None:
        for _ in range(count):
            self.store.get_instance(self.id)

    def close(self) -> None:
        pass


class SdkReads:
    """What ``get_instance`` asks S3 for, through boto3: the record's head, the status."""

    def __init__(self, client: Any, bucket: str, instance_id: str) -> None:
        self.client, self.bucket, self.id = client, bucket, instance_id

    def run(self, count: int) -> None:
        client, bucket = self.client, self.bucket
        for _ in range(count):
            client.get_object(Bucket=bucket, Key=f"bench/records/{self.id}", Range="bytes=0-8191")[
                "Body"
            ].read()
            client.get_object(Bucket=bucket, Key=f"bench/status/{self.id}")["Body"].read()

    def close(self) -> None:
        pass


class StorePages:
    def __init__(self, store: StateStore) -> None:
        self.backend = store.backend

    def run(self, count: int) -> None:
        for _ in range(count):
            page = self.backend.query(InstanceQuery(prefix="q-", page_size=QUERY_PAGE))
            assert len(page.items) == QUERY_PAGE

    def close(self) -> None:
        pass


class SdkPages:
    """A page through boto3: the listing, then each record's head and status object."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client, self.bucket = client, bucket

    def run(self, count: int) -> None:
        client, bucket = self.client, self.bucket
        for _ in range(count):
            listing = client.list_objects_v2(Bucket=bucket, Prefix="bench/records/q-", MaxKeys=1000)
            for item in listing["Contents"][:QUERY_PAGE]:
                key = item["Key"]
                body = client.get_object(Bucket=bucket, Key=key, Range="bytes=0-8191")["Body"]
                orjson.loads(body.read().partition(b"\n")[0])
                status_key = key.replace("/records/", "/status/", 1)
                client.get_object(Bucket=bucket, Key=status_key)["Body"].read()

    def close(self) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ops", type=int, default=20, help="calls per contender per round")
    args = parser.parse_args(argv)
    print(f"# S3 backend vs boto3, command: {' '.join(sys.argv)}")
    with emulators.running(emulators.start_moto(serialized=False)) as moto:
        service = s3_service(moto)
        bucket = "ds-bench-" + uuid.uuid4().hex[:8]
        store = _store(moto.endpoint, bucket)
        writes: dict[str, Contender] = {
            "sdk": service.sdk(False),
            "lean-sync": LeanSync(service),
            "lean-async": LeanAsync(service),
            "durastate-sync": StoreWrites(store),
            "durastate-async": AsyncStoreWrites(_store(moto.endpoint, bucket)),
        }
        figures = interleave(writes, args.rounds, args.ops)
        print(table("set_custom_status with its etag vs boto3 put_object IfMatch", figures))
        async_to_sync = statistics.median(
            a / s
            for a, s in zip(
                figures["durastate-async"].cpu_us, figures["durastate-sync"].cpu_us, strict=True
            )
        )
        print(
            f"\nasync store / sync store, client CPU (median of per-round ratios): "
            f"{async_to_sync:.2f}"
        )
        client = boto_client("s3", moto.endpoint)
        store.create_instance("r-1", name="bench", input={"n": 1}, custom_status={"p": 1})
        reads: dict[str, Contender] = {
            "sdk": SdkReads(client, bucket, "r-1"),
            "durastate": StoreReads(store, "r-1"),
        }
        print(
            table(
                "get_instance vs two boto3 get_object",
                interleave(reads, args.rounds, args.ops),
            )
        )
        for n in range(QUERY_PAGE):
            store.create_instance(f"q-{n:02d}", name="bench", custom_status={"p": n})
        pages: dict[str, Contender] = {
            "sdk": SdkPages(client, bucket),
            "durastate": StorePages(store),
        }
        ops = max(args.ops // 4, 2)
        print(table(f"a query page of {QUERY_PAGE}", interleave(pages, args.rounds, ops)))
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
