"""Azure Storage authorization as pure functions: SharedKey and SharedKeyLite for Tables,
SharedKey for Blob, SAS tokens, and bearer tokens from any azure-core ``TokenCredential``.

The string-to-sign of each scheme follows the Storage REST documentation ("Authorize with
Shared Key") and matches what azure-data-tables' and azure-storage-blob's own
``SharedKeyCredentialPolicy`` sign for the same request (tests/test_transport_signing.py).
Keys, SAS signatures and tokens live in objects whose repr hides them; nothing here puts
them into an error message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import inspect
import threading
import time
from collections.abc import Callable
from datetime import datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from durastate.errors import ConfigurationError
from durastate.transport.messages import HttpRequest

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, TokenCredential
    from azure.core.credentials_async import AsyncTokenCredential

__all__ = [
    "STORAGE_SCOPE",
    "AccountKey",
    "BearerTokenCache",
    "SasToken",
    "sign_blob_shared_key",
    "sign_table_shared_key",
    "sign_table_shared_key_lite",
]

#: The OAuth scope of Azure Storage (Tables and Blob).
STORAGE_SCOPE = "https://storage.azure.com/.default"
#: The fixed headers of the Blob SharedKey string, in the documented order.
_BLOB_SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


class AccountKey:
    """A storage account name and its decoded key (the key never shows in a repr)."""

    __slots__ = ("_key", "account")

    def __init__(self, account: str, key: str) -> None:
        if not account:
            raise ConfigurationError("an Azure account key needs the account name")
        try:
            self._key = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                f"the account key of {account!r} is not valid base64"
            ) from None
        self.account = account

    def signature(self, string_to_sign: str) -> str:
        digest = hmac.new(self._key, string_to_sign.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode("ascii")

    def __repr__(self) -> str:
        return f"AccountKey({self.account!r}, ***)"


def _date(now: datetime | None) -> str:
    """An RFC 1123 date in GMT, as ``x-ms-date`` wants it."""
    if now is None:
        return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    return format_datetime(now, usegmt=True)


def _comp(request: HttpRequest) -> str:
    """Tables sign only the ``comp`` query parameter, if any."""
    for name, value in request.query:
        if name == "comp":
            return f"?comp={value}"
    return ""


def _authorized(
    request: HttpRequest, headers: dict[str, str], scheme: str, key: AccountKey, string_to_sign: str
) -> HttpRequest:
    headers["authorization"] = f"{scheme} {key.account}:{key.signature(string_to_sign)}"
    return request.with_all_headers(headers)


def sign_table_shared_key(
    request: HttpRequest, key: AccountKey, now: datetime | None = None
) -> HttpRequest:
    """Table service SharedKey: verb, Content-MD5, Content-Type, date, resource."""
    headers = {**request.headers, "x-ms-date": _date(now)}
    string_to_sign = (
        f"{request.method}\n{headers.get('content-md5', '')}\n{headers.get('content-type', '')}\n"
        f"{headers['x-ms-date']}\n/{key.account}{request.path}{_comp(request)}"
    )
    return _authorized(request, headers, "SharedKey", key, string_to_sign)


def sign_table_shared_key_lite(
    request: HttpRequest, key: AccountKey, now: datetime | None = None
) -> HttpRequest:
    """Table service SharedKeyLite: date and resource only."""
    headers = {**request.headers, "x-ms-date": _date(now)}
    string_to_sign = f"{headers['x-ms-date']}\n/{key.account}{request.path}{_comp(request)}"
    return _authorized(request, headers, "SharedKeyLite", key, string_to_sign)


def sign_blob_shared_key(
    request: HttpRequest, key: AccountKey, now: datetime | None = None
) -> HttpRequest:
    """Blob service SharedKey: verb, the eleven standard headers, the ``x-ms-`` headers,
    and the resource with every query parameter."""
    headers = {**request.headers, "x-ms-date": _date(now)}
    length = headers.get("content-length") or (str(len(request.body)) if request.body else "")
    standard = {**headers, "content-length": "" if length == "0" else length}
    lines = [request.method, *(standard.get(name, "") for name in _BLOB_SIGNED_HEADERS)]
    x_ms = sorted((name for name in headers if name.startswith("x-ms-")), key=_header_order)
    lines.extend(f"{name}:{headers[name]}" for name in x_ms)
    resource = f"/{key.account}{request.path}"
    values: dict[str, list[str]] = {}
    for name, value in request.query:
        values.setdefault(name.lower(), []).append(value)
    for name in sorted(values):
        resource += f"\n{name}:{','.join(sorted(values[name]))}"
    lines.append(resource)
    return _authorized(request, headers, "SharedKey", key, "\n".join(lines))


#: The primary weights of Azure's header collation: '-' is ignored, '_' sorts before
#: digits, digits before letters (the order .NET's culture-invariant comparer gives).
_WEIGHTS = {
    "_": 1,
    **{chr(48 + i): 2 + i for i in range(10)},
    **{chr(97 + i): 12 + i for i in range(26)},
}


def _header_order(name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Sort key of ``x-ms-`` names: letters first; then, on a tie, later hyphens first."""
    primary = tuple(_WEIGHTS.get(char, 64 + ord(char)) for char in name if char != "-")
    hyphens = tuple(-index for index, char in enumerate(name) if char == "-")
    return primary, hyphens


