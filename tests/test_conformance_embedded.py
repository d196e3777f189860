"""The conformance suite on the embedded backends: memory:// and sqlite://."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
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

    @pytest.fixture
    def corrupt_record(self, tmp_path: Path) -> Callable[[str], None]:
        """Damage the row itself: a runtime status no version of durastate writes."""

        def corrupt(instance_id: str) -> None:
            raw = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
            try:
                raw.execute(
                    "UPDATE instances SET runtime_status = 'exploded' WHERE instance_id = ?",
                    (instance_id,),
                )
            finally:
                raw.close()

        return corrupt
