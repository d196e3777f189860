"""watch(instance_id): the instance each time it changes, until a terminal status.

The decisions are pure and shared by both stores: `WatchCursor` says what to yield and when
to stop, `PollSchedule` how long to wait between polls, `Feed` what a watcher has not seen.
The I/O comes in two flavours, a thread for `StateStore.watch` and a task for
`AsyncStateStore.watch`:

- A push backend (``Capabilities.push``: memory:// in-process) calls the feed after each
  write; each watcher then reads the instance itself.
- Any other backend is polled: one poller per instance and store, whatever the number of
  watchers, every ``poll_interval`` at most; right after a change it polls sooner (an
  eighth of the interval, at least 10 ms) and backs off while nothing changes.

A watcher subscribes first and reads second, so no change between its first read and its
first notification is lost. Writes that land faster than a watcher reads are coalesced:
it sees the newest state, never the same etag twice, never an older state after a newer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Final, Generic, TypeVar

from durastate.core.models import InstanceMetadata
from durastate.errors import (
    BackendUnavailable,
    ConfigurationError,
    DurastateError,
    InstanceNotFound,
)

if TYPE_CHECKING:
    from durastate.core.async_store import AsyncStateStore
    from durastate.core.store import StateStore

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL: Final = 1.0
MIN_POLL_DELAY: Final = 0.01


class WatchCursor:
    """What one watcher has yielded: the etag it saw last, and whether it is done."""

    def __init__(self, instance_id: str, since_etag: str | None) -> None:
        self.instance_id = instance_id
        self.etag = since_etag
        self.done = False

    def observe(self, metadata: InstanceMetadata | None) -> tuple[InstanceMetadata, ...]:
        """The states to yield for a read: it, or none when it is the one already seen
        (then ``done`` says whether to stop)."""
        if metadata is None:
            raise InstanceNotFound(self.instance_id)
        self.done = metadata.runtime_status.is_terminal
        if metadata.etag == self.etag:
            return ()
        self.etag = metadata.etag
        return (metadata,)


def poll_interval_of(value: float | None) -> float:
    if value is None:
        return DEFAULT_POLL_INTERVAL
    if type(value) not in (int, float) or not 0 < value < math.inf:  # not bool, str, nan
        raise ConfigurationError(f"poll_interval must be a positive number, not {value!r:.40}")
    return float(value)


class PollSchedule:
    """Adaptive delay: short right after a change, doubling up to the interval while idle."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.delay = self.floor

    @property
    def floor(self) -> float:
        return max(self.interval / 8, MIN_POLL_DELAY)

    def next_delay(self, changed: bool) -> float:
        self.delay = self.floor if changed else min(self.delay * 2, self.interval)
        return self.delay


class _ReadYourself:
    """Published by a push notification: the watcher reads the instance itself."""


READ_YOURSELF: Final = _ReadYourself()

Published = InstanceMetadata | None | DurastateError | _ReadYourself


class Feed:
    """What the pollers or the backend published for one instance, shared by its watchers.

    ``version`` grows with each publication. A polled state carries the monotonic time its
    read started, so a watcher never takes a poll that started before its own read.
    """

    def __init__(self, instance_id: str, interval: float) -> None:
        self.instance_id = instance_id
        self.version = 0
        self.latest: Published = READ_YOURSELF
        self.read_started = 0.0
        self.intervals = [interval]  # one per watcher: the shortest one is polled
        self.last_polled_etag: str | None = None

    @property
    def interval(self) -> float:
        return min(self.intervals)

    def publish(self, value: Published, read_started: float = 0.0) -> None:
        self.version += 1
        self.latest = value
        self.read_started = read_started

    def polled(self, value: InstanceMetadata | DurastateError | None, started: float) -> bool:
        """Publish a poll's result if it differs from the previous poll's; True if it did."""
        etag = value.etag if isinstance(value, InstanceMetadata) else None
        if etag is not None and etag == self.last_polled_etag:
            return False
        self.last_polled_etag = etag
        self.publish(value, started)
        return True

    def take(self, read_started: float) -> InstanceMetadata | _ReadYourself | None:
        """The latest publication as a watcher whose last read started then should use it."""
        latest = self.latest
        if self.read_started and self.read_started < read_started:
            return READ_YOURSELF  # an older poll: the watcher's own read was newer
        if isinstance(latest, DurastateError):
            raise latest
        return latest


