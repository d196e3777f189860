"""From a ``postgresql://`` URL and the options to a libpq conninfo; the password kept apart.

Both drivers connect with the same conninfo: the URL's own parameters (``sslmode``, ...) pass
through; durastate adds ``connect_timeout``, ``application_name``, and server settings for
the session (``statement_timeout`` and ``TimeZone=UTC``, so timestamps come back in UTC).
"""

from __future__ import annotations

import weakref
from typing import Any
from urllib.parse import unquote, urlsplit

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
            self.secret = unquote(parts.password) if parts.password else None
            host = parts.hostname or "localhost"
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            raise ConfigurationError("invalid postgresql URL (host or port)") from None
        self.redacted = f"{scheme}://{host}{port}{parts.path}"
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

    def kwargs(self) -> dict[str, Any]:
        return {"conninfo": self.conninfo, "autocommit": True}

    def note_pid(self, connection: psycopg.Connection[Any]) -> None:
        """The pool's ``configure`` hook (sync)."""
        self.pids[connection] = connection.info.backend_pid

    async def anote_pid(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """The pool's ``configure`` hook (async)."""
        self.pids[connection] = connection.info.backend_pid
