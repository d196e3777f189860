"""redis:// — the sync driver: sends the core's script calls over one redis-py pool.

A custom-status update is one EVALSHA (one round trip, no read first). redis-py's own
retries are off: a write whose connection drops is sent again by this driver with the retry
flag, and the script recognises the first attempt by its write id (see ``scripts``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

import redis
from redis import exceptions
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.retry import Retry

from durastate.backends.redis.core import RedisCore, Reply, ScriptCall
from durastate.backends.redis.failures import Attempts
from durastate.backends.redis.options import RedisTarget
from durastate.core.backend import Backend
from durastate.core.push import Listeners, reconnect_delay
from durastate.core.records import (
    Capabilities,
    InstanceQuery,
    InstanceRecord,
    NewInstance,
    Payload,
    RecordPage,
    RuntimeStatus,
    WriteResult,
)

if TYPE_CHECKING:
    from durastate.core.async_backend import AsyncBackend

log = logging.getLogger(__name__)

MAX_VALUE_BYTES = 512 * 1024 * 1024  # Redis's limit for one string


def capabilities_for(target: RedisTarget) -> Capabilities:
    return Capabilities(
        max_payload_bytes=MAX_VALUE_BYTES,
        skips_unchanged=True,
        native_query=True,
        ttl=target.options.ttl_seconds is not None,
        push=True,
    )


def no_retries() -> Retry:
    """redis-py retries a failed command by default; a lost write answer must not be re-sent
    blindly, so the drivers do their own (recognising) retry instead. (The async driver
    passes ``redis.asyncio.retry.Retry``, whose retry awaits.)"""
    return Retry(NoBackoff(), 0)


_UNSENT: Any = object()  # a pipeline reply that never came


class RedisPush:
    """One pub/sub connection per backend, opened by the first subscription, and a thread
    that dispatches its messages. SUBSCRIBE/UNSUBSCRIBE are sent (under a lock) by the
    watcher that comes first or leaves last; the listener thread only reads, and after a
    dropped connection opens a new one and subscribes to every channel again (each
    confirmation notifies that channel's watchers: they re-read, so no change is lost)."""

    POLL = 1.0  # seconds the listener waits for a message before it checks for close()

    def __init__(self, client: redis.Redis, core: RedisCore) -> None:
        self._client = client
        self._core = core
        self.listeners = Listeners()
        self._lock = threading.Lock()  # the pubsub's commands and (re)connection
        self._pubsub: PubSub | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        channel = self._core.channel(instance_id)
        with self._lock:
            if self._closed:
                raise NotImplementedError("the backend is closed: poll")
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
        while True:
            with self._lock:
                if self._closed:
                    return
                pubsub = self._pubsub
                if pubsub is None:
                    try:
                        pubsub = self._pubsub = self._connect()
                    except exceptions.RedisError as exc:
                        failures += 1
                        log.warning("redis push: cannot reconnect (%s)", type(exc).__name__)
                        pubsub = None
            if pubsub is None:
                time.sleep(reconnect_delay(failures))
                continue
            try:
                message = pubsub.get_message(timeout=self.POLL)
            except (exceptions.RedisError, OSError, ValueError) as exc:
                log.info("redis push: connection lost (%s); reconnecting", type(exc).__name__)
                with self._lock:
                    if self._pubsub is pubsub:
                        self._pubsub = None
                with contextlib.suppress(Exception):  # a connection already broken
                    pubsub.reset()
                continue
            failures = 0
            channel = self._core.pushed_channel(message)
            if channel is not None:
                self.listeners.dispatch(channel)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):  # a connection already broken
                pubsub.reset()


