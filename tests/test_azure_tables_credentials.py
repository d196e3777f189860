"""An azure-identity-style ``TokenCredential`` signs azure-tables requests with a bearer
token that is fetched once and cached until near its expiry, and never shown.

Azurite accepts bearer tokens only over HTTPS with ``--oauth basic`` (and the SDK refuses a
token credential over plain HTTP), so these tests run the backend against a small local
HTTP server that answers like the Table service (MERGE 204 + ETag, GET 200 + entity, 403 on
request) and records the ``Authorization`` header of every request: the header and the
caching are what is proven here; Azurite proves the other signatures (test_azure_tables.py).
"""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from azure.core.credentials import AccessToken

from durastate.backends.azure_tables import AzureTablesBackend
from durastate.core.records import Payload
from durastate.errors import ConfigurationError, DurastateError
from durastate.transport.azure_auth import STORAGE_SCOPE

T0 = datetime(2030, 1, 1, tzinfo=UTC)
SECRET = "eyJ0eXAiOiJKV1Qi-very-secret-token"


class CountingCredential:
    """A ``TokenCredential`` (the protocol azure-identity's credentials implement) that
    counts its fetches; each token lives ``lifetime`` seconds."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.fetches = 0
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        assert scopes == (STORAGE_SCOPE,)
        with self._lock:
            self.fetches += 1
            return AccessToken(f"{SECRET}-{self.fetches}", int(time.time() + self.lifetime))


class AsyncCountingCredential(CountingCredential):
    """azure-identity's ``aio`` credentials: ``get_token`` is a coroutine."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:  # type: ignore[override]
        await asyncio.sleep(0)
        return super().get_token(*scopes, **kwargs)


class TableLike(http.server.BaseHTTPRequestHandler):
    """Answers like the Table service for one row; ``/denied`` paths get 403."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, str]] = []  # (method, authorization, x-ms-date)

    def _answer(self, status: int, body: bytes = b"", etag: str | None = None) -> None:
        self.send_response(status)
        if etag:
            self.send_header("ETag", etag)
        if status == 403:
            body = orjson.dumps({"odata.error": {"code": "AuthenticationFailed"}})
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        auth = self.headers.get("Authorization", "")
        TableLike.seen.append((self.command, auth, self.headers.get("x-ms-date", "")))

    def do_PATCH(self) -> None:
        self._record()
        if "denied" in self.path:
            self._answer(403)
        else:
            self._answer(204, etag=f'W/"{len(self.seen)}"')

    def do_GET(self) -> None:
        self._record()
        row = {
            "odata.etag": 'W/"1"',
            "InstanceId": "job",
            "Name": "wf",
            "RuntimeStatus": "running",
            "CreatedTime@odata.type": "Edm.DateTime",
            "CreatedTime": "2030-01-01T00:00:00.0000000Z",
            "LastUpdatedTime@odata.type": "Edm.DateTime",
            "LastUpdatedTime": "2030-01-01T00:00:00.0000000Z",
        }
        self._answer(200, orjson.dumps(row), etag='W/"1"')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    TableLike.seen = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TableLike)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/account"
    httpd.shutdown()
    httpd.server_close()


def _open(server: str, credential: Any) -> AzureTablesBackend:
    return AzureTablesBackend.from_url(
        "azure-tables://Instances",
        account_url=server,
        credential=credential,
        create_table=False,
        offload=False,
        retry_total=0,
    )


def _assert_hidden(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text, text


def test_the_token_is_fetched_once_and_sent_as_bearer(server: str) -> None:
    credential = CountingCredential(lifetime=3600)
    with _open(server, credential) as backend:
        for number in range(20):
            backend.write_custom_status("job", Payload(b"%d" % number, "json"), etag=None, now=T0)
            assert backend.read("job") is not None
        with pytest.raises(ConfigurationError) as raised:
            backend.write_custom_status("denied", Payload(b"1", "json"), etag=None, now=T0)
        _assert_hidden(str(raised.value), repr(raised.value), repr(backend))
        _assert_hidden(repr(backend.options), str(backend.options.model_dump()))
    assert credential.fetches == 1
    assert len(TableLike.seen) == 41
    assert {auth for _, auth, _ in TableLike.seen} == {f"Bearer {SECRET}-1"}
    assert all(date.endswith("GMT") for _, _, date in TableLike.seen)


def test_a_token_near_its_expiry_is_fetched_again(server: str) -> None:
    """Within the margin (300 s, as azure-core) of ``expires_on``: fetched again."""
    credential = CountingCredential(lifetime=200)
    with _open(server, credential) as backend:
        for number in range(3):
            backend.write_custom_status("job", Payload(b"%d" % number, "json"), etag=None, now=T0)
    assert credential.fetches == 3
    assert [auth for _, auth, _ in TableLike.seen] == [f"Bearer {SECRET}-{n}" for n in (1, 2, 3)]


@pytest.mark.parametrize("kind", [CountingCredential, AsyncCountingCredential])
def test_the_async_store_fetches_once_for_concurrent_calls(
    server: str, kind: type[CountingCredential]
) -> None:
    credential = kind(lifetime=3600)

    async def main(backend: AzureTablesBackend) -> None:
        native = backend.to_async()
        try:
            await asyncio.gather(
                *(
                    native.write_custom_status("job", Payload(b"1", "json"), etag=None, now=T0)
                    for _ in range(20)
                )
            )
            with pytest.raises(DurastateError) as raised:
                await native.write_custom_status("denied", Payload(b"1", "json"), etag=None, now=T0)
            _assert_hidden(str(raised.value), repr(native))
        finally:
            await native.close()

    asyncio.run(main(_open(server, credential)))
    assert credential.fetches == 1
    assert {auth for _, auth, _ in TableLike.seen} == {f"Bearer {SECRET}-1"}
