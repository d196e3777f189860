"""Behaviour of the benchmark harness (no timing assertions: figures vary by machine)."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from durastate import register_backend
from durastate.backends.memory import MemoryBackend
from durastate.bench import BackendSpec, BenchConfig, compare, load_json, run_bench, write_outputs
from durastate.bench.command import register
from durastate.bench.counting import count_http
from durastate.bench.matrix import OPERATIONS as ALL_OPERATIONS
from durastate.bench.matrix import SCALE_OPERATIONS
from durastate.bench.payloads import SIZES, payload_pair
from durastate.bench.results import Measurement, RunResult
from durastate.bench.targets import evaluate
from durastate.testing import emulators

OPERATIONS = set(ALL_OPERATIONS)  # json and dict run every operation
NOT_JSON = OPERATIONS - {"update_cold", "update_clock_miss"}  # the rest for other serializers
SMALL_SCALE = {"1k": 200, "100k": 2000}  # the labels of a full run, smaller tables


def small(backends: list[BackendSpec], tmp_path: Path, **kwargs: Any) -> BenchConfig:
    defaults: dict[str, Any] = {"serializers": ["json"], "payloads": ["150B"], "kinds": ["dict"],
                                "quick": True, "output": tmp_path / "out", "peers": False,
                                "scale": False}
    defaults.update(kwargs)
    return BenchConfig(backends=backends, **defaults)


def cells(result: RunResult, backend: str) -> dict[str, Measurement]:
    return {m.operation: m for m in result.durastate() if m.backend == backend}


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("version")
    def version() -> None:  # a second command, so "bench" stays a named subcommand
        """Unused."""

    return app


def test_quick_cli_run_on_memory_writes_json_csv_png(cli: typer.Typer, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("durastate.bench.matrix.SCALE_SIZES", SMALL_SCALE)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "bench", "--quick", "--backend", "memory://", "--serializer", "json",
        "--serializer", "msgpack", "--payload", "150B", "--payload", "2KB", "--kind", "dict",
        "--output", str(out), "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    ours = [m for m in data["measurements"] if m["subject"] == "durastate"]
    cells = {(m["serializer"], m["payload"], m["operation"]) for m in ours
             if m["operation"] not in SCALE_OPERATIONS}
    assert cells == {(s, p, o) for s in ("json", "msgpack") for p in ("150B", "2KB")
                     for o in (OPERATIONS if s == "json" else NOT_JSON)
                     if o != "update_cold" or p == "150B"}  # cold: the first size only
    assert {m["operation"] for m in ours} >= set(SCALE_OPERATIONS)
    timed = [m for m in ours if m["operation"] != "footprint"]
    assert all(m["error"] is None and m["median_us"] > 0 and m["cpu_us"] >= 0 for m in timed)
    assert all(m["ops_per_s"] > 0 for m in timed)
    assert all(m["p99_us"] >= 0 and m["stored_bytes"] > 0 for m in timed
               if m["operation"] not in SCALE_OPERATIONS)
    assert data["meta"]["command"].startswith("durastate")
    assert data["meta"]["machine"]["cpus"] >= 1
    assert data["meta"]["date"]
    kinds = {m["subject"] for m in data["measurements"]}
    assert kinds == {"durastate", "anchor", "peer"}  # dict + orjson and celery cache+memory
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + len(data["measurements"])
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "# durastate benchmark run" in (out / "summary.md").read_text()
    assert "durastate, dict payloads" in result.output


def test_calls_are_counted_and_a_skipped_unchanged_write_costs_no_write(tmp_path: Path) -> None:
    specs = [BackendSpec("memory://"), BackendSpec(f"sqlite:///{tmp_path / 'b.db'}")]
    result = run_bench(small(specs, tmp_path, anchors=False), progress=False)
    for backend in ("memory", "sqlite"):
        found = cells(result, backend)
        assert set(found) == OPERATIONS
        for op in ("update_cas", "update_lww"):
            assert found[op].backend_calls == 1
            assert found[op].backend_writes == 1
        assert found["update_unchanged"].backend_calls == 1
        assert found["update_unchanged"].backend_writes == 0
        assert found["read"].backend_writes == 0
        assert all(m.http_requests == 0 for m in found.values())  # embedded: nothing on the wire
        report = found["report"]
        assert report.extra["backend_writes"] <= report.extra["write_bound"]
        assert report.extra["reporter_writes"] >= 1  # the last value is always flushed


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_http_requests_are_counted_on_the_wire(http_server: str) -> None:
    with count_http() as counter:
        for _ in range(3):
            urllib.request.urlopen(http_server).close()
    urllib.request.urlopen(http_server).close()  # after the block: not counted
    assert counter.requests == 3


def test_compare_gives_new_over_old_ratios(tmp_path: Path) -> None:
    def run(median: float, cpu: float) -> RunResult:
        m = Measurement("durastate", "durastate", "memory", "json", "150B", "dict",
                        "update_cas", median_us=median, cpu_us=cpu)
        gone = Measurement("durastate", "durastate", "memory", "json", "2KB", "dict", "read",
                           median_us=1.0)
        return RunResult(meta={}, measurements=[m, gone] if median > 15 else [m])

    comparisons = compare(run(10.0, 8.0), run(20.0, 16.0))
    assert len(comparisons) == 1
    assert comparisons[0].latency_ratio == pytest.approx(0.5)
    assert comparisons[0].cpu_ratio == pytest.approx(0.5)


def test_cli_compare_prints_ratios_against_an_earlier_run(cli: typer.Typer,
                                                          tmp_path: Path) -> None:
    args = ["bench", "--quick", "-b", "memory://", "-s", "json", "-p", "150B", "--kind", "dict",
            "--no-peers", "--no-anchors", "--no-chart", "--no-progress", "--no-scale"]
    first = CliRunner().invoke(cli, [*args, "--output", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(cli, [*args, "--output", str(tmp_path / "b"), "--compare",
                                      str(tmp_path / "a" / "results.json")],
                                  env={"COLUMNS": "300"})
    assert second.exit_code == 0, second.output
    assert "compared with the earlier run" in second.output
    assert "latency new/old" in second.output
    old, new = load_json(tmp_path / "a" / "results.json"), load_json(tmp_path / "b" /
                                                                      "results.json")
    assert len(compare(new, old)) == len(OPERATIONS)
    assert not (tmp_path / "b" / "chart.png").exists()


class PluginBackend(MemoryBackend):
    """Stands in for a third-party backend registered under its own scheme."""

    scheme = "benchplugin"


def test_a_plugin_backend_can_be_benchmarked_by_url(tmp_path: Path) -> None:
    register_backend("benchplugin", PluginBackend, clobber=True)
    config = small([BackendSpec("benchplugin://ns")], tmp_path, serializers=["json",
                                                                           "pickle-safe"])
    result = run_bench(config, progress=False)
    found = [m for m in result.durastate() if m.backend == "benchplugin"]
    assert len(found) == len(OPERATIONS) + len(NOT_JSON)
    assert all(m.ok for m in found), [m.error for m in found]
    assert not [m for m in result.measurements if m.subject != "durastate"]  # no anchors known
    files = write_outputs(result, tmp_path / "plug", chart=False)
    assert [f.name for f in files] == ["results.json", "results.csv", "summary.md"]


def test_a_backend_that_cannot_open_is_a_note_not_a_crash(tmp_path: Path) -> None:
    config = small([BackendSpec("memory://"), BackendSpec("nosuchscheme://x")], tmp_path,
                   anchors=False, operations=["update_lww"])
    result = run_bench(config, progress=False)
    assert any("nosuchscheme" in note for note in result.notes)
    assert cells(result, "memory")["update_lww"].ok


def test_payloads_fit_the_default_limit_in_every_builtin_serializer() -> None:
    from durastate.bench.cells import make_serializer

    for label in SIZES:
        for kind in ("dict", "model"):
            pair = payload_pair(label, kind)
            for sid in ("json", "msgpack", "pickle-safe"):
                sizes = {len(make_serializer(sid).dumps(v, instance_id="x")) for v in pair.values}
                assert max(sizes) <= 16 * 1024, (label, kind, sid, sizes)
            assert pair.values[0] != pair.values[1]  # consecutive updates write new bytes
    assert 140 <= payload_pair("150B", "dict").json_bytes <= 150
    assert 15_000 <= payload_pair("16KB", "dict").json_bytes <= 16 * 1024


def test_targets_and_ratios_come_from_the_same_run(tmp_path: Path) -> None:
    specs = [BackendSpec("memory://"), BackendSpec(f"sqlite:///{tmp_path / 'c.db'}")]
    config = small(specs, tmp_path, profile_misses=True)
    result = run_bench(config, progress=False)
    anchors = [m for m in result.measurements if m.subject == "anchor"]
    assert {m.backend for m in anchors} == {"memory", "sqlite"}
    assert all(m.extra["ratio_latency"] > 0 and m.extra["ratio_cpu"] > 0 for m in anchors)
    ids = {(t["id"], t["backend"]) for t in evaluate(result)}
    assert {("memory-set-status", "memory"), ("sqlite-vs-raw", "sqlite"),
            ("report-coalesced", "memory"), ("report-writes", "sqlite")} <= ids
    for target in result.targets:
        if target["passed"] is False and target["id"] != "report-writes":
            assert "ncalls" in target["profile"]  # a missed target carries its profile


@pytest.mark.emulator
def test_network_backend_counts_http_requests_per_update(tmp_path: Path) -> None:
    with emulators.running(emulators.start_moto()) as moto:
        spec = BackendSpec("dynamodb://durastate-bench-test", {
            "endpoint_url": moto.endpoint, "region": "us-east-1",
            "aws_access_key_id": "test", "aws_secret_access_key": "test-secret"})
        config = small([spec], tmp_path, operations=["update_cas", "update_lww"], peers=True,
                       repeat=20)
        result = run_bench(config, progress=False)
    found = cells(result, "dynamodb")
    assert all(m.ok for m in found.values()), [m.error for m in found.values()]
    assert found["update_cas"].http_requests == 1.0  # one conditional UpdateItem, no read
    assert found["update_lww"].backend_writes == 1.0
    refs = {m.name: m for m in result.measurements if m.subject != "durastate"}
    for variant in ("default client", "no validation"):
        assert refs[f"boto3 update_item (version condition, {variant})"].http_requests == 1.0
    celery = refs["celery store_result (dynamodb)"]
    assert celery.ok, celery.error
    assert celery.http_requests == 2.0  # Celery reads before it writes


def test_paired_timing_gives_each_side_alternating_values() -> None:
    from durastate.bench.timing import measure_paired

    seen: tuple[list[int], list[int]] = ([], [])
    measure_paired(lambda i: seen[0].append(i & 1), lambda i: seen[1].append(i & 1),
                   seconds=0.01, min_ops=10, max_ops=50, repeat=10)
    for side in seen:  # a side that saw one parity would write one value: a skipped write
        assert side.count(0) > 5
        assert side.count(1) > 5


def _leaves_output_alone(cli: typer.Typer, tmp_path: Path, *args: str) -> str:
    out = tmp_path / "latest"
    out.mkdir()
    (out / "results.json").write_text('{"kept": true}')
    result = CliRunner().invoke(cli, ["bench", "--quick", "--no-progress", "--output", str(out),
                                      *args])
    assert result.exit_code != 0, result.output
    assert [p.name for p in out.iterdir()] == ["results.json"]
    assert (out / "results.json").read_text() == '{"kept": true}'
    return result.output


def test_a_backend_that_cannot_run_fails_the_command_and_keeps_the_results(
        cli: typer.Typer, tmp_path: Path) -> None:
    output = _leaves_output_alone(cli, tmp_path, "--backend", "sqllite:///x.db")
    assert "sqllite" in output
    assert "left as it was" in " ".join(output.split())


def test_a_serializer_that_cannot_run_fails_the_command_and_keeps_the_results(
        cli: typer.Typer, tmp_path: Path) -> None:
    output = _leaves_output_alone(cli, tmp_path, "-b", "memory://", "-s", "json", "-s", "jsno")
    assert "jsno" in output


def test_console_tables_fit_100_columns_and_say_where_the_results_are(
        cli: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "bench", "--quick", "-b", "memory://", "-s", "json", "-p", "150B", "--no-chart",
        "--no-progress", "--output", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.output.rstrip().splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    assert "\x1b[" not in result.output  # a pipe gets no colour codes
    assert str(out / "summary.md") in " ".join(lines[-3:]).replace("\n", "")


def test_cpu_figures_subtract_the_harness_loop_like_wall_figures(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With a harness loop said to cost more than the operation, both figures reach zero:
    CPU is corrected like wall time (before, CPU kept the loop's cost)."""
    from durastate.bench import timing

    huge = 1e6  # 1 ms per iteration: far above what an empty operation costs
    monkeypatch.setattr(timing, "_CALIBRATION", timing.Calibration(
        loop_ns=huge, timer_ns=huge, loop_cpu_ns=huge, timer_cpu_ns=huge))
    empty = timing.measure(lambda i: None, seconds=0.02, min_ops=2000, max_ops=20_000)
    assert empty.batch > 1
    assert empty.median_ns == 0
    assert empty.cpu_ns == 0
    cold = timing.measure_each(lambda i: None, lambda i: None, 20)
    assert cold.median_ns == 0
    assert cold.cpu_ns == 0


