"""Who listens to what: the sans-I/O part of a push backend's ``subscribe``.

A backend holds one `Listeners` per backend object; its driver (a thread or a task around
one pub/sub or LISTEN connection) asks it which channels to subscribe to, and hands it each
message to dispatch. ``add`` says when a channel gets its first listener (subscribe to it),
``remove`` when it loses its last (unsubscribe); `everyone` is what a reconnection calls:
messages sent while the connection was down are lost, and a watcher notified re-reads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

Notify = Callable[[], None]


class Listeners:
    """The notify callbacks by key (a channel, or an instance id), thread-safe."""

    def __init__(self) -> None:
        self._by_key: dict[str, list[Notify]] = {}
        self._lock = threading.Lock()

    def add(self, key: str, notify: Notify) -> bool:
        """Register ``notify``; True when ``key`` had no listener before."""
        with self._lock:
            callbacks = self._by_key.get(key)
            if callbacks is None:
                self._by_key[key] = [notify]
                return True
            callbacks.append(notify)
            return False

    def remove(self, key: str, notify: Notify) -> bool:
        """Unregister ``notify`` (once; again is a no-op); True when ``key`` has none left."""
        with self._lock:
            callbacks = self._by_key.get(key)
            if callbacks is None or notify not in callbacks:
                return False
            callbacks.remove(notify)
            if callbacks:
                return False
            del self._by_key[key]
            return True

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._by_key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_key)

    def dispatch(self, key: str) -> None:
        """Call the listeners of ``key`` (none: a message for a watcher already gone)."""
        with self._lock:
            callbacks = list(self._by_key.get(key, ()))
        _call(callbacks)

    def everyone(self, keys: Iterable[str] | None = None) -> None:
        """Call every listener (of ``keys`` when given) once: after a (re)connection."""
        with self._lock:
            wanted = self._by_key if keys is None else {k: self._by_key.get(k, []) for k in keys}
            callbacks = [notify for group in wanted.values() for notify in group]
        _call(callbacks)


def _call(callbacks: list[Notify]) -> None:
    for notify in callbacks:
        try:
            notify()
        except Exception:  # one broken watcher must not starve the others
            log.exception("push: a notify callback failed")


def reconnect_delay(failures: int) -> float:
    """Seconds before the next attempt to reopen a dropped pub/sub or LISTEN connection."""
    return min(0.05 * 2.0 ** max(failures - 1, 0), 2.0)


async def stop_reader(task: asyncio.Task[None] | None) -> None:
    """Cancel an async driver's reader task (pub/sub, LISTEN) and wait until it has ended."""
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
