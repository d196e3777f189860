"""Interop with the official SDK on moto_server: boto3 reads what durastate wrote, and
durastate reads (and updates) what boto3 wrote in today's layout (docs/s3.md, "Layout").

The layout is the contract with every earlier version and with people reading the bucket
in the AWS console: the rebuild must not change a byte of it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from durastate.backends.s3 import S3Backend, escape_id
from durastate.core.records import RuntimeStatus
from durastate.core.store import StateStore
from durastate.testing.emulators import RunningEmulator
from tests.test_s3 import CREDS, make_backend

pytestmark = pytest.mark.emulator

T0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)


@pytest.fixture
def backend(moto_server: RunningEmulator) -> Iterator[S3Backend]:
    bucket = f"ds-interop-{uuid.uuid4().hex[:12]}"
    with make_backend(moto_server.endpoint, bucket=bucket, prefix="wf") as created:
        yield created


def _get(backend: S3Backend, key: str) -> tuple[bytes, Any]:
    answer = backend.client.get_object(Bucket=backend.bucket, Key=key)
    return answer["Body"].read(), answer


def test_the_sdk_reads_what_durastate_wrote(backend: S3Backend) -> None:
    store = StateStore(backend, serializer="json", clock=lambda: T0)
    store.create_instance("job/1 é", name="resize", input={"file": "a.png"}, custom_status=0)
    store.set_custom_status("job/1 é", {"percent": 42})
    etag = store.set_runtime_status("job/1 é", RuntimeStatus.COMPLETED, output={"ok": True})

    listed = backend.client.list_objects_v2(Bucket=backend.bucket, Prefix="wf/")
    keys = sorted(item["Key"] for item in listed["Contents"])
    escaped = escape_id("job/1 é")
    assert escaped == "job%2F1 é"
    assert keys == [f"wf/records/{escaped}", f"wf/status/{escaped}"]

    body, _ = _get(backend, f"wf/records/{escaped}")
    line, _, rest = body.partition(b"\n")
    header = json.loads(line)
    assert (header["v"], header["id"], header["name"]) == (1, "job/1 é", "resize")
    assert header["created"] == T0.isoformat()
    sizes = [header[field][1] if header[field] else 0 for field in ("cs", "in", "out")]
    assert len(rest) == sum(sizes)
    assert json.loads(rest[sizes[0] : sizes[0] + sizes[1]]) == {"file": "a.png"}
    assert json.loads(rest[sizes[0] + sizes[1] :]) == {"ok": True}
    assert header["rs"] == "completed"

    body, answer = _get(backend, f"wf/status/{escaped}")
    first, _, data = body.partition(b"\n")
    magic, run, ver, write, encoding = first.decode().split(" ")
    assert (magic, run, encoding) == ("ds2", header["run"], "json")
    assert json.loads(data) == {"percent": 42}
    assert answer["Metadata"]["w"] == write
    assert answer["Metadata"]["cs-updated"] == T0.isoformat()
    assert etag == f"{run}.{ver}.{write}.{answer['ETag'].strip(chr(34))}"


def test_durastate_reads_and_updates_what_the_sdk_wrote(backend: S3Backend) -> None:
    """Objects put by boto3 exactly as an earlier durastate wrote them (a record without
    ``ver``, as before the record carried it): read, updated with and without an etag."""
    client, bucket = backend.client, backend.bucket
    backend._ready()
    header = {
        "v": 1,
        "id": "legacy-1",
        "run": "a1b2c3",
        "name": "wf",
        "rs": "running",
        "created": T0.isoformat(),
        "updated": T0.isoformat(),
        "cs": ["json", 3],
        "csu": T0.isoformat(),
        "in": ["json", 8],
        "out": None,
    }
    record = json.dumps(header, separators=(",", ":")).encode() + b"\n" + b"1.5" + b"[1,2,3] "
    client.put_object(Bucket=bucket, Key="wf/records/legacy-1", Body=record)
    status = b"ds2 a1b2c3 v0 w0 json\n" + b'{"step": 3}'
    client.put_object(
        Bucket=bucket,
        Key="wf/status/legacy-1",
        Body=status,
        Metadata={"w": "w0", "cs-updated": T0.isoformat()},
    )
    store = StateStore(backend, serializer="json")
    got = store.get_instance("legacy-1", fetch_payloads=True)
    assert got is not None
    assert (got.name, got.custom_status, got.input) == ("wf", {"step": 3}, [1, 2, 3])
    assert got.custom_status_updated_at == T0
    etag = store.set_custom_status("legacy-1", {"step": 4}, etag=got.etag)
    assert store.get_custom_status("legacy-1") == {"step": 4}
    other = S3Backend.from_url(
        f"s3://{bucket}/wf", endpoint_url=backend._options.endpoint_url, **CREDS
    )
    with other:
        StateStore(other, serializer="json").set_custom_status("legacy-1", {"step": 5})
    after = client.get_object(Bucket=bucket, Key="wf/status/legacy-1")
    assert after["Body"].read().endswith(b'{"step":5}')
    assert after["Metadata"]["p"] == etag.split(".")[2]  # the write it replaced
    assert store.get_instance("legacy-1") is not None
