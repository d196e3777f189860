"""The async cells (`durastate bench --async`) on every emulator, started and stopped here.

Run: ``.venv/bin/python benchmarks/async_cells.py [azurite] [dynalite] [moto]`` (all three
by default). Prints one line per cell: the async figure and its sync counterpart from the
same run. Figures and what they mean: docs/async.md.
"""

from __future__ import annotations

import json
import sys

from durastate.bench.async_cells import run_async_cells
from durastate.bench.matrix import BackendSpec
from durastate.testing import emulators
from durastate.testing.emulators import azurite_connection_string

CREDS = {"aws_access_key_id": "t", "aws_secret_access_key": "t", "region": "us-east-1"}


def show(spec: BackendSpec) -> None:
    for m in run_async_cells(spec, quick=True):
        figures = {"median_us": m.median_us, "cpu_us": m.cpu_us, "ops_per_s": m.ops_per_s}
        shown = {key: round(value, 1) for key, value in figures.items() if value is not None}
        print(spec.name, m.operation, m.error or "", shown, json.dumps(m.extra), flush=True)


def main(which: list[str]) -> None:
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
    main(sys.argv[1:] or ["azurite", "dynalite", "moto"])
