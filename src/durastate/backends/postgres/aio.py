"""The async driver: performs the plans of `PostgresPlans` on psycopg ``AsyncConnection``s,
with the same statements, deadlines and lost-write recovery as the sync driver (they are
the plans'). ``PostgresBackend.to_async()`` gives one over the same conninfo and options,
whose pool opens on its first call (on the event loop that makes it).

Open one alone with ``await AsyncPostgresBackend.open(url, **options)``; close with
``close()`` (or ``aclose()``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Self

import psycopg
import psycopg_pool

from durastate.backends.postgres import core
from durastate.backends.postgres.connect import Connecting, SpareConnections
from durastate.backends.postgres.listen import AsyncPostgresListener
from durastate.backends.postgres.plans import (
    Close,
    Connect,
    Execute,
    InTransaction,
    PoolWait,
    PostgresPlans,
    Release,
    Step,
)
from durastate.core.planned import AsyncPlannedBackend
from durastate.core.records import (
    Capabilities,
)
from durastate.core.steps import adrive

AsyncPool = psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]]


class AsyncPostgresBackend(AsyncPlannedBackend):
    """The backend contract as coroutines, on one PostgreSQL table."""

    scheme = "postgresql"

    plans: PostgresPlans

    def __init__(self, connecting: Connecting, options: core.PostgresOptions) -> None:
        self.options = options
        self._connecting = connecting
        self._spare = SpareConnections(options.max_pool_size)
        self.plans = PostgresPlans(connecting, options, self._spare)
        self._stmts = self.plans.stmts
        self.capabilities: Capabilities = core.capabilities(options)
        self._pool: AsyncPool | None = None
        self._starting = asyncio.Lock()  # the lazy start (to_async) runs once
        self._listener = AsyncPostgresListener(connecting, options)
        # the cursor of each connection held here (taken or spare) for its one-row statements
        self._cursors: dict[Any, psycopg.AsyncCursor[Any]] = {}

    @classmethod
    async def open(cls, url: str, **options: Any) -> Self:
        parsed = core.parse_options(options)
        backend = cls(Connecting(url, parsed), parsed)
        await backend._started()
        return backend

    async def _started(self) -> AsyncPool:
        """The pool, opened (after the schema check) by the first call that needs it."""
        async with self._starting:
            if self._pool is None:
                await adrive(self.plans.prepare_schema(), self._perform)
                pool: AsyncPool = psycopg_pool.AsyncConnectionPool(
                    configure=self._connecting.anote_pid,
                    **self._connecting.pool_kwargs("durastate-async"),
                )
                try:  # wait for the first connections: a call queued on an empty pool grows it
                    await pool.open(wait=True, timeout=self.options.timeout)
                except psycopg.Error as exc:
                    await pool.close()  # a later call may try to start again
                    raise self.plans.error(exc, "open", None) from None
                self._pool = pool
            return self._pool

    def __repr__(self) -> str:
        return f"AsyncPostgresBackend({self._connecting.redacted!r}, table={self.options.table!r})"

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        """Push through LISTEN on one dedicated connection, read by a task (see `listen`)."""
        if not self.capabilities.push:
            raise NotImplementedError("notify=False: this store is polled")
        return self._listener.subscribe(instance_id, notify)

    async def close(self) -> None:
        await self._listener.close()
        if self._pool is not None:
            self._cursors.clear()
            for connection in self._spare.drain():
                await self._pool.putconn(connection)
            await self._pool.close()

    async def aclose(self) -> None:
        await self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _cursor(self, step: Execute) -> psycopg.AsyncCursor[Any]:
        """The connection's own cursor for a one-row statement: making a cursor costs about
        as much client CPU as the rest of an update (``benchmarks/async_overhead.py``). It
        is dropped when the connection goes back to the pool. A read with input and output
        gets a fresh one, so an idle connection never keeps a large row alive."""
        if step.sql is self._stmts.read_all:
            return step.connection.cursor()  # type: ignore[no-any-return]
        cursor = self._cursors.get(step.connection)
        if cursor is None:
            cursor = self._cursors[step.connection] = step.connection.cursor()
        return cursor

    async def _perform(self, step: Step) -> Any:
        if isinstance(step, Execute):
            if step.many:
                cursor = await step.connection.execute(step.sql, step.params, prepare=step.prepare)
                return await cursor.fetchall()
            cursor = self._cursor(step)
            await cursor.execute(step.sql, step.params, prepare=step.prepare)
            return await cursor.fetchone()
        if isinstance(step, Release):
            if not self._spare.keep(step.connection):
                self._cursors.pop(step.connection, None)
                assert self._pool is not None
                await self._pool.putconn(step.connection)
        elif isinstance(step, PoolWait):
            pool = self._pool or await self._started()
            with self._spare.waiting():
                return await pool.getconn(step.seconds)
        elif isinstance(step, Connect):
            return await psycopg.AsyncConnection.connect(**self._connecting.kwargs())
        elif isinstance(step, InTransaction):
            async with step.connection.transaction():
                for sql in step.statements:
                    await step.connection.execute(sql)
        elif isinstance(step, Close):
            self._cursors.pop(step.connection, None)
            await step.connection.close()
        else:
            await asyncio.sleep(step.seconds)
        return None
