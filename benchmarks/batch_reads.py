"""What ``get_many`` and ``count`` cost next to one ``get_instance`` per id, per backend.

    python benchmarks/batch_reads.py [rounds]

For each backend (SQLite; DynamoDB on dynalite and on moto_server; Redis; PostgreSQL, each
started on a free loopback port by durastate's own launchers and stopped at the end), 100
instances are made; then, in interleaved rounds, the script times 100 ``get_instance``
calls, one ``get_many`` of the same 100 ids and one ``count()`` over the table, and prints
the medians and the ratios to the 100 single reads of the same run (wall clock).
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from durastate import open_store
from durastate.core.store import StateStore
from durastate.testing import emulators

IDS = [f"batch-{number:03d}" for number in range(100)]


@contextlib.contextmanager
def _stores() -> Iterator[list[tuple[str, StateStore]]]:
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory())
        stores = [("sqlite", open_store(f"sqlite:///{Path(folder) / 'batch.db'}"))]
        for label, start in (
            ("dynamodb (dynalite)", emulators.start_dynalite),
            ("dynamodb (moto_server)", lambda: emulators.start_moto(serialized=False)),
            ("redis", emulators.start_redis),
            ("postgres", emulators.start_postgres),
        ):
            emulator = stack.enter_context(emulators.running(start()))
            if label == "postgres":
                stores.append((label, open_store(emulator.endpoint, table="batch")))
            else:
                stores.append((label, emulator.target().open()))
        for _, store in stores:
            stack.callback(store.close)
        yield stores


def _one_by_one(store: StateStore) -> None:
    for instance_id in IDS:
        store.get_instance(instance_id)


def _time(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    with _stores() as stores:
        print(
            f"{'backend':24} {'100 get_instance':>17} {'get_many(100)':>14} {'ratio':>6}"
            f" {'count()':>9} {'ratio':>6}"
        )
        for label, store in stores:
            for instance_id in IDS:
                store.create_instance(instance_id, name="batch", custom_status={"n": 1})
            singles: list[float] = []
            batched: list[float] = []
            counted: list[float] = []
            for _ in range(rounds):
                singles.append(_time(functools.partial(_one_by_one, store)))
                batched.append(_time(functools.partial(store.get_many, IDS)))
                counted.append(_time(store.count))
            single = statistics.median(singles)
            many = statistics.median(batched)
            count = statistics.median(counted)
            print(
                f"{label:24} {single * 1e3:14.2f} ms {many * 1e3:11.2f} ms {many / single:6.2f}"
                f" {count * 1e3:6.2f} ms {count / single:6.2f}"
            )


if __name__ == "__main__":
    main()