class RedisBackend(Backend):
    """Instances as Redis hashes with sorted-set indexes (see ``core`` for the layout)."""

    scheme = "redis"
    # what the backend can do with its options (the CLI lists this); an instance says
    # whether expiry is on
    capabilities = Capabilities(max_payload_bytes=MAX_VALUE_BYTES, ttl=True, push=True)
    async_mode: ClassVar[str] = "native"

    def __init__(self, target: RedisTarget) -> None:
        self.target = target
        self.core = RedisCore(target.options.prefix, target.options.ttl_seconds)
        self.capabilities = capabilities_for(target)
        self._pool = redis.ConnectionPool.from_url(
            target.address, retry=no_retries(), **target.pool_kwargs()
        )
        self._client = redis.Redis(connection_pool=self._pool)
        self._execute: Callable[..., Any] = self._client.execute_command
        self._push = RedisPush(self._client, self.core)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        return cls(RedisTarget(url, options))

    def __repr__(self) -> str:
        return f"RedisBackend(url={self.target.redacted!r}, prefix={self.core.prefix!r})"

    def to_async(self) -> AsyncBackend:
        """The redis.asyncio driver over the same core (its own pool, same URL and options)."""
        from durastate.backends.redis.aio import AsyncRedisBackend

        return AsyncRedisBackend(self.target)

    def close(self) -> None:
        self._push.close()
        self._pool.disconnect()

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        """Push through Redis pub/sub: one connection per backend object (see `RedisPush`)."""
        return self._push.subscribe(instance_id, notify)

    # -- sending --------------------------------------------------------------------------

    def _evalsha(self, call: ScriptCall) -> Reply:
        try:
            return self._execute("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
        except exceptions.NoScriptError:  # a new or restarted server: EVAL caches it
            return self._execute("EVAL", call.script.source, len(call.keys), *call.keys, *call.args)

    def _send(self, call: ScriptCall, operation: str) -> Reply:
        """Run a script; ``Attempts`` decides what follows a failure (see there)."""
        attempts: Attempts | None = None  # made on the first failure: none on the hot path
        while True:
            try:
                return self._evalsha(call)
            except exceptions.RedisError as exc:
                attempts = attempts or Attempts(call, operation, self.target)
                call, pause = attempts.after(exc)
            if pause:
                time.sleep(pause)

    # -- contract -------------------------------------------------------------------------

    def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        call = self.core.create(new, restart=restart_if_terminal)
        return self.core.created(call, self._send(call, "create"))

    def read(self, instance_id: str, *, fetch_payloads: bool = False) -> InstanceRecord | None:
        call = self.core.read(instance_id, fetch_payloads)
        values = self._send(call, "read")
        return self.core.record(values, fetch_payloads, instance_id)

    def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        """The read scripts of every id in one pipeline (one round trip); an id whose reply
        failed (a script not loaded yet, a broken connection) is read alone, with the usual
        retries and typed errors."""
        calls = [self.core.read(instance_id, fetch_payloads) for instance_id in instance_ids]
        replies: list[Any] = [_UNSENT] * len(calls)
        try:
            pipe = self._client.pipeline(transaction=False)
            for call in calls:
                pipe.execute_command(  # type: ignore[no-untyped-call]
                    "EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args
                )
            replies = pipe.execute(raise_on_error=False)
        except exceptions.RedisError:
            pass  # every id is read alone below
        found: dict[str, InstanceRecord | None] = {}
        for instance_id, call, reply in zip(instance_ids, calls, replies, strict=True):
            if reply is _UNSENT or isinstance(reply, Exception):
                reply = self._send(call, "read")
            found[instance_id] = self.core.record(reply, fetch_payloads, instance_id)
        return found

    def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        call = self.core.custom_status(instance_id, payload, etag, now)
        return self.core.status_written(call, self._send(call, "custom-status update"))

    def write_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus,
        *,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> str:
        call = self.core.runtime_status(
            instance_id, status, output=output, set_output=set_output, etag=etag, now=now
        )
        return self.core.runtime_written(call, self._send(call, "runtime-status update"))

    def delete(self, instance_id: str) -> bool:
        return self.core.deleted(self._send(self.core.delete(instance_id), "delete"))

    def query(self, query: InstanceQuery) -> RecordPage:
        return self.core.page(query, self._send(self.core.query(query), "query"))

    def purge_by(self, query: InstanceQuery) -> int:
        """One atomic script per batch of up to 500 matches, walking the same index."""
        total = 0
        next_query: InstanceQuery | None = query
        while next_query is not None:
            reply = self._send(self.core.query(next_query, purge=True), "purge")
            count, next_query = self.core.purged(query, reply)
            total += count
        return total
