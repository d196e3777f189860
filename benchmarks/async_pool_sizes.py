"""Azure Tables' async pool size at 100 in flight: updates/s and CPU per update against the
sync store in 16 threads, for a few ``max_pool_connections``, interleaved runs on one Azurite.

    .venv/bin/python benchmarks/async_pool_sizes.py [--repeat 3] [--sizes 10,32,100]

Each run is the cell ``async_updates_100_in_flight`` of ``durastate bench --async`` (1,000
updates over 100 instances); the sync side keeps its own pool (idle connections only).
"""

from __future__ import annotations

import argparse
import statistics

from durastate.bench.async_cells import updates_in_flight
from durastate.bench.matrix import BackendSpec
from durastate.testing import emulators
from durastate.testing.emulators import azurite_connection_string


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="10,32,100")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    ratios: dict[int, list[float]] = {size: [] for size in sizes}
    print("| pool | updates/s async | updates/s sync, 16 threads | throughput ratio | CPU ratio |")
    print("|---|---|---|---|---|")
    with emulators.running(emulators.start_azurite()) as azurite:
        for _ in range(args.repeat):
            for size in sizes:
                options = {
                    "connection_string": azurite_connection_string(azurite),
                    "max_pool_connections": size,
                }
                spec = BackendSpec(f"azure-tables://benchpool{size}", options, "azure-tables")
                cell = updates_in_flight(spec, True)
                ratio = float(cell.extra["throughput_ratio_vs_sync"])
                ratios[size].append(ratio)
                print(
                    f"| {size} | {cell.ops_per_s or 0:.0f} | {cell.extra['sync_updates_per_s']} "
                    f"| {ratio} | {cell.extra['cpu_ratio_vs_sync']} |",
                    flush=True,
                )
    for size, values in ratios.items():
        print(f"pool {size}: median throughput ratio {statistics.median(values):.2f}")


if __name__ == "__main__":
    main()
