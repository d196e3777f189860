"""``durastate bench``: the typer command; the lead's CLI calls ``register(app)``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from durastate.bench.compare import compare
from durastate.bench.matrix import (
    DEFAULT_OUTPUT,
    DEFAULT_SERIALIZERS,
    BenchConfig,
    default_backends,
    parse_backend,
    unique_labels,
)
from durastate.bench.outputs import write_outputs
from durastate.bench.payloads import KINDS, SIZES
from durastate.bench.report import bench_console, print_report
from durastate.bench.results import load_json
from durastate.bench.runner import preflight, run_bench
from durastate.errors import DurastateError


def parse_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``SCHEME.KEY=VALUE`` (or ``LABEL.KEY=VALUE``) -> {scheme_or_label: {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        owner, dot, key = target.partition(".")
        if not sep or not dot or not owner or not key:
            raise typer.BadParameter(f"expected SCHEME.KEY=VALUE, got {item!r}",
                                     param_hint="--option")
        out.setdefault(owner, {})[key] = value
    return out


def bench(
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", "-b", help="Backend URL, or LABEL=URL (repeatable). Default: memory:// "
        "and sqlite:///<tmpdir>/bench.db. Plugin schemes work too.")] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o", help="Backend option SCHEME.KEY=VALUE or LABEL.KEY=VALUE, e.g. "
        "azure-tables.connection_string=... (repeatable).")] = None,
    serializer: Annotated[list[str] | None, typer.Option(
        "--serializer", "-s", help="Serializer id (repeatable; plugins too). Default: "
        + ", ".join(DEFAULT_SERIALIZERS))] = None,
    payload: Annotated[list[str] | None, typer.Option(
        "--payload", "-p", help="Payload size: " + ", ".join(SIZES) + " (repeatable).")] = None,
    kind: Annotated[list[str] | None, typer.Option(
        "--kind", help="Payload kind: " + ", ".join(KINDS) + " (repeatable).")] = None,
    quick: Annotated[bool, typer.Option(
        "--quick", help="Short budget per cell: the embedded matrix in under a minute.")] = False,
    repeat: Annotated[int | None, typer.Option(
        "--repeat", "-n", min=1, help="Timed operations per cell (default: from a time "
        "budget per cell).")] = None,
    compare_with: Annotated[Path | None, typer.Option(
        "--compare", help="An earlier results.json: print new/old ratios per cell.",
        exists=True, dir_okay=False)] = None,
    output: Annotated[Path, typer.Option(
        "--output", help="Directory for results.json, results.csv, chart.png, summary.md."
    )] = DEFAULT_OUTPUT,
    anchors: Annotated[bool, typer.Option(
        "--anchors/--no-anchors", help="Run the raw SDK calls side by side.")] = True,
    peers: Annotated[bool, typer.Option(
        "--peers/--no-peers", help="Run Celery's result backends side by side.")] = True,
    chart: Annotated[bool, typer.Option("--chart/--no-chart", help="Write chart.png.")] = True,
    scale: Annotated[bool, typer.Option(
        "--scale/--no-scale", help="Queries, iteration and footprint at 1k and 100k "
        "instances (memory and SQLite).")] = True,
    max_status_bytes: Annotated[int, typer.Option(
        "--max-status-bytes", help="The store's custom-status limit for the run.")] = 16 * 1024,
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="Show the progress bar.")] = True,
    async_cells: Annotated[bool, typer.Option(
        "--async/--no-async", help="Also measure the async store, the reporter writer and "
        "watch, side by side with the sync store.")] = False,
    web_cells: Annotated[bool, typer.Option(
        "--web/--no-web", help="Also measure the HTTP app of `durastate serve` (GET against "
        "a minimal endpoint, SSE latency and fan-out; memory and SQLite only).")] = False,
) -> None:
    """Measure what a custom-status update costs: backends x serializers x payloads."""
    console = bench_console()
    options = parse_options(option or [])
    specs = []
    for text in backend or []:
        spec = parse_backend(text)
        merged = {**options.get(spec.scheme, {}), **options.get(spec.name, {})}
        specs.append(parse_backend(text, merged))
    specs = unique_labels(specs or default_backends())
    config = BenchConfig(
        backends=specs,
        serializers=serializer or list(DEFAULT_SERIALIZERS),
        payloads=payload or list(SIZES),
        kinds=kind or list(KINDS),
        quick=quick, repeat=repeat, anchors=anchors, peers=peers, chart=chart, scale=scale,
        output=output, compare=compare_with, max_custom_status_bytes=max_status_bytes,
        command=shlex.join(["durastate", *sys.argv[1:]]), async_cells=async_cells,
        web_cells=web_cells,
    )
    try:
        config.validate()
        problems = preflight(config)
        if problems:
            _refuse(console, problems, output)
        result = run_bench(config, console=console, progress=progress)
    except (ValueError, DurastateError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    comparisons = compare(result, load_json(compare_with)) if compare_with else None
    failures = result.meta.get("failures")
    if failures:
        print_report(result, console, comparisons)
        _refuse(console, failures, output)
    write_outputs(result, output, chart=chart)
    print_report(result, console, comparisons, output)


def _refuse(console: Console, problems: list[str], output: Path) -> None:
    """Exit non-zero without writing: a partial matrix must not replace the results."""
    for problem in problems:
        console.print(f"[red]error:[/] {problem}")
    console.print(f"nothing written: {output} is left as it was")
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add ``bench`` to the durastate CLI."""
    app.command("bench")(bench)
