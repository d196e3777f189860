"""Sans-I/O HTTP messages: what a backend core builds and reads, with no socket in sight.

A core turns an operation into an `HttpRequest` and an answer into records, etags and
typed errors; a driver (`durastate.transport.sync` or `.aio`) moves the bytes. Header names
are lower case, so signers and cores look them up without case folding on the hot path.
The reprs name the target and the header names only: query strings (SAS tokens) and header
values (signatures, bearer tokens) never reach a log or a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from durastate.errors import ConfigurationError

__all__ = ["HttpRequest", "HttpResponse", "encode_query", "merge_headers"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def merge_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Answer headers by lower-case name; a repeated header's values joined by ', '."""
    merged: dict[str, str] = {}
    for name, value in pairs:
        lowered = name.lower()
        merged[lowered] = f"{merged[lowered]}, {value}" if lowered in merged else value
    return merged


def encode_query(query: Iterable[tuple[str, str]]) -> str:
    """The wire form of query pairs, percent-encoded as SigV4 canonicalizes them (RFC 3986)."""
    return "&".join(
        f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}" for name, value in query
    )


@dataclass(frozen=True, slots=True, repr=False)
class HttpRequest:
    """One HTTP request as plain data.

    ``path`` is already percent-encoded (it is sent and signed as given); ``query`` holds
    decoded name/value pairs, encoded once by `target`. ``host`` is the authority
    (``host`` or ``host:port``) and is what the ``Host`` header carries.
    """

    method: str
    scheme: str
    host: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def to(
        cls,
        method: str,
        base_url: str,
        path: str = "",
        *,
        query: Iterable[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> HttpRequest:
        """A request to ``base_url`` + ``path`` (both percent-encoded); header names lowered."""
        parts = urlsplit(base_url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
            raise ConfigurationError("an endpoint must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ConfigurationError("an endpoint URL must not carry credentials")
        host = parts.netloc
        if parts.port == _DEFAULT_PORTS[parts.scheme]:
            host = parts.hostname or host
        lowered = {name.lower(): value for name, value in (headers or {}).items()}
        base_path = parts.path.rstrip("/") if path.startswith("/") else parts.path
        return cls(
            method.upper(),
            parts.scheme,
            host,
            base_path + path or "/",
            tuple(query),
            lowered,
            body,
        )

    @property
    def target(self) -> str:
        """The request target of the start line: path plus encoded query."""
        if not self.query:
            return self.path
        return f"{self.path}?{encode_query(self.query)}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}{self.target}"

    def with_headers(self, extra: Mapping[str, str]) -> HttpRequest:
        """A copy with ``extra`` headers (lower-case names) added or replaced."""
        return self.with_all_headers({**self.headers, **extra})

    def with_all_headers(self, headers: Mapping[str, str]) -> HttpRequest:
        """A copy with exactly these headers (what a signer returns)."""
        return HttpRequest(*self._line(), self.query, headers, self.body)

    def with_query(self, extra: Iterable[tuple[str, str]]) -> HttpRequest:
        """A copy with query pairs appended (a SAS token, say)."""
        return HttpRequest(*self._line(), (*self.query, *extra), self.headers, self.body)

    def _line(self) -> tuple[str, str, str, str]:
        return self.method, self.scheme, self.host, self.path

    def describe(self) -> str:
        """Method, host and path: safe for errors and logs (no query, no header values)."""
        return f"{self.method} {self.scheme}://{self.host}{self.path}"

    def __repr__(self) -> str:
        names = ", ".join(sorted(self.headers))
        return (
            f"HttpRequest({self.describe()}, {len(self.query)} query parameter(s), "
            f"headers=[{names}], body={len(self.body)} bytes)"
        )


@dataclass(frozen=True, slots=True, repr=False)
class HttpResponse:
    """One HTTP answer as plain data (header names lower case; repeated headers joined by ', ').

    ``attempts`` counts the tries the driver made; ``outcome_unknown`` is true when an
    earlier try failed after the request may have reached the server (see
    `durastate.transport.policy.Failure`), so the core knows that a conflict in this answer
    may be its own earlier write.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes = b""
    attempts: int = 1
    outcome_unknown: bool = False

    def header(self, name: str, default: str | None = None) -> str | None:
        """A header by its lower-case name."""
        return self.headers.get(name, default)

    def __repr__(self) -> str:
        names = ", ".join(sorted(self.headers))
        return (
            f"HttpResponse({self.status}, headers=[{names}], body={len(self.body)} bytes, "
            f"attempts={self.attempts}, outcome_unknown={self.outcome_unknown})"
        )
