"""The web cells of `durastate bench --web` on memory and SQLite, in quick mode: each runs,
lands in the console table, summary.md and results.json, and is judged by its target (the
figures themselves are not asserted, only the behaviour behind them)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from durastate.bench.matrix import BackendSpec
from durastate.bench.web_cells import run_web_cells
from durastate.cli import app

WEB_TARGETS = {"web-get-vs-minimal", "web-sse-latency", "web-sse-fanout-idle"}


def test_bench_web_flag_reports_cells_and_targets(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "bench", "-b", "memory://", "-b", f"sqlite:///{tmp_path / 'b.db'}", "-s", "json",
            "-p", "150B", "--kind", "dict", "--quick", "--no-anchors", "--no-peers",
            "--no-chart", "--no-progress", "--no-scale", "--web", "--output", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "GET /instances/{id} CPU" in result.output
    assert "SSE latency (push)" in result.output
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["web_cells"] is True
    cells = {
        (m["backend"], m["operation"]): m
        for m in data["measurements"]
        if m["operation"].startswith("web_")
    }
    assert set(cells) == {
        (b, op)
        for b in ("memory", "sqlite")
        for op in ("web_get", "web_sse_latency", "web_sse_fanout")
    }
    assert all(m["error"] is None for m in cells.values()), [m["error"] for m in cells.values()]
    for backend in ("memory", "sqlite"):
        get = cells[(backend, "web_get")]["extra"]
        assert get["cpu_ratio_vs_minimal"] > 0
        assert get["minimal_requests_per_s"] > 0
        fanout = cells[(backend, "web_sse_fanout")]["extra"]
        assert fanout["delivered"] == fanout["clients"]  # one change reached every client
    assert cells[("memory", "web_sse_latency")]["extra"]["push"] is True
    assert cells[("memory", "web_sse_fanout")]["extra"]["idle_reads"] == 0  # pushed
    assert cells[("sqlite", "web_sse_fanout")]["extra"]["reads_per_interval"] <= 2  # shared
    targets = {(t["id"], t["backend"]): t for t in data["targets"] if t["id"] in WEB_TARGETS}
    assert set(targets) == {(t, b) for t in WEB_TARGETS for b in ("memory", "sqlite")}
    assert all(t["passed"] is not None for t in targets.values())  # measured, met or missed
    assert targets[("web-sse-latency", "memory")]["limit"] == 50
    sqlite_latency = targets[("web-sse-latency", "sqlite")]
    assert sqlite_latency["limit"] == 0.1 * 1000 + 100  # quick: polled every 0.1 s
    summary = (out / "summary.md").read_text()
    assert "## HTTP app" in summary
    assert "≤ 1.2x a minimal Starlette endpoint" in summary


def test_web_cells_only_on_embedded_backends() -> None:
    assert run_web_cells(BackendSpec("azure-tables://account/table"), quick=True) == []
