"""Push for ``watch`` over Redis pub/sub: one connection per backend object, sync or async.

Each write publishes its new etag on the instance's channel (`RedisCore.channel`). The first
subscription opens one pub/sub connection; a thread (sync) or a task (async) reads it and
hands each message to the watchers of its channel (`Listeners`). SUBSCRIBE/UNSUBSCRIBE go
out when a channel gets its first watcher or loses its last. After a dropped connection the
reader opens a new one and subscribes to every channel again; each confirmation notifies
that channel's watchers, who re-read, so no change is lost.

A user whose ACL lacks ``+subscribe`` (or the channels) gets NOPERM: reconnecting cannot
help, so push stops (`Refusal`, one WARNING per backend): new watchers poll through the
watch hub, and the watchers already subscribed are notified every `POLL_INSTEAD` seconds
(each notification makes them read: a poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

import redis
import redis.asyncio
from redis import exceptions
from redis.asyncio.client import PubSub as AsyncPubSub
from redis.client import PubSub

from durastate.backends.redis.core import RedisCore
from durastate.core.push import Listeners, reconnect_delay, stop_reader

log = logging.getLogger(__name__)

POLL_INSTEAD = 1.0  # seconds between the notifications that replace a refused push
LOST = (exceptions.RedisError, OSError, ValueError, RuntimeError)  # a reader's failures


class Refusal:
    """Whether the server refused this backend's SUBSCRIBE for good (NOPERM)."""

    def __init__(self) -> None:
        self.refused = False

    def check(self, exc: BaseException) -> bool:
        """True (and a WARNING, the first time) when ``exc`` is the server's refusal."""
        if not isinstance(exc, exceptions.NoPermissionError):
            return False
        if not self.refused:
            self.refused = True
            log.warning(
                "redis push refused (NOPERM: the user lacks +subscribe or the channels); "
                "watch polls instead"
            )
        return True

    def stop_new_subscriptions(self) -> None:
        if self.refused:
            raise NotImplementedError("redis push refused (NOPERM): poll")


class RedisPush:
    """The sync face: a thread reads the pub/sub connection. SUBSCRIBE/UNSUBSCRIBE are sent
    (under a lock) by the watcher that comes first or leaves last; the thread only reads,
    and (re)connects."""

    POLL = 1.0  # seconds the listener waits for a message before it checks for close()

    def __init__(self, client: redis.Redis, core: RedisCore) -> None:
        self._client = client
        self._core = core
        self.listeners = Listeners()
        self.refusal = Refusal()
        self._lock = threading.Lock()  # the pubsub's commands and (re)connection
        self._pubsub: PubSub | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        channel = self._core.channel(instance_id)
        with self._lock:
            if self._closed:
                raise NotImplementedError("the backend is closed: poll")
            self.refusal.stop_new_subscriptions()
            if self.listeners.add(channel, notify):
                self._command("subscribe", channel)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._listen, name="durastate-redis-push", daemon=True
                )
                self._thread.start()

        def unsubscribe() -> None:
            with self._lock:
                if self.listeners.remove(channel, notify):
                    self._command("unsubscribe", channel)

        return unsubscribe

    def _command(self, name: str, channel: str) -> None:
        """Send (SUB|UNSUB)SCRIBE on the open connection; none open, or it fails: the
        listener (re)connects and subscribes to the channels wanted then."""
        if self._pubsub is None:
            return
        try:
            getattr(self._pubsub, name)(channel)
        except exceptions.RedisError:
            log.debug("redis push: %s failed; the listener reconnects", name, exc_info=True)

    def _connect(self) -> PubSub:
        pubsub: PubSub = self._client.pubsub()  # type: ignore[no-untyped-call]
        channels = self.listeners.keys()
        try:
            if channels:
                pubsub.subscribe(*channels)
        except BaseException:
            pubsub.reset()
            raise
        return pubsub

    def _listen(self) -> None:
        failures = 0
        while not self._closed:
            if self.refusal.refused:
                time.sleep(POLL_INSTEAD)
                self.listeners.everyone()
                continue
            with self._lock:
                pubsub = self._pubsub
                if pubsub is None and not self._closed:
                    try:
                        pubsub = self._pubsub = self._connect()
                    except exceptions.RedisError as exc:
                        failures += 1
                        if not self.refusal.check(exc):
                            log.warning("redis push: cannot reconnect (%s)", type(exc).__name__)
            if pubsub is None:
                time.sleep(0 if self.refusal.refused else reconnect_delay(failures))
                continue
            try:
                message = pubsub.get_message(timeout=self.POLL)
            except LOST as exc:
                self._drop(pubsub, exc)
                continue
            failures = 0
            channel = self._core.pushed_channel(message)
            if channel is not None:
                self.listeners.dispatch(channel)

    def _drop(self, pubsub: PubSub, exc: BaseException) -> None:
        if not self.refusal.check(exc):
            log.info("redis push: connection lost (%s); reconnecting", type(exc).__name__)
        with self._lock:
            if self._pubsub is pubsub:
                self._pubsub = None
        with contextlib.suppress(Exception):  # a connection already broken
            pubsub.reset()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):  # a connection already broken
                pubsub.reset()


