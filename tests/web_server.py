"""A real uvicorn server for the web tests (on a free loopback port, on its own thread and
event loop, with a way to run the store's coroutines on that loop), and the fixtures that
serve a fresh memory, SQLite or Azure Tables (Azurite) store with it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from durastate.core.async_store import AsyncStateStore
from starlette.types import ASGIApp

from durastate.opening import open_async_store
from durastate.testing.emulators import AzuriteEmulator, free_port
from durastate.web import create_app

T = TypeVar("T")


class LiveServer:
    def __init__(self, app: ASGIApp) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            proxy_headers=False,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())
        # the watch pollers of the store still wait on this loop: end them before it closes
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run one of the store's coroutines on the server's loop (where the app uses it)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.loop.close()


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
            secret = str(target.options.get("account_key") or "") or None
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
