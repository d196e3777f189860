"""Push for ``watch``: one dedicated LISTEN connection per backend object.

Every write NOTIFYs the table's channel with the hex of the id (`core.channel_of`); the
connection (outside the pool, autocommit) LISTENs on it and hands each notification to the
watchers of that id (`core.notified_id`, `Listeners`). It opens with the first
subscription; the sync one before ``subscribe`` returns (the watcher's read then follows
the LISTEN: nothing is missed), the async one in its task, which then notifies every
watcher once, as after a dropped connection: notifications sent while no LISTEN was in
place are lost, and a notified watcher re-reads. The connection stays open while the
backend does (one connection however many watchers come and go).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from durastate.backends.postgres import core
from durastate.backends.postgres.connect import Connecting
from durastate.core.push import Listeners, reconnect_delay, stop_reader

log = logging.getLogger(__name__)

Notify = Callable[[], None]


class PostgresListener:
    """The sync face: a thread reads ``Connection.notifies()``."""

    POLL = 1.0  # seconds the thread waits for notifications before it checks for close()

    def __init__(self, connecting: Connecting, options: core.PostgresOptions) -> None:
        self._connecting = connecting
        self._listen_sql = core.listen_statement(options)
        self.listeners = Listeners()
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[Any] | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def subscribe(self, instance_id: str, notify: Notify) -> Callable[[], None]:
        with self._lock:
            if self._closed:
                raise NotImplementedError("the backend is closed: poll")
            self.listeners.add(instance_id, notify)
            if self._thread is None:
                try:  # LISTEN now, so the watcher's first read comes after it
                    self._connection = self._connect()
                except psycopg.Error as exc:  # the thread tries again, then notifies
                    log.warning("postgres push: cannot LISTEN yet (%s)", type(exc).__name__)
                self._thread = threading.Thread(
                    target=self._run, name="durastate-postgres-listen", daemon=True
                )
                self._thread.start()

        def unsubscribe() -> None:
            self.listeners.remove(instance_id, notify)

        return unsubscribe

    def _connect(self) -> psycopg.Connection[Any]:
        connection = psycopg.connect(**self._connecting.kwargs())
        try:
            connection.execute(self._listen_sql)
        except BaseException:
            connection.close()
            raise
        return connection

    def _run(self) -> None:
        failures = 0
        while True:
            with self._lock:
                if self._closed:
                    return
                connection = self._connection
            if connection is None:
                try:
                    connection = self._connect()
                except psycopg.Error as exc:
                    failures += 1
                    log.warning("postgres push: cannot reconnect (%s)", type(exc).__name__)
                    time.sleep(reconnect_delay(failures))
                    continue
                with self._lock:
                    closed = self._closed
                    if not closed:
                        self._connection = connection
                if closed:
                    connection.close()
                    return
                failures = 0
                self.listeners.everyone()  # what was written while no LISTEN was in place
            try:
                for notification in connection.notifies(timeout=self.POLL):
                    instance_id = core.notified_id(notification.payload)
                    if instance_id is not None:
                        self.listeners.dispatch(instance_id)
            except (psycopg.Error, OSError) as exc:
                if not self._closed:
                    log.info("postgres push: LISTEN connection lost (%s)", type(exc).__name__)
                with self._lock:
                    if self._connection is connection:
                        self._connection = None
                with contextlib.suppress(Exception):
                    connection.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


class AsyncPostgresListener:
    """The async face: a task, on the loop of the first subscriber, reads
    ``AsyncConnection.notifies()``."""

    def __init__(self, connecting: Connecting, options: core.PostgresOptions) -> None:
        self._connecting = connecting
        self._listen_sql = core.listen_statement(options)
        self.listeners = Listeners()
        self._task: asyncio.Task[None] | None = None
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._closed = False

    def subscribe(self, instance_id: str, notify: Notify) -> Callable[[], None]:
        if self._closed:
            raise NotImplementedError("the backend is closed: poll")
        self.listeners.add(instance_id, notify)
        if self._task is None or self._task.done():
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name="durastate-postgres-listen")

        def unsubscribe() -> None:
            self.listeners.remove(instance_id, notify)

        return unsubscribe

    async def _run(self) -> None:
        failures = 0
        while not self._closed:
            try:
                connection = await psycopg.AsyncConnection.connect(**self._connecting.kwargs())
            except (psycopg.Error, OSError) as exc:
                failures += 1
                log.warning("postgres push: cannot connect (%s)", type(exc).__name__)
                await asyncio.sleep(reconnect_delay(failures))
                continue
            self._connection = connection
            try:
                await connection.execute(self._listen_sql)
                failures = 0
                # a subscriber may have read before this LISTEN, or a change may have come
                # while the previous connection was down: everyone re-reads once
                self.listeners.everyone()
                async for notification in connection.notifies():
                    instance_id = core.notified_id(notification.payload)
                    if instance_id is not None:
                        self.listeners.dispatch(instance_id)
            except (psycopg.Error, OSError) as exc:
                if not self._closed:
                    failures += 1
                    log.info("postgres push: LISTEN connection lost (%s)", type(exc).__name__)
            finally:
                self._connection = None
                with contextlib.suppress(Exception):
                    await connection.close()
            if failures and not self._closed:
                await asyncio.sleep(reconnect_delay(failures))

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        await stop_reader(task)
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
