"""Interop with the official SDK: boto3 reads what durastate wrote, durastate reads (and
updates, and finds by query) what boto3 wrote in the stored layout of docs/dynamodb.md.

This is the layout the boto3-based backend wrote before the lean rebuild, so records
written by older versions keep reading. Both moto_server and dynalite.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from durastate.backends.dynamodb import DynamoDBBackend
from durastate.core.records import InstanceQuery, NewInstance, Payload, RuntimeStatus
from durastate.testing.emulators import RunningEmulator

from .test_dynamodb import (
    make_backend,
    server,  # noqa: F401  (the moto and dynalite fixture)
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)


def _raw(backend: DynamoDBBackend, instance_id: str) -> dict[str, Any]:
    answer = backend.client.get_item(
        TableName=backend.table, Key={"instance_id": {"S": instance_id}}, ConsistentRead=True
    )
    return dict(answer["Item"])


def test_the_sdk_reads_what_durastate_wrote(server: RunningEmulator) -> None:  # noqa: F811
    with make_backend(server.endpoint) as backend:
        new = NewInstance(
            "order/42#x?", "wf", RuntimeStatus.RUNNING, T0,
            Payload(b'{"in": 1}', "json"), Payload(b"\x81\xa1a\x01", "msgpack", "zlib"),
        )
        backend.create(new)
        later = T0 + timedelta(seconds=2, milliseconds=5)
        written = backend.write_custom_status(
            "order/42#x?", Payload(b'"half"', "json"), etag=None, now=later
        )
        raw = _raw(backend, "order/42#x?")
        assert raw["instance_id"] == {"S": "order/42#x?"}
        assert raw["name"] == {"S": "wf"}
        assert raw["runtime_status"] == {"S": "running"}
        assert raw["created_at"] == {"S": "2024-05-01T12:00:00.123Z"}
        assert raw["last_updated_at"] == {"S": "2024-05-01T12:00:02.128Z"}
        assert raw["custom_status_updated_at"] == {"S": "2024-05-01T12:00:02.128Z"}
        assert raw["custom_status"] == {"B": b'"half"'}
        assert raw["custom_status_encoding"] == {"S": "json"}
        assert raw["input"] == {"B": b'{"in": 1}'}
        assert raw["input_encoding"] == {"S": "json"}
        assert raw["etag"] == {"S": written.etag}
        assert "previous_etag" in raw
        final = backend.write_runtime_status(
            "order/42#x?", RuntimeStatus.COMPLETED, output=Payload(b"\x00\xff", "raw"),
            set_output=True, etag=written.etag, now=later,
        )
        raw = _raw(backend, "order/42#x?")
        assert raw["runtime_status"] == {"S": "completed"}
        assert raw["output"] == {"B": b"\x00\xff"}
        assert raw["output_encoding"] == {"S": "raw"}
        assert raw["previous_etag"] == {"S": written.etag}
        assert raw["etag"] == {"S": final}


def test_durastate_reads_updates_and_queries_what_the_sdk_wrote(
    server: RunningEmulator,  # noqa: F811
) -> None:
    with make_backend(server.endpoint) as backend:
        backend.client.put_item(
            TableName=backend.table,
            Item={
                "instance_id": {"S": "legacy-1"},
                "name": {"S": "billing"},
                "runtime_status": {"S": "running"},
                "created_at": {"S": "2024-05-01T12:00:00.123Z"},
                "last_updated_at": {"S": "2024-05-01T12:00:01.000Z"},
                "custom_status_updated_at": {"S": "2024-05-01T12:00:01.000Z"},
                "etag": {"S": "0123456789abcdef01234567"},
                "custom_status": {"B": b'{"step": 3}'},
                "custom_status_encoding": {"S": "json+zlib"},
                "input": {"B": b"\x93\x01\x02\x03"},
                "input_encoding": {"S": "msgpack"},
            },
        )
        record = backend.read("legacy-1", fetch_payloads=True)
        assert record is not None
        assert record.name == "billing"
        assert record.runtime_status is RuntimeStatus.RUNNING
        assert record.created_at == T0
        assert record.etag == "0123456789abcdef01234567"
        assert record.custom_status == Payload(b'{"step": 3}', "json", "zlib")
        assert record.input == Payload(b"\x93\x01\x02\x03", "msgpack")
        assert record.output is None
        page = backend.query(InstanceQuery(runtime_status=frozenset({RuntimeStatus.RUNNING})))
        assert [r.instance_id for r in page.items] == ["legacy-1"]
        result = backend.write_custom_status(
            "legacy-1", Payload(b'{"step": 4}', "json"), etag="0123456789abcdef01234567", now=T0
        )
        assert result.written
        raw = _raw(backend, "legacy-1")
        assert raw["custom_status"] == {"B": b'{"step": 4}'}
        assert raw["previous_etag"] == {"S": "0123456789abcdef01234567"}
        assert raw["input"] == {"B": b"\x93\x01\x02\x03"}  # untouched
