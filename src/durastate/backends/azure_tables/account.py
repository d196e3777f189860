"""Which account, endpoints and signature: resolved by the ecosystem's own resolvers.

A connection string (Azurite's included) is parsed by azure-data-tables and
azure-storage-blob themselves (their clients do no I/O when built); an account URL takes an
account key, a SAS (in the URL or ``sas_token``), any azure-core ``TokenCredential``
(azure-identity's ``DefaultAzureCredential`` when nothing else is given), or the SDK's
``AzureNamedKeyCredential``/``AzureSasCredential``. The result is an `Endpoint` and an
`Auth` per service for the lean transport; the SDK's ``TableClient`` stays for one job,
creating the table (administration, once per store).
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient

from durastate.backends.azure_tables.options import ENV_CONNECTION_STRING, AzureTablesOptions
from durastate.backends.azure_tables.requests import Auth, Dated, Endpoint, SharedKey
from durastate.errors import BackendUnavailable, ConfigurationError, DurastateError
from durastate.transport.azure_auth import (
    AccountKey,
    BearerTokenCache,
    SasToken,
    sign_blob_shared_key,
    sign_table_shared_key,
)

_NOT_CONFIGURED = (
    "azure-tables has no account configured: set the environment variable "
    f"{ENV_CONNECTION_STRING} to the storage account's connection string, or pass "
    "connection_string=..., or account_url=... with account_key=..., sas_token=... or "
    "credential=... (options of open_store, [tool.durastate.options] or DURASTATE_OPTIONS)"
)


@dataclass(frozen=True)
class Service:
    """One service's endpoint and signature."""

    endpoint: Endpoint
    auth: Auth


@dataclass(frozen=True)
class Account:
    """The table service, the blob service (``None`` when it cannot be derived), the
    account's name, and a factory of the SDK client that creates the table."""

    name: str
    table: Service
    blob: Service | None
    admin: Callable[[], TableClient]
    bearer: BearerTokenCache | None = None  # the async store refreshes it with await


def _split(url: str) -> tuple[str, str]:
    """``url`` without its query, and the query (a SAS, if any)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), parts.query


def _auth(credential: Any, sas: str, blob: bool, bearer: BearerTokenCache | None = None) -> Auth:
    """The lean signature for an SDK credential (or a SAS found in a URL); ``bearer`` is
    the token cache of a ``TokenCredential`` (one for both services)."""
    if sas:
        return Dated(SasToken(sas))
    if isinstance(credential, AzureNamedKeyCredential):
        key = AccountKey(credential.named_key.name, credential.named_key.key)
        return SharedKey(key, sign_blob_shared_key if blob else sign_table_shared_key)
    if isinstance(getattr(credential, "account_key", None), str):  # the Blob SDK's own policy
        key = AccountKey(str(credential.account_name), credential.account_key)
        return SharedKey(key, sign_blob_shared_key if blob else sign_table_shared_key)
    if isinstance(credential, AzureSasCredential):
        return Dated(SasToken(credential.signature))
    if bearer is not None:
        return Dated(bearer)
    raise ConfigurationError("azure-tables: the credential cannot sign requests")


def _client_kwargs(options: AzureTablesOptions) -> dict[str, Any]:
    """The SDK client's transport and retries (the table creation only)."""
    kwargs: dict[str, Any] = {
        "transport": RequestsTransport(
            use_env_settings=options.use_env_proxies,
            connection_timeout=options.connection_timeout,
            read_timeout=options.read_timeout,
        ),
        "retry_total": options.retry_total,
        "retry_status": options.retry_total,
        "retry_connect": options.retry_total,
        "retry_read": options.retry_total,
        "retry_backoff_factor": options.retry_backoff_factor,
        "retry_backoff_max": options.retry_backoff_max,
        "timeout": options.operation_timeout,
    }
    if options.raw_request_hook is not None:
        kwargs["raw_request_hook"] = options.raw_request_hook
    return kwargs


def resolve(options: AzureTablesOptions) -> Account:
    """The account of ``options``; `ConfigurationError` (never showing a secret) if none."""
    connection_string = options.secret_connection_string()
    try:
        if connection_string:
            return _from_connection_string(options, connection_string)
        return _from_account_url(options)
    except DurastateError:
        raise
    except (ValueError, TypeError, AzureError):
        # the SDK's messages may quote the key: name only the kind
        what = "connection string" if connection_string else "account_url or credential"
        raise ConfigurationError(f"azure-tables: the {what} is not valid") from None


