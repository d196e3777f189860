"""memory:// hot path, looked at closely: ratios to the raw anchors, each step alone, cProfile.

    .venv/bin/python benchmarks/memory_hot_path.py ratios [CHECKOUT [OPS]]  # e.g. an old worktree
    .venv/bin/python benchmarks/memory_hot_path.py steps
    .venv/bin/python benchmarks/memory_hot_path.py profile
    .venv/bin/python benchmarks/memory_hot_path.py report-backends [REPETITIONS]

``ratios`` imports ``durastate`` from CHECKOUT/src (default: this checkout) and times the
harness's own cells against their anchors with its own paired rounds (OPS calls a side,
default 200,000; the harness loop's cost subtracted; thread CPU), so its figures read like
the full run's Targets table and two checkouts can be compared minutes apart on a shared
machine. ``steps`` times each step of ``set_custom_status`` alone; ``profile`` is cProfile
over thread CPU; ``report-backends`` runs the harness's ``report()`` cell on memory:// and
on network backends (moto_server, dynalite) side by side. The findings are in
benchmarks/results/profiles/memory-set-custom-status.md.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _setter(store: Any, values: tuple[Any, Any], alternate: bool = False) -> Callable[[int], Any]:
    if alternate:  # any i: the two variants in turn
        return lambda i: store.set_custom_status("job", values[i & 1])
    return lambda i: store.set_custom_status("job", values[i])


def _paired(label: str, ours: Callable[[int], Any], raw: Callable[[int], Any], ops: int) -> None:
    """The harness's own paired rounds (loop cost subtracted from both sides): the median
    of durastate's rounds over the median of the anchor's, as its Targets table reads them."""
    from durastate.bench import timing

    mine, theirs = timing.measure_paired(ours, raw, seconds=1.0, min_ops=200,
                                         max_ops=ops, repeat=ops)
    print(f"{label}: {mine.cpu_ns / theirs.cpu_ns:.2f}x the anchor "
          f"({mine.cpu_ns:.0f} ns against {theirs.cpu_ns:.0f} ns)")


def ratios(ops: int) -> None:
    """The three memory:// update targets and the untyped read, each paired with its anchor,
    built from the harness's own cells (`durastate_op`) so the figures match its tables."""
    import durastate
    from durastate.backends.memory import MemoryBackend
    from durastate.bench.anchors import DictAnchor, DictReadAnchor
    from durastate.bench.cells import clock_miss_op, durastate_op, make_serializer, make_store
    from durastate.bench.payloads import payload_pair

    print(f"durastate from {Path(durastate.__file__).parents[2]}")
    store = make_store(MemoryBackend(), make_serializer("json"), 16 * 1024)
    values = payload_pair("150B", "dict").values
    anchor = DictAnchor().op(values, "raw")  # every update target is held against this one
    for kind in ("dict", "nulls"):
        _paired(f"set_custom_status, 150 B {kind} (anchor: dict + orjson.dumps)",
                durastate_op(store, "update_lww", payload_pair("150B", kind).values), anchor, ops)
    instance_id = "clock-miss"
    store.create_instance(instance_id, name="bench", custom_status=values[1])
    _paired("set_custom_status, 150 B dict, new millisecond (anchor: dict + orjson.dumps)",
            clock_miss_op(store.set_custom_status, instance_id, values), anchor, ops)
    _paired("get_instance + custom_status, 150 B (anchor: dict + orjson.loads)",
            durastate_op(store, "read", values), DictReadAnchor(typed=False).op(values, "raw"),
            ops)


