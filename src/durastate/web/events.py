"""Server-Sent Events from `AsyncStateStore.watch`: ``event: status``, ``id: <etag>``,
``data: <the GET body>``; a comment line as heartbeat while nothing changes; the stream ends
after a terminal status (or ``event: deleted`` when the instance is purged).

A pump task moves the watch into a queue so the writer can wait with a timeout (for the
heartbeat) without cancelling the watch itself. `StreamSlots` bounds concurrent streams.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from durastate.core.models import InstanceMetadata
from durastate.errors import DurastateError, InstanceNotFound
from durastate.web.status import etag_token

Shape = Callable[[InstanceMetadata], dict[str, Any]]
#: Reads input/output where the client asked for them (a watch reads custom status only).
Enrich = Callable[[InstanceMetadata], Awaitable[InstanceMetadata]]
_END = object()


class StreamSlots:
    """At most ``limit`` open streams; past it a request gets 503."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def take(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open -= 1


def status_event(item: InstanceMetadata, shape: Shape) -> bytes:
    data = orjson.dumps(shape(item))
    return b"event: status\nid: " + etag_token(item.etag).encode() + b"\ndata: " + data + b"\n\n"


async def event_stream(
    first: InstanceMetadata | None,
    watch: AsyncIterator[InstanceMetadata],
    shape: Shape,
    enrich: Enrich,
    *,
    heartbeat: float,
    on_close: Callable[[], None],
) -> AsyncIterator[bytes]:
    """The stream's bytes: ``first`` (already read from ``watch``), then the rest."""
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in watch:
                await queue.put(item)
        except InstanceNotFound:
            await queue.put(InstanceNotFound)
        except DurastateError as exc:
            await queue.put(exc)
        finally:
            await queue.put(_END)

    task = asyncio.ensure_future(pump())
    try:
        yield b"retry: 1000\n\n"
        if first is not None:
            yield status_event(await enrich(first), shape)
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), heartbeat)
            except TimeoutError:
                yield b": heartbeat\n\n"
                continue
            if item is _END:
                return
            if item is InstanceNotFound:
                yield b"event: deleted\ndata: {}\n\n"
                return
            if isinstance(item, DurastateError):
                detail = orjson.dumps({"error": type(item).__name__, "detail": str(item)})
                yield b"event: error\ndata: " + detail + b"\n\n"
                return
            assert isinstance(item, InstanceMetadata)
            yield status_event(await enrich(item), shape)
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        with contextlib.suppress(BaseException):
            await watch.aclose()  # type: ignore[attr-defined]
        on_close()
