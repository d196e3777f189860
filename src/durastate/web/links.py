"""The public URL of a status resource, for ``Location``: the request's own URL, or the
configured ``base_url``, or (only when told to trust them) ``X-Forwarded-Proto``/``-Host``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Scope

from durastate.web.auth import app_path
from durastate.web.status import url_safe


def public_url(request: Request, *, base_url: str | None, trust_forwarded: bool) -> str:
    """This request's URL (path and query) as a client outside any proxy should see it."""
    scope = request.scope
    path = url_safe(app_path(scope))
    query = scope.get("query_string", b"").decode("latin-1")
    tail = path + (f"?{query}" if query else "")
    if base_url:
        return base_url.rstrip("/") + tail
    headers = request.headers
    scheme = scope.get("scheme", "http")
    netloc = headers.get("host") or _server(scope)
    if trust_forwarded:
        proto = _first(headers.get("x-forwarded-proto")).lower()
        scheme = proto if proto in ("http", "https") else scheme
        netloc = _first(headers.get("x-forwarded-host")) or netloc
    root = url_safe(scope.get("root_path", ""))
    return f"{scheme}://{netloc}{root}{tail}"


def _server(scope: Scope) -> str:
    host, port = scope.get("server") or ("localhost", 80)
    return f"{host}:{port}"


def _first(value: str | None) -> str:
    """The first (client-side) value of a comma-separated forwarded header."""
    return (value or "").split(",")[0].strip()
