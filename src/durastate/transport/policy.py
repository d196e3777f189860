"""When to try again, and when to give up: the one retry policy both drivers follow.

A driver asks a `Call` for the timeouts of the next attempt, makes the attempt, and hands
the result (an `HttpResponse` or a `Failure`) to `Call.judge`, which answers with the
response to return or the seconds to sleep before the next attempt, or raises
`BackendUnavailable`. No sockets and no ``await`` here, so the sync and the async driver
share every decision: timeouts, the overall deadline, backoff with full jitter,
``Retry-After``, which answers are retried, and what happens when an attempt may have
landed although its answer was lost ("outcome unknown").

Whether a failed attempt may have been applied is the backend core's call, because only
the core can recognise its own write afterwards (a client-made etag, a write id). It says
so by passing a `LandedHook`; the call then retries and marks the final answer
``outcome_unknown=True``. Without a hook, an unsafe request whose outcome is unknown is
not retried: `OutcomeUnknown` is raised, since a blind retry could apply a write twice or
report the caller's own write as a conflict.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from durastate.errors import BackendUnavailable, OutcomeUnknown, SerializationError
from durastate.transport.messages import HttpRequest, HttpResponse

__all__ = [
    "CERTIFICATE_FAILED",
    "RETRYABLE_STATUSES",
    "SAFE_METHODS",
    "Call",
    "Failure",
    "LandedHook",
    "OutcomeUnknown",
    "RetryPolicy",
    "Timeouts",
    "TransportOptions",
    "default_may_have_landed",
]

#: Answers worth another attempt: timeout, throttling, server errors and gateways.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Methods whose repetition changes nothing, so an unknown outcome is retried freely.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Answers that say the server refused the request before acting on it.
_REFUSED_STATUSES = frozenset({408, 429, 503})
#: The reason of a certificate that does not verify (both drivers report it alike).
CERTIFICATE_FAILED = "TLS certificate verification failed"
#: Below this much time left, another attempt cannot finish: give up at once.
_MIN_ATTEMPT_SECONDS = 0.005


class TransportOptions(BaseModel):
    """Timeouts, retries, TLS and proxy of a driver. The proxy URL (it may hold a password)
    is a ``SecretStr``: it never appears in a repr or an error.

    ``deadline`` bounds a whole call, sleeps and retries included; each attempt gets at most
    ``connect_timeout`` to connect and ``read_timeout`` between bytes of the answer, and never
    more than what is left of the deadline. ``verify`` is ``True`` (the system's CAs), a
    path to a CA bundle, or ``False`` (no verification; opt-in). ``proxy`` is opt-in: no
    environment variable is read.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    connect_timeout: float = Field(default=2.0, gt=0)
    read_timeout: float = Field(default=10.0, gt=0)
    deadline: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=4, ge=1, le=50)
    backoff_base: float = Field(default=0.05, ge=0)
    backoff_cap: float = Field(default=2.0, ge=0)
    verify: bool | str = True
    proxy: SecretStr | None = None
    pool_size: int = Field(default=10, ge=1)


class Timeouts(NamedTuple):
    """What one attempt may spend: to connect, between answer bytes, and in all."""

    connect: float
    read: float
    total: float


@dataclass(frozen=True, slots=True)
class Failure:
    """An attempt that got no usable answer, or a retryable one.

    ``stage`` says how far the request got: ``"connect"`` (no connection: nothing sent),
    ``"send"`` (the request was not sent whole: the server cannot have acted on it) or
    ``"response"`` (sent whole, then the answer was an error status, timed out or was cut
    off). ``reason`` is safe to show: a status or an exception class, never a URL or a key.
    ``retryable=False`` marks a failure no retry can cure (a certificate that does not
    verify): the call ends at once.
    """

    stage: Literal["connect", "send", "response"]
    reason: str
    status: int | None = None
    retry_after: float | None = None
    retryable: bool = True


#: ``(request, failure) -> True`` when the failed attempt may have been applied.
LandedHook = Callable[[HttpRequest, Failure], bool]


def default_may_have_landed(request: HttpRequest, failure: Failure) -> bool:
    """The usual reading: not sent, or refused (408/429/503), means not applied; a request
    sent whole whose answer was lost, a timeout, a 500, 502 or 504 may have been applied."""
    if failure.stage != "response":
        return False
    return failure.status not in _REFUSED_STATUSES


