"""The sync driver: performs the plans of `PostgresPlans` on psycopg ``Connection``s.

Every call takes a pooled connection (autocommit), runs one statement (server-side prepared)
and hands the row to the core; the whole call, pool wait included, is bounded by
``timeout``. What runs, and what a failure means, is the plans' (`plans.py`): this module
only performs their steps with psycopg's sync API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Self

import psycopg
import psycopg_pool

from durastate.backends.postgres import core
from durastate.backends.postgres.connect import Connecting, SpareConnections
from durastate.backends.postgres.listen import PostgresListener
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
from durastate.core.planned import PlannedBackend
from durastate.core.records import Capabilities
from durastate.core.steps import drive

if TYPE_CHECKING:
    from durastate.core.async_backend import AsyncBackend


class PostgresBackend(PlannedBackend):
    """Instances in one PostgreSQL table (layout and costs: `core` and docs/postgres.md)."""

    scheme = "postgresql"
    # what the backend can do with its options (the CLI lists this); an instance says what
    # is on (ttl_seconds, notify)
    capabilities = Capabilities(max_payload_bytes=core.MAX_PAYLOAD_BYTES, ttl=True, push=True)
    async_mode: ClassVar[str] = "native"

    plans: PostgresPlans

    def __init__(self, url: str, options: core.PostgresOptions | None = None) -> None:
        self.options = options or core.PostgresOptions()
        self._connecting = Connecting(url, self.options)
        self._spare = SpareConnections(self.options.max_pool_size)
        self.plans = PostgresPlans(self._connecting, self.options, self._spare)
        self._stmts = self.plans.stmts
        self.capabilities = core.capabilities(self.options)
        self._listener = PostgresListener(self._connecting, self.options)
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] | None = None
        drive(self.plans.prepare_schema(), self._perform)
        self._pool = psycopg_pool.ConnectionPool(
            configure=self._connecting.note_pid, **self._connecting.pool_kwargs("durastate")
        )
        try:  # wait for the first connections: a call queued on an empty pool grows it
            self._pool.open(wait=True, timeout=self.options.timeout)
        except psycopg.Error as exc:
            self._pool.close()
            raise self.plans.error(exc, "open", None) from None

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

    def _perform(self, step: Step) -> Any:
        pool = self._pool
        if isinstance(step, Execute):
            cursor = step.connection.execute(step.sql, step.params, prepare=step.prepare)
            return cursor.fetchall() if step.many else cursor.fetchone()
        if isinstance(step, Release):
            if not self._spare.keep(step.connection):
                assert pool is not None
                pool.putconn(step.connection)
        elif isinstance(step, PoolWait):
            assert pool is not None
            with self._spare.waiting():
                return pool.getconn(step.seconds)
        elif isinstance(step, Connect):
            return psycopg.connect(**self._connecting.kwargs())
        elif isinstance(step, InTransaction):
            with step.connection.transaction():
                for sql in step.statements:
                    step.connection.execute(sql)
        elif isinstance(step, Close):
            step.connection.close()
        else:
            time.sleep(step.seconds)
        return None
