"""The sync driver: psycopg ``Connection``s from a ``ConnectionPool`` run the core's statements.

Every call takes a pooled connection (autocommit), runs one statement (server-side prepared),
and hands the row to the core. The whole call, pool wait included, is bounded by
``timeout`` (`deadline.py`). A write whose connection breaks goes through the core's
recovery (`core.recover`): it is never sent twice unless it surely did not land.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

import psycopg
import psycopg_pool

from durastate.backends.postgres import core
from durastate.backends.postgres.connect import POOL_SLICE, Connecting, SpareConnections
from durastate.backends.postgres.deadline import deadlines
from durastate.backends.postgres.errors import translate
from durastate.backends.postgres.listen import PostgresListener
from durastate.core.backend import Backend
from durastate.core.records import (
    InstanceQuery,
    InstanceRecord,
    NewInstance,
    Payload,
    RecordPage,
    RuntimeStatus,
    WriteResult,
)
from durastate.errors import DurastateError

if TYPE_CHECKING:
    from durastate.core.async_backend import AsyncBackend

_monotonic = time.monotonic


class PostgresBackend(Backend):
    """Instances in one PostgreSQL table (layout and costs: `core` and docs/postgres.md)."""

    scheme = "postgresql"
    async_mode: ClassVar[str] = "native"

    def __init__(self, url: str, options: core.PostgresOptions | None = None) -> None:
        self.options = options or core.PostgresOptions()
        self._connecting = Connecting(url, self.options)
        self._stmts = core.statements(self.options)
        self.capabilities = core.capabilities(self.options)
        self._timeout = self.options.timeout
        self._ttl = self._stmts.ttl
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] | None = None
        self._spare = SpareConnections(self.options.max_pool_size)
        self._listener = PostgresListener(self._connecting, self.options)
        deadline = _monotonic() + self._timeout
        while True:  # idempotent: tried again on a broken connection until the deadline
            try:
                with psycopg.connect(**self._connecting.kwargs()) as first:
                    key = deadlines.arm(first.fileno(), deadline)
                    try:
                        self._prepare_schema(first)
                    finally:
                        deadlines.disarm(key)
                break
            except psycopg.Error as exc:
                if not core.try_again_on(exc, deadline, _monotonic()):
                    raise self._error(exc, "open", None) from None
            time.sleep(0.1)
        self._pool = psycopg_pool.ConnectionPool(
            self._connecting.conninfo,
            kwargs={"autocommit": True},
            configure=self._connecting.note_pid,
            min_size=self.options.min_pool_size,
            max_size=self.options.max_pool_size,
            timeout=self._timeout,
            name=f"durastate-{self.options.table}",
            open=False,
        )
        self._open_pool(self._pool)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        return cls(url, core.parse_options(options))

    def __repr__(self) -> str:
        return f"PostgresBackend({self._connecting.redacted!r}, table={self.options.table!r})"

    def to_async(self) -> AsyncBackend:
        """The psycopg async driver over the same conninfo and options (its own pool, opened
        on its first call; the schema is already in place)."""
        from durastate.backends.postgres.aio import AsyncPostgresBackend

        return AsyncPostgresBackend(self._connecting, self.options)

    def subscribe(self, instance_id: str, notify: Callable[[], None]) -> Callable[[], None]:
        """Push through LISTEN on one dedicated connection (see `listen`)."""
        if not self.capabilities.push:
            raise NotImplementedError("notify=False: this store is polled")
        return self._listener.subscribe(instance_id, notify)

    def close(self) -> None:
        self._listener.close()
        if self._pool is not None:
            for connection in self._spare.drain():
                self._pool.putconn(connection)
            self._pool.close()

    def _open_pool(self, pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]]) -> None:
        """Wait for the first connections: a call queued on an empty pool makes it grow, and
        each connection prepares its statements anew."""
        try:
            pool.open(wait=True, timeout=self._timeout)
        except psycopg.Error as exc:
            pool.close()
            raise self._error(exc, "open", None) from None

    def _error(self, exc: BaseException, operation: str, instance_id: str | None) -> DurastateError:
        return translate(exc, operation, instance_id, self._connecting.secret, self._timeout)

    def _prepare_schema(self, connection: psycopg.Connection[Any]) -> None:
        """Create the table when it is missing (unless told not to), check its version.

        An existing table costs one lock-free look: CREATE INDEX IF NOT EXISTS would lock
        the table against writers even when the index exists.
        """
        probe = connection.execute(self._stmts.schema_probe).fetchone()
        if not core.schema_present(probe, self.options):
            with connection.transaction():
                for sql in core.schema_statements(self._stmts):
                    connection.execute(sql)
        row = connection.execute(self._stmts.schema_version).fetchone()
        core.check_schema_version(self.options.table, row)

    # -- execution ------------------------------------------------------------------------

    def _connection(self, deadline: float) -> psycopg.Connection[Any]:
        assert self._pool is not None
        while True:
            connection: psycopg.Connection[Any] | None = self._spare.take()
            if connection is not None:
                return connection
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise psycopg_pool.PoolTimeout("deadline passed")
            try:
                with self._spare.waiting():
                    return self._pool.getconn(min(remaining, POOL_SLICE))
            except psycopg_pool.PoolTimeout:
                if _monotonic() >= deadline:
                    raise

    def _release(self, connection: psycopg.Connection[Any]) -> None:
        if not self._spare.keep(connection):
            assert self._pool is not None
            self._pool.putconn(connection)

    def _run(
        self, operation: str, instance_id: str | None, sql: str, params: Any, many: bool = False
    ) -> Any:
        """A read, query, delete or purge: on a broken connection, tried again until the
        deadline (sending these twice changes nothing, or only a count)."""
        deadline = _monotonic() + self._timeout
        while True:
            try:
                connection = self._connection(deadline)
            except psycopg.Error as exc:
                raise self._error(exc, operation, instance_id) from None
            key = deadlines.arm(connection.fileno(), deadline)
            try:
                cursor = connection.execute(sql, params, prepare=True)
                return cursor.fetchall() if many else cursor.fetchone()
            except psycopg.Error as exc:
                cut = deadlines.disarm(key)
                if cut:
                    raise core.timed_out(operation, instance_id, self._timeout) from None
                if not connection.broken:
                    raise self._error(exc, operation, instance_id) from None
            finally:
                deadlines.disarm(key)
                self._release(connection)

    def _write(
        self,
        operation: str,
        instance_id: str,
        sql: str,
        params: dict[str, Any],
        new_etag: str,
        etag: str | None,
        create: bool = False,
    ) -> Sequence[Any] | object | None:
        """One write statement; its row (if any), or `core.LANDED` when a lost answer was
        ours."""
        deadline = _monotonic() + self._timeout
        try:
            connection = self._connection(deadline)
        except psycopg.Error as exc:
            raise self._error(exc, operation, instance_id) from None
        key = deadlines.arm(connection.fileno(), deadline)
        try:
            row = connection.execute(sql, params, prepare=True).fetchone()
        except psycopg.Error as exc:
            cut = deadlines.disarm(key)
            broken = connection.broken
            pid = self._connecting.pids.get(connection)
            self._release(connection)
            if not broken and not cut:
                raise self._error(exc, operation, instance_id) from None
            lost = core.LostWrite(instance_id, new_etag, etag, create)
            return self._recover(lost, pid, core.Run(sql, params), deadline)
        deadlines.disarm(key)
        self._release(connection)
        return row

    def _recover(
        self, lost: core.LostWrite, pid: int | None, resend: core.Run, deadline: float
    ) -> Sequence[Any] | object:
        """Drive `core.recover` on fresh connections, all within the call's deadline."""
        flow = core.recover(self._stmts, lost, pid, resend, core.wait_ms(deadline, _monotonic()))
        connection: psycopg.Connection[Any] | None = None
        try:
            step = next(flow)
            while True:
                if _monotonic() >= deadline:
                    raise core.unknown_outcome(lost.instance_id, "timed out")
                if step.fresh and connection is not None:
                    self._release(connection)
                    connection = None
                if connection is None:
                    connection = self._connection(deadline)
                key = deadlines.arm(connection.fileno(), deadline)
                try:
                    row = connection.execute(step.sql, step.params, prepare=True).fetchone()
                except psycopg.Error as exc:
                    cut = deadlines.disarm(key)
                    if cut or _monotonic() >= deadline:
                        raise core.unknown_outcome(lost.instance_id, "timed out") from None
                    if not connection.broken:
                        raise self._error(exc, "recovery", lost.instance_id) from None
                    lost_pid = self._connecting.pids.get(connection)
                    self._release(connection)
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
                self._release(connection)

    # -- contract -------------------------------------------------------------------------

    def create(self, new: NewInstance, *, restart_if_terminal: bool = False) -> str:
        etag = core.new_etag()
        sql = self._stmts.create_or_restart if restart_if_terminal else self._stmts.create
        params = core.create_params(new, etag, self._ttl)
        row = self._write("create", new.instance_id, sql, params, etag, None, create=True)
        if row is not core.LANDED:
            core.create_outcome(new.instance_id, row)  # type: ignore[arg-type]
        return etag

    def read(self, instance_id: str, *, fetch_payloads: bool = False) -> InstanceRecord | None:
        sql = self._stmts.read_all if fetch_payloads else self._stmts.read
        row = self._run("read", instance_id, sql, (core.id_key(instance_id),))
        return None if row is None else core.record(row, fetch_payloads)

    def read_many(
        self, instance_ids: Sequence[str], *, fetch_payloads: bool = False
    ) -> dict[str, InstanceRecord | None]:
        """One ``SELECT ... WHERE instance_id = ANY(%s)`` for every id."""
        sql = core.read_many_statement(self._stmts.read_all if fetch_payloads else self._stmts.read)
        keys = [core.id_key(instance_id) for instance_id in instance_ids]
        rows = self._run("read", None, sql, (keys,), many=True)
        found: dict[str, InstanceRecord | None] = dict.fromkeys(instance_ids)
        for row in rows:
            record = core.record(row, fetch_payloads)
            found[record.instance_id] = record
        return found

    def count(self, query: InstanceQuery) -> dict[RuntimeStatus, int]:
        """One ``GROUP BY`` over the query's WHERE clause."""
        sql, params = core.count_statement(self._stmts, query)
        return core.counts(self._run("count", None, sql, params, many=True))

    def write_custom_status(
        self, instance_id: str, payload: Payload, *, etag: str | None, now: datetime
    ) -> WriteResult:
        stmts = self._stmts
        sql = stmts.write_status if etag is None else stmts.write_status_if_match
        for _ in range(core.LAST_WRITE_ATTEMPTS):
            new = core.new_etag()
            params = core.status_params(instance_id, payload, etag, now, new, self._ttl)
            row = self._write("custom-status update", instance_id, sql, params, new, etag)
            if row is core.LANDED:
                return WriteResult(new)
            result = core.status_outcome(instance_id, etag, new, row)  # type: ignore[arg-type]
            if result is not None:
                return result
        raise core.kept_racing(instance_id)

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
        new = core.new_etag()
        sql = core.runtime_statement(self._stmts, set_output, etag)
        params = core.runtime_params(instance_id, status, output, etag, now, new, self._ttl)
        row = self._write("runtime-status update", instance_id, sql, params, new, etag)
        if row is core.LANDED:
            return new
        return core.runtime_outcome(instance_id, etag, new, row)  # type: ignore[arg-type]

    def delete(self, instance_id: str) -> bool:
        row = self._run("delete", instance_id, self._stmts.delete, core.delete_params(instance_id))
        return core.delete_outcome(row)

    def query(self, query: InstanceQuery) -> RecordPage:
        sql, params = core.query_statement(self._stmts, query)
        return core.page(self._run("query", None, sql, params, many=True), query)

    def purge_by(self, query: InstanceQuery) -> int:
        """One DELETE with the query's WHERE clause (live rows only)."""
        sql, params = core.purge_statement(self._stmts, query)
        row = self._run("purge", None, sql, params)
        return int(row[0])

    def purge_expired(self) -> int:
        """The sweeper: delete rows whose ``expires_at`` passed (reads already skip them)."""
        row = self._run("purge of expired instances", None, self._stmts.purge_expired, ())
        return int(row[0])
