"""What a person reads from a run: the chart's rows and the console's tables (the figures are
given, so nothing here depends on timing)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from durastate.bench import BackendSpec
from durastate.bench.charts import REFERENCE_STYLE, _read_rows, _update_rows, write_chart
from durastate.bench.report import print_report
from durastate.bench.results import Measurement, RunResult

BACKEND = "dynamodb@moto"


def _ours(operation: str, payload: str = "150B", **fields: Any) -> Measurement:
    return Measurement("durastate", "durastate", BACKEND, "json", payload, "dict", operation,
                       **fields)


def _reference(subject: str, name: str, operation: str, compares_to: str, median: float,
               payload: str = "150B") -> Measurement:
    return Measurement(subject, name, BACKEND, "orjson", payload, "dict", operation,
                       compares_to=compares_to, ops=200, median_us=median, cpu_us=median / 3,
                       extra={"ratio_latency": 1.1, "ratio_cpu": 0.4})


def _network_run() -> RunResult:
    """One network backend with the references a real run gives it: the SDK with durastate's
    client settings and with its default client, the lean limit, Celery; reads alike."""
    figures = (("update_cas", "150B", 5000.0), ("update_cas", "2KB", 5600.0),
               ("update_cas", "16KB", 6900.0), ("update_lww", "150B", 5100.0),
               ("read", "150B", 2500.0), ("read_typed", "150B", 2530.0))
    cells = [_ours(op, size, ops=200, median_us=median, cpu_us=median / 3, http_requests=1.0)
             for op, size, median in figures]
    refs = [
        _reference("anchor", "boto3 update_item (version condition, default client)",
                   "raw_update", "update_cas", 5200.0),
        *[_reference("anchor", "boto3 update_item (version condition, no validation)",
                     "raw_update", "update_cas", median, size)
          for size, median in (("150B", 4400.0), ("2KB", 4500.0), ("16KB", 4500.0))],
        _reference("lean", "DynamoDB UpdateItem (version condition), hand-signed request over "
                   "http.client (durastate.transport)", "raw_update", "update_cas", 3800.0),
        _reference("peer", "celery store_result (dynamodb)", "store_result", "update_lww", 6700.0),
        _reference("anchor", "boto3 get_item (consistent, default client)", "raw_read", "read",
                   3300.0),
        _reference("lean", "DynamoDB GetItem, hand-signed request over http.client "
                   "(durastate.transport)", "raw_read", "read", 3100.0),
    ]
    return RunResult(meta={"backends": [{"label": BACKEND, "scheme": "dynamodb", "url": ""}],
                           "date": "2026-11-29T00:00:00Z", "machine": {"cpu": "test"}},
                     measurements=cells + refs)


def test_every_reference_of_a_row_is_its_own_series_in_the_chart() -> None:
    """The SDK call, its default client and the lean limit sit side by side on one row; none
    hides another under a shared name (before, the lean request drew over the SDK call as
    "raw call" and the lean read as "raw bytes + orjson.loads")."""
    result = _network_run()
    ((_, update),) = _update_rows(result, [BACKEND])
    assert update["raw conditional write"] == 4400.0
    assert update["raw conditional write, SDK's default client"] == 5200.0
    assert update["lean limit: hand-built conditional write"] == 3800.0
    assert update["Celery store_result"] == 6700.0
    assert update["durastate 150B, no etag"] == 5100.0
    ((_, read),) = _read_rows(result, [BACKEND])
    assert read["raw read + orjson.loads, SDK's default client"] == 3300.0
    assert read["lean limit: hand-built read + orjson.loads"] == 3100.0
    references = [name for name in [*update, *read] if not name.startswith(("durastate",
                                                                            "get_instance"))]
    assert all(name in REFERENCE_STYLE for name in references), references


def test_postgres_and_redis_rows_get_a_marker_per_anchor() -> None:
    """PostgreSQL's two anchors (one connection, a pool) and Redis's unconditional HSET next
    to its Lua compare-and-swap: each a marker of its own."""
    def run(backend: str, *refs: tuple[str, str, float]) -> dict[str, float]:
        cells = [Measurement("durastate", "durastate", backend, "json", "150B", "dict",
                             "update_cas", ops=200, median_us=150.0)]
        cells += [Measurement("anchor", name, backend, "orjson", "150B", "dict", "raw_update",
                              compares_to=against, ops=200, median_us=median)
                  for name, against, median in refs]
        result = RunResult(meta={"backends": [{"label": backend}]}, measurements=cells)
        ((_, row),) = _update_rows(result, [backend])
        return row

    postgres = run("postgresql@local",
                   ("psycopg UPDATE WHERE etag (one connection)", "update_cas", 120.0),
                   ("psycopg UPDATE WHERE etag (ConnectionPool)", "update_cas", 440.0))
    assert postgres["raw conditional write"] == 120.0
    assert postgres["raw conditional write, connection pool"] == 440.0
    redis = run("redis@local", ("redis-py HSET (default client)", "update_lww", 246.0),
                ("redis-py evalsha hand-written Lua CAS (default client)", "update_cas", 291.0),
                ("redis-py evalsha hand-written Lua CAS (durastate's client settings)",
                 "update_cas", 92.0))
    assert redis["raw write, no condition, SDK's default client"] == 246.0
    assert redis["raw conditional write, SDK's default client"] == 291.0
    assert redis["raw conditional write"] == 92.0


def test_the_chart_of_a_network_run_is_written(tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    assert write_chart(_network_run(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_console_reference_table_shows_whole_names_within_100_columns() -> None:
    """A reference's name is printed whole (wrapped, never cut to an ellipsis), once for its
    sizes, so two clients of one SDK call stay apart at 100 columns."""
    out = io.StringIO()
    print_report(_network_run(), Console(file=out, width=100), None, Path("results/x"))
    text = out.getvalue()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    assert "…" not in text
    header = next(n for n, line in enumerate(lines) if line.startswith("reference, by backend"))
    name_width = lines[header].index(" vs ")
    names = " ".join(line[:name_width].strip() for line in lines[header + 2:]
                     if line[:name_width].strip())
    for name in ("anchor: boto3 update_item (version condition, default client)",
                 "anchor: boto3 update_item (version condition, no validation)",
                 "lean: DynamoDB UpdateItem (version condition), hand-signed request over "
                 "http.client (durastate.transport)"):
        assert names.count(name) == 1, names
    assert "results/x/summary.md" in " ".join(lines[-3:])


def test_summary_says_how_long_the_run_took_and_how_loaded_the_machine_was(
        tmp_path: Path) -> None:
    from durastate.bench import BenchConfig, run_bench
    from durastate.bench.report import summary_markdown

    config = BenchConfig(backends=[BackendSpec("memory://")], serializers=["json"],
                         payloads=["150B"], kinds=["dict"], operations=["update_lww"],
                         quick=True, anchors=False, peers=False, scale=False,
                         output=tmp_path / "out")
    result = run_bench(config, progress=False)
    assert result.meta["duration_s"] > 0
    start, end = result.meta["load_average"]["start"], result.meta["load_average"]["end"]
    assert len(start) == len(end) == 3
    summary = summary_markdown(result, None)
    assert "- duration: " in summary
    assert f"at the start: {' / '.join(f'{x:g}' for x in start)}" in summary


def test_a_sqlite_scale_store_filled_in_bulk_holds_what_one_create_at_a_time_makes(
        tmp_path: Path) -> None:
    """The 100k scale stores are filled by copying two real rows in one transaction: every
    instance reads back as the one-at-a-time fill makes it, and the query finds the same 50."""
    from durastate.bench.cells import make_store
    from durastate.bench.scale import fill
    from durastate.opening import open_backend
    from durastate.serializers.json import JsonSerializer

    count = 2000
    stores = []
    for name, in_bulk in (("one-by-one", False), ("bulk", True)):
        path = tmp_path / f"{name}.db"
        backend = open_backend(f"sqlite:///{path}")
        store = make_store(backend, JsonSerializer(), 16 * 1024)
        fill(store, count, path if in_bulk else None)
        stores.append(store)
    one_by_one, bulk = stores
    ids = [m.instance_id for m in one_by_one.iter_instances(page_size=500)]
    assert [m.instance_id for m in bulk.iter_instances(page_size=500)] == ids
    assert len(ids) == count
    for instance_id in ids[::97]:
        expected, got = one_by_one.get_instance(instance_id), bulk.get_instance(instance_id)
        assert expected is not None
        assert got is not None
        assert (got.name, got.runtime_status, got.custom_status) == (
            expected.name, expected.runtime_status, expected.custom_status)
    running = [m.instance_id for m in bulk.query(runtime_status="running", page_size=100)]
    assert running == [m.instance_id for m in one_by_one.query(runtime_status="running",
                                                                page_size=100)]
    assert len(running) == 50
    created = [m.created_at for m in bulk.iter_instances(page_size=500)]
    assert created == sorted(created)  # in id order, as one create at a time makes them
    for store in stores:
        store.close()


def test_run_full_refuses_before_any_cell_when_a_backend_cannot_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend that cannot open stops the full run before its hour of cells, and the
    results directory stays as it was."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "run_full", Path(__file__).parents[1] / "benchmarks" / "run_full.py")
    assert spec is not None
    assert spec.loader is not None
    run_full = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_full)
    started: list[str] = []

    def no_servers(stack: object, console: object) -> list[BackendSpec]:
        started.append("servers")  # the real function starts five servers here
        return [BackendSpec("sqllite:///typo.db")]

    monkeypatch.setattr(run_full, "network_backends", no_servers)
    monkeypatch.setattr(run_full, "run_bench", lambda *a, **k: pytest.fail("cells ran"))
    output = tmp_path / "results"
    output.mkdir()
    (output / "results.json").write_text("kept")
    assert run_full.main(["--no-embedded", "--quick", "--output", str(output)]) == 2
    assert started == ["servers"]
    assert [p.name for p in output.iterdir()] == ["results.json"]
    assert (output / "results.json").read_text() == "kept"
