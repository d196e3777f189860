"""redis-py's exceptions (sync and asyncio raise the same classes) as durastate's typed errors.

Messages name the operation, the instance and the redacted URL, never the password: the text
of a redis-py error is passed on only with the password cut out.
"""

from __future__ import annotations

from redis import exceptions

from durastate.backends.redis.core import ScriptCall
from durastate.backends.redis.options import RedisTarget
from durastate.errors import (
    BackendUnavailable,
    ConfigurationError,
    CorruptRecord,
    DurastateError,
)


def _scrubbed(exc: BaseException, target: RedisTarget) -> str:
    text = str(exc) or type(exc).__name__
    password = target.options.password
    if password is not None and password.get_secret_value():
        text = text.replace(password.get_secret_value(), "***")
    return text[:200]


def failure(
    exc: exceptions.RedisError,
    operation: str,
    instance_id: str | None,
    target: RedisTarget,
    *,
    outcome_unknown: bool = False,
) -> DurastateError:
    """The typed error for ``exc``; ``outcome_unknown``: a write was sent, its answer lost."""
    subject = f"redis {operation}" + (f" of instance {instance_id!r}" if instance_id else "")
    where = f" ({target.redacted})"
    if isinstance(
        exc, exceptions.AuthenticationError | exceptions.AuthenticationWrongNumberOfArgsError
    ):
        return ConfigurationError(f"{subject}: authentication failed{where}")
    if isinstance(exc, exceptions.NoPermissionError):
        return ConfigurationError(
            f"{subject}: the Redis user lacks a permission (NOPERM; see the ACL list in the "
            f"README){where}"
        )
    if isinstance(exc, exceptions.ResponseError):
        code = (str(exc).split(" ", 1) or ["ERR"])[0]
        if code == "WRONGTYPE" and instance_id is not None:
            return CorruptRecord(instance_id, "its Redis key holds a value of another type")
        if code in {"NOSCRIPT", "ERR"} and "script" in str(exc).lower():
            return BackendUnavailable(f"{subject}: the server refused the script ({code}){where}")
        return BackendUnavailable(f"{subject}: the server answered {code}{where}")
    if outcome_unknown:
        return BackendUnavailable(
            f"{subject}: the write was sent and its outcome is unknown "
            f"({_scrubbed(exc, target)}){where}"
        )
    if isinstance(exc, exceptions.TimeoutError):
        return BackendUnavailable(f"{subject} timed out after {target.options.timeout} s{where}")
    return BackendUnavailable(f"{subject} failed: {_scrubbed(exc, target)}{where}")


def _nothing_sent(exc: BaseException) -> bool:
    """A connection that was never made (refused, no such socket): nothing was sent."""
    return "connecting to" in str(exc) or "Connection refused" in str(exc)


def retry_or_raise(
    exc: exceptions.RedisError, call: ScriptCall, operation: str, target: RedisTarget
) -> None:
    """After a first attempt failed: return when the call may go again with its retry flag
    (the connection dropped: the script will recognise a write that landed), else raise."""
    if isinstance(exc, exceptions.ConnectionError) and not isinstance(
        exc, exceptions.AuthenticationError
    ):
        return
    unknown = isinstance(exc, exceptions.TimeoutError) and call.retry_at is not None
    raise failure(exc, operation, call.instance_id, target, outcome_unknown=unknown) from None


def after_retry(
    exc: exceptions.RedisError,
    first: BaseException,
    call: ScriptCall,
    operation: str,
    target: RedisTarget,
) -> DurastateError:
    """The error when the retry failed too: the outcome of a write is unknown unless the
    first attempt never got a connection."""
    unknown = call.retry_at is not None and not _nothing_sent(first)
    return failure(exc, operation, call.instance_id, target, outcome_unknown=unknown)
