"""The fixtures of the web tests: a fresh memory, SQLite or Azure Tables (Azurite) store
served by the app on a real uvicorn server (`durastate.web.live.LiveServer`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from durastate.core.async_store import AsyncStateStore
from durastate.opening import open_async_store
from durastate.testing.emulators import AzuriteEmulator
from durastate.web import create_app
from durastate.web.live import LiveServer


def account_key(connection_string: str) -> str:
    """The AccountKey of an Azure connection string (the secret no answer may show)."""
    fields = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
    return fields["AccountKey"]


class Served:
    """A store, the app over it on a live server, and an httpx client."""

    def __init__(self, store: AsyncStateStore, secret: str | None = None, **options: Any) -> None:
        self.store = store
        self.secret = secret
        self.server = LiveServer(create_app(store, retry_after=0, **options)).start()
        self.http = httpx.Client(base_url=self.server.url, timeout=10)

    def create(self, instance_id: str, status: str = "running", **fields: Any) -> None:
        self.server.call(
            self.store.create_instance(instance_id, name="resize", input={"file": "a.png"})
        )
        if status != "pending":
            self.server.call(self.store.set_runtime_status(instance_id, status, **fields))

    def set_status(self, instance_id: str, value: Any) -> str:
        return self.server.call(self.store.set_custom_status(instance_id, value))

    def close(self) -> None:
        self.http.close()
        self.server.stop()
        self.server_closed = True


@pytest.fixture(params=["memory", "sqlite", "azure"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Makes a `Served` over a fresh store of the parametrized backend."""
    served: list[Served] = []

    def make(**options: Any) -> Served:
        secret = None
        if request.param == "memory":
            store = open_async_store("memory://")
        elif request.param == "sqlite":
            store = open_async_store(f"sqlite:///{tmp_path / f'web{len(served)}.db'}")
        else:
            azurite: AzuriteEmulator = request.getfixturevalue("azurite")
            target = azurite.target()
            store = open_async_store(target.url, **target.options)
            secret = account_key(str(target.options["connection_string"]))
        served.append(Served(store, secret, **options))
        return served[-1]

    yield make
    for item in served:
        item.close()


@pytest.fixture
def served(store_factory: Any) -> Served:
    return store_factory()  # type: ignore[no-any-return]


def assert_problem(response: httpx.Response, status: int, parameter: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    if parameter is not None:
        assert body["parameter"] == parameter
