"""The lean-limit cells (issue 11): the hand-signed request next to the SDK anchor, per
network backend, on the real emulators; and the targets that judge durastate against the SDK.

No timing assertions: figures vary by machine. What is asserted is what could break: each
lean cell runs, writes what the SDK reads back, costs one request, and its figure reaches
the targets' detail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from durastate.bench import BackendSpec, BenchConfig, run_bench
from durastate.bench.anchors import RAW_BUCKET, RAW_DYNAMO_TABLE, RAW_TABLE
from durastate.bench.lean_anchors import LeanAzureTables, LeanDynamoDB, LeanS3, lean_anchors_for
from durastate.bench.payloads import payload_pair
from durastate.bench.references import AwsTarget
from durastate.bench.results import RunResult
from durastate.testing import emulators

AWS = {"aws_access_key_id": "test", "aws_secret_access_key": "test-secret",
       "region": "us-east-1"}
VALUES = payload_pair("150B", "dict").values


def quick(specs: list[BackendSpec], tmp_path: Path) -> RunResult:
    config = BenchConfig(backends=specs, serializers=["json"], payloads=["150B"],
                         kinds=["dict"], quick=True, output=tmp_path / "out", peers=False,
                         scale=False, operations=["update_cas", "update_lww", "read"],
                         repeat=10)
    return run_bench(config, progress=False)


def test_only_network_backends_get_lean_cells() -> None:
    assert lean_anchors_for("memory", "memory://", {}) == []
    assert lean_anchors_for("sqlite", "sqlite:///x.db", {}) == []
    for scheme, url in (("azure-tables", "azure-tables://t"), ("dynamodb", "dynamodb://t"),
                        ("s3", "s3://b/p")):
        refs = lean_anchors_for(scheme, url, {})
        assert {(r.subject, r.compares_to, r.operation) for r in refs} == {
            ("lean", "update_cas", "raw_update"), ("lean", "read", "raw_read")}


@pytest.mark.emulator
def test_lean_writes_are_what_the_sdk_reads_back() -> None:
    """Each lean update is a real conditional write: the SDK sees the last value, and a
    stale etag/version is refused (the lean cell is the same job as the SDK anchor)."""
    import boto3
    from azure.data.tables import TableClient

    with emulators.running(emulators.start_moto()) as moto, \
            emulators.running(emulators.start_azurite()) as azurite:
        target = AwsTarget.from_options("s3://x", {"endpoint_url": moto.endpoint, **AWS})
        conn = emulators.azurite_connection_string(azurite)
        for lean in (LeanDynamoDB(target, read=False), LeanS3(target, read=False),
                     LeanAzureTables(conn, read=False)):
            try:
                update = lean.op(VALUES, "lean-check")
                update(0)
                update(1)
                update(2)  # variant 0 again, after two conditional writes
            finally:
                lean.close()
        dynamodb = boto3.client("dynamodb", endpoint_url=moto.endpoint, **_boto(AWS))
        item = dynamodb.get_item(TableName=RAW_DYNAMO_TABLE, Key={"pk": {"S": "lean-check"}},
                                 ConsistentRead=True)["Item"]
        assert orjson.loads(item["cs"]["S"]) == VALUES[0]
        assert item["ver"]["N"] == "3"  # three conditional updates, each on the last version
        s3 = boto3.client("s3", endpoint_url=moto.endpoint, **_boto(AWS))
        body = s3.get_object(Bucket=RAW_BUCKET, Key="lean-check")["Body"].read()
        assert orjson.loads(body) == VALUES[0]
        with TableClient.from_connection_string(conn, RAW_TABLE) as table:
            entity = table.get_entity("lean-check", "")
        assert orjson.loads(entity["CustomStatus"]) == VALUES[0]
        stale = LeanS3(target, read=False)
        try:
            update = stale.op(VALUES, "lean-stale")
            s3.put_object(Bucket=RAW_BUCKET, Key="lean-stale", Body=b"{}")  # a second writer
            with pytest.raises(RuntimeError, match="412"):
                update(1)
        finally:
            stale.close()


def _boto(keys: dict[str, str]) -> dict[str, Any]:
    return {"region_name": keys["region"], "aws_access_key_id": keys["aws_access_key_id"],
            "aws_secret_access_key": keys["aws_secret_access_key"]}


@pytest.mark.emulator
def test_lean_cells_sit_next_to_the_sdk_anchors_and_reach_the_targets(tmp_path: Path) -> None:
    with emulators.running(emulators.start_moto()) as moto, \
            emulators.running(emulators.start_azurite()) as azurite:
        conn = emulators.azurite_connection_string(azurite)
        specs = [
            BackendSpec("azure-tables://durastatebenchlean", {"connection_string": conn},
                        "azure-tables@azurite"),
            BackendSpec("dynamodb://durastate-bench-lean", {"endpoint_url": moto.endpoint,
                                                            **AWS}, "dynamodb@moto"),
            BackendSpec("s3://durastate-bench-lean/status/", {"endpoint_url": moto.endpoint,
                                                              **AWS}, "s3@moto"),
        ]
        result = quick(specs, tmp_path)
    for spec in specs:
        refs = [m for m in result.measurements if m.backend == spec.name
                and m.subject in ("anchor", "lean")]
        lean = {m.operation: m for m in refs if m.subject == "lean"}
        assert set(lean) == {"raw_update", "raw_read"}, spec.name
        for cell in lean.values():
            assert cell.ok, cell.error
            assert cell.http_requests == 1.0  # one signed request per operation, no retry
            assert cell.cpu_us
            assert cell.extra["ratio_cpu"] > 0  # paired with durastate
        sdk_reads = [m for m in refs if m.subject == "anchor" and m.operation == "raw_read"]
        assert sdk_reads
        assert all(m.ok and m.http_requests == 1.0 for m in sdk_reads)
        targets = {t["id"]: t for t in result.targets if t["backend"] == spec.name}
        for tid in ("network-update-vs-sdk", "network-read-vs-sdk"):
            assert targets[tid]["value"] is not None, targets[tid]
            assert "lean limit" in targets[tid]["detail"], targets[tid]["detail"]


@pytest.mark.emulator
def test_async_cell_sits_next_to_the_async_sdk_where_it_is_installed(tmp_path: Path) -> None:
    from durastate.bench.async_sdk import async_sdk_update
    from durastate.bench.report import summary_markdown

    assert async_sdk_update(BackendSpec("dynamodb://t", {}), quick=True) is None  # no aiobotocore
    with emulators.running(emulators.start_azurite()) as azurite:
        conn = emulators.azurite_connection_string(azurite)
        spec = BackendSpec("azure-tables://durastateaiocell", {"connection_string": conn},
                           "azure-tables@azurite")
        cell = async_sdk_update(spec, quick=True)
    assert cell is not None
    assert cell.ok, cell.error
    assert cell.cpu_us
    for key in ("cpu_ratio_vs_async_sdk", "lean_cpu_ratio_vs_async_sdk", "sdk_cpu_us"):
        assert cell.extra[key] > 0, key
    result = RunResult(meta={"backends": []}, measurements=[cell])
    summary = summary_markdown(result, chart_name=None)
    assert "## Async store" in summary
    assert "aio.TableClient.update_entity" in summary
