"""How a Redis store is reached: the URL forms, the options, and a repr without secrets.

``redis://[user:password@]host:port/db``, ``rediss://...`` (TLS) and
``unix:///path/to/socket?db=N``. Options come from the URL's query string or keywords
(keywords win); the password may be given in the URL or as ``password=``. Neither ever
appears in a repr or an error: only the redacted URL does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from durastate.errors import ConfigurationError

SCHEMES = ("redis", "rediss", "unix")


class RedisOptions(BaseModel):
    """The options of a Redis store; ``timeout`` bounds every call (connect and reply)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prefix: str = Field(default="durastate:", min_length=1)
    ttl_seconds: int | None = Field(default=None, gt=0)
    timeout: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=100, gt=0)
    username: str | None = None
    password: SecretStr | None = None
    db: int | None = Field(default=None, ge=0)
    ssl_ca_certs: str | None = None
    ssl_cert_reqs: str | None = None


class RedisTarget:
    """A parsed Redis URL: where to connect (``address``, password-free) and the options."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise ConfigurationError(
                "expected a URL of the form redis://host:port/db, rediss://... or unix:///path"
            )
        merged: dict[str, Any] = dict(parse_qsl(parts.query))
        merged.update(options)
        if parts.password is not None and "password" not in options:
            merged["password"] = unquote(parts.password)
        if parts.username and "username" not in options:
            merged["username"] = unquote(parts.username)
        try:
            self.options = RedisOptions(**merged)
        except ValidationError as exc:
            fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
            raise ConfigurationError(f"invalid Redis option(s): {fields}") from None
        host = parts.hostname or ""
        if parts.scheme != "unix" and not host:
            raise ConfigurationError("a redis:// URL needs a host: redis://host:port/db")
        try:
            port = parts.port
        except ValueError:
            raise ConfigurationError("the port of the Redis URL is not a number") from None
        netloc = host if port is None else f"{host}:{port}"
        if ":" in host:
            netloc = f"[{host}]" if port is None else f"[{host}]:{port}"
        self.scheme = parts.scheme
        self.address = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        if parts.scheme == "unix":  # urlunsplit drops the // of an empty host
            self.address = f"unix://{parts.path}"
        user = f"{self.options.username or ''}:***@" if self.options.password else ""
        if self.options.username and not self.options.password:
            user = f"{self.options.username}@"
        self.redacted = urlunsplit((parts.scheme, user + netloc, parts.path, "", ""))
        if parts.scheme == "unix":
            self.redacted = f"unix://{user}{parts.path}"

    def pool_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``ConnectionPool.from_url(address, ...)`` (sync or async)."""
        options = self.options
        kwargs: dict[str, Any] = {
            "socket_timeout": options.timeout,
            "socket_connect_timeout": options.timeout,
            "max_connections": options.max_connections,
            # RESP2 on every redis-py version (8.x would default to RESP3): the replies the
            # core reads are the same lists and bytes everywhere
            "protocol": 2,
        }
        if options.username is not None:
            kwargs["username"] = options.username
        if options.password is not None:
            kwargs["password"] = options.password.get_secret_value()
        if options.db is not None:
            kwargs["db"] = options.db
        if self.scheme == "rediss":
            if options.ssl_ca_certs is not None:
                kwargs["ssl_ca_certs"] = options.ssl_ca_certs
            if options.ssl_cert_reqs is not None:
                kwargs["ssl_cert_reqs"] = options.ssl_cert_reqs
        return kwargs
