"""The status of workflow instances over HTTP: Durable Functions' status API, a live event
stream (Server-Sent Events) and a small progress page, as one Starlette app.

``create_app(store)`` takes an `AsyncStateStore`; ``durastate serve`` runs it with uvicorn.
Starlette is imported here, so a missing ``durastate[web]`` extra says what to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durastate.errors import MissingDependency

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from durastate.core.async_store import AsyncStateStore


def create_app(store: AsyncStateStore, **options: Any) -> Starlette:
    """The app over ``store``; options as `durastate.web.app.WebOptions`."""
    try:
        from durastate.web.app import build_app
    except ModuleNotFoundError as exc:
        if exc.name in {"starlette", "uvicorn"} or (exc.name or "").startswith("starlette."):
            raise MissingDependency("durastate.web", "web", exc.name or "starlette") from None
        raise
    return build_app(store, **options)


__all__ = ["create_app"]
