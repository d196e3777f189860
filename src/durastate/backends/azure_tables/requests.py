"""Table service requests as plain data: the method, path, headers and body azure-data-tables
sends for the same operation (JSON, OData v3, API version 2019-02-02), signed by `Auth`.

Nothing here touches a socket; `plans` decides which request to send and what its answer
means.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import Final, Protocol
from urllib.parse import quote, urlsplit

from durastate.errors import ConfigurationError
from durastate.transport.azure_auth import (
    AccountKey,
    BearerTokenCache,
    SasToken,
)
from durastate.transport.messages import HttpRequest

TABLE_VERSION: Final = "2019-02-02"
BLOB_VERSION: Final = "2021-08-06"
_JSON: Final = "application/json"
_MINIMAL: Final = "application/json;odata=minimalmetadata"
_NO_METADATA: Final = "application/json;odata=nometadata"


class Auth(Protocol):
    """Signs a request (a key, a SAS or a bearer token); never shows its secret."""

    def apply(self, request: HttpRequest) -> HttpRequest: ...


class SharedKey:
    """SharedKey from an account key, with the service's signer (``sign_table_shared_key``
    or ``sign_blob_shared_key``: the two services sign different strings)."""

    __slots__ = ("key", "sign")

    def __init__(self, key: AccountKey, sign: Callable[[HttpRequest, AccountKey], HttpRequest]):
        self.key = key
        self.sign = sign

    def apply(self, request: HttpRequest) -> HttpRequest:
        return self.sign(request, self.key)

    def __repr__(self) -> str:
        return f"SharedKey({self.key!r}, {self.sign.__name__})"


class Dated:
    """A SAS or bearer token plus ``x-ms-date`` (SharedKey signers add their own)."""

    __slots__ = ("inner",)

    def __init__(self, inner: SasToken | BearerTokenCache) -> None:
        self.inner = inner

    def apply(self, request: HttpRequest) -> HttpRequest:
        return self.inner.apply(request.with_headers({"x-ms-date": formatdate(usegmt=True)}))

    def __repr__(self) -> str:
        return f"Dated({self.inner!r})"


class Endpoint:
    """A service endpoint (``https://acct.table.core.windows.net`` or Azurite's
    ``http://127.0.0.1:port/devstoreaccount1``) split once for cheap request building."""

    __slots__ = ("host", "path", "scheme")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError("an Azure endpoint must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise ConfigurationError("an Azure endpoint URL must not carry credentials")
        self.scheme = parts.scheme
        default = 443 if parts.scheme == "https" else 80
        self.host = parts.hostname if parts.port in (None, default) else parts.netloc
        self.path = parts.path.rstrip("/")

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes = b"",
        query: Iterable[tuple[str, str]] = (),
    ) -> HttpRequest:
        return HttpRequest(
            method, self.scheme, self.host, self.path + path, tuple(query), headers, body
        )

    def __repr__(self) -> str:
        return f"Endpoint({self.scheme}://{self.host}{self.path})"


def entity_path(table: str, key: str) -> str:
    """``/Table(PartitionKey='key',RowKey='')``: quotes doubled, then percent-encoded."""
    return f"/{table}(PartitionKey='{quote(key.replace(chr(39), chr(39) * 2), safe='')}',RowKey='')"


class TableRequests:
    """Builds and signs the requests of one table."""

    __slots__ = ("_table_path", "auth", "endpoint", "table")

    def __init__(self, endpoint: Endpoint, table: str, auth: Auth) -> None:
        self.endpoint = endpoint
        self.table = table
        self.auth = auth
        self._table_path = "/" + quote(table, safe="")

    def _headers(self, accept: str = _JSON) -> dict[str, str]:
        return {"x-ms-version": TABLE_VERSION, "dataserviceversion": "3.0", "accept": accept}

    def insert(self, body: bytes) -> HttpRequest:
        """Insert an entity (409 if it exists); the answer has no body, the ETag a header."""
        headers = self._headers(_MINIMAL)
        headers["content-type"] = _NO_METADATA
        headers["prefer"] = "return-no-content"
        return self.auth.apply(self.endpoint.request("POST", self._table_path, headers, body))

    def merge(self, key: str, body: bytes, etag: str | None) -> HttpRequest:
        """MERGE (sent as PATCH, as the SDK does) at ``etag``, or at ``*``: never an upsert."""
        headers = self._headers()
        headers["content-type"] = _JSON
        headers["if-match"] = etag or "*"
        path = entity_path(self.table, key)
        return self.auth.apply(self.endpoint.request("PATCH", path, headers, body))

    def replace(self, key: str, body: bytes, etag: str) -> HttpRequest:
        headers = self._headers()
        headers["content-type"] = _JSON
        headers["if-match"] = etag
        path = entity_path(self.table, key)
        return self.auth.apply(self.endpoint.request("PUT", path, headers, body))

    def get(self, key: str, select: Iterable[str]) -> HttpRequest:
        query = (("$select", ",".join(select)),)
        path = entity_path(self.table, key)
        return self.auth.apply(
            self.endpoint.request("GET", path, self._headers(_MINIMAL), query=query)
        )

    def delete(self, key: str, etag: str) -> HttpRequest:
        headers = self._headers(_MINIMAL)
        headers["if-match"] = etag
        path = entity_path(self.table, key)
        return self.auth.apply(self.endpoint.request("DELETE", path, headers))

    def query(
        self, odata: str, select: Iterable[str], top: int, position: dict[str, str] | None
    ) -> HttpRequest:
        """One page of ``$filter`` results; ``position`` is the service's resume point."""
        query = [("$filter", odata), ("$select", ",".join(select)), ("$top", str(top))]
        if position:
            query.extend((name, value) for name, value in position.items() if value)
        path = self._table_path + "()"
        return self.auth.apply(
            self.endpoint.request("GET", path, self._headers(_MINIMAL), query=query)
        )

    def __repr__(self) -> str:
        return f"TableRequests({self.endpoint!r}, {self.table!r})"
