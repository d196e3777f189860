"""The async cells (`durastate bench --async`) on every emulator, started and stopped here.

Run: ``.venv/bin/python benchmarks/async_cells.py [memory] [sqlite] [redis] [postgres]
[azurite] [dynalite] [moto]`` (all by default; ``--one`` runs only the one-at-a-time
``set_custom_status`` cell). Prints one line per cell: the async figure and its sync
counterpart from the same run. Figures and what they mean: docs/async.md.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from durastate.bench.async_cells import run_async_cells, set_status_one_at_a_time
from durastate.bench.matrix import BackendSpec
from durastate.testing import emulators
from durastate.testing.emulators import azurite_connection_string

CREDS = {"aws_access_key_id": "t", "aws_secret_access_key": "t", "region": "us-east-1"}


ONLY_ONE = "--one" in sys.argv


def show(spec: BackendSpec) -> None:
    cells = [set_status_one_at_a_time(spec, True)] if ONLY_ONE else run_async_cells(spec, True)
    for m in cells:
        figures = {"median_us": m.median_us, "cpu_us": m.cpu_us, "ops_per_s": m.ops_per_s}
        shown = {key: round(value, 1) for key, value in figures.items() if value is not None}
        print(spec.name, m.operation, m.error or "", shown, json.dumps(m.extra), flush=True)


def main(which: list[str]) -> None:
    if "memory" in which:
        show(BackendSpec("memory://", {}, "memory"))
    if "sqlite" in which:
        with tempfile.TemporaryDirectory() as folder:
            show(BackendSpec(f"sqlite:///{Path(folder) / 'bench.db'}", {}, "sqlite"))
    if "redis" in which:
        with emulators.running(emulators.start_redis()) as redis_server:
            target = redis_server.target("benchasync")
            show(BackendSpec(target.url, dict(target.options), "redis"))
    if "postgres" in which:
        with emulators.running(emulators.start_postgres()) as postgres:
            target = postgres.target("benchasync")
            show(BackendSpec(target.url, dict(target.options), "postgresql"))
    if "azurite" in which:
        with emulators.running(emulators.start_azurite()) as azurite:
            options = {"connection_string": azurite_connection_string(azurite)}
            show(BackendSpec("azure-tables://benchasync", options, "azure-tables"))
    if "dynalite" in which:
        with emulators.running(emulators.start_dynalite()) as dynalite:
            options = {"endpoint_url": dynalite.endpoint, **CREDS}
            show(BackendSpec("dynamodb://bench-async", options, "dynamodb@dynalite"))
    if "moto" in which:
        with emulators.running(emulators.start_moto()) as moto:
            options = {"endpoint_url": moto.endpoint, **CREDS}
            show(BackendSpec("dynamodb://bench-async", options, "dynamodb@moto"))
            show(BackendSpec("s3://bench-async/p", options, "s3@moto"))


if __name__ == "__main__":
    ALL = ["memory", "sqlite", "redis", "postgres", "azurite", "dynalite", "moto"]
    main([name for name in sys.argv[1:] if not name.startswith("--")] or ALL)
