"""A cProfile of one operation, so a missed target comes with evidence, not a guess."""

from __future__ import annotations

import cProfile
import io
import pstats
import re
import time

from durastate.bench.timing import Op

_PATH = re.compile(r"(/[^\s:(]*/)(site-packages|src|lib/python3\.\d+)/")


def profile_op(op: Op, ops: int, top: int = 14, *, cpu: bool = False) -> str:
    """The ``top`` functions by own time over ``ops`` calls (paths shortened).

    With ``cpu``, the profiler's clock is the thread's CPU time, so waiting on a socket
    costs nothing and the table shows where the client's CPU goes.
    """
    for i in range(min(ops, 50)):  # warm
        op(i)
    profiler = cProfile.Profile(time.thread_time) if cpu else cProfile.Profile()
    profiler.enable()
    for i in range(ops):
        op(i)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    start = next((n for n, line in enumerate(lines) if "ncalls" in line), 0)
    header = next((line.strip() for line in lines if "function calls" in line), "")
    body = [_PATH.sub("", line) for line in lines[start:]]
    clock = "thread CPU time" if cpu else "wall time"
    return "\n".join([f"{header} ({ops} operations, {clock})", *body])