def _from_connection_string(options: AzureTablesOptions, connection_string: str) -> Account:
    from azure.storage.blob import BlobServiceClient

    kwargs = _client_kwargs(options)
    client = TableClient.from_connection_string(connection_string, options.table)
    table_url, sas = _split(client.url)
    account = str(client.account_name or "")
    table = Service(Endpoint(table_url), _auth(client.credential, sas, blob=False))
    blob: Service | None = None
    try:
        blobs = BlobServiceClient.from_connection_string(connection_string)
        blob_url, blob_sas = _split(blobs.url)
        blob = Service(Endpoint(blob_url), _auth(blobs.credential, blob_sas, blob=True))
    except (ValueError, ConfigurationError):
        blob = None  # a table-only connection string: no offload

    def admin() -> TableClient:
        return TableClient.from_connection_string(connection_string, options.table, **kwargs)

    return Account(account, table, blob, admin)


def _from_account_url(options: AzureTablesOptions) -> Account:
    if options.account_url is None or not options.account_url.get_secret_value():
        raise ConfigurationError(_NOT_CONFIGURED)
    account_url = options.account_url.get_secret_value()
    table_url, sas = _split(account_url)
    host = urlsplit(table_url).hostname or ""
    account = options.account_name or host.split(".")[0]
    credential = _credential(options, account, sas)
    bearer = BearerTokenCache(credential) if hasattr(credential, "get_token") else None
    table = Service(Endpoint(table_url), _auth(credential, sas, blob=False, bearer=bearer))
    blob_url = (
        options.blob_account_url.get_secret_value()
        if options.blob_account_url is not None
        else account_url.replace(".table.", ".blob.")
    )
    blob_base, blob_sas = _split(blob_url)
    blob_auth = _auth(credential, blob_sas or sas, blob=True, bearer=bearer)
    blob = Service(Endpoint(blob_base), blob_auth)
    kwargs = _client_kwargs(options)

    def admin() -> TableClient:
        return TableClient(account_url, options.table, credential=credential, **kwargs)

    return Account(account, table, blob, admin, bearer)


def _credential(options: AzureTablesOptions, account: str, sas: str) -> Any:
    """An explicit credential, an account key, a SAS, or azure-identity's default."""
    if options.credential is not None:
        return options.credential
    if sas:
        return None  # a SAS token in the URL itself is the credential
    if options.sas_token is not None:
        return AzureSasCredential(options.sas_token.get_secret_value())
    if options.account_key is not None:
        AccountKey(account, options.account_key.get_secret_value())  # valid base64?
        return AzureNamedKeyCredential(account, options.account_key.get_secret_value())
    try:
        identity = importlib.import_module("azure.identity")  # optional dependency
    except ImportError:
        raise ConfigurationError(
            "azure-tables with account_url needs credential=..., account_key=..., "
            "sas_token=..., or the azure-identity package for DefaultAzureCredential"
        ) from None
    return identity.DefaultAzureCredential()


# -- the table, created once per store (administration: the SDK) ---------------------------

#: Connection failures: azure-core retries them for GET/PUT/DELETE, never for POST.
_CONNECTION_ERRORS = (ServiceRequestError, ServiceResponseError)


class TableCreator:
    """Creates the table on first use (one extra call, once per store object). Creating
    is idempotent (409: it exists), so a POST whose connection broke is sent again."""

    def __init__(self, factory: Callable[[], TableClient], options: AzureTablesOptions) -> None:
        self._factory = factory
        self._client: TableClient | None = None
        self._options = options
        self.ready = not options.create_table
        self._lock = threading.Lock()

    def ensure(self, where: Callable[[], str]) -> None:
        if self.ready:
            return
        with self._lock:
            if self.ready:
                return
            self._create(where)
            self.ready = True

    def _create(self, where: Callable[[], str]) -> None:
        if self._client is None:
            try:
                self._client = self._factory()
            except (ValueError, TypeError):
                raise ConfigurationError(
                    f"{where()}: the SDK cannot create the table with this account (a token "
                    "credential needs https; or pass create_table=False)"
                ) from None
        deadline = time.monotonic() + self._options.operation_timeout
        for attempt in range(self._options.retry_total + 1):
            try:
                self._client.create_table()
                return
            except ResourceExistsError:
                return
            except AzureError as exc:
                last_try = attempt >= self._options.retry_total or time.monotonic() > deadline
                if isinstance(exc, _CONNECTION_ERRORS) and not last_try:
                    continue
                raise _sdk_error(exc, where()) from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _sdk_error(exc: AzureError, where: str) -> DurastateError:
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    code = str(getattr(exc, "error_code", "") or "")
    if status in (401, 403):
        return ConfigurationError(f"{where}: access denied ({status} {code})")
    if status is None and isinstance(exc, ClientAuthenticationError):
        return ConfigurationError(
            f"{where}: the credential cannot sign requests (is the account key valid "
            "base64, the SAS token complete?)"
        )
    if status is not None and 400 <= status < 500 and status not in (408, 429):
        return DurastateError(f"{where} was rejected: {status} {code}")
    detail = f"{status} {code}" if status else type(exc).__name__
    return BackendUnavailable(f"{where} failed: {detail}")
