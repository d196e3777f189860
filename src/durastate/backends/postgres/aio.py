"""The async driver: psycopg ``AsyncConnection``s from an ``AsyncConnectionPool`` run the very
statements of `core`, with the same deadlines and the same lost-write recovery as the sync
driver. The async store (``AsyncStateStore``) builds on it: ``PostgresBackend.to_async()``
gives one over the same conninfo and options, whose pool opens on its first call (on the
event loop that makes it).

Open one alone with ``await AsyncPostgresBackend.open(url, **options)``; close with
``close()`` (or ``aclose()``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Self

import psycopg
import psycopg_pool

from durastate.backends.postgres import core
from durastate.backends.postgres.connect import POOL_SLICE, Connecting, SpareConnections
from durastate.backends.postgres.deadline import deadlines
from durastate.backends.postgres.errors import translate
from durastate.backends.postgres.listen import AsyncPostgresListener
from durastate.core.async_backend import AsyncBackend
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
from durastate.errors import DurastateError

_monotonic = time.monotonic
AsyncPool = psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]]


class AsyncPostgresBackend(AsyncBackend):
    """The backend contract as coroutines, on one PostgreSQL table."""

    scheme = "postgresql"

    def __init__(self, connecting: Connecting, options: core.PostgresOptions) -> None:
        self.options = options
        self._connecting = connecting
        self._stmts = core.statements(options)
        self.capabilities: Capabilities = core.capabilities(options)
        self._timeout = options.timeout
        self._ttl = self._stmts.ttl
        self._pool: AsyncPool | None = None
        self._spare = SpareConnections(options.max_pool_size)
        self._starting = asyncio.Lock()  # the lazy start (to_async) runs once
        self._listener = AsyncPostgresListener(connecting, options)

    @classmethod
    async def open(cls, url: str, **options: Any) -> Self:
        parsed = core.parse_options(options)
        backend = cls(Connecting(url, parsed), parsed)
        await backend._start()
        return backend

    async def _start(self) -> None:
        deadline = _monotonic() + self._timeout
        while True:  # idempotent: tried again on a broken connection until the deadline
            try:
                first = await psycopg.AsyncConnection.connect(**self._connecting.kwargs())
                key = deadlines.arm(first.fileno(), deadline)
                try:
                    async with first:
                        probe = await (await first.execute(self._stmts.schema_probe)).fetchone()
                        if not core.schema_present(probe, self.options):
                            async with first.transaction():
                                for sql in core.schema_statements(self._stmts):
                                    await first.execute(sql)
                        cursor = await first.execute(self._stmts.schema_version)
                        row = await cursor.fetchone()
                finally:
                    deadlines.disarm(key)
                break
            except psycopg.Error as exc:
                if not core.try_again_on(exc, deadline, _monotonic()):
                    raise self._error(exc, "open", None) from None
            await asyncio.sleep(0.1)
        core.check_schema_version(self.options.table, row)
        self._pool = psycopg_pool.AsyncConnectionPool(
            self._connecting.conninfo,
            kwargs={"autocommit": True},
            configure=self._connecting.anote_pid,
            min_size=self.options.min_pool_size,
            max_size=self.options.max_pool_size,
            timeout=self._timeout,
            name=f"durastate-async-{self.options.table}",
            open=False,
        )
        try:  # wait for the first connections: a call queued on an empty pool grows it
            await self._pool.open(wait=True, timeout=self._timeout)
        except psycopg.Error as exc:
            pool, self._pool = self._pool, None  # a later call may try to start again
            await pool.close()
            raise self._error(exc, "open", None) from None

    async def _started(self) -> None:
        """Open the pool on the first call when made by ``to_async`` (no ``open``)."""
        async with self._starting:
            if self._pool is None:
                await self._start()

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
            for connection in self._spare.drain():
                await self._pool.putconn(connection)
            await self._pool.close()

    async def aclose(self) -> None:
        await self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _error(self, exc: BaseException, operation: str, instance_id: str | None) -> DurastateError:
        return translate(exc, operation, instance_id, self._connecting.secret, self._timeout)

    # -- execution (the sync driver's, with await) ------------------------------------------

    async def _connection(self, deadline: float) -> psycopg.AsyncConnection[Any]:
        if self._pool is None:
            await self._started()
        assert self._pool is not None
        while True:
            connection: psycopg.AsyncConnection[Any] | None = self._spare.take()
            if connection is not None:
                return connection
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise psycopg_pool.PoolTimeout("deadline passed")
            try:
                with self._spare.waiting():
                    return await self._pool.getconn(min(remaining, POOL_SLICE))
            except psycopg_pool.PoolTimeout:
                if _monotonic() >= deadline:
                    raise

    async def _release(self, connection: psycopg.AsyncConnection[Any]) -> None:
        if not self._spare.keep(connection):
            assert self._pool is not None
            await self._pool.putconn(connection)

    async def _run(
        self, operation: str, instance_id: str | None, sql: str, params: Any, many: bool = False
    ) -> Any:
        deadline = _monotonic() + self._timeout
        while True:
            try:
                connection = await self._connection(deadline)
            except psycopg.Error as exc:
                raise self._error(exc, operation, instance_id) from None
            key = deadlines.arm(connection.fileno(), deadline)
            try:
                cursor = await connection.execute(sql, params, prepare=True)
                return await (cursor.fetchall() if many else cursor.fetchone())
            except psycopg.Error as exc:
                if deadlines.disarm(key):
                    raise core.timed_out(operation, instance_id, self._timeout) from None
                if not connection.broken:
                    raise self._error(exc, operation, instance_id) from None
            finally:
                deadlines.disarm(key)
                await self._release(connection)

    async def _write(
        self,
        operation: str,
        instance_id: str,
        sql: str,
        params: dict[str, Any],
        new_etag: str,
        etag: str | None,
        create: bool = False,
    ) -> Sequence[Any] | object:
        deadline = _monotonic() + self._timeout
        try:
            connection = await self._connection(deadline)
        except psycopg.Error as exc:
            raise self._error(exc, operation, instance_id) from None
        key = deadlines.arm(connection.fileno(), deadline)
        try:
            cursor = await connection.execute(sql, params, prepare=True)
            row = await cursor.fetchone()
        except psycopg.Error as exc:
            cut = deadlines.disarm(key)
            broken = connection.broken
            pid = self._connecting.pids.get(connection)
            await self._release(connection)
            if not broken and not cut:
                raise self._error(exc, operation, instance_id) from None
            lost = core.LostWrite(instance_id, new_etag, etag, create)
            return await self._recover(lost, pid, core.Run(sql, params), deadline)
        deadlines.disarm(key)
        await self._release(connection)
        return row

    async def _recover(
        self, lost: core.LostWrite, pid: int | None, resend: core.Run, deadline: float
    ) -> Sequence[Any] | object:
        flow = core.recover(self._stmts, lost, pid, resend, core.wait_ms(deadline, _monotonic()))
        connection: psycopg.AsyncConnection[Any] | None = None
        try:
            step = next(flow)
            while True:
                if _monotonic() >= deadline:
                    raise core.unknown_outcome(lost.instance_id, "timed out")
                if step.fresh and connection is not None:
                    await self._release(connection)
                    connection = None
                if connection is None:
                    connection = await self._connection(deadline)
                key = deadlines.arm(connection.fileno(), deadline)
                try:
                    cursor = await connection.execute(step.sql, step.params, prepare=True)
                    row = await cursor.fetchone()
                except psycopg.Error as exc:
                    cut = deadlines.disarm(key)
                    if cut or _monotonic() >= deadline:
                        raise core.unknown_outcome(lost.instance_id, "timed out") from None
                    if not connection.broken:
                        raise self._error(exc, "recovery", lost.instance_id) from None
                    lost_pid = self._connecting.pids.get(connection)
                    await self._release(connection)
                    connection = None
                    step = flow.throw(core.ConnectionLost(lost_pid))
                    continue
                deadlines.disarm(key)
                step = flow.send(row)
        except StopIteration as done:
            outcome: Sequence[Any] | object = done.value
            return outcome
        except psycopg.Error:
            raise core.unknown_outcome(lost.instance_id, "no connection in time") from None
        finally:
            flow.close()
            if connection is not None:
                await self._release(connection)

    # -- contract -------------------------------------------------------------------------

    async def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        etag = core.new_etag()
        sql = self._stmts.create_or_restart if restart_if_terminal else self._stmts.create
        params = core.create_params(new, etag, self._ttl)
        row = await self._write("create", new.instance_id, sql, params, etag, None, create=True)
        if row is not core.LANDED:
            core.create_outcome(new.instance_id, row)  # type: ignore[arg-type]
        return etag

    async def read(
        self, instance_id: str, *, fetch_payloads: bool = False
    ) -> InstanceRecord | None:
        sql = self._stmts.read_all if fetch_payloads else self._stmts.read
        row = await self._run("read", instance_id, sql, (core.id_key(instance_id),))
        return None if row is None else core.record(row, fetch_payloads)

    async def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        """As `PostgresBackend.read_many`: one ``SELECT ... = ANY(%s)`` for every id."""
        sql = core.read_many_statement(self._stmts.read_all if fetch_payloads else self._stmts.read)
        keys = [core.id_key(instance_id) for instance_id in instance_ids]
        rows = await self._run("read", None, sql, (keys,), many=True)
        found: dict[str, InstanceRecord | None] = dict.fromkeys(instance_ids)
        for row in rows:
            record = core.record(row, fetch_payloads)
            found[record.instance_id] = record
        return found

    async def count(self, query: InstanceQuery) -> dict[RuntimeStatus, int]:
        """As `PostgresBackend.count`: one ``GROUP BY`` over the query's WHERE clause."""
        sql, params = core.count_statement(self._stmts, query)
        return core.counts(await self._run("count", None, sql, params, many=True))

    async def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        stmts = self._stmts
        sql = stmts.write_status if etag is None else stmts.write_status_if_match
        for _ in range(core.LAST_WRITE_ATTEMPTS):
            new = core.new_etag()
            params = core.status_params(instance_id, payload, etag, now, new, self._ttl)
            row = await self._write("custom-status update", instance_id, sql, params, new, etag)
            if row is core.LANDED:
                return WriteResult(new)
            result = core.status_outcome(instance_id, etag, new, row)  # type: ignore[arg-type]
            if result is not None:
                return result
        raise core.kept_racing(instance_id)

    async def write_runtime_status(
        self,
        instance_id: str,
        status: RuntimeStatus,
        *,
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> str:
        new = core.new_etag()
        sql = core.runtime_statement(self._stmts, set_output, etag)
        params = core.runtime_params(instance_id, status, output, etag, now, new, self._ttl)
        row = await self._write("runtime-status update", instance_id, sql, params, new, etag)
        if row is core.LANDED:
            return new
        return core.runtime_outcome(instance_id, etag, new, row)  # type: ignore[arg-type]

    async def delete(self, instance_id: str) -> bool:
        params = core.delete_params(instance_id)
        return core.delete_outcome(
            await self._run("delete", instance_id, self._stmts.delete, params)
        )

    async def query(self, query: InstanceQuery) -> RecordPage:
        sql, params = core.query_statement(self._stmts, query)
        return core.page(await self._run("query", None, sql, params, many=True), query)

    async def purge_by(self, query: InstanceQuery) -> int:
        sql, params = core.purge_statement(self._stmts, query)
        return int((await self._run("purge", None, sql, params))[0])

    async def purge_expired(self) -> int:
        sql = self._stmts.purge_expired
        return int((await self._run("purge of expired instances", None, sql, ()))[0])