def _as_error(exc: Exception, instance_id: str) -> DurastateError:
    if isinstance(exc, DurastateError):
        return exc
    log.error("watch: reading instance %r failed unexpectedly", instance_id, exc_info=exc)
    return BackendUnavailable(
        f"reading instance {instance_id!r} failed unexpectedly ({type(exc).__name__})"
    )


W = TypeVar("W")
Started = tuple[Feed, W, Callable[[], None] | None]


class Feeds(Generic[W]):
    """The feeds of one store by instance: the first watcher starts one (``start`` returns
    it with its wake-up object and its unsubscribe function), the last one ends it."""

    def __init__(self, start: Callable[[str, float], Started[W]]) -> None:
        self._start = start
        self._entries: dict[str, Started[W]] = {}

    def join(self, instance_id: str, interval: float) -> tuple[Feed, W]:
        entry = self._entries.get(instance_id)
        if entry is None:
            entry = self._entries[instance_id] = self._start(instance_id, interval)
        else:
            entry[0].intervals.append(interval)
        return entry[0], entry[1]

    def leave(self, instance_id: str, interval: float) -> bool:
        """True when that was the last watcher: the feed is gone, its push unsubscribed."""
        feed, _, unsubscribe = self._entries[instance_id]
        feed.intervals.remove(interval)
        if feed.intervals:
            return False
        del self._entries[instance_id]
        if unsubscribe is not None:
            unsubscribe()
        return True


def _push_or_poll(
    subscribe: Callable[[str, Callable[[], None]], Callable[[], None]] | None,
    instance_id: str,
    notify: Callable[[], None],
) -> Callable[[], None] | None:
    """Subscribe to the backend's pushes when it has them; ``None`` means: poll (also for a
    backend that announces writes but has no subscriber yet)."""
    if subscribe is None:
        return None
    try:
        return subscribe(instance_id, notify)
    except NotImplementedError:
        return None


# -- the sync flavour: one thread per polled instance ----------------------------------------


