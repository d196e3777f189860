"""The full benchmark: start Azurite, moto_server, dynalite, PostgreSQL and redis-server, run
the matrix on every backend with anchors and peers, write the results, stop the servers.

    .venv/bin/python benchmarks/run_full.py           # -> benchmarks/results/<date>-full/
    .venv/bin/python benchmarks/run_full.py --quick --output /tmp/bench

Every emulator runs as a local process on a free loopback port (durastate.testing.emulators)
and is stopped by PID when the run ends, whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from durastate.bench import BackendSpec, BenchConfig, compare, load_json, run_bench, write_outputs
from durastate.bench.report import bench_console, print_report
from durastate.bench.runner import preflight
from durastate.testing import emulators

AWS_KEYS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench-secret",
            "region": "us-east-1"}


def network_backends(stack: contextlib.ExitStack, console: Console) -> list[BackendSpec]:
    """Start the emulators (stopped by ``stack``) and the backend specs that point at them."""
    azurite = stack.enter_context(emulators.running(emulators.start_azurite()))
    moto = stack.enter_context(emulators.running(emulators.start_moto()))
    dynalite = stack.enter_context(emulators.running(emulators.start_dynalite()))
    postgres = stack.enter_context(emulators.running(emulators.start_postgres()))
    redis = stack.enter_context(emulators.running(emulators.start_redis()))
    console.print(f"emulators: azurite pid {azurite.pid}, moto_server pid {moto.pid}, "
                  f"dynalite pid {dynalite.pid}, postgresql pid {postgres.pid}, "
                  f"redis-server pid {redis.pid}")
    connection_string = emulators.azurite_connection_string(azurite)
    return [
        BackendSpec("azure-tables://durastatebench", {"connection_string": connection_string},
                    "azure-tables@azurite"),
        BackendSpec("dynamodb://durastate-bench", {"endpoint_url": dynalite.endpoint,
                                                   **AWS_KEYS}, "dynamodb@dynalite"),
        BackendSpec("dynamodb://durastate-bench", {"endpoint_url": moto.endpoint, **AWS_KEYS},
                    "dynamodb@moto"),
        BackendSpec("s3://durastate-bench/status/", {"endpoint_url": moto.endpoint,
                                                      **AWS_KEYS}, "s3@moto"),
        BackendSpec(postgres.endpoint, {"table": "durastate_bench"}, "postgresql@local"),
        BackendSpec(redis.endpoints["redis"], {}, "redis@local"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=None,
                        help="default: benchmarks/results/<UTC date>-full (or -quick)")
    parser.add_argument("--quick", action="store_true", help="short budget per cell")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--no-anchors", action="store_true")
    parser.add_argument("--no-embedded", action="store_true", help="network backends only")
    parser.add_argument("--no-async", action="store_true",
                        help="without the async cells (async store, async SDK where installed)")
    parser.add_argument("--only", action="append", default=None,
                        help="only these backend labels (repeatable)")
    parser.add_argument("--compare", type=Path, default=None)
    parser.add_argument("--note", action="append", default=[],
                        help="a line for the Notes of summary.md (repeatable), e.g. what ran "
                        "beside the benchmark")
    args = parser.parse_args(argv)
    console = bench_console()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    output = args.output or Path(__file__).parent / "results" / (
        f"{stamp}-{'quick' if args.quick else 'full'}")
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="durastate-bench-")))
        specs = [] if args.no_embedded else [
            BackendSpec("memory://"), BackendSpec(f"sqlite:///{workdir / 'bench.db'}")]
        specs += network_backends(stack, console)
        if args.only:
            specs = [s for s in specs if s.name in args.only]
        config = BenchConfig(
            backends=specs, quick=args.quick, repeat=args.repeat, output=output,
            anchors=not args.no_anchors, peers=not args.no_peers, async_cells=not args.no_async,
            command=shlex.join(["python", "benchmarks/run_full.py", *sys.argv[1:]]),
        )
        problems = preflight(config)
        if problems:  # before the hour of cells, not after it
            for problem in problems:
                console.print(f"[red]error:[/] {problem}")
            console.print(f"nothing run: {output} is left as it was")
            return 2
        result = run_bench(config, console=console)
    result.notes[:0] = args.note
    comparisons = compare(result, load_json(args.compare)) if args.compare else None
    if result.meta.get("failures"):
        partial = output.with_name(f"{output.name}-partial")
        write_outputs(result, partial)
        print_report(result, console, comparisons, partial)
        console.print(f"[red]error:[/] part of the matrix could not run; {output} is left "
                      f"as it was, what did run is in {partial}")
        return 2
    write_outputs(result, output)
    print_report(result, console, comparisons, output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
