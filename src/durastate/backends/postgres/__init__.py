"""postgresql://user:password@host:port/db (also postgres://): one table, one row per instance.

`core` holds every statement and decision (sans-I/O); `sync.PostgresBackend` runs them on
psycopg ``Connection``s from a pool, `aio.AsyncPostgresBackend` on ``AsyncConnection``s.
"""

from __future__ import annotations

try:
    import psycopg  # noqa: F401
    import psycopg_pool  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by the registry test
    from durastate.errors import MissingDependency

    raise MissingDependency("backend 'postgresql'", "postgres", exc.name or "psycopg") from None

from durastate.backends.postgres.core import PostgresOptions
from durastate.backends.postgres.sync import PostgresBackend

__all__ = ["PostgresBackend", "PostgresOptions"]