def test_sqlite_pairs_with_its_anchor_on_a_fresh_file(tmp_path: Path) -> None:
    import sqlite3

    main = tmp_path / "bench.db"
    config = small([BackendSpec(f"sqlite:///{main}")], tmp_path,
                   operations=["update_lww", "read", "read_typed"])
    result = run_bench(config, progress=False)
    paired = tmp_path / "bench-paired.db"
    with sqlite3.connect(main) as a, sqlite3.connect(paired) as b:
        in_main = a.execute("SELECT count(*) FROM instances").fetchone()[0]
        in_paired = b.execute("SELECT count(*) FROM instances").fetchone()[0]
    anchors = [m for m in result.measurements if m.subject == "anchor"]
    assert {m.operation for m in anchors} == {"raw_update", "raw_read", "raw_read_typed"}
    assert in_paired == len(anchors)  # one instance per paired reference: nothing else
    assert in_main > in_paired


def test_cold_paths_nulls_and_typed_reads_are_cells(tmp_path: Path) -> None:
    config = small([BackendSpec("memory://")], tmp_path, kinds=["dict", "nulls"],
                   serializers=["json", "msgpack"], anchors=False)
    result = run_bench(config, progress=False)
    found = {(m.serializer, m.kind, m.operation): m for m in result.durastate()}
    assert all(m.ok for m in found.values()), [m.error for m in found.values()]
    for operation in ("update_cold", "update_clock_miss"):
        assert ("json", "dict", operation) in found
        assert ("msgpack", "dict", operation) not in found
    assert found[("json", "dict", "update_clock_miss")].backend_writes == 1
    assert found[("json", "dict", "update_cold")].http_requests == 0
    assert ("json", "nulls", "read_typed") in found
    assert ("msgpack", "nulls", "update_lww") not in found
    assert found[("json", "dict", "serialize")].backend_calls == 0


