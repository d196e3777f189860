"""psycopg's exceptions as durastate errors, shared by both drivers; never a password."""

from __future__ import annotations

import psycopg
import psycopg.errors
import psycopg_pool

from durastate.backends.postgres.core import login_refused
from durastate.errors import BackendUnavailable, ConfigurationError, DurastateError


def describe(exc: BaseException, secret: str | None) -> str:
    """The first line of a driver message, with the password cut out should it appear."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if secret:
        text = text.replace(secret, "***")
    return text


def translate(
    exc: BaseException, operation: str, instance_id: str | None, secret: str | None, timeout: float
) -> DurastateError:
    """A psycopg or pool exception as `BackendUnavailable` (or `ConfigurationError` for a
    missing table or a refused login), naming the operation and the instance."""
    target = f" of instance {instance_id!r}" if instance_id is not None else ""
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return BackendUnavailable(
            f"postgresql {operation}{target}: no connection within {timeout:g} s "
            "(server down or pool exhausted)"
        )
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return BackendUnavailable(
            f"postgresql {operation}{target} was cancelled by the server (statement_timeout); "
            "nothing was applied"
        )
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return ConfigurationError(
            f"postgresql {operation}{target}: the table does not exist "
            "(open the store with create_table=True, or create it)"
        )
    if login_refused(exc):
        return ConfigurationError(
            f"postgresql {operation}{target}: the server refused the login "
            f"({describe(exc, secret)})"
        )
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return ConfigurationError(
            f"postgresql {operation}{target}: permission denied ({describe(exc, secret)}); "
            "see the grants in docs/postgres.md"
        )
    return BackendUnavailable(f"postgresql {operation}{target} failed: {describe(exc, secret)}")
