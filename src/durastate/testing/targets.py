"""A place to open a store in: a URL and the options that must not travel in a URL.

Backends refuse credentials in URLs (they end up in logs), so a test server hands out both
halves: ``open_store(target.url, **target.options)``, or simply ``target.open()``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from durastate.core.store import StateStore
from durastate.opening import open_store


def fresh_name(prefix: str = "ds") -> str:
    """A name no other test uses, valid as an Azure table, a DynamoDB table and an S3 bucket."""
    return prefix + uuid.uuid4().hex[:20]


@dataclass(frozen=True)
class StoreTarget:
    """A store URL plus the options it needs (credentials); the repr shows option names only."""

    url: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def open(self, **overrides: Any) -> StateStore:
        """``open_store(url, **options)``; keyword arguments add or replace options."""
        return open_store(self.url, **{**self.options, **overrides})

    def __repr__(self) -> str:
        return f"StoreTarget(url={self.url!r}, options={sorted(self.options)!r})"
