"""A small bounded map that forgets its least recently stored entry: one for every backend.

Backends remember a little per instance to save a request (the etag they last saw, the
bytes stored at an etag, the blob a row points at). That memory must stay bounded in a
long-running process, must be safe to share between threads, and must cost nothing on
the hot path: lookups take no lock (one dict read, atomic under the GIL), changes take a
lock. Recency counts writes (`put`), not reads, so a lookup never reorders anything.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from durastate.errors import InvalidArgument

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_CAPACITY = 4096


class LRU(Generic[K, V]):
    """At most ``capacity`` entries; storing one more drops the least recently stored."""

    __slots__ = ("_capacity", "_entries", "_lock", "get")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if type(capacity) is not int or capacity < 1:
            raise InvalidArgument(f"an LRU's capacity must be an int of at least 1: {capacity!r}")
        self._capacity = capacity
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        #: The value stored under a key, or ``None``; takes no lock, changes no order. The
        #: dict's own ``get``, bound once: a lookup runs no Python frame of ours.
        self.get: Callable[[K], V | None] = self._entries.get

    @property
    def capacity(self) -> int:
        return self._capacity

    def put(self, key: K, value: V) -> None:
        """Store ``value`` as the most recent entry, dropping the oldest beyond capacity."""
        with self._lock:
            self._store(key, value)

    def replace(self, key: K, value: V | None) -> V | None:
        """Store ``value`` (or, for ``None``, remove the entry) and return the value it
        replaced, in one step: two threads never both see the same previous value."""
        with self._lock:
            previous = self._entries.pop(key, None)
            if value is not None:
                self._store(key, value)
            return previous

    def pop(self, key: K) -> V | None:
        """Remove ``key``'s entry and return its value (``None`` if there was none)."""
        with self._lock:
            return self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __repr__(self) -> str:
        return f"LRU({len(self._entries)}/{self._capacity} entries)"

    def _store(self, key: K, value: V) -> None:  # the caller holds the lock
        entries = self._entries
        entries[key] = value
        entries.move_to_end(key)
        if len(entries) > self._capacity:
            entries.popitem(last=False)
