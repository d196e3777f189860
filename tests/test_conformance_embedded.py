"""The conformance suite on the embedded backends: memory:// and sqlite://."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from durastate.backends.memory import MemoryBackend
from durastate.backends.sqlite import SQLiteBackend
from durastate.core.backend import Backend
from durastate.testing import BackendConformance


class TestMemoryBackend(BackendConformance):
    @pytest.fixture
    def backend(self) -> Backend:
        return MemoryBackend()


class TestSQLiteBackend(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        backend = SQLiteBackend(tmp_path / "state.db")
        yield backend
        backend.close()
