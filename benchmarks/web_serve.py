"""What `durastate serve` costs: GET against a minimal endpoint, the delay from
`set_custom_status` to the SSE event, and backend reads behind many event streams.

The measuring code is `durastate.bench.web_cells` (what `durastate bench --web` runs, with the
targets, summary.md and results.json); this prints the same cells alone, on memory and SQLite:

    .venv/bin/python benchmarks/web_serve.py                # every cell, full effort
    .venv/bin/python benchmarks/web_serve.py --only get --rounds 5 --seconds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from durastate.bench.matrix import BackendSpec
from durastate.bench.report import web_rows
from durastate.bench.results import RunResult
from durastate.bench.web_cells import CELLS, WebEffort, web_url


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--only", choices=["get", "latency", "fanout"])
    parser.add_argument("--quick", action="store_true", help="the quick effort of --quick")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--samples", type=int)
    parser.add_argument("--poll-interval", type=float)
    parser.add_argument("--clients", type=int)
    args = parser.parse_args()
    effort = WebEffort.quick() if args.quick else WebEffort.full()
    changes = {
        name: getattr(args, name)
        for name in ("rounds", "seconds", "samples", "poll_interval", "clients")
    }
    effort = dataclasses.replace(effort, **{k: v for k, v in changes.items() if v is not None})
    names = {"get": "web_get", "latency": "web_sse_latency", "fanout": "web_sse_fanout"}
    cells = [c for c in CELLS if args.only is None or c.__name__ == names[args.only]]
    result = RunResult(meta={})
    with tempfile.TemporaryDirectory(prefix="durastate-web-bench-") as folder:
        for spec in (BackendSpec("memory://"), BackendSpec(f"sqlite:///{folder}/bench.db")):
            for cell in cells:
                url = web_url(spec, Path(folder), cell.__name__)
                result.measurements.append(cell(spec, url, effort))
    for row in web_rows(result):
        print("  ".join(row))


if __name__ == "__main__":
    main()
