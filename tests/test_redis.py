"""Redis backend against a real redis-server started by the session fixture (no mocks)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from durastate.backends.redis import RedisBackend
from durastate.testing import BackendConformance
from durastate.testing.emulators import RunningEmulator

pytestmark = pytest.mark.emulator


def make_backend(server: RunningEmulator, **options: Any) -> RedisBackend:
    """A backend in a namespace of its own (a fresh prefix) on the shared server."""
    options.setdefault("prefix", f"t{uuid.uuid4().hex[:12]}:")
    return RedisBackend.from_url(server.endpoints["redis"], **options)


class TestRedisConformance(BackendConformance):
    @pytest.fixture
    def backend(self, redis_server: RunningEmulator) -> Iterator[RedisBackend]:
        with make_backend(redis_server) as created:
            yield created
