"""`durastate bench` on Redis: starts its own redis-server, runs the bench on it, stops it.

The Redis cells compare one custom-status update (json, 150 B dict by default) with the
hand-written redis-py calls (``HSET``; the same compare-and-swap as a Lua script called with
``evalsha``, with the default client and with durastate's client settings) and Celery's
redis result backend ``store_result``, timed alternately on the same server
(``durastate.bench.redis_references``).

Run: ``.venv/bin/python benchmarks/redis_update.py [extra durastate bench arguments]``,
e.g. ``--quick`` or ``-p 16KB``. Results go to ``benchmarks/results/redis-latest``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from durastate.testing.emulators import running, start_redis

DEFAULTS = ["-s", "json", "-p", "150B", "--kind", "dict", "--no-chart", "--no-progress"]


def main() -> int:
    durastate = Path(sys.executable).with_name("durastate")
    with running(start_redis()) as server:
        command = [
            str(durastate),
            "bench",
            "-b",
            server.endpoints["redis"],
            *DEFAULTS,
            "--output",
            "benchmarks/results/redis-latest",
            *sys.argv[1:],
        ]
        return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
