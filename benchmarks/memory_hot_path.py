"""memory:// hot path, looked at closely: ratios to the raw anchors, each step alone, cProfile.

    .venv/bin/python benchmarks/memory_hot_path.py ratios [CHECKOUT]   # e.g. an old worktree
    .venv/bin/python benchmarks/memory_hot_path.py steps
    .venv/bin/python benchmarks/memory_hot_path.py profile

``ratios`` imports ``durastate`` from CHECKOUT/src (default: this checkout), then alternates
300 rounds of 400 calls of durastate and of the raw anchor (thread CPU; both sides are a
Python function call, as in the harness) and prints the median of the per-round ratios, so
two checkouts can be compared minutes apart on a shared machine. ``steps`` times each step
of ``set_custom_status`` alone; ``profile`` is cProfile over thread CPU. The findings are in
benchmarks/results/profiles/memory-set-custom-status.md.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _ratio(ours: Callable[[int], Any], raw: Callable[[int], Any], calls: int = 400,
           rounds: int = 300) -> float:
    ratios = []
    clock = time.thread_time_ns
    for _ in range(rounds):
        start = clock()
        for i in range(calls):
            ours(i & 1)
        mine = clock() - start
        start = clock()
        for i in range(calls):
            raw(i & 1)
        ratios.append(mine / (clock() - start))
    return statistics.median(ratios)


def _setter(store: Any, values: tuple[Any, Any], alternate: bool = False) -> Callable[[int], Any]:
    if alternate:  # any i: the two variants in turn
        return lambda i: store.set_custom_status("job", values[i & 1])
    return lambda i: store.set_custom_status("job", values[i])


def _raw_setter(raw: dict[str, bytes], values: tuple[Any, Any]) -> Callable[[int], Any]:
    import orjson

    return lambda i: raw.__setitem__("job", orjson.dumps(values[i]))


def ratios() -> None:
    import orjson

    import durastate
    from durastate import StateStore
    from durastate.backends.memory import MemoryBackend
    from durastate.bench.payloads import payload_pair

    print(f"durastate from {Path(durastate.__file__).parents[2]}")
    raw: dict[str, bytes] = {}
    for kind in ("dict", "nulls"):
        values = payload_pair("150B", kind).values
        store = StateStore(MemoryBackend())
        store.create_instance("job", name="wf")
        ratio = _ratio(_setter(store, values), _raw_setter(raw, values))
        print(f"set_custom_status, 150 B {kind}: {ratio:.2f}x dict + orjson.dumps")
    values = payload_pair("150B", "dict").values
    store = StateStore(MemoryBackend())
    store.create_instance("job", name="wf", custom_status=values[0])
    raw["job"] = orjson.dumps(values[0])
    ratio = _ratio(lambda i: store.get_instance("job").custom_status,  # type: ignore[union-attr]
                   lambda i: orjson.loads(raw["job"]))
    print(f"get_instance + custom_status, 150 B: {ratio:.2f}x orjson.loads")


def steps() -> None:
    import itertools
    import threading

    import orjson

    from durastate import StateStore
    from durastate.backends.memory import MemoryBackend
    from durastate.bench.payloads import payload_pair
    from durastate.core.records import Payload, WriteResult
    from durastate.core.store import utc_now_ms
    from durastate.serializers.base import plain_default

    a, b = payload_pair("150B", "dict").values
    store = StateStore(MemoryBackend())
    store.create_instance("job", name="wf")
    codec, backend, now = store.codec, store.backend, utc_now_ms()
    data = orjson.dumps(a)
    raw: dict[str, bytes] = {}
    lock = threading.Lock()
    acquire, release = lock.acquire, lock.release
    next_text = map(str, itertools.count(1)).__next__
    join = b"".join

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
    timed("Payload(data, 'json')", lambda v: Payload(data, "json"))
    timed("utc_now_ms() (cache hit)", lambda v: utc_now_ms())
    timed("MemoryBackend.write_custom_status (incl. a Payload)",
          lambda v: backend.write_custom_status(
              "job", Payload(orjson.dumps(v), "json"), etag=None, now=now))
    timed("lock acquire + release (bound methods)", lambda v: (acquire(), release()))
    timed("exact-size copy: b''.join((data, b''))", lambda v: join((data, b"")))
    timed("WriteResult(etag)", lambda v: WriteResult("12"))
    timed("next etag text: map(str, count) next", lambda v: next_text())


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


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "ratios"
    if command == "ratios" and len(sys.argv) > 2:
        sys.path.insert(0, str(Path(sys.argv[2]).resolve() / "src"))
    {"ratios": ratios, "steps": steps, "profile": profile}[command]()
