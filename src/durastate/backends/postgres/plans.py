"""Each PostgreSQL backend operation once, as a plan of steps (see `durastate.core.steps`).

`core` decides the statements and what their rows mean; a plan here adds how they run:
which connection (a spare one, else a wait in the pool in short slices), the call's
deadline (`deadline.py` shuts a frozen socket down), what a failure means (a read is tried
again on a broken connection; a write whose answer was lost goes through `core.recover`,
never sent twice unless it surely did not land), and the typed errors. The sync driver
(`sync.py`, psycopg ``Connection`` + ``ConnectionPool``) and the async driver (`aio.py`,
``AsyncConnection`` + ``AsyncConnectionPool``) only perform the steps:

- `Execute`: one statement on a connection; receives its row (or rows with ``many``);
- `PoolWait`: a connection from the pool within ``seconds`` (``PoolTimeout`` otherwise);
- `Release`: the connection back to the spares or the pool;
- `Connect`, `InTransaction`, `Close`: a connection outside the pool, for the schema;
- `Pause`: a short wait.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import psycopg
import psycopg_pool

from durastate.backends.postgres import core
from durastate.backends.postgres.connect import POOL_SLICE, Connecting, SpareConnections
from durastate.backends.postgres.deadline import deadlines
from durastate.backends.postgres.errors import translate
from durastate.core.planned import BackendPlans
from durastate.core.records import (
    InstanceQuery,
    InstanceRecord,
    NewInstance,
    Payload,
    RecordPage,
    RuntimeStatus,
    WriteResult,
)
from durastate.core.steps import Pause, Plan
from durastate.errors import DurastateError

_monotonic = time.monotonic


@dataclass(slots=True)
class Execute:
    """Run ``sql`` on ``connection`` (server-side prepared unless ``prepare`` is None)."""

    connection: Any
    sql: str
    params: Any = None
    many: bool = False
    prepare: bool | None = True


@dataclass(frozen=True, slots=True)
class PoolWait:
    seconds: float


@dataclass(frozen=True, slots=True)
class Release:
    connection: Any


@dataclass(frozen=True, slots=True)
class Connect:
    """A connection of its own (autocommit), outside the pool."""


@dataclass(frozen=True, slots=True)
class InTransaction:
    connection: Any
    statements: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Close:
    connection: Any


Step: TypeAlias = Execute | PoolWait | Release | Connect | InTransaction | Close | Pause


class PostgresPlans(BackendPlans):
    """The operations of one store: its statements, options, spares and conninfo."""

    def __init__(
        self, connecting: Connecting, options: core.PostgresOptions, spare: SpareConnections
    ) -> None:
        self.connecting = connecting
        self.options = options
        self.spare = spare
        self.stmts = core.statements(options)
        self.timeout = options.timeout
        self.ttl = self.stmts.ttl

    def error(self, exc: BaseException, operation: str, instance_id: str | None) -> DurastateError:
        return translate(exc, operation, instance_id, self.connecting.secret, self.timeout)

    # -- the schema -----------------------------------------------------------------------

    def prepare_schema(self) -> Plan[Step, None]:
        """Create the table when it is missing (unless told not to), check its version;
        tried again on a broken connection until the deadline (it is idempotent).

        An existing table costs one lock-free look: CREATE INDEX IF NOT EXISTS would lock
        the table against writers even when the index exists.
        """
        deadline = _monotonic() + self.timeout
        stmts = self.stmts
        while True:
            try:
                connection = yield Connect()
                key = deadlines.arm(connection.fileno(), deadline)
                try:
                    probe = yield Execute(connection, stmts.schema_probe, prepare=None)
                    if not core.schema_present(probe, self.options):
                        yield InTransaction(connection, core.schema_statements(stmts))
                    row = yield Execute(connection, stmts.schema_version, prepare=None)
                finally:
                    deadlines.disarm(key)
                    yield Close(connection)
                break
            except psycopg.Error as exc:
                if not core.try_again_on(exc, deadline, _monotonic()):
                    raise self.error(exc, "open", None) from None
            yield Pause(0.1)
        core.check_schema_version(self.options.table, row)

    # -- execution ------------------------------------------------------------------------

    def connection(self, deadline: float) -> Plan[Step, Any]:
        """A spare connection, else one from the pool: waited for in short slices, looking
        at the spares in between, until the deadline."""
        while True:
            connection = self.spare.take()
            if connection is not None:
                return connection
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise psycopg_pool.PoolTimeout("deadline passed")
            try:
                return (yield PoolWait(min(remaining, POOL_SLICE)))
            except psycopg_pool.PoolTimeout:
                if _monotonic() >= deadline:
                    raise

    def armed(
        self, deadline: float, operation: str, instance_id: str | None
    ) -> Plan[Step, tuple[Any, int]]:
        """A connection (the typed error if none comes in time) and the key of its socket's
        deadline (`deadlines.arm`)."""
        try:
            connection = yield from self.connection(deadline)
        except psycopg.Error as exc:
            raise self.error(exc, operation, instance_id) from None
        return connection, deadlines.arm(connection.fileno(), deadline)

    def run(
        self, operation: str, instance_id: str | None, sql: str, params: Any, many: bool = False
    ) -> Plan[Step, Any]:
        """A read, query, delete or purge: on a broken connection, tried again until the
        deadline (sending these twice changes nothing, or only a count)."""
        deadline = _monotonic() + self.timeout
        while True:
            connection, key = yield from self.armed(deadline, operation, instance_id)
            try:
                return (yield Execute(connection, sql, params, many))
            except psycopg.Error as exc:
                if deadlines.disarm(key):
                    raise core.timed_out(operation, instance_id, self.timeout) from None
                if not connection.broken:
                    raise self.error(exc, operation, instance_id) from None
            finally:
                deadlines.disarm(key)
                yield Release(connection)

    def write(
        self,
        operation: str,
        instance_id: str,
        sql: str,
        params: dict[str, Any],
        new_etag: str,
        etag: str | None,
        create: bool = False,
    ) -> Plan[Step, Sequence[Any] | object | None]:
        """One write statement; its row (if any), or `core.LANDED` when a lost answer was
        ours."""
        deadline = _monotonic() + self.timeout
        connection, key = yield from self.armed(deadline, operation, instance_id)
        try:
            row: Sequence[Any] | None = yield Execute(connection, sql, params)
        except psycopg.Error as exc:
            cut = deadlines.disarm(key)
            broken = connection.broken
            pid = self.connecting.pids.get(connection)
            yield Release(connection)
            if not broken and not cut:
                raise self.error(exc, operation, instance_id) from None
            lost = core.LostWrite(instance_id, new_etag, etag, create)
            return (yield from self.recover(lost, pid, core.Run(sql, params), deadline))
        deadlines.disarm(key)
        yield Release(connection)
        return row

    def recover(
        self, lost: core.LostWrite, pid: int | None, resend: core.Run, deadline: float
    ) -> Plan[Step, Sequence[Any] | object]:
        """Run `core.recover` on fresh connections, all within the call's deadline."""
        flow = core.recover(self.stmts, lost, pid, resend, core.wait_ms(deadline, _monotonic()))
        connection: Any = None
        try:
            step = next(flow)
            while True:
                if _monotonic() >= deadline:
                    raise core.unknown_outcome(lost.instance_id, "timed out")
                if step.fresh and connection is not None:
                    yield Release(connection)
                    connection = None
                if connection is None:
                    connection = yield from self.connection(deadline)
                key = deadlines.arm(connection.fileno(), deadline)
                try:
                    row = yield Execute(connection, step.sql, step.params)
                except psycopg.Error as exc:
                    cut = deadlines.disarm(key)
                    if cut or _monotonic() >= deadline:
                        raise core.unknown_outcome(lost.instance_id, "timed out") from None
                    if not connection.broken:
                        raise self.error(exc, "recovery", lost.instance_id) from None
                    lost_pid = self.connecting.pids.get(connection)
                    yield Release(connection)
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
                yield Release(connection)

    # -- the backend contract -------------------------------------------------------------

    def create(self, new: NewInstance, restart_if_terminal: bool) -> Plan[Step, str]:
        etag = core.new_etag()
        sql = self.stmts.create_or_restart if restart_if_terminal else self.stmts.create
        params = core.create_params(new, etag, self.ttl)
        row = yield from self.write("create", new.instance_id, sql, params, etag, None, True)
        if row is not core.LANDED:
            core.create_outcome(new.instance_id, row)  # type: ignore[arg-type]
        return etag

    def read(self, instance_id: str, fetch_payloads: bool) -> Plan[Step, InstanceRecord | None]:
        sql = self.stmts.read_all if fetch_payloads else self.stmts.read
        row = yield from self.run("read", instance_id, sql, (core.id_key(instance_id),))
        return None if row is None else core.record(row, fetch_payloads)

    def read_many(
        self, instance_ids: Sequence[str], fetch_payloads: bool
    ) -> Plan[Step, dict[str, InstanceRecord | None]]:
        """One ``SELECT ... WHERE instance_id = ANY(%s)`` for every id."""
        sql = core.read_many_statement(self.stmts.read_all if fetch_payloads else self.stmts.read)
        keys = [core.id_key(instance_id) for instance_id in instance_ids]
        rows = yield from self.run("read", None, sql, (keys,), many=True)
        found: dict[str, InstanceRecord | None] = dict.fromkeys(instance_ids)
        for row in rows:
            record = core.record(row, fetch_payloads)
            found[record.instance_id] = record
        return found

    def count(self, query: InstanceQuery) -> Plan[Step, dict[RuntimeStatus, int]]:
        """One ``GROUP BY`` over the query's WHERE clause."""
        sql, params = core.count_statement(self.stmts, query)
        return core.counts((yield from self.run("count", None, sql, params, many=True)))

    def write_custom_status(
        self, instance_id: str, payload: Payload, etag: str | None, now: datetime
    ) -> Plan[Step, WriteResult]:
        stmts = self.stmts
        sql = stmts.write_status if etag is None else stmts.write_status_if_match
        for _ in range(core.LAST_WRITE_ATTEMPTS):
            new = core.new_etag()
            params = core.status_params(instance_id, payload, etag, now, new, self.ttl)
            row = yield from self.write("custom-status update", instance_id, sql, params, new, etag)
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
        output: Payload | None,
        set_output: bool,
        etag: str | None,
        now: datetime,
    ) -> Plan[Step, str]:
        new = core.new_etag()
        sql = core.runtime_statement(self.stmts, set_output, etag)
        params = core.runtime_params(instance_id, status, output, etag, now, new, self.ttl)
        row = yield from self.write("runtime-status update", instance_id, sql, params, new, etag)
        if row is core.LANDED:
            return new
        return core.runtime_outcome(instance_id, etag, new, row)  # type: ignore[arg-type]

    def delete(self, instance_id: str) -> Plan[Step, bool]:
        params = core.delete_params(instance_id)
        return core.delete_outcome(
            (yield from self.run("delete", instance_id, self.stmts.delete, params))
        )

    def query(self, query: InstanceQuery) -> Plan[Step, RecordPage]:
        sql, params = core.query_statement(self.stmts, query)
        return core.page((yield from self.run("query", None, sql, params, many=True)), query)

    def purge_by(self, query: InstanceQuery) -> Plan[Step, int]:
        """One DELETE with the query's WHERE clause (live rows only)."""
        sql, params = core.purge_statement(self.stmts, query)
        return int((yield from self.run("purge", None, sql, params))[0])

    def purge_expired(self) -> Plan[Step, int]:
        """The sweeper: delete rows whose ``expires_at`` passed (reads already skip them)."""
        sql = self.stmts.purge_expired
        return int((yield from self.run("purge of expired instances", None, sql, ()))[0])
