"""The one LRU backends share (durastate.core.lru) and RecentPayloads, built on it."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from durastate.core.backend import RecentPayloads
from durastate.core.lru import LRU
from durastate.core.records import Payload
from durastate.errors import InvalidArgument


def test_storing_beyond_capacity_drops_the_least_recently_stored() -> None:
    lru: LRU[str, int] = LRU(3)
    for number, key in enumerate("abc"):
        lru.put(key, number)
    lru.put("a", 10)  # stored again: now the most recent
    assert lru.get("b") == 1  # a lookup does not make "b" recent
    lru.put("d", 3)
    assert "b" not in lru
    assert [lru.get(key) for key in "acd"] == [10, 2, 3]
    assert len(lru) == 3
    assert lru.get("missing") is None


def test_replace_and_pop_return_what_was_there() -> None:
    lru: LRU[tuple[str, str], str] = LRU(2)
    assert lru.replace(("i", "input"), "blob-1") is None
    assert lru.replace(("i", "input"), "blob-2") == "blob-1"
    assert lru.replace(("i", "input"), None) == "blob-2"  # None removes the entry
    assert ("i", "input") not in lru
    lru.put(("i", "output"), "blob-3")
    assert lru.pop(("i", "output")) == "blob-3"
    assert lru.pop(("i", "output")) is None
    lru.put(("j", "input"), "x")
    lru.clear()
    assert len(lru) == 0


@pytest.mark.parametrize("capacity", [0, -1, 2.5, "10", None])
def test_capacity_must_be_a_positive_int(capacity: object) -> None:
    with pytest.raises(InvalidArgument, match="capacity"):
        LRU(capacity)  # type: ignore[arg-type]


def test_threads_never_see_one_previous_value_twice_and_the_bound_holds() -> None:
    """``replace`` is one step: every stored value comes back exactly once (as a previous
    value, or as the last one standing), whatever the threads interleave."""
    lru: LRU[str, tuple[int, int]] = LRU(4)
    threads, rounds = 8, 2000
    returned: list[list[tuple[int, int]]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def work(number: int) -> None:
        start.wait()
        for step in range(rounds):
            previous = lru.replace("shared", (number, step))
            if previous is not None:
                returned[number].append(previous)
            lru.put(f"churn-{number}-{step % 7}", (number, step))

    workers = [threading.Thread(target=work, args=(number,)) for number in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seen = Counter(value for values in returned for value in values)
    last = lru.get("shared")
    if last is not None:
        seen[last] += 1
    stored = threads * rounds
    assert max(seen.values()) == 1
    assert len(lru) <= 4
    # "shared" itself may have been dropped by churn and stored again: never more than once
    assert sum(seen.values()) <= stored


def test_recent_payloads_knows_the_bytes_at_an_etag_and_forgets() -> None:
    recent = RecentPayloads(capacity=2)
    payload = Payload(b'{"percent":1}', "json")
    recent.remember("a", "e1", payload)
    assert recent.unchanged("a", "e1", Payload(b'{"percent":1}', "json"))
    assert not recent.unchanged("a", "e2", payload)  # another etag
    assert not recent.unchanged("a", None, payload)  # no etag: cannot tell
    assert not recent.unchanged("a", "e1", Payload(b'{"percent":1}', "msgpack"))
    recent.remember("a", "e2", None)  # a write whose bytes are not known
    assert not recent.unchanged("a", "e1", payload)
    recent.remember("b", "e1", payload)
    recent.remember("c", "e1", payload)
    recent.remember("d", "e1", payload)  # capacity 2: "b" is gone
    assert not recent.unchanged("b", "e1", payload)
    assert recent.unchanged("d", "e1", payload)
    recent.forget("d")
    assert not recent.unchanged("d", "e1", payload)
