"""One logic, two front ends: an operation written once, as a generator of steps.

A backend whose client library comes in a sync and an async flavour with the same calls
(redis-py and ``redis.asyncio``, psycopg's ``Connection`` and ``AsyncConnection``) writes each
operation once, as a *plan*: a generator that yields what it wants done (a command, a
statement on a connection, a pause) and receives the answer. Every decision (what to send,
what an answer means, what a failure means, when to try again) is in the plan; a driver only
performs the steps, with or without ``await``. So the sync and the async backend cannot
drift apart, and a plan is unit-tested by driving it by hand with ``send()``.

A failed step is thrown into the plan at its ``yield`` (any ``BaseException``: a plan that
holds a connection gives it back on cancellation too); what the plan raises is the
operation's error, its return value the operation's result. The loop that drives a plan is
`Walk` plus four lines, in `drive` (sync) and `adrive` (async).
transport/plans.py is the same idea for HTTP requests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

S = TypeVar("S")
T = TypeVar("T")

Plan = Generator[S, Any, T]


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait ``seconds`` before going on (a back-off the plan decides)."""

    seconds: float


class Walk(Generic[S, T]):
    """Where a plan stands: the step it wants performed, or its result once it returned.

    A driver sets ``reply`` (or ``error``) and calls `advance`, which sends the reply (or
    throws the error) into the plan outside the driver's ``except`` block, so the plan's
    own errors carry no unrelated context.
    """

    __slots__ = ("error", "going", "plan", "reply", "result", "step")

    def __init__(self, plan: Generator[S, Any, T]) -> None:
        self.plan = plan
        self.going = True
        self.reply: Any = None
        self.error: BaseException | None = None
        self.result: T
        self.step: S
        self.advance()

    def advance(self) -> None:
        error, self.error = self.error, None
        try:
            if error is None:
                self.step = self.plan.send(self.reply)
            else:
                self.step = self.plan.throw(error)
        except StopIteration as done:
            self.going = False
            self.result = done.value
        self.reply = None


def drive(plan: Generator[S, Any, T], perform: Callable[[S], Any]) -> T:
    """Run ``plan`` to its end, performing each step with the sync ``perform``."""
    walk = Walk(plan)
    while walk.going:
        try:
            walk.reply = perform(walk.step)
        except BaseException as exc:  # the plan decides what a failure means
            walk.error = exc
        walk.advance()
    return walk.result


async def adrive(plan: Generator[S, Any, T], perform: Callable[[S], Awaitable[Any]]) -> T:
    """Run ``plan`` to its end, awaiting each step's ``perform``."""
    walk = Walk(plan)
    while walk.going:
        try:
            walk.reply = await perform(walk.step)
        except BaseException as exc:  # the plan decides (a cancellation included)
            walk.error = exc
        walk.advance()
    return walk.result
