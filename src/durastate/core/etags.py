"""Etags made by the client: unique per write without a system call or a round trip.

A backend that makes its own etags (SQLite, Redis, PostgreSQL) knows the new etag before it
writes, so a write carries it and a retry after a lost answer can recognise its own write.
"""

from __future__ import annotations

import itertools
import os


class EtagSource:
    """Unique etags: a random per-process prefix (12 hex digits) and a counter in hex. The
    prefix is drawn again in a forked child, so two processes never share one.

    ``width``: pad the counter to this many hex digits, for a store that needs every etag
    the same length (Redis keeps its recent write ids in one fixed-width string)."""

    def __init__(self, width: int | None = None) -> None:
        self.width = width
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = os.urandom(6).hex()
        self.counter = itertools.count(1)

    def __call__(self) -> str:
        if self.width is None:
            return f"{self.prefix}{next(self.counter):x}"
        return f"{self.prefix}{next(self.counter):0{self.width}x}"
