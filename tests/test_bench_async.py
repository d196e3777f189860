"""The async cells of `durastate bench --async` on the embedded backends: each runs, and the
behaviour behind its figures holds (the figures themselves are not asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from durastate.bench.async_cells import run_async_cells
from durastate.bench.async_sdk import (
    async_sdk_in_flight,
    async_sdk_one_at_a_time_aws,
    async_sdk_update,
)
from durastate.bench.matrix import BackendSpec
from durastate.bench.report import async_rows
from durastate.bench.results import Measurement, RunResult
from durastate.cli import app
from durastate.testing.targets import StoreTarget


def test_async_cells_run_on_memory_and_sqlite(tmp_path: Path) -> None:
    for spec in (BackendSpec("memory://"), BackendSpec(f"sqlite:///{tmp_path / 'b.db'}")):
        cells = {m.operation: m for m in run_async_cells(spec, quick=True)}
        assert all(m.error is None for m in cells.values()), [m.error for m in cells.values()]
        assert cells["async_set_status"].extra["cpu_ratio_vs_sync"] > 0
        assert cells["async_updates_100_in_flight"].ops == 1000
        threads = cells["reporters_1000_threads"].extra
        assert threads["sync_threads_added"] <= 2
        assert threads["async_threads_added"] <= 2
        watch = cells["watch"].extra
        if watch["push"]:
            assert watch["reads_per_interval"] == 0  # memory: pushed, never polled
        else:
            assert watch["reads_per_interval"] <= 2  # 100 watchers, one shared poll


def test_bench_async_flag_adds_the_cells(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench", "-b", "memory://", "-s", "json", "-p", "150B", "--kind", "dict", "--quick",
            "--no-anchors", "--no-peers", "--no-chart", "--no-progress", "--async",
            "--output", str(tmp_path),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = (tmp_path / "results.json").read_text()
    for operation in ("async_set_status", "async_updates_100_in_flight", "watch"):
        assert operation in text


@pytest.mark.emulator
def test_async_sdk_cells_run_on_azurite(azure_target: StoreTarget) -> None:
    spec = BackendSpec(azure_target.url, dict(azure_target.options), "azure-tables")
    one = async_sdk_update(spec, quick=True)
    flight = async_sdk_in_flight(spec, quick=True)
    assert one is not None
    assert flight is not None
    assert async_sdk_one_at_a_time_aws(spec, quick=True) is None  # Azure's is async_sdk_update
    for cell in (one, flight):
        assert cell.error is None
        assert "aio.TableClient.update_entity" in cell.extra["sdk"]
        assert cell.extra["sdk_cpu_us"] > 0
        assert cell.extra["cpu_ratio_vs_async_sdk"] > 0
    assert flight.operation == "async_in_flight_vs_sdk"
    assert flight.ops == 1000
    assert flight.extra["in_flight"] == 100
    assert flight.extra["throughput_ratio_vs_async_sdk"] > 0


@pytest.mark.emulator
@pytest.mark.parametrize("kind", ["dynamodb", "s3"])
def test_async_sdk_cells_on_aws_need_aiobotocore(
    kind: str, dynamodb_target: StoreTarget, s3_target: StoreTarget
) -> None:
    target = dynamodb_target if kind == "dynamodb" else s3_target
    spec = BackendSpec(target.url, dict(target.options), kind)
    cells = [async_sdk_one_at_a_time_aws(spec, quick=True), async_sdk_in_flight(spec, quick=True)]
    if importlib.util.find_spec("aiobotocore") is None:
        assert cells == [None, None]  # not a dependency: no cell rather than an error
        return
    for cell in cells:
        assert cell is not None
        assert cell.error is None
        assert cell.extra["sdk"].startswith("aiobotocore")
        assert cell.extra["cpu_ratio_vs_async_sdk"] > 0


def test_the_report_shows_sdk_cells_without_a_lean_limit() -> None:
    """aiobotocore's cells have no lean async limit beside them (Azure's only)."""
    sdk = {"sdk": "aiobotocore s3 put_object", "sdk_wall_us": 9.0, "sdk_cpu_us": 4.0,
           "cpu_ratio_vs_async_sdk": 0.5, "rounds": 3}
    one = Measurement("durastate", "durastate", "s3", "json", "150B", "dict",
                      "async_update_vs_sdk", ops=60, median_us=8.0, cpu_us=2.0, extra=sdk)
    flight = Measurement("durastate", "durastate", "s3", "json", "150B", "dict",
                         "async_in_flight_vs_sdk", ops=1000, median_us=8.0, cpu_us=2.0,
                         ops_per_s=125.0, extra={**sdk, "in_flight": 100,
                                                 "throughput_ratio_vs_async_sdk": 1.1})
    rows = async_rows(RunResult({}, [one, flight]))
    assert [row[1] for row in rows] == ["async set_custom_status vs the async SDK",
                                        "1,000 updates, 100 in flight, vs the async SDK"]
    assert "lean" not in rows[0][3]
    assert "aiobotocore s3 put_object" in rows[1][3]
