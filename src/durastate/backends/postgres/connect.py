"""From a ``postgresql://`` URL and the options to a libpq conninfo; the password kept apart.

Both drivers connect with the same conninfo: the URL's own parameters (``sslmode``, ...) pass
through; durastate adds ``connect_timeout``, ``application_name``, and server settings for
the session (``statement_timeout`` and ``TimeZone=UTC``, so timestamps come back in UTC).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from psycopg.conninfo import make_conninfo

from durastate.backends.postgres.core import PostgresOptions
from durastate.errors import ConfigurationError

SCHEMES = ("postgresql", "postgres")


class Connecting:
    """The conninfo of one store, its password (only to cut it out of messages), a safe
    form of the URL for reprs."""

    def __init__(self, url: str, options: PostgresOptions) -> None:
        scheme, sep, _ = url.partition("://")
        if not sep or scheme.lower() not in SCHEMES:
            raise ConfigurationError("a postgresql URL starts with postgresql:// or postgres://")
        try:
            parts = urlsplit(url)
            in_query = parse_qs(parts.query).get("password")  # libpq takes it there too
            password = parts.password or (in_query[-1] if in_query else None)
            self.secret = unquote(password) if password else None
            host = parts.hostname or "localhost"
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            raise ConfigurationError("invalid postgresql URL (host or port)") from None
        self.redacted = f"{scheme}://{host}{port}{parts.path}"
        self.options = options
        settings = f"-c statement_timeout={options.server_timeout_ms} -c TimeZone=UTC"
        try:
            self.conninfo = make_conninfo(
                url,
                connect_timeout=max(2, round(options.connect_timeout)),
                application_name=options.application_name,
                options=settings,
            )
        except psycopg.Error:
            # libpq's message may quote the URL, password included: say only what is wrong
            raise ConfigurationError(
                f"invalid postgresql URL {self.redacted!r}: not a valid libpq connection URL"
            ) from None

        # the server process of each pooled connection, noted when it opens: after a break
        # libpq no longer says, and the lost-write recovery must wait for that process
        self.pids: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()

    def pool_kwargs(self, name: str) -> dict[str, Any]:
        """What ``ConnectionPool`` and ``AsyncConnectionPool`` are made with, but for their
        ``configure`` hook (`note_pid` / `anote_pid`)."""
        options = self.options
        return {
            "conninfo": self.conninfo,
            "kwargs": {"autocommit": True},
            "min_size": options.min_pool_size,
            "max_size": options.max_pool_size,
            "timeout": options.timeout,
            "name": f"{name}-{options.table}",
            "open": False,
        }

    def kwargs(self) -> dict[str, Any]:
        return {"conninfo": self.conninfo, "autocommit": True}

    def note_pid(self, connection: psycopg.Connection[Any]) -> None:
        """The pool's ``configure`` hook (sync)."""
        self.pids[connection] = connection.info.backend_pid

    async def anote_pid(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """The pool's ``configure`` hook (async)."""
        self.pids[connection] = connection.info.backend_pid


_OK = psycopg.pq.ConnStatus.OK
_IDLE = psycopg.pq.TransactionStatus.IDLE
POOL_SLICE = 0.05  # seconds a caller waits in the pool before it looks at the spares again


class SpareConnections:
    """Idle connections kept out of the pool between calls, last in first out.

    ``ConnectionPool.getconn`` + ``putconn`` cost 3-5 µs of client CPU per call, as much as
    the rest of durastate's work on an update; a list pop and append cost a few hundred ns
    (both atomic in CPython, so no lock). A caller that finds none waits in the pool in short
    slices (`POOL_SLICE`), looking at the spares in between, so no one starves while
    connections circulate outside the pool. The pool still makes, limits (``max_pool_size``)
    and replaces connections; a spare one that broke meanwhile fails its next call, which
    then takes the same recovery as any other break. LIFO also keeps the most recently used
    connection, whose statements are already prepared, in use.

    Who waits in the pool is counted here (`waiting`), by the drivers around each
    ``getconn``: the pool's own count is private.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._idle: list[Any] = []
        self._waiters = 0
        self._count_lock = threading.Lock()

    def take(self) -> Any | None:
        try:
            return self._idle.pop()
        except IndexError:
            return None

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a wait in the pool: while anyone waits there, released connections go
        back to the pool (to the waiter) instead of to the spares."""
        with self._count_lock:
            self._waiters += 1
        try:
            yield
        finally:
            with self._count_lock:
                self._waiters -= 1

    def keep(self, connection: Any) -> bool:
        """Keep a healthy, idle connection for the next call; False: give it to the pool,
        which also happens whenever a caller waits in the pool (it would starve)."""
        if self._waiters or len(self._idle) >= self.limit:
            return False
        pgconn = connection.pgconn  # (``connection.info`` builds an object per access)
        if pgconn.status != _OK or pgconn.transaction_status != _IDLE:
            return False
        self._idle.append(connection)
        return True

    def drain(self) -> list[Any]:
        """Every spare connection (to hand back before the pool closes)."""
        idle, self._idle = self._idle, []
        return idle
