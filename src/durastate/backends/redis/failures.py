"""redis-py's exceptions (sync and asyncio raise the same classes) as durastate's typed errors.

Messages name the operation, the instance and the redacted URL, never the password: the text
of a redis-py error is passed on only with the password cut out.
"""

from __future__ import annotations

import time

from redis import exceptions

from durastate.backends.redis.core import ScriptCall
from durastate.backends.redis.options import RedisTarget
from durastate.errors import (
    BackendUnavailable,
    ConfigurationError,
    CorruptRecord,
    DurastateError,
    OutcomeUnknown,
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
    text = _scrubbed(exc, target)
    if isinstance(exc, exceptions.NoPermissionError) or "can't run this command" in text:
        return ConfigurationError(
            f"{subject}: the Redis user lacks a permission (NOPERM: {text[:120]}; see the "
            f"ACL list in the README){where}"
        )
    if isinstance(exc, exceptions.ResponseError):
        if "WRONGTYPE" in text and instance_id is not None:
            return CorruptRecord(instance_id, "its Redis key holds a value of another type")
        return BackendUnavailable(f"{subject}: the server answered an error ({text}){where}")
    if outcome_unknown:
        return OutcomeUnknown(
            f"{subject}: the write was sent and its outcome is unknown ({text}){where}"
        )
    if isinstance(exc, exceptions.TimeoutError):
        return BackendUnavailable(f"{subject} timed out after {target.options.timeout} s{where}")
    return BackendUnavailable(f"{subject} failed: {text}{where}")


def _nothing_sent(exc: BaseException) -> bool:
    """A connection that was never made (refused, no such socket): nothing was sent."""
    return "connecting to" in str(exc) or "Connection refused" in str(exc)


#: How often a call whose connection dropped is sent again (with its retry flag).
LOST_CONNECTION_RETRIES = 5


def _not_run(exc: exceptions.RedisError) -> bool:
    """The server answered that it did not run the command (loading its data, busy with a
    script, failing over): safe to send again."""
    if isinstance(
        exc, exceptions.BusyLoadingError | exceptions.TryAgainError | exceptions.ClusterDownError
    ):
        return True
    return isinstance(exc, exceptions.ResponseError) and str(exc).startswith("BUSY ")


class Attempts:
    """Decides, after each failed attempt of one script call, what to send next.

    A dropped connection: the call goes again with its retry flag (the script recognises a
    write that landed), up to ``LOST_CONNECTION_RETRIES`` times within the timeout. An
    answer saying the server did not run it: the same call again, after a short pause,
    until the timeout. Anything else: the typed error.
    """

    def __init__(self, call: ScriptCall, operation: str, target: RedisTarget) -> None:
        self.call = call
        self.operation = operation
        self.target = target
        self.deadline = time.monotonic() + target.options.timeout
        self.losses = 0
        self.maybe_sent = False  # a lost connection that may have carried the call
        self.pauses = 0

    def after(self, exc: exceptions.RedisError) -> tuple[ScriptCall, float]:
        """The call to send next and the pause before it; raises when there is none."""
        call, target = self.call, self.target
        if _not_run(exc):
            pause = min(0.01 * 2**self.pauses, 0.2)
            if time.monotonic() + pause < self.deadline:
                self.pauses += 1
                return call, pause
        elif isinstance(exc, exceptions.ConnectionError) and not isinstance(
            exc, exceptions.AuthenticationError
        ):
            self.losses += 1
            self.maybe_sent = self.maybe_sent or not _nothing_sent(exc)
            if self.losses <= LOST_CONNECTION_RETRIES and time.monotonic() < self.deadline:
                self.call = call.as_retry()
                return self.call, 0.0 if self.losses == 1 else 0.01 * self.losses
            raise self._final(exc) from None
        if self.losses:
            raise self._final(exc) from None
        unknown = isinstance(exc, exceptions.TimeoutError) and call.retry_at is not None
        raise failure(
            exc, self.operation, call.instance_id, target, outcome_unknown=unknown
        ) from None

    def _final(self, exc: exceptions.RedisError) -> DurastateError:
        """The retries after a lost connection failed too: a write's outcome is unknown
        unless no attempt ever got a connection."""
        unknown = self.call.retry_at is not None and self.maybe_sent
        return failure(
            exc, self.operation, self.call.instance_id, self.target, outcome_unknown=unknown
        )
