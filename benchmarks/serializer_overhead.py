"""What the serializer checks cost, as ratios to the raw calls, measured side by side.

- json: ``set_custom_status`` on memory:// of a status dict that contains ``None`` values
  (so the NaN check runs), against a dict assignment of ``orjson.dumps`` of the same value;
- pickle-safe: ``SafePickleSerializer.dumps`` against ``pickle.dumps`` + the same HMAC.

Rounds alternate the two sides; each round's ratio is durastate / raw, and the figure is the
median of the per-round ratios (robust on a shared machine). Run:

    .venv/bin/python benchmarks/serializer_overhead.py [--rounds 41]

Measured 2026-11-29 on the shared 2-CPU VM (load average about 8), 41 rounds, before -> after
the serializer work: json with one None, 150 B 19.8x -> 12.4x, 2 KB 14.3x -> 5.1x, 16 KB
14.5x -> 5.0x (None in every step: 15.2x -> 6.0x at 16 KB); pickle-safe encode 2.5x ->
1.7x at 150 B, 2.4x -> 1.1x at 2 KB, 2.6x -> 0.9x at 16 KB (1.0 within noise).
The 150 B json cell misses 5x: set_custom_status costs about 2 us there without any NaN
check (the store's own path, 8x the raw call), and reading the output back to compare
costs about 1 us more; at 2 KB and 16 KB the check is the cost, about 3x orjson.dumps.
"""

from __future__ import annotations

import argparse
import hmac
import pickle
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from durastate.backends.memory import MemoryBackend
from durastate.bench.payloads import SIZES, build_model
from durastate.core.store import StateStore
from durastate.serializers.pickle_safe import SafePickleSerializer

KEY = "benchmark-key-0123456789"


def _status(label: str, counter: int, nulls: str) -> dict[str, Any]:
    value: dict[str, Any] = build_model(label, counter).model_dump(mode="json")
    value["eta_s"] = None  # one None: the NaN check has to look
    if nulls == "every step":
        for step in value["steps"]:
            step["note"] = None
    return value


def _per_call(run: Callable[[int], None], calls: int) -> float:
    start = time.perf_counter_ns()
    run(calls)
    return (time.perf_counter_ns() - start) / calls


def _median_ratio(
    ours: Callable[[int], None], raw: Callable[[int], None], rounds: int, calls: int
) -> tuple[float, float, float]:
    ratios: list[float] = []
    ours_ns: list[float] = []
    raw_ns: list[float] = []
    for number in range(rounds):
        first, second = (ours, raw) if number % 2 else (raw, ours)
        a = _per_call(first, calls)
        b = _per_call(second, calls)
        mine, theirs = (a, b) if first is ours else (b, a)
        ratios.append(mine / theirs)
        ours_ns.append(mine)
        raw_ns.append(theirs)
    return statistics.median(ratios), statistics.median(ours_ns), statistics.median(raw_ns)


def json_status_update(label: str, nulls: str, rounds: int) -> tuple[float, float, float]:
    values = [_status(label, 0, nulls), _status(label, 1, nulls)]
    store = StateStore(MemoryBackend(), max_custom_status_bytes=64 * 1024)
    store.create_instance("i", name="wf")
    target: dict[str, bytes] = {}
    dumps = orjson.dumps

    def ours(calls: int) -> None:
        for n in range(calls):
            store.set_custom_status("i", values[n & 1])

    def raw(calls: int) -> None:
        for n in range(calls):
            target["i"] = dumps(values[n & 1])

    calls = max(50, 200_000 // SIZES[label])
    return _median_ratio(ours, raw, rounds, calls)


def pickle_encode(label: str, rounds: int) -> tuple[float, float, float]:
    values = [_status(label, 0, "one"), _status(label, 1, "one")]
    serializer = SafePickleSerializer({"k1": KEY})
    key, key_id = KEY.encode(), b"k1"
    header = b"".join(
        len(part).to_bytes(8, "big") + part for part in (b"pickle-safe", key_id, b"i")
    )

    def ours(calls: int) -> None:
        for n in range(calls):
            serializer.dumps(values[n & 1], instance_id="i")

    def raw(calls: int) -> None:
        for n in range(calls):
            body = pickle.dumps(values[n & 1], protocol=5)
            hmac.digest(key, header + body, "sha256")

    calls = max(50, 200_000 // SIZES[label])
    return _median_ratio(ours, raw, rounds, calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=41)
    rounds = parser.parse_args().rounds
    print(f"median of {rounds} interleaved rounds; times are medians per call")
    print(f"{'cell':58} {'ratio':>6} {'durastate':>11} {'raw':>10}")
    for label in SIZES:
        for nulls in ("one", "every step"):
            ratio, ours, raw = json_status_update(label, nulls, rounds)
            cell = f"json set_custom_status, {label} dict, None in {nulls}"
            print(f"{cell:58} {ratio:5.2f}x {ours / 1000:9.2f}us {raw / 1000:8.2f}us")
    for label in SIZES:
        ratio, ours, raw = pickle_encode(label, rounds)
        cell = f"pickle-safe encode vs pickle.dumps + HMAC, {label} dict"
        print(f"{cell:58} {ratio:5.2f}x {ours / 1000:9.2f}us {raw / 1000:8.2f}us")


if __name__ == "__main__":
    main()
