"""Operations as plans: one sans-I/O generator per backend operation, run sync or async.

A backend core writes each operation (create, write a status, read, a query page, an
offload upload) once, as a generator that yields what it wants sent and receives what came
back. It decides everything (requests, conditions, what a response means, whether to read
again after a lost answer) and never touches a socket, sleeps or awaits. `run` executes a
plan over the sync `HttpDriver`, `arun` over the async `AsyncHttpDriver`, both with the one
loop of `durastate.core.steps` and a step executor here (`perform` / `aperform`); the HTTP
backends are `durastate.core.planned` backends whose ``_perform`` is one of these, so
there are no sync/async twins. A plan is unit-tested by driving it by hand with `send()`.

A plan yields one of:

- `Exchange`: one request (with its "may this have landed?" hook); receives the
  `HttpResponse`;
- `Batch`: several exchanges that may go concurrently (a batch of reads, the parts of an
  offloaded payload); receives the responses in the same order;
- `Pause`: wait this many seconds (a short back-off the core decides, e.g. before reading
  again while another writer finishes); receives ``None``.

Its return value is the operation's result; its exceptions are the operation's typed errors.
An error of the driver (``BackendUnavailable``, ``OutcomeUnknown`` after the retry budget) is
thrown into the plan at its ``yield``, so the core may catch it (say, to read back whether a
write whose answer was lost landed) or let it propagate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from durastate.core.steps import Pause as Pause  # one Pause for every plan
from durastate.core.steps import adrive, drive
from durastate.transport.messages import HttpRequest, HttpResponse
from durastate.transport.policy import LandedHook

if TYPE_CHECKING:
    from durastate.transport.aio import AsyncHttpDriver
    from durastate.transport.sync import HttpDriver

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Exchange:
    """Send ``request``; ``may_have_landed`` lets the policy retry a write whose answer was
    lost when the core can recognise its own write afterwards; ``deadline`` lets the
    operation end all its requests by one instant."""

    request: HttpRequest
    may_have_landed: LandedHook | None = None
    #: a `time.monotonic` instant by which the call ends (sooner than the driver's own)
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """Exchanges that may be sent concurrently (at most ``concurrency`` at a time)."""

    exchanges: tuple[Exchange, ...]
    concurrency: int = 8


Step: TypeAlias = Exchange | Batch | Pause
Plan: TypeAlias = Generator[Step, Any, T]


def perform(step: Step, driver: HttpDriver) -> Any:
    """Do one step over the sync driver (a batch on a few threads); what the plan receives."""
    if type(step) is Exchange:
        return driver.send(step.request, step.may_have_landed, deadline=step.deadline)
    if isinstance(step, Batch):
        return _run_batch(step, driver)
    if isinstance(step, Pause):
        time.sleep(step.seconds)
        return None
    raise TypeError(f"a plan yielded {type(step).__name__}, not a Step")


def _run_batch(batch: Batch, driver: HttpDriver) -> list[HttpResponse]:
    exchanges = batch.exchanges
    if len(exchanges) <= 1 or batch.concurrency <= 1:
        return [driver.send(e.request, e.may_have_landed, deadline=e.deadline) for e in exchanges]
    with ThreadPoolExecutor(min(batch.concurrency, len(exchanges))) as pool:
        return list(
            pool.map(
                lambda e: driver.send(e.request, e.may_have_landed, deadline=e.deadline), exchanges
            )
        )


async def aperform(step: Step, driver: AsyncHttpDriver) -> Any:
    """Do one step over the async driver (a batch concurrently on the event loop)."""
    if type(step) is Exchange:
        return await driver.send(step.request, step.may_have_landed, deadline=step.deadline)
    if isinstance(step, Batch):
        return await _arun_batch(step, driver)
    if isinstance(step, Pause):
        await asyncio.sleep(step.seconds)
        return None
    raise TypeError(f"a plan yielded {type(step).__name__}, not a Step")


async def _arun_batch(batch: Batch, driver: AsyncHttpDriver) -> list[HttpResponse]:
    limit = asyncio.Semaphore(max(1, batch.concurrency))

    async def one(exchange: Exchange) -> HttpResponse:
        async with limit:
            return await driver.send(
                exchange.request, exchange.may_have_landed, deadline=exchange.deadline
            )

    return list(await asyncio.gather(*(one(e) for e in batch.exchanges)))


def run(plan: Plan[T], driver: HttpDriver) -> T:
    """Execute ``plan`` over the sync driver (the one loop: `durastate.core.steps.drive`)."""
    return drive(plan, partial(perform, driver=driver))


async def arun(plan: Plan[T], driver: AsyncHttpDriver) -> T:
    """Execute ``plan`` over the async driver (`durastate.core.steps.adrive`)."""
    return await adrive(plan, partial(aperform, driver=driver))


def exchange(request: HttpRequest, may_have_landed: LandedHook | None = None) -> Exchange:
    """Shorthand for ``yield exchange(request)`` in a plan."""
    return Exchange(request, may_have_landed)
