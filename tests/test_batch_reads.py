"""get_many is one batched request where the service has one (counted on the real clients).

DynamoDB: the backend's driver counts the requests it sends, by DynamoDB operation.
SQLite: the connection's trace callback sees every statement it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from durastate import open_store
from durastate.backends.dynamodb import DynamoDBBackend
from durastate.core.store import StateStore
from durastate.testing.emulators import RunningEmulator

from .test_dynamodb import (
    CallCounter,
    make_backend,
    server,  # noqa: F401  (the moto and dynalite fixture)
)

IDS = [f"b-{number:03d}" for number in range(150)]


def _fill(store: StateStore) -> None:
    for instance_id in IDS[::2]:  # half of them exist
        store.create_instance(instance_id, name="wf", custom_status=instance_id)


def _check(found: dict[str, Any]) -> None:
    assert list(found) == IDS
    for number, instance_id in enumerate(IDS):
        item = found[instance_id]
        if number % 2:
            assert item is None
        else:
            assert item is not None
            assert item.custom_status == instance_id


def test_dynamodb_get_many_is_batch_get_item_only(server: RunningEmulator) -> None:  # noqa: F811
    backend: DynamoDBBackend = make_backend(server.endpoint)
    with StateStore(backend) as store:
        _fill(store)
        calls = CallCounter(backend).calls
        _check(store.get_many(IDS))
        assert calls == {"BatchGetItem": 2}  # 150 ids: 100 + 50, and never a GetItem


def test_sqlite_get_many_is_one_select(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'many.db'}") as store:
        _fill(store)
        statements: list[str] = []
        store.backend._connection().set_trace_callback(statements.append)  # type: ignore[attr-defined]
        _check(store.get_many(IDS))
        assert len(statements) == 1
        assert statements[0].startswith("SELECT")
        assert " IN (" in statements[0]