class AsyncRedisPush:
    """The async face: one task (started by the first subscription, on the loop that makes
    it) reads the connection. SUBSCRIBE/UNSUBSCRIBE go out from small tasks under a lock;
    confirmations notify (see ``RedisCore.pushed_channel``), so a re-subscription after a
    drop makes every watcher re-read once."""

    def __init__(self, client: redis.asyncio.Redis, core: RedisCore) -> None:
        self._client = client
        self._core = core
        self.listeners = Listeners()
        self.refusal = Refusal()
        self._lock: asyncio.Lock | None = None  # made on the loop of the first subscriber
        self._pubsub: AsyncPubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._commands: set[asyncio.Task[None]] = set()
        self._closed = False

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        if self._closed:
            raise NotImplementedError("the backend is closed: poll")
        self.refusal.stop_new_subscriptions()
        loop = asyncio.get_running_loop()
        channel = self._core.channel(instance_id)
        if self._lock is None:
            self._lock = asyncio.Lock()
        if self.listeners.add(channel, notify) and self._task is not None:
            self._send(loop, "subscribe", channel)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._listen(), name="durastate-redis-push")

        def unsubscribe() -> None:
            if self.listeners.remove(channel, notify) and not self._closed:
                self._send(loop, "unsubscribe", channel)

        return unsubscribe

    def _send(self, loop: asyncio.AbstractEventLoop, name: str, channel: str) -> None:
        task = loop.create_task(self._command(name, channel))
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _command(self, name: str, channel: str) -> None:
        assert self._lock is not None
        async with self._lock:
            if self._pubsub is None:  # (re)connecting: the listener subscribes to all wanted
                return
            try:
                await getattr(self._pubsub, name)(channel)
            except (exceptions.RedisError, OSError):
                log.debug("redis push: %s failed; the listener reconnects", name, exc_info=True)

    async def _connect(self) -> AsyncPubSub:
        assert self._lock is not None
        async with self._lock:
            pubsub = self._client.pubsub()
            # none left: the channel of the id "" (no instance has it) keeps the connection open
            channels = self.listeners.keys() or [self._core.channel("")]
            try:
                await pubsub.subscribe(*channels)
            except BaseException:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                raise
            self._pubsub = pubsub
            return pubsub

    async def _listen(self) -> None:
        failures = 0
        while not self._closed:
            if self.refusal.refused:
                await asyncio.sleep(POLL_INSTEAD)
                self.listeners.everyone()
                continue
            pubsub = self._pubsub
            if pubsub is None:
                try:
                    pubsub = await self._connect()
                except (exceptions.RedisError, OSError) as exc:
                    failures += 1
                    if not self.refusal.check(exc):
                        log.warning("redis push: cannot reconnect (%s)", type(exc).__name__)
                        await asyncio.sleep(reconnect_delay(failures))
                    continue
            try:
                message = await pubsub.get_message(timeout=None)
            except LOST as exc:
                if self._closed:
                    return
                await self._drop(pubsub, exc)
                continue
            failures = 0
            channel = self._core.pushed_channel(message)
            if channel is not None:
                self.listeners.dispatch(channel)

    async def _drop(self, pubsub: AsyncPubSub, exc: BaseException) -> None:
        if not self.refusal.check(exc):
            log.info("redis push: connection lost (%s); reconnecting", type(exc).__name__)
        if self._pubsub is pubsub:
            self._pubsub = None
        with contextlib.suppress(Exception):
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        await stop_reader(task)
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
