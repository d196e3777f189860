"""AWS Signature Version 4 as a pure function of a request, credentials and a time.

Byte for byte what botocore's ``SigV4Auth`` (DynamoDB) and ``S3SigV4Auth`` (S3) produce
for the same request and time (tests/test_transport_signing.py checks it), at a fraction of
the CPU: no request copies, no header classes, and the derived signing key cached per
(secret, day, region, service).

Credentials come from botocore's own chain (`AwsCredentials.from_botocore`), so the
environment, profiles, SSO, container and instance metadata all work, and refreshable
credentials are read afresh (frozen) for every request.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple, Protocol
from urllib.parse import quote

from durastate.errors import ConfigurationError
from durastate.transport.messages import HttpRequest

if TYPE_CHECKING:
    from botocore.credentials import Credentials

__all__ = [
    "EMPTY_SHA256",
    "AwsCredentials",
    "FrozenCredentials",
    "SigV4Signer",
    "sign_sigv4",
]

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: Headers botocore never signs (hop-by-hop, tracing, the user agent).
_UNSIGNED_HEADERS = frozenset(
    {
        "authorization",
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)


class FrozenCredentials(NamedTuple):
    """One consistent set of keys (botocore's ``ReadOnlyCredentials`` has the same shape)."""

    access_key: str
    secret_key: str
    token: str | None = None

    def __repr__(self) -> str:
        return "FrozenCredentials(***)"


class _Keys(Protocol):
    @property
    def access_key(self) -> str | None: ...
    @property
    def secret_key(self) -> str | None: ...
    @property
    def token(self) -> str | None: ...


class _CredentialSource(Protocol):
    def get_frozen_credentials(self) -> _Keys: ...


class AwsCredentials:
    """Where the keys come from: fixed keys, or any botocore credentials object (read
    frozen for every request, so refreshable credentials rotate in time)."""

    __slots__ = ("_fixed", "_source")

    def __init__(
        self,
        source: _CredentialSource | None = None,
        *,
        fixed: FrozenCredentials | None = None,
    ) -> None:
        if (source is None) == (fixed is None):
            raise ConfigurationError("AwsCredentials needs a credential source or fixed keys")
        self._source = source
        self._fixed = fixed

    @classmethod
    def from_botocore(cls, credentials: Credentials | None = None) -> AwsCredentials:
        """From botocore's default chain (or the credentials given)."""
        if credentials is None:
            import botocore.session

            credentials = botocore.session.Session().get_credentials()
        if credentials is None:
            raise ConfigurationError(
                "no AWS credentials found (environment, shared files, SSO or instance metadata)"
            )
        return cls(credentials)

    def frozen(self) -> FrozenCredentials:
        if self._fixed is not None:
            return self._fixed
        assert self._source is not None
        keys = self._source.get_frozen_credentials()
        if not keys.access_key or not keys.secret_key:
            raise ConfigurationError("the AWS credentials lack an access key or a secret key")
        return FrozenCredentials(keys.access_key, keys.secret_key, keys.token)

    def __repr__(self) -> str:
        return "AwsCredentials(fixed)" if self._fixed else "AwsCredentials(chain)"


@dataclass(frozen=True, slots=True)
class SigV4Signer:
    """Signs for one region and service; ``s3=True`` uses S3's rules (path signed as sent,
    ``x-amz-content-sha256`` header)."""

    credentials: AwsCredentials
    region: str
    service: str
    s3: bool = False

    def sign(self, request: HttpRequest, now: datetime | None = None) -> HttpRequest:
        return sign_sigv4(
            request, self.credentials.frozen(), self.region, self.service, now=now, s3=self.s3
        )


_key_cache: dict[tuple[str, str, str, str], bytes] = {}


def _signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    cache_key = (secret, day, region, service)
    key = _key_cache.get(cache_key)
    if key is None:
        key = f"AWS4{secret}".encode()
        for part in (day, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        if len(_key_cache) > 64:
            _key_cache.clear()
        _key_cache[cache_key] = key
    return key


def _canonical_path(path: str, s3: bool) -> str:
    """S3 signs the path as sent; other services sign it without dot segments and empty
    segments (RFC 3986 5.2.4, as AWS wants), percent-encoded once more."""
    if s3:
        return path
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    trailing = "/" if path.endswith("/") and segments else ""
    return quote("/" + "/".join(segments) + trailing, safe="/~")


def sign_sigv4(
    request: HttpRequest,
    credentials: FrozenCredentials,
    region: str,
    service: str,
    *,
    now: datetime | None = None,
    s3: bool = False,
) -> HttpRequest:
    """The request with ``x-amz-date``, the security token, for S3 ``x-amz-content-sha256``,
    and ``authorization`` added. ``now`` (UTC) defaults to the current time."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    headers = {name: value for name, value in request.headers.items() if name != "authorization"}
    headers["x-amz-date"] = stamp
    if credentials.token:
        headers["x-amz-security-token"] = credentials.token
    payload_hash = headers.get("x-amz-content-sha256")
    if s3 or payload_hash is None:
        payload_hash = hashlib.sha256(request.body).hexdigest() if request.body else EMPTY_SHA256
    if s3:
        headers["x-amz-content-sha256"] = payload_hash
    signed = {name: value for name, value in headers.items() if name not in _UNSIGNED_HEADERS}
    signed.setdefault("host", request.host)
    names = sorted(signed)
    signed_names = ";".join(names)
    canonical_headers = "".join(f"{name}:{' '.join(signed[name].split())}\n" for name in names)
    canonical_query = _canonical_query(request) if request.query else ""
    canonical_request = "\n".join(
        (
            request.method,
            _canonical_path(request.path, s3),
            canonical_query,
            canonical_headers,
            signed_names,
            payload_hash,
        )
    )
    day = stamp[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    string_to_sign = (
        f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n"
        + hashlib.sha256(canonical_request.encode()).hexdigest()
    )
    key = _signing_key(credentials.secret_key, day, region, service)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_names}, Signature={signature}"
    )
    return request.with_all_headers(headers)


def _canonical_query(request: HttpRequest) -> str:
    """Encoded pairs sorted by encoded name, then encoded value."""
    pairs = sorted((quote(n, safe="-_.~"), quote(v, safe="-_.~")) for n, v in request.query)
    return "&".join(f"{name}={value}" for name, value in pairs)
