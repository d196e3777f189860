"""What telemetry costs when unused: memory:// updates, this tree against another, interleaved.

    python benchmarks/telemetry_overhead.py /path/to/other/src [rounds]

Each round runs one child per tree (alternating which goes first); each child times
200,000 ``set_custom_status`` calls on memory:// (a new 150-byte-ish value every call) with
OpenTelemetry installed and no provider configured, and prints ns per update. Reports the
median of each side and their ratio.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import time
import opentelemetry.trace  # installed, no provider configured
from durastate import open_store
store = open_store("memory://")
store.create_instance("b", name="bench")
values = [{"percent": i % 100, "stage": "resize", "eta": i, "note": "x" * 100} for i in range(1000)]
set_status = store.set_custom_status
best = float("inf")
for _ in range(5):
    start = time.perf_counter_ns()
    for i in range(40_000):
        set_status("b", values[i % 1000])
    best = min(best, (time.perf_counter_ns() - start) / 40_000)
print(best)
"""


def _run(src: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        env={"PYTHONPATH": src},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout)


def main() -> None:
    other = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    here = str(Path(__file__).resolve().parents[1] / "src")
    mine: list[float] = []
    theirs: list[float] = []
    for number in range(rounds):
        pair = [(here, mine), (other, theirs)]
        for src, into in pair if number % 2 else reversed(pair):
            into.append(_run(src))
    this, that = statistics.median(mine), statistics.median(theirs)
    print(f"this tree: {this:.0f} ns/update, other tree: {that:.0f} ns/update")
    print(f"ratio this/other: {this / that:.3f}")


if __name__ == "__main__":
    main()
