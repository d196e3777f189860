"""The shared helpers SQLite, Redis and PostgreSQL make etags and timestamps with."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from durastate.core.clock import EPOCH, from_micros, to_micros
from durastate.core.etags import EtagSource


def test_etags_are_unique_and_a_forked_child_draws_another_prefix() -> None:
    source = EtagSource()
    etags = {source() for _ in range(1000)}
    assert len(etags) == 1000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next etag, to the parent
        os.write(write, source().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child[:12] != source.prefix
    assert child not in etags


def test_fixed_width_etags_are_all_one_length() -> None:
    source = EtagSource(width=12)
    source.counter = iter([1, 0xABC, 16**12 - 1])  # type: ignore[assignment]
    assert [len(source()) for _ in range(3)] == [24, 24, 24]


def test_micros_round_trip_and_the_epoch() -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert from_micros(to_micros(moment)) == moment
    assert to_micros(EPOCH) == 0
