"""Cost of one custom-status update on Redis: durastate vs hand-written redis-py vs Celery.

Starts its own redis-server (``start_redis``), then times, alternately in rounds on the same
server and payload (a 150-byte dict, serialized inside the timed call by every contender):

- durastate: ``StateStore.set_custom_status(id, value, etag=last)`` (one EVALSHA: CAS,
  unchanged-bytes check, timestamps, pub/sub);
- raw ``HSET`` of the JSON bytes (no condition: the floor);
- the same compare-and-swap hand-written: a small Lua script called with ``evalsha``;
- Celery's ``RedisBackend.store_result`` (its redis result backend; no condition).

Reports medians of wall time and client CPU (``time.process_time``) per update and the CPU
ratios. Run: ``.venv/bin/python benchmarks/redis_update.py [rounds] [per_round]``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis

from durastate.backends.redis import RedisBackend
from durastate.core.store import StateStore
from durastate.testing.emulators import running, start_redis

CAS = """
local e = redis.call('HGET', KEYS[1], 'e')
if e and e ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'e', ARGV[3])
return 1
"""

VALUES = [
    {"percent": 42, "stage": "resize", "eta_seconds": 12.5, "note": "x" * 80, "i": 0},
    {"percent": 43, "stage": "resize", "eta_seconds": 11.5, "note": "y" * 80, "i": 1},
]


def contenders(url: str) -> dict[str, Callable[[int], Any]]:
    store = StateStore(RedisBackend.from_url(url, prefix="bench:"), serializer="json")
    store.create_instance("job", name="wf", custom_status=VALUES[1])
    etag = [store.set_custom_status("job", VALUES[0])]

    def durastate_update(i: int) -> None:
        etag[0] = store.set_custom_status("job", VALUES[i & 1], etag=etag[0])

    client = redis.Redis.from_url(url, protocol=2)
    dumps = orjson.dumps

    def raw_hset(i: int) -> None:
        client.hset("raw:job", "v", dumps(VALUES[i & 1]))

    sha = client.script_load(CAS)
    raw_etag = [""]

    def raw_lua_cas(i: int) -> None:
        new = str(i)
        if client.evalsha(sha, 1, "rawcas:job", raw_etag[0], dumps(VALUES[i & 1]), new) != 1:
            raise RuntimeError("hand-written CAS failed")
        raw_etag[0] = new

    from celery import Celery

    app = Celery("bench", backend=url, broker="memory://")
    backend = app.backend

    def celery_store_result(i: int) -> None:
        backend.store_result("celery-job", VALUES[i & 1], "PROGRESS")

    return {
        "durastate set_custom_status (EVALSHA CAS)": durastate_update,
        "redis-py HSET (no condition)": raw_hset,
        "redis-py hand-written Lua CAS (evalsha)": raw_lua_cas,
        "Celery RedisBackend.store_result": celery_store_result,
    }


def measure(ops: dict[str, Callable[[int], Any]], rounds: int, per_round: int) -> None:
    wall: dict[str, list[float]] = {name: [] for name in ops}
    cpu: dict[str, list[float]] = {name: [] for name in ops}
    for op in ops.values():  # warm up
        for i in range(200):
            op(i)
    for _ in range(rounds):
        for name, op in ops.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            for i in range(per_round):
                op(i)
            wall[name].append((time.perf_counter() - start_wall) / per_round * 1e6)
            cpu[name].append((time.process_time() - start_cpu) / per_round * 1e6)
    base = statistics.median(cpu["redis-py hand-written Lua CAS (evalsha)"])
    celery = statistics.median(cpu["Celery RedisBackend.store_result"])
    print(f"{'contender':45} {'wall µs':>9} {'CPU µs':>9} {'CPU/Lua CAS':>12} {'CPU/Celery':>11}")
    for name in ops:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"{name:45} {w:9.1f} {c:9.1f} {c / base:12.2f} {c / celery:11.2f}")


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    per_round = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    with running(start_redis()) as server:
        measure(contenders(server.endpoints["redis"]), rounds, per_round)


if __name__ == "__main__":
    main()
