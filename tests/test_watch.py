"""watch's own decisions (pure) and its choice between push and polling; the behaviour on
every backend is in the conformance suite (src/durastate/testing/async_conformance.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from durastate import AsyncStateStore, StateStore
from durastate.backends.memory import MemoryBackend
from durastate.core.records import Capabilities
from durastate.core.watch import READ_YOURSELF, Feed, PollSchedule, poll_interval_of
from durastate.errors import ConfigurationError
from durastate.testing import CountingBackend


class AnnouncesButCannotSubscribe(MemoryBackend):
    """Declares push (its writes are announced somewhere) but offers no subscriber."""

    capabilities = Capabilities(cross_process=False, push=True)

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        raise NotImplementedError


def test_a_push_backend_without_a_subscriber_is_polled() -> None:
    store = StateStore(AnnouncesButCannotSubscribe())
    store.create_instance("i", name="wf")

    async def check() -> None:
        states = AsyncStateStore(store).watch("i", poll_interval=0.05)
        assert (await anext(states)).custom_status is None
        store.set_custom_status("i", "seen by polling")
        assert (await asyncio.wait_for(anext(states), 5)).custom_status == "seen by polling"

    asyncio.run(check())


def test_memory_watchers_are_pushed_to_and_start_no_thread() -> None:
    counting = CountingBackend(MemoryBackend())
    store = StateStore(counting)
    store.create_instance("i", name="wf")
    before = threading.active_count()
    states = store.watch("i")
    assert next(states).custom_status is None
    store.set_custom_status("i", 1)
    assert next(states).custom_status == 1
    assert threading.active_count() == before  # no poller
    assert counting.calls["subscribe"] == 1
    reads = counting.calls["read"]
    store.set_runtime_status("i", "completed")
    assert next(states).runtime_status == "completed"
    assert counting.calls["read"] == reads + 1  # one read per change, none in between
    with pytest.raises(StopIteration):
        next(states)


def test_a_poll_older_than_the_watchers_own_read_is_not_taken() -> None:
    feed = Feed("i", 1.0)
    feed.polled(None, started=10.0)
    assert feed.take(read_started=11.0) is READ_YOURSELF  # the watcher's read is newer
    assert feed.take(read_started=9.0) is None  # the poll is newer: taken


def test_the_poll_backs_off_to_the_interval_and_speeds_up_after_a_change() -> None:
    schedule = PollSchedule(0.8)
    assert schedule.floor == pytest.approx(0.1)
    delays = [schedule.next_delay(changed=False) for _ in range(6)]
    assert delays == sorted(delays)
    assert max(delays) == pytest.approx(0.8)  # never slower than the interval
    assert schedule.next_delay(changed=True) == pytest.approx(0.1)
    assert PollSchedule(0.02).floor == pytest.approx(0.01)  # at least 10 ms


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "1", True, [1]])
def test_a_poll_interval_must_be_positive(bad: float) -> None:
    with pytest.raises(ConfigurationError):
        poll_interval_of(bad)