class SyncWatchHub:
    """The feeds of one `StateStore`; a polled instance gets one thread, a pushed one none."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._subscribe = store.backend.subscribe if store.capabilities.push else None
        self._feeds: Feeds[threading.Condition] = Feeds(self._start)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def feed(self, instance_id: str, interval: float) -> Iterator[tuple[Feed, threading.Condition]]:
        with self._lock:
            feed, condition = self._feeds.join(instance_id, interval)
        try:
            yield feed, condition
        finally:
            with self._lock:
                last = self._feeds.leave(instance_id, interval)
            if last:
                with condition:
                    condition.notify_all()  # the poller sees it has no watchers left

    def _start(self, instance_id: str, interval: float) -> Started[threading.Condition]:
        feed, condition = Feed(instance_id, interval), threading.Condition()

        def notify() -> None:
            with condition:
                feed.publish(READ_YOURSELF)
                condition.notify_all()

        unsubscribe = _push_or_poll(self._subscribe, instance_id, notify)
        if unsubscribe is None:
            threading.Thread(
                target=self._poll,
                args=(feed, condition),
                name=f"durastate-watch-{instance_id[:32]}",
                daemon=True,
            ).start()
        return feed, condition, unsubscribe

    def _poll(self, feed: Feed, condition: threading.Condition) -> None:
        schedule = PollSchedule(feed.interval)
        delay = schedule.floor  # the watcher has just read: no need to poll at once
        while True:
            with condition:
                condition.wait(delay)
                if not feed.intervals:
                    return
                schedule.interval = feed.interval
            started = time.monotonic()
            try:
                value: InstanceMetadata | DurastateError | None = self._store.get_instance(
                    feed.instance_id
                )
            except Exception as exc:  # handed to the watchers: a poller never dies silently
                value = _as_error(exc, feed.instance_id)
            with condition:
                changed = feed.polled(value, started)
                if changed:
                    condition.notify_all()
            delay = schedule.next_delay(changed)


def watch_sync(
    store: StateStore, instance_id: str, since_etag: str | None, poll_interval: float | None
) -> Iterator[InstanceMetadata]:
    interval = poll_interval_of(poll_interval)
    cursor = WatchCursor(instance_id, since_etag)
    with store.watch_hub().feed(instance_id, interval) as (feed, condition):
        seen = feed.version  # subscribed: from here on nothing is missed
        started = time.monotonic()
        metadata = store.get_instance(instance_id)
        while True:
            yield from cursor.observe(metadata)
            if cursor.done:
                return
            with condition:
                condition.wait_for(lambda seen=seen: feed.version != seen)  # type: ignore[misc]
                seen, latest = feed.version, feed.take(started)
            if not isinstance(latest, _ReadYourself):
                metadata = latest
                continue
            started = time.monotonic()
            metadata = store.get_instance(instance_id)


# -- the async flavour: one task per polled instance -------------------------------------


class AsyncWatchHub:
    """The feeds of one `AsyncStateStore`, on its event loop; one poll task per instance."""

    def __init__(self, store: AsyncStateStore) -> None:
        self._store = store
        self._subscribe = store.backend.subscribe if store.capabilities.push else None
        self._feeds: Feeds[asyncio.Event] = Feeds(self._start)

    @contextlib.asynccontextmanager
    async def feed(
        self, instance_id: str, interval: float
    ) -> AsyncIterator[tuple[Feed, asyncio.Event]]:
        entry = self._feeds.join(instance_id, interval)
        try:
            yield entry
        finally:
            self._feeds.leave(instance_id, interval)  # a poller ends at its next wake

    def _start(self, instance_id: str, interval: float) -> Started[asyncio.Event]:
        feed, changed = Feed(instance_id, interval), asyncio.Event()
        loop = asyncio.get_running_loop()

        def published() -> None:
            feed.publish(READ_YOURSELF)
            changed.set()

        def notify() -> None:  # from any thread (a writer in another thread, or this loop)
            loop.call_soon_threadsafe(published)

        unsubscribe = _push_or_poll(self._subscribe, instance_id, notify)
        if unsubscribe is None:
            task = loop.create_task(self._poll(feed, changed))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return feed, changed, unsubscribe

    _tasks: set[asyncio.Task[None]] = set()  # strong references while the pollers run

    async def _poll(self, feed: Feed, changed: asyncio.Event) -> None:
        schedule = PollSchedule(feed.interval)
        delay = schedule.floor  # the watcher has just read: no need to poll at once
        while True:
            await asyncio.sleep(delay)
            if not feed.intervals:
                return
            schedule.interval = feed.interval
            started = time.monotonic()
            try:
                value: InstanceMetadata | DurastateError | None = await self._store.get_instance(
                    feed.instance_id
                )
            except Exception as exc:  # handed to the watchers: a poller never dies silently
                value = _as_error(exc, feed.instance_id)
            polled = feed.polled(value, started)
            if polled:
                changed.set()
            delay = schedule.next_delay(polled)


async def watch_async(
    store: AsyncStateStore, instance_id: str, since_etag: str | None, poll_interval: float | None
) -> AsyncIterator[InstanceMetadata]:
    interval = poll_interval_of(poll_interval)
    cursor = WatchCursor(instance_id, since_etag)
    async with store.watch_hub().feed(instance_id, interval) as (feed, changed):
        seen = feed.version  # subscribed: from here on nothing is missed
        started = time.monotonic()
        metadata = await store.get_instance(instance_id)
        while True:
            for item in cursor.observe(metadata):
                yield item
            if cursor.done:
                return
            while feed.version == seen:
                changed.clear()
                await changed.wait()
            seen, latest = feed.version, feed.take(started)
            if not isinstance(latest, _ReadYourself):
                metadata = latest
                continue
            started = time.monotonic()
            metadata = await store.get_instance(instance_id)