class SasToken:
    """A shared access signature, appended to each request's query (hidden in reprs)."""

    __slots__ = ("_pairs",)

    def __init__(self, token: str) -> None:
        pairs = tuple(parse_qsl(token.lstrip("?"), keep_blank_values=True))
        if not any(name == "sig" for name, _ in pairs):
            raise ConfigurationError("a SAS token must contain a 'sig' parameter")
        self._pairs = pairs

    def apply(self, request: HttpRequest) -> HttpRequest:
        return request.with_query(self._pairs)

    def __repr__(self) -> str:
        return "SasToken(***)"


class BearerTokenCache:
    """Bearer tokens from a ``TokenCredential`` (or an ``AsyncTokenCredential``, through
    `header_async`), fetched again only within ``margin`` seconds of expiry (azure-core's
    policy refreshes 300 s early too). One fetch at a time; every other caller, thread or
    task, uses the cached token."""

    __slots__ = (
        "_async_lock",
        "_clock",
        "_credential",
        "_expires_on",
        "_header",
        "_lock",
        "_margin",
        "_scopes",
    )

    def __init__(
        self,
        credential: TokenCredential | AsyncTokenCredential,
        *scopes: str,
        margin: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credential = credential
        self._scopes = scopes or (STORAGE_SCOPE,)
        self._margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._async_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._header = ""
        self._expires_on = 0.0

    def _fresh(self) -> bool:
        return self._clock() < self._expires_on - self._margin

    def _keep(self, token: AccessToken) -> str:
        self._header = f"Bearer {token.token}"
        self._expires_on = float(token.expires_on)
        return self._header

    def header(self) -> str:
        """``Bearer <token>``, fetched when there is none or it expires within the margin."""
        if self._fresh():
            return self._header
        with self._lock:
            if self._fresh():
                return self._header
            token = self._credential.get_token(*self._scopes)
            if inspect.isawaitable(token):
                if inspect.iscoroutine(token):
                    token.close()  # never to be awaited: no "never awaited" warning
                raise ConfigurationError("an async credential needs header_async()")
            return self._keep(token)

    async def header_async(self) -> str:
        """`header` for coroutines: awaits an async credential's ``get_token``."""
        if self._fresh():
            return self._header
        loop = asyncio.get_running_loop()
        if self._async_lock is None or self._async_lock[0] is not loop:
            self._async_lock = (loop, asyncio.Lock())  # a lock serves one loop
        async with self._async_lock[1]:
            if self._fresh():
                return self._header
            token = self._credential.get_token(*self._scopes)
            if inspect.isawaitable(token):
                token = await token
            return self._keep(token)

    def apply(self, request: HttpRequest) -> HttpRequest:
        return request.with_headers({"authorization": self.header()})

    def __repr__(self) -> str:
        return f"BearerTokenCache(scopes={self._scopes!r})"