def test_scale_cells_and_their_targets(tmp_path: Path) -> None:
    specs = [BackendSpec("memory://"), BackendSpec(f"sqlite:///{tmp_path / 's.db'}")]
    config = small(specs, tmp_path, operations=["update_lww", "read", "read_typed",
                                                "serialize", "report"],
                   scale=True, scale_counts=SMALL_SCALE, profile_misses=False)
    result = run_bench(config, progress=False)
    for backend in ("memory", "sqlite"):
        found = cells(result, backend)
        assert set(SCALE_OPERATIONS) <= set(found)
        assert found["query_100k"].extra == {"instances": 2000, "matches": 50}
        assert found["iter_1k"].median_us is not None
        assert found["footprint"].stored_bytes is not None
    raw = [m for m in result.measurements if m.operation.startswith("raw_iter")]
    assert {m.backend for m in raw} == {"sqlite"}
    assert all(m.extra["ratio_latency"] > 0 for m in raw)
    ids = {(t["id"], t["backend"]) for t in result.targets if t["value"] is not None}
    assert {("query-follows-matches", "memory"), ("iterate-linear", "sqlite"),
            ("iterate-vs-raw", "sqlite"), ("memory-footprint", "memory"),
            ("read-typed", "sqlite"), ("read-untyped", "memory"),
            ("report-overhead", "memory"), ("memory-set-status", "memory")} <= ids


def test_missing_celery_or_matplotlib_names_the_extra(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "celery", None)  # import celery -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    config = small([BackendSpec("memory://")], tmp_path, peers=True,
                   operations=["update_lww"])
    result = run_bench(config, progress=False)
    write_outputs(result, tmp_path / "out")
    assert any("pip install 'durastate[bench]'" in note for note in result.notes), result.notes
    assert any("pip install 'durastate[charts]'" in note for note in result.notes)
