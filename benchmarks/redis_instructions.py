"""Client instructions per Redis update (callgrind: repeatable on a loaded machine).

Timings on a shared machine move by ±15 % between runs; instruction counts do not. This runs
each contender's update loop twice under ``valgrind --tool=callgrind`` (N and 2N updates,
against one redis-server started here) and reports (I(2N) - I(N)) / N: the client's
instructions per update, start-up excluded. Contenders: durastate's
``set_custom_status(etag=...)``, the ``durastate bench`` anchors (redis-py ``HSET``; the
hand-written Lua compare-and-swap with durastate's client settings) and its Celery peer
(``store_result`` on the redis result backend).

Run: ``.venv/bin/python benchmarks/redis_instructions.py [N]`` (default 2000; needs valgrind).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from durastate.testing.emulators import running, start_redis

CONTENDERS = ("durastate", "lua-cas", "hset", "celery")


def loop(url: str, contender: str, count: int) -> None:
    """The measured process: ``count`` updates of one contender."""
    from durastate import open_store
    from durastate.bench.matrix import BackendSpec
    from durastate.bench.payloads import payload_pair
    from durastate.bench.redis_references import RedisAnchor

    values: tuple[Any, Any] = payload_pair("150B", "dict").values
    if contender == "durastate":
        store = open_store(url, prefix="cg:", serializer="json")
        store.purge("cg")
        store.create_instance("cg", name="wf", custom_status=values[1])
        etag = store.set_custom_status("cg", values[0])
        for i in range(count):
            etag = store.set_custom_status("cg", values[i & 1], etag=etag)
        return
    if contender == "celery":
        from durastate.bench.peers import CeleryPeer

        op = CeleryPeer(url).op(values, "cg")
    else:
        anchor = RedisAnchor(BackendSpec(url), cas=contender == "lua-cas", tuned=True)
        op = anchor.op(values, "cg")
    for i in range(count):
        op(i)


def instructions(url: str, contender: str, count: int) -> int:
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--loop",
            url,
            contender,
            str(count),
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        found = re.search(r"Collected : (\d+)", result.stderr)
        if found is None:
            raise RuntimeError(result.stderr[-2000:])
        return int(found.group(1))


def main() -> None:
    if sys.argv[1:2] == ["--loop"]:
        loop(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    per_update: dict[str, float] = {}
    with running(start_redis()) as server:
        url = server.endpoints["redis"]
        for contender in CONTENDERS:
            once = instructions(url, contender, count)
            twice = instructions(url, contender, 2 * count)
            per_update[contender] = (twice - once) / count
    base = per_update["lua-cas"]
    celery = per_update["celery"]
    print(f"{'contender':10} {'instructions/update':>20} {'/ lua-cas':>10} {'/ celery':>9}")
    for contender, value in per_update.items():
        print(f"{contender:10} {value:20,.0f} {value / base:10.3f} {value / celery:9.3f}")


if __name__ == "__main__":
    main()
