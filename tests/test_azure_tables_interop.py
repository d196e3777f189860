"""The official SDKs read what durastate writes, and durastate reads what they write in the
layout every earlier version wrote (against Azurite: never skipped).

azure-data-tables and azure-storage-blob are the oracle here: durastate no longer uses them
on the hot path, so these tests are what keeps the stored layout what Azure Storage
Explorer, Durable Task tools and older durastate versions expect.
"""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from azure.core import MatchConditions
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient

from durastate.backends.azure_tables import AzureTablesBackend, escape_key, partition_key
from durastate.backends.azure_tables.offload import instance_prefix
from durastate.core.records import InstanceQuery, NewInstance, Payload, RuntimeStatus
from durastate.testing.emulators import RunningEmulator, azurite_connection_string

T0 = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
T1 = datetime(2030, 5, 6, 8, 0, 0, 1, tzinfo=UTC)


@pytest.fixture
def names(azurite: RunningEmulator) -> Iterator[tuple[str, str]]:
    table, container = "I" + uuid.uuid4().hex[:16], "interop-" + uuid.uuid4().hex[:12]
    yield table, container
    with TableServiceClient.from_connection_string(azurite_connection_string(azurite)) as svc:
        svc.delete_table(table)
    with BlobServiceClient.from_connection_string(azurite_connection_string(azurite)) as blobs:
        if blobs.get_container_client(container).exists():
            blobs.delete_container(container)


def _backend(azurite: RunningEmulator, table: str, container: str) -> AzureTablesBackend:
    return AzureTablesBackend.from_url(
        f"azure-tables://{table}",
        connection_string=azurite_connection_string(azurite),
        container=container,
    )


def _sdk(azurite: RunningEmulator, table: str) -> TableClient:
    return TableClient.from_connection_string(azurite_connection_string(azurite), table)


def test_the_sdk_reads_what_durastate_wrote(
    azurite: RunningEmulator, names: tuple[str, str]
) -> None:
    table, container = names
    big = b'"' + b"b" * 100_000 + b'"'
    with _backend(azurite, table, container) as backend:
        backend.create(
            NewInstance("order/7#x", "wf", RuntimeStatus.RUNNING, T0, Payload(big, "json"), None)
        )
        backend.write_custom_status("order/7#x", Payload(b'{"p":1}', "json"), etag=None, now=T1)
        etag = backend.write_runtime_status(
            "order/7#x", RuntimeStatus.COMPLETED, output=Payload(b"\x92\x01\x02", "msgpack"),
            set_output=True, etag=None, now=T1,
        )  # fmt: skip
        record = backend.read("order/7#x")
    assert record is not None
    assert record.etag == etag
    with _sdk(azurite, table) as sdk:
        row = sdk.get_entity(partition_key("order/7#x"), "")
    assert row.metadata["etag"] == etag
    assert (row["PartitionKey"], row["RowKey"]) == ("order^2F7^23x", "")
    assert (row["InstanceId"], row["Name"], row["RuntimeStatus"]) == (
        escape_key("order/7#x"), "wf", "completed",
    )  # fmt: skip
    assert row["CreatedTime"] == T0  # an Edm.DateTime, to the microsecond
    assert row["LastUpdatedTime"] == T1
    assert row["CustomStatusUpdatedTime"] == T1
    assert (row["CustomStatus"], row["CustomStatusEncoding"], row["CustomStatusBlob"]) == (
        '{"p":1}', "json", "",
    )  # fmt: skip
    assert (row["Output"], row["OutputEncoding"]) == (b"\x92\x01\x02", "msgpack")  # Edm.Binary
    assert row["Offloaded"] is True
    assert (row["Input"], row["InputEncoding"]) == ("", "json")
    blob_name = row["InputBlob"]
    assert blob_name.startswith(instance_prefix(table, "order/7#x") + "input-")
    with BlobServiceClient.from_connection_string(azurite_connection_string(azurite)) as blobs:
        stored = blobs.get_container_client(container).download_blob(blob_name).readall()
    assert gzip.decompress(stored) == big


def test_durastate_reads_and_updates_what_the_sdk_wrote(
    azurite: RunningEmulator, names: tuple[str, str]
) -> None:
    """Rows as durastate wrote them through the SDK (before the lean transport), an
    offloaded blob included: read, listed, and updated with the SDK's etag."""
    table, container = names
    big = b"\x01" * 90_000
    blob_name = f"{instance_prefix(table, 'legacy 1')}custom_status-{uuid.uuid4().hex}.json.gz"
    with BlobServiceClient.from_connection_string(azurite_connection_string(azurite)) as blobs:
        blobs.create_container(container)
        blobs.get_container_client(container).upload_blob(blob_name, gzip.compress(big))
    with TableServiceClient.from_connection_string(azurite_connection_string(azurite)) as svc:
        svc.create_table(table)
    with _sdk(azurite, table) as sdk:
        for instance_id, custom in (("legacy 1", None), ("legacy'2", '{"stage":"resize"}')):
            entity = {
                "PartitionKey": partition_key(instance_id), "RowKey": "",
                "InstanceId": escape_key(instance_id), "Name": "wf",
                "RuntimeStatus": "running", "CreatedTime": T0, "LastUpdatedTime": T0,
                "Input": b"\x90", "InputEncoding": "msgpack", "InputBlob": "",
                "WriteId": "0123456789abcdef", "WriteLog0": "0123456789abcdef", "WriteBase": "",
            }  # fmt: skip
            if custom is None:
                entity.update(
                    CustomStatus="", CustomStatusEncoding="msgpack", CustomStatusBlob=blob_name,
                    Offloaded=True, CustomStatusUpdatedTime=T0,
                )  # fmt: skip
            else:
                entity.update(CustomStatus=custom, CustomStatusEncoding="json", CustomStatusBlob="")
            sdk.create_entity(entity)
        sdk_etag = sdk.get_entity(partition_key("legacy'2"), "").metadata["etag"]
    with _backend(azurite, table, container) as backend:
        first = backend.read("legacy 1", fetch_payloads=True)
        assert first is not None
        assert first.custom_status == Payload(big, "msgpack")
        assert first.input == Payload(b"\x90", "msgpack")
        assert (first.created_at, first.custom_status_updated_at) == (T0, T0)
        second = backend.read("legacy'2")
        assert second is not None
        assert second.etag == sdk_etag
        assert second.custom_status == Payload(b'{"stage":"resize"}', "json")
        page = backend.query(InstanceQuery(prefix="legacy", page_size=10))
        assert sorted(r.instance_id for r in page.items) == ["legacy 1", "legacy'2"]
        written = backend.write_custom_status(
            "legacy'2", Payload(b'{"stage":"done"}', "json"), etag=sdk_etag, now=T1
        )
    with _sdk(azurite, table) as sdk:
        row = sdk.get_entity(partition_key("legacy'2"), "")
        assert row.metadata["etag"] == written.etag
        assert row["CustomStatus"] == '{"stage":"done"}'
        assert row["Input"] == b"\x90"  # a MERGE leaves the rest alone
        sdk.update_entity(  # and the SDK's conditional write accepts our etag
            {"PartitionKey": partition_key("legacy'2"), "RowKey": "", "Name": "renamed"},
            mode=UpdateMode.MERGE, etag=written.etag,
            match_condition=MatchConditions.IfNotModified,
        )  # fmt: skip
