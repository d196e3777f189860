"""The benchmark harness: what one custom-status update costs, per backend x serializer x payload.

Run it with ``durastate bench`` (see docs/benchmarks.md) or from Python::

    from durastate.bench import BenchConfig, BackendSpec, run_bench, write_outputs
    result = run_bench(BenchConfig(backends=[BackendSpec("myplugin://...")], quick=True))
    write_outputs(result, Path("out"))
"""

from __future__ import annotations

from durastate.bench.compare import Comparison, compare
from durastate.bench.matrix import BackendSpec, BenchConfig, Effort
from durastate.bench.outputs import write_outputs
from durastate.bench.results import Measurement, RunResult, load_json
from durastate.bench.runner import run_bench

__all__ = [
    "BackendSpec",
    "BenchConfig",
    "Comparison",
    "Effort",
    "Measurement",
    "RunResult",
    "compare",
    "load_json",
    "run_bench",
    "write_outputs",
]
