"""The public URL of a status resource, for ``Location``: the request's own URL, or the
configured ``base_url``, or (only when told to trust them) ``X-Forwarded-Proto``/``-Host``."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request

from durastate.web.auth import app_path


def public_url(request: Request, *, base_url: str | None, trust_forwarded: bool) -> str:
    """This request's URL (path and query) as a client outside any proxy should see it."""
    path = quote(app_path(request.scope), safe="/:@!$&'()*+,;=-._~")
    query = request.url.query
    tail = path + (f"?{query}" if query else "")
    if base_url:
        return base_url.rstrip("/") + tail
    scheme, netloc = request.url.scheme, request.url.netloc
    if trust_forwarded:
        headers = request.headers
        proto = _first(headers.get("x-forwarded-proto")).lower()
        scheme = proto if proto in ("http", "https") else scheme
        netloc = _first(headers.get("x-forwarded-host")) or netloc
    root = quote(request.scope.get("root_path", ""), safe="/")
    return f"{scheme}://{netloc}{root}{tail}"


def _first(value: str | None) -> str:
    """The first (client-side) value of a comma-separated forwarded header."""
    return (value or "").split(",")[0].strip()
