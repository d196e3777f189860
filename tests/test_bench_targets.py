"""How the issue-10/11 targets read a run's figures (no timing: the figures are given)."""

from __future__ import annotations

from typing import Any

from durastate.bench.results import Measurement, RunResult
from durastate.bench.targets import evaluate


def _run(backend: str, scheme: str, *cells: Measurement) -> RunResult:
    return RunResult(meta={"backends": [{"label": backend, "scheme": scheme, "url": ""}],
                           "payloads": ["150B", "16KB"]}, measurements=list(cells))


def _cell(backend: str, operation: str, payload: str = "150B", **fields: Any) -> Measurement:
    return Measurement("durastate", "durastate", backend, "json", payload, "dict", operation,
                       **fields)


WRITES = {"backend_writes": 3, "write_bound": 17.0, "elapsed_s": 1.5, "min_interval_s": 0.1}


def _target(result: RunResult, tid: str) -> dict[str, Any]:
    (found,) = [t for t in evaluate(result) if t["id"] == tid]
    return found


def test_report_overhead_is_the_median_of_paired_differences_when_the_run_has_it() -> None:
    """Two medians taken apart (cpu 20.9 - serializer 20.0 = 0.9 µs) are not the paired
    figure (0.1 µs): the target takes the latter, worst over sizes."""
    cells = [
        _cell("memory", "report", "150B", ops=100, median_us=0.6, cpu_us=0.6,
              extra={**WRITES, "paired_serialize_cpu_us": 0.5,
                     "paired_overhead_cpu_us": 0.05}),
        _cell("memory", "report", "16KB", ops=100, median_us=21.0, cpu_us=20.9,
              extra={**WRITES, "paired_serialize_cpu_us": 20.0,
                     "paired_overhead_cpu_us": 0.1}),
    ]
    target = _target(_run("memory", "memory", *cells), "report-overhead")
    assert target["value"] == 0.1
    assert target["passed"] is True
    older = [_cell("memory", "report", "16KB", ops=100, median_us=21.0, cpu_us=20.9,
                   extra={**WRITES, "paired_serialize_cpu_us": 20.0})]  # a run from before
    assert abs(_target(_run("memory", "memory", *older), "report-overhead")["value"] - 0.9) < 1e-9


def test_s3_cold_row_counts_requests_and_says_why_when_over_one() -> None:
    two = _target(_run("s3@moto", "s3", _cell("s3@moto", "update_cold", ops=25, median_us=9.0,
                                               http_requests=2.0)), "s3-cold-lww")
    assert two["value"] == 2.0
    assert two["passed"] is False
    assert "If-Match needs the ETag" in two["detail"]
    assert "profiles/s3-cold-lww.md" in two["detail"]
    one = _target(_run("s3@moto", "s3", _cell("s3@moto", "update_cold", ops=25, median_us=9.0,
                                               http_requests=1.0)), "s3-cold-lww")
    assert one["passed"] is True
    assert "not 1 because" not in one["detail"]


def test_sdk_fraction_targets_judge_the_default_client_and_quote_the_lean_cell() -> None:
    def ref(subject: str, name: str, operation: str, cpu: float, ratio: float,
            compares_to: str) -> Measurement:
        return Measurement(subject, name, "dynamodb@moto", "orjson", "150B", "dict",
                           operation, ops=30, median_us=cpu, cpu_us=cpu,
                           compares_to=compares_to, extra={"ratio_cpu": ratio})

    result = _run(
        "dynamodb@moto", "dynamodb",
        ref("anchor", "boto3 update_item (default client)", "raw_update", 2000, 0.35,
            "update_cas"),
        ref("anchor", "boto3 update_item (no validation)", "raw_update", 1800, 0.45,
            "update_cas"),
        ref("lean", "UpdateItem by hand", "raw_update", 600, 1.2, "update_cas"),
        ref("anchor", "boto3 get_item (default client)", "raw_read", 1500, 0.6, "read"),
    )
    update = _target(result, "network-update-vs-sdk")
    assert update["value"] == 0.35  # the default client, not the tuned one
    assert update["passed"] is True
    assert "lean limit 0.30x" in update["detail"]  # 600 / 2000
    read = _target(result, "network-read-vs-sdk")
    assert read["value"] == 0.6
    assert read["passed"] is False