def steps() -> None:
    import re
    import threading

    import orjson

    from durastate import StateStore
    from durastate.backends.memory import MemoryBackend
    from durastate.bench.payloads import payload_pair
    from durastate.core import store as store_module
    from durastate.core.records import Payload, WriteResult
    from durastate.serializers.base import plain_default
    from durastate.serializers.json import refuse_non_finite

    a, b = payload_pair("150B", "dict").values
    nulls = payload_pair("150B", "nulls").values[0]
    store = StateStore(MemoryBackend())
    store.create_instance("job", name="wf")
    codec, backend, now = store.codec, store.backend, store_module.utc_now_ms()
    data = orjson.dumps(a)
    raw: dict[str, bytes] = {}
    lock = threading.Lock()
    acquire, release = lock.acquire, lock.release
    join = b"".join
    has_null = re.compile(rb"null").search
    etags = list(map(str, range(10**6)))
    pop = etags.pop
    millis = time.time_ns() // 1_000_000

    def timed(name: str, step: Callable[[Any], Any]) -> None:
        medians = []
        for _ in range(150):
            start = time.thread_time_ns()
            for _ in range(200):
                step(a)
                step(b)
            medians.append((time.thread_time_ns() - start) / 400)
        print(f"| {name} | {statistics.median(medians):.0f} |")

    print("| step | ns per call |\n|---|---|")
    timed("empty call (the lambda itself)", lambda v: None)
    timed("anchor: d[id] = orjson.dumps(v)", lambda v: raw.__setitem__("job", orjson.dumps(v)))
    timed("StateStore.set_custom_status (whole)", lambda v: store.set_custom_status("job", v))
    timed("PayloadCodec.encode (serialize, null check, size check, envelope)",
          lambda v: codec.encode(v, "job", "custom_status", 16384))
    timed("orjson.dumps(v, default=plain_default)",
          lambda v: orjson.dumps(v, default=plain_default))
    timed("null search: re.compile(b'null').search(data)", lambda v: has_null(data))
    timed("NaN walk of the 150 B nulls value", lambda v: refuse_non_finite(nulls, b"null"))
    timed("Payload(data, 'json')", lambda v: Payload(data, "json"))
    timed("utc_now_ms() (cache hit)", lambda v: store_module.utc_now_ms())
    timed("a new millisecond: its second's datetime + a prebuilt timedelta",
          lambda v: store_module._new_millisecond(millis))
    timed("MemoryBackend.write_custom_status_etag (incl. dumps and a Payload)",
          lambda v: backend.write_custom_status_etag(  # type: ignore[attr-defined]
              "job", Payload(orjson.dumps(v), "json"), None, now))
    timed("MemoryBackend.write_custom_status, the contract (the same + WriteResult)",
          lambda v: backend.write_custom_status(
              "job", Payload(orjson.dumps(v), "json"), etag=None, now=now))
    timed("lock acquire + release (bound methods)", lambda v: (acquire(), release()))
    timed("exact-size copy: b''.join((data, b''))", lambda v: join((data, b"")))
    timed("WriteResult(etag)", lambda v: WriteResult("12"))
    timed("next etag: a pop from the block", lambda v: pop())


def profile() -> None:
    from durastate import StateStore
    from durastate.backends.memory import MemoryBackend
    from durastate.bench.payloads import payload_pair
    from durastate.bench.profiling import profile_op

    for kind in ("dict", "nulls"):
        values = payload_pair("150B", kind).values
        store = StateStore(MemoryBackend())
        store.create_instance("job", name="wf")
        print(f"### set_custom_status, json, 150 B {kind}\n")
        print(profile_op(_setter(store, values, alternate=True), 100_000, top=16, cpu=True))
        print()


def report_backends(repetitions: int) -> None:
    """``report()``'s cost over the serializer alone, with the harness's own report cell at
    full effort, on memory:// and three network backends interleaved in one process (quick
    runs had shown more on the network backends)."""
    import contextlib

    from durastate.bench.cells import (
        StorePair,
        base_measurement,
        make_serializer,
        run_report_cell,
    )
    from durastate.bench.matrix import BackendSpec, Effort
    from durastate.bench.payloads import payload_pair
    from durastate.opening import open_backend
    from durastate.testing import emulators

    keys = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench-secret",
            "region": "us-east-1"}
    with contextlib.ExitStack() as stack:
        moto = stack.enter_context(emulators.running(emulators.start_moto()))
        dynalite = stack.enter_context(emulators.running(emulators.start_dynalite()))
        specs = [
            BackendSpec("memory://", {}, "memory"),
            BackendSpec("dynamodb://durastate-bench",
                        {"endpoint_url": dynalite.endpoint, **keys}, "dynamodb@dynalite"),
            BackendSpec("s3://durastate-bench/status/",
                        {"endpoint_url": moto.endpoint, **keys}, "s3@moto"),
            BackendSpec("dynamodb://durastate-bench",
                        {"endpoint_url": moto.endpoint, **keys}, "dynamodb@moto"),
        ]
        serializer = make_serializer("json")
        pairs = []
        for spec in specs:
            backend = open_backend(spec.url, **spec.options)
            stack.callback(backend.close)
            pairs.append(StorePair.open(spec, backend, serializer, 16 * 1024))
        print("| repetition | backend | payload | report() - serializer, µs CPU |")
        print("|---|---|---|---|")
        for repetition in range(repetitions):
            for size in ("150B", "2KB", "16KB"):
                payload = payload_pair(size, "dict")
                for pair in pairs:
                    m = run_report_cell(pair, payload, Effort.full(),
                                        base_measurement(pair, payload, "report"))
                    print(f"| {repetition} | {pair.spec.name} | {size} | "
                          f"{m.extra['paired_overhead_cpu_us']:+.3f} |", flush=True)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "ratios"
    if command == "ratios":
        if len(sys.argv) > 2:
            sys.path.insert(0, str(Path(sys.argv[2]).resolve() / "src"))
        ratios(int(sys.argv[3]) if len(sys.argv) > 3 else 200_000)
    elif command == "report-backends":
        report_backends(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    else:
        {"steps": steps, "profile": profile}[command]()
