"""Bearer-token access: with a token, every data route needs ``Authorization: Bearer …``.

The page shell, its static files and ``/healthz`` stay open: they hold no data, and the page
must load before it can ask for the token. Tokens are compared in constant time and never
logged or echoed.
"""

from __future__ import annotations

import hmac
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from durastate.web.problems import problem

OPEN_PREFIXES: Final = ("/static/", "/ui/")
OPEN_PATHS: Final = ("/", "/healthz")


def app_path(scope: Scope) -> str:
    """The request path inside this app (without the prefix it is mounted under)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] or "/" if root and path.startswith(root) else path


class BearerAuth:
    """ASGI middleware (not BaseHTTPMiddleware: that one buffers and slows every response)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") == "OPTIONS" or self._open(scope):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        detail = "this server needs Authorization: Bearer <token>"
        response = problem(401, "Unauthorized", detail, {"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)

    @staticmethod
    def _open(scope: Scope) -> bool:
        path = app_path(scope)
        return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
