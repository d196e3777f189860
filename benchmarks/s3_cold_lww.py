"""S3 last-write-wins from a cold store: requests on the wire and client CPU per write.

A "cold" write is the first custom-status update without an etag that a store makes for an
instance another store created (a new process, say): the store has no etag for it yet. The
"warm" write is the next update of the same instance through the same store. Requests are
counted at the bottom of the HTTP stack with the harness's own counter
(`durastate.bench.counting.count_http`: every request that goes on the wire, retries
included); client CPU is thread CPU. The references, timed in the same rounds on the same
moto_server (stock): one hand-signed ``PUT`` with ``If-Match`` over durastate's own transport
(the harness's lean S3 anchor: the least a conditional write can cost here) and boto3's
``put_object``.

Run: ``.venv/bin/python benchmarks/s3_cold_lww.py [ROUNDS] [WRITES_PER_ROUND]``
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from durastate import StateStore, open_store
from durastate.bench.counting import count_http
from durastate.bench.lean_anchors import LeanS3
from durastate.bench.references import AwsTarget
from durastate.testing import emulators

CREDS: dict[str, Any] = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region": "us-east-1",
}
STATUS = {"percent": 42, "stage": "resize", "eta_s": 12, "note": "x" * 90}


def _each(ids: list[str], write: Callable[[str], object]) -> tuple[float, float]:
    """(requests, thread CPU µs) per call of ``write`` over ``ids``."""
    with count_http() as http:
        start = time.thread_time_ns()
        for instance_id in ids:
            write(instance_id)
        spent = time.thread_time_ns() - start
    return http.requests / len(ids), spent / len(ids) / 1e3


def _round(maker: StateStore, url: str, options: dict[str, Any], lean: LeanS3,
           ids: list[str]) -> dict[str, tuple[float, float]]:
    """One round: the instances created, a cold store's two writes to each, the references."""
    for instance_id in ids:
        maker.create_instance(instance_id, name="wf", runtime_status="running")
    put_if_match = lean.op((STATUS, STATUS), f"raw/{ids[0]}")  # one PUT to learn its etag
    boto, bucket = maker.backend.client, maker.backend.bucket  # type: ignore[attr-defined]
    body = orjson.dumps(STATUS)
    with open_store(url, **options) as cold:
        cold.get_instance("warm-up")  # the bucket check of first use is not a write
        return {
            "durastate, cold": _each(ids, lambda i: cold.set_custom_status(i, STATUS)),
            "durastate, warm": _each(
                ids, lambda i: cold.set_custom_status(i, {**STATUS, "percent": 43})),
            "hand-signed PUT If-Match (transport)": _each(ids, lambda i: put_if_match(len(i))),
            "boto3 put_object": _each(
                ids, lambda i: boto.put_object(Bucket=bucket, Key=f"boto/{i}", Body=body)),
        }


def main(rounds: int, writes: int) -> None:
    figures: dict[str, list[tuple[float, float]]] = {}
    with emulators.running(emulators.start_moto(serialized=False)) as moto:
        url = f"s3://ds-bench-{uuid.uuid4().hex[:8]}/cold"
        options = {"endpoint_url": moto.endpoint, **CREDS}
        with open_store(url, **options) as maker:
            lean = LeanS3(AwsTarget.from_options(url, options), read=False)
            try:
                for round_no in range(rounds):
                    ids = [f"r{round_no}-{n}" for n in range(writes)]
                    for name, sample in _round(maker, url, options, lean, ids).items():
                        figures.setdefault(name, []).append(sample)
            finally:
                lean.close()
    print(f"S3 last-write-wins, {rounds} rounds x {writes} writes, 150 B status, moto_server")
    cold_cpu = statistics.median(cpu for _, cpu in figures["durastate, cold"])
    for name, samples in figures.items():
        requests = statistics.median(count for count, _ in samples)
        cpu = statistics.median(cpu for _, cpu in samples)
        print(f"  {name:38s} {requests:4.1f} requests, {cpu:6.0f} us client CPU "
              f"(cold write: {cold_cpu / cpu:.2f}x this)")


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 7, int(sys.argv[2]) if len(sys.argv) > 2 else 40
    )
