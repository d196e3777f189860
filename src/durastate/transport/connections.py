"""Where a driver connects: TLS context and proxy, decided once from `TransportOptions`.

Both drivers read these, so TLS verification (on by default) and the opt-in proxy mean the
same thing in sync and async code. The proxy URL may carry a user and password: it stays in
a ``SecretStr`` until a connection is made, and only the ``Proxy-Authorization`` header
(never logged, never in an error) carries them on.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from durastate.errors import ConfigurationError
from durastate.transport.policy import TransportOptions

__all__ = ["Proxy", "proxy_of", "ssl_context"]


def ssl_context(options: TransportOptions) -> ssl.SSLContext:
    """Verify certificates against the system CAs (or ``verify``'s bundle) unless
    ``verify=False`` was chosen."""
    if options.verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if options.verify is True:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=options.verify)
    except (OSError, ssl.SSLError):
        raise ConfigurationError("verify: the CA bundle cannot be read") from None


@dataclass(frozen=True, slots=True, repr=False)
class Proxy:
    """An HTTP proxy: where it listens and the header that authenticates us to it."""

    scheme: str
    host: str
    port: int
    authorization: str | None

    @property
    def url(self) -> str:
        """The proxy's URL without its credentials."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"Proxy({self.url})"


def proxy_of(options: TransportOptions) -> Proxy | None:
    """The configured proxy, or None (proxies are opt-in: the environment is not read)."""
    if options.proxy is None:
        return None
    parts = urlsplit(options.proxy.get_secret_value())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError("proxy must be an http:// or https:// URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConfigurationError("proxy: the port is not a number") from None
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return Proxy(parts.scheme, parts.hostname, port, authorization)
