"""PostgreSQL: the conformance suite and the backend's own promises, on a real server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from durastate.backends.postgres import PostgresBackend, PostgresOptions
from durastate.core.backend import Backend
from durastate.testing import BackendConformance
from durastate.testing.emulators import RunningEmulator


def fresh_table() -> str:
    return "t_" + uuid.uuid4().hex[:16]


class TestPostgresConformance(BackendConformance):
    @pytest.fixture
    def backend(self, postgres_server: RunningEmulator) -> Iterator[Backend]:
        backend = PostgresBackend(postgres_server.endpoint, PostgresOptions(table=fresh_table()))
        yield backend
        backend.close()