class RetryPolicy:
    """Options plus a random source; `call` starts the bookkeeping of one request."""

    __slots__ = ("_random", "options")

    def __init__(self, options: TransportOptions | None = None, *, seed: int | None = None) -> None:
        self.options = options or TransportOptions()
        self._random = random.Random(seed)

    def call(
        self,
        request: HttpRequest,
        may_have_landed: LandedHook | None = None,
        deadline: float | None = None,
    ) -> Call:
        """``deadline`` (a `time.monotonic` instant) ends the call sooner than the options'
        own deadline: an operation of several requests ends by one deadline."""
        _check_sendable(request)
        return Call(self, request, may_have_landed, deadline)

    def backoff(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retry)]."""
        options = self.options
        return self._random.uniform(0, min(options.backoff_cap, options.backoff_base * 2**retry))


class Call:
    """The retry state of one request: attempts made, time left, and what failed last."""

    __slots__ = ("_hook", "_policy", "_request", "_started", "attempts", "deadline", "unknown")

    def __init__(
        self,
        policy: RetryPolicy,
        request: HttpRequest,
        may_have_landed: LandedHook | None,
        deadline: float | None = None,
    ) -> None:
        self._policy = policy
        self._request = request
        self._hook = may_have_landed
        self._started = time.monotonic()
        self.deadline = self._started + policy.options.deadline
        if deadline is not None and deadline < self.deadline:
            self.deadline = deadline
        self.attempts = 0
        self.unknown = False

    def timeouts(self) -> Timeouts:
        """The limits of the next attempt (a fresh call always gets its first attempt)."""
        options = self._policy.options
        left = max(self.deadline - time.monotonic(), _MIN_ATTEMPT_SECONDS)
        return Timeouts(min(options.connect_timeout, left), min(options.read_timeout, left), left)

    def judge(self, result: HttpResponse | Failure) -> HttpResponse | float:
        """The response to return, or how long to sleep before trying again."""
        self.attempts += 1
        if isinstance(result, HttpResponse):
            if result.status not in RETRYABLE_STATUSES:
                return self._final(result)
            failure = Failure(
                "response", f"HTTP {result.status}", result.status, _retry_after(result)
            )
            if not self._may_retry(failure):
                return self._final(result)
        else:
            failure = result
            if not failure.retryable:
                raise self._unavailable(failure, BackendUnavailable, "not retried")
            if not self._may_retry(failure):
                raise self._unavailable(
                    failure, OutcomeUnknown, "may have been applied; not retried"
                )
        return self._delay(failure)

    def _may_retry(self, failure: Failure) -> bool:
        """Record an unknown outcome; False when the request must not be sent again."""
        request = self._request
        hook = self._hook or default_may_have_landed
        if request.method in SAFE_METHODS or not hook(request, failure):
            return True
        if self._hook is None:
            return False
        self.unknown = True
        return True

    def _delay(self, failure: Failure) -> float:
        options = self._policy.options
        if self.attempts >= options.max_attempts:
            raise self._unavailable(failure, BackendUnavailable, "gave up")
        delay = self._policy.backoff(self.attempts - 1)
        if failure.retry_after is not None:
            delay = max(delay, min(failure.retry_after, options.backoff_cap))
        if time.monotonic() + delay + _MIN_ATTEMPT_SECONDS >= self.deadline:
            raise self._unavailable(failure, BackendUnavailable, "deadline reached")
        return delay

    def _final(self, response: HttpResponse) -> HttpResponse:
        if self.attempts == 1 and not self.unknown:
            return response
        return HttpResponse(
            response.status, response.headers, response.body, self.attempts, self.unknown
        )

    def _unavailable(
        self, failure: Failure, kind: type[BackendUnavailable], verdict: str
    ) -> BackendUnavailable:
        """The error that ends the call: `OutcomeUnknown` whenever an attempt may have been
        applied, so the core never reports such a write as not done."""
        elapsed = time.monotonic() - self._started
        message = (
            f"{self._request.describe()}: {verdict} after {self.attempts} attempt(s) "
            f"in {elapsed:.1f} s (last: {failure.reason})"
        )
        if self.unknown:
            return OutcomeUnknown(f"{message}; an earlier attempt may have been applied")
        return kind(message)


def _check_sendable(request: HttpRequest) -> None:
    """Refuse, before any I/O, what one driver would reject and the other send differently:
    a path or header that is not printable ASCII (CR/LF would also inject headers)."""
    path = request.path
    if not (path.isascii() and path.isprintable()) or " " in path:
        raise SerializationError(
            f"{request.method} {request.host}: the path must be percent-encoded ASCII"
        )
    for name, value in request.headers.items():
        if not (name.isascii() and value.isascii() and value.isprintable() and name.isprintable()):
            raise SerializationError(
                f"{request.describe()}: header {name.encode('ascii', 'replace')!r} is not "
                "printable ASCII and cannot be sent"
            )


def _retry_after(response: HttpResponse) -> float | None:
    """``Retry-After`` in seconds (the date form is ignored: servers here send seconds)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None
