"""One operation's time and retries: every request of a call (blob uploads and reads back
included) ends by one deadline, and at most ``retry_total`` lost answers are sent again.

The transport retries what is safe by itself (connection refused, 429/503, a read whose
answer was lost); a write whose answer was lost comes back here (`OutcomeUnknown` or a
500/502/504), and the plans read the row before anything is sent again. Plain data and a
clock: no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from durastate.errors import BackendUnavailable, OutcomeUnknown
from durastate.transport.messages import HttpRequest
from durastate.transport.plans import Exchange, Pause
from durastate.transport.policy import LandedHook

UNKNOWN_OUTCOME = "the outcome of the write is unknown (it may or may not have been applied)"


class Budget:
    """The time and lost answers one operation may still spend."""

    __slots__ = (
        "backoff_factor",
        "backoff_max",
        "deadline",
        "failures",
        "maybe_applied",
        "operation_timeout",
        "retry_total",
        "started",
        "where",
    )

    def __init__(
        self,
        where: Callable[[], str],
        *,
        retry_total: int,
        operation_timeout: float,
        backoff_factor: float,
        backoff_max: float,
    ) -> None:
        self.where = where  # built only for a message: most calls never need it
        self.retry_total = retry_total
        self.operation_timeout = operation_timeout
        self.backoff_factor = backoff_factor
        self.backoff_max = backoff_max
        self.started = time.monotonic()
        self.deadline = self.started + operation_timeout
        self.failures = 0
        self.maybe_applied = False  # some write of this operation may have been applied

    def exchange(self, request: HttpRequest, landed: LandedHook | None = None) -> Exchange:
        """The step that sends ``request`` by this operation's deadline."""
        return Exchange(request, landed, self.deadline)

    def lost(self, detail: str) -> Pause | None:
        """A write's answer was lost (it may have landed): count it, and give up with
        `OutcomeUnknown` past ``retry_total`` or the deadline; else the back-off to wait."""
        self.failures += 1
        self.maybe_applied = True
        remaining = self.deadline - time.monotonic()
        if self.failures > self.retry_total or remaining <= 0:
            raise self.exhausted(detail)
        if self.failures == 1:  # like azure-core: the first retry goes at once
            return None
        backoff = self.backoff_factor * 2 ** (self.failures - 1)
        return Pause(max(0.0, min(backoff, self.backoff_max, remaining)))

    def exhausted(self, detail: str) -> OutcomeUnknown:
        elapsed = time.monotonic() - self.started
        tries = "request" if self.failures == 1 else "requests"
        return OutcomeUnknown(
            f"{self.where()} failed: {detail} ({self.failures} failed {tries} in "
            f"{elapsed:.1f} s; retry_total={self.retry_total}, "
            f"operation_timeout={self.operation_timeout:g} s); {UNKNOWN_OUTCOME}"
        )

    def unknown(self) -> OutcomeUnknown:
        """The answer to a write was lost and the row cannot tell whether it landed."""
        return OutcomeUnknown(
            f"{self.where()}: the answer to the write was lost and another writer has "
            f"written since; {UNKNOWN_OUTCOME}, so it is not sent again"
        )

    def unavailable(self, exc: BackendUnavailable) -> BackendUnavailable:
        """The transport's error, named by operation and instance; `OutcomeUnknown` when an
        earlier write of this operation may have been applied."""
        message = f"{self.where()} failed: {exc}"
        if isinstance(exc, OutcomeUnknown) or self.maybe_applied:
            if "unknown" not in message:
                message += f"; {UNKNOWN_OUTCOME}"
            return OutcomeUnknown(message)
        return BackendUnavailable(message)
