"""Peers: what a Python user picks today, doing what ``Task.update_state`` does.

Celery's ``Task.update_state(state="PROGRESS", meta=...)`` is
``backend.store_result(task_id, meta, "PROGRESS")``; its key-value backends read the current
result first (to never overwrite a SUCCESS) and then write, so one update is a read plus a
write. Each peer runs against the same emulator as the durastate backend it sits next to:
DynamoDB (same server), S3 (same server, its own bucket), Azure Blob (Azurite's blob service
next to the table service; Celery has no Azure Tables result backend), and
``cache+memory://`` next to memory://.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from durastate.bench.matrix import BackendSpec
from durastate.bench.references import AwsTarget, Reference
from durastate.bench.timing import Op

PEER_BUCKET = "durastate-bench-celery"
PEER_CONTAINER = "durastate-bench-celery"
PEER_TABLE = "durastate_bench_celery"


class CeleryPeer:
    """One Celery app whose result backend is configured by ``backend_url`` and ``conf``."""

    def __init__(self, backend_url: str, conf: dict[str, Any] | None = None) -> None:
        from celery import Celery

        self.app = Celery("durastate-bench", set_as_current=False)
        self.app.conf.update(result_backend=backend_url, result_serializer="json",
                             accept_content=["json"], **(conf or {}))
        self.backend = self.app.backend

    def op(self, values: tuple[Any, Any], key: str) -> Op:
        store_result, task_id = self.backend.store_result, f"{key}-{uuid.uuid4()}"
        store_result(task_id, values[1], "PROGRESS")

        def update_state(i: int) -> None:
            store_result(task_id, values[i & 1], "PROGRESS")

        return update_state

    def close(self) -> None:
        self.app.close()


def _dynamodb_peer(target: AwsTarget) -> CeleryPeer:
    if target.endpoint_url:
        parts = urlsplit(target.endpoint_url)
        where = f"{parts.hostname}:{parts.port or 80}"
    else:
        where = target.region
    creds = f"{target.access_key}:{target.secret_key}@" if target.access_key else ""
    return CeleryPeer(f"dynamodb://{creds}{where}/{PEER_TABLE}",
                      {"dynamodb_endpoint_url": target.endpoint_url} if target.endpoint_url
                      else {})


def _s3_peer(target: AwsTarget) -> CeleryPeer:
    import boto3

    client = boto3.client("s3", **target.client_kwargs())
    if PEER_BUCKET not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket=PEER_BUCKET)
    client.close()
    return CeleryPeer("s3://", {
        "s3_bucket": PEER_BUCKET, "s3_base_path": "results/",
        "s3_endpoint_url": target.endpoint_url, "s3_region": target.region,
        "s3_access_key_id": target.access_key, "s3_secret_access_key": target.secret_key,
    })


def _azure_blob_peer(connection_string: str) -> CeleryPeer:
    return CeleryPeer(f"azureblockblob://{connection_string}",
                      {"azureblockblob_container_name": PEER_CONTAINER})


def peers_for(spec: BackendSpec) -> list[Reference]:
    """Celery's result backend on the same service as ``spec``; none for other schemes."""
    scheme = spec.scheme
    if scheme in ("redis", "rediss", "unix"):
        from durastate.bench.redis_references import redis_peers

        return redis_peers(spec)
    if scheme == "memory":
        return [Reference("peer", "celery store_result (cache+memory://)", "celery-json",
                          "update_lww", lambda: CeleryPeer("cache+memory://"))]
    if scheme == "azure-tables":
        conn = str(spec.options.get("connection_string") or "")
        return [Reference("peer", "celery store_result (azureblockblob)", "celery-json",
                          "update_lww", lambda: _azure_blob_peer(conn),
                          note="Celery has no Azure Tables backend: its Azure Blob backend "
                               "on the same Azurite")]
    target = AwsTarget.from_options(spec.url, spec.options)
    if scheme == "dynamodb":
        return [Reference("peer", "celery store_result (dynamodb)", "celery-json",
                          "update_lww", lambda: _dynamodb_peer(target))]
    if scheme == "s3":
        return [Reference("peer", "celery store_result (s3)", "celery-json", "update_lww",
                          lambda: _s3_peer(target))]
    return []
