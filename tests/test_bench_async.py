"""The async cells of `durastate bench --async` on the embedded backends: each runs, and the
behaviour behind its figures holds (the figures themselves are not asserted)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from durastate.bench.async_cells import run_async_cells
from durastate.bench.matrix import BackendSpec
from durastate.cli import app


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
