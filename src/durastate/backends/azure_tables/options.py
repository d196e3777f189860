"""The options of an azure-tables store: one typed model, from the URL and keywords.

``azure-tables://Table`` or ``azure-tables:///?table=Table``; every other option comes from
the query string or keywords (keywords win). Booleans and numbers are parsed once, by
pydantic (``"true"``, ``"0"``, ``"off"`` ... ); secrets are ``SecretStr`` and never appear
in a repr or an error, nor does any value that might be one (a connection string pasted
where a table name belongs shows only its length).
"""

from __future__ import annotations

import os
import re
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from durastate.backends.azure_tables.layout import INLINE_LIMIT
from durastate.backends.azure_tables.offload import DEFAULT_CONTAINER
from durastate.errors import ConfigurationError
from durastate.transport.policy import TransportOptions

SCHEME: Final = "azure-tables"
ENV_CONNECTION_STRING: Final = "DURASTATE_AZURE_CONNECTION_STRING"
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_CONTAINER_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*$")
_HARMLESS = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")
_FLAGS = {"true": True, "1": True, "yes": True, "on": True}
_FLAGS.update({"false": False, "0": False, "no": False, "off": False})


class AzureTablesOptions(BaseModel):
    """Where the table is, how to sign, and the time and retries each call may spend.

    ``retry_total`` bounds the failed requests of one call (the transport's retries of
    throttled or refused requests, and our own resends of writes whose answer was lost);
    ``operation_timeout`` bounds all requests of one call, blob uploads included.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    table: str
    container: str = DEFAULT_CONTAINER
    connection_string: SecretStr | None = Field(default=None, repr=False)
    account_url: SecretStr | None = Field(default=None, repr=False)  # may carry a SAS
    account_name: str | None = None
    account_key: SecretStr | None = Field(default=None, repr=False)
    sas_token: SecretStr | None = Field(default=None, repr=False)
    credential: Any = Field(default=None, repr=False)  # an azure-core credential object
    blob_account_url: SecretStr | None = Field(default=None, repr=False)
    create_table: bool = True
    offload: bool = True
    offload_threshold: int = Field(default=INLINE_LIMIT, ge=0)
    retry_total: int = Field(default=3, ge=0, le=49)
    retry_backoff_factor: float = Field(default=0.2, ge=0)
    retry_backoff_max: float = Field(default=4.0, ge=0)
    connection_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=20.0, gt=0)
    operation_timeout: float = Field(default=60.0, gt=0)
    use_env_proxies: bool = False  # the SDK client that creates the table only
    raw_request_hook: Any = Field(default=None, repr=False)  # that client's azure-core hook
    proxy: SecretStr | None = Field(default=None, repr=False)
    verify: bool | str = True
    #: connections per endpoint: the async store opens at most this many at once (100
    #: requests in flight need 100), the sync store keeps at most this many idle
    max_pool_connections: int = Field(default=100, ge=1)

    @field_validator("verify", mode="before")
    @classmethod
    def _verify_flag(cls, value: Any) -> Any:
        """``verify=false`` from a URL is the flag, not a CA bundle named "false"."""
        if isinstance(value, str) and value.strip().lower() in _FLAGS:
            return _FLAGS[value.strip().lower()]
        return value

    def transport(self) -> TransportOptions:
        """The lean transport's options for these limits."""
        return TransportOptions(
            connect_timeout=self.connection_timeout,
            read_timeout=self.read_timeout,
            deadline=self.operation_timeout,
            max_attempts=self.retry_total + 1,
            backoff_base=self.retry_backoff_factor,
            backoff_cap=self.retry_backoff_max,
            verify=self.verify,
            proxy=self.proxy,
            pool_size=self.max_pool_connections,
        )

    def secret_connection_string(self) -> str | None:
        if self.connection_string is not None:
            return self.connection_string.get_secret_value() or None
        return os.environ.get(ENV_CONNECTION_STRING) or None


def parse_options(url: str, options: dict[str, Any]) -> AzureTablesOptions:
    """The options of ``url`` plus keywords, validated; a typed error naming what is wrong
    (the option, never its value)."""
    merged = {**_url_options(url), **options}
    table = str(merged.get("table", "") or "")
    if not _TABLE_NAME.match(table):
        raise ConfigurationError(
            "azure-tables needs a table name of 3-63 letters and digits, starting with a "
            f"letter (azure-tables://Instances), got {_shown(table)}"
        )
    container = str(merged.get("container", DEFAULT_CONTAINER))
    if not _CONTAINER_NAME.match(container):
        raise ConfigurationError(
            "azure-tables needs a blob container name of 3-63 lowercase letters, digits "
            f"and single hyphens (container=durastate-payloads), got {_shown(container)}"
        )
    unknown = sorted(set(merged) - set(AzureTablesOptions.model_fields))
    if unknown:
        raise ConfigurationError(f"azure-tables: unknown options {unknown}")
    try:
        return AzureTablesOptions(**merged)
    except ValidationError as exc:
        names = sorted({str(error["loc"][0]) for error in exc.errors() if error["loc"]})
        raise ConfigurationError(f"azure-tables: invalid value for option(s) {names}") from None


def _url_options(url: str) -> dict[str, Any]:
    """Table name from the URL's host part, and options from its query string."""
    parts = urlsplit(url)
    if parts.scheme.lower() != SCHEME:
        raise ConfigurationError(f"not an azure-tables:// URL: {parts.scheme}://...")
    if "@" in parts.netloc:
        raise ConfigurationError(
            "azure-tables: credentials do not belong in the URL (user:key@...); pass "
            f"connection_string=... or account_key=..., or set ${ENV_CONNECTION_STRING}"
        )
    options: dict[str, Any] = dict(parse_qsl(parts.query))
    secret_keys = {"connection_string", "account_key", "sas_token", "sig"} & set(options)
    if secret_keys:
        raise ConfigurationError(
            f"azure-tables: pass {sorted(secret_keys)} as options or environment, not in the URL"
        )
    name = (parts.netloc + parts.path).strip("/")
    if name:
        options.setdefault("table", name)
    return options


def _shown(value: str) -> str:
    """``value`` for an error message, or only its length when it might hold a secret (a
    connection string or key pasted where a table name belongs)."""
    if _HARMLESS.match(value):
        return repr(value)
    hint = ""
    if "=" in value or ";" in value:
        hint = f"; a connection string goes in connection_string=... or ${ENV_CONNECTION_STRING}"
    return f"a value of {len(value)} characters (not shown: it may hold a secret){hint}"
