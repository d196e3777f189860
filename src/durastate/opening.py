"""open_store: configuration -> backend + serializers -> StateStore."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from durastate.config import Settings, load_settings
from durastate.core.async_store import AsyncStateStore
from durastate.core.backend import Backend
from durastate.core.codec import build_codec
from durastate.core.store import StateStore
from durastate.errors import ConfigurationError, DurastateError
from durastate.redaction import redact_url, scrub, secrets_of
from durastate.registry import backend_class, scheme_of
from durastate.serializers.base import Serializer

_SETTINGS_FIELDS = set(Settings.model_fields) - {"url", "options"}

__all__ = ["open_async_store", "open_backend", "open_store", "redact_url"]


def open_backend(url: str, **options: Any) -> Backend:
    """The backend registered for the URL's scheme, built from the URL and options.

    Whatever a backend says when it refuses the URL or options, secrets typed into them
    (userinfo, a pasted connection string, a secret-named option) are scrubbed from it.
    """
    cls = backend_class(scheme_of(url))
    try:
        return cls.from_url(url, **options)
    except DurastateError as exc:
        secrets = secrets_of(url, options)
        exc.args = tuple(scrub(arg, secrets) if isinstance(arg, str) else arg for arg in exc.args)
        chained = exc.__cause__ or exc.__context__
        if chained is not None and scrub(str(chained), secrets) != str(chained):
            exc.__cause__ = exc.__context__ = None  # a traceback would print it
            exc.__suppress_context__ = True
        raise
    except (TypeError, ValueError) as exc:
        message = scrub(str(exc), secrets_of(url, options))
        raise ConfigurationError(f"cannot open {redact_url(url)}: {message}") from None


def open_store(
    url: str | None = None,
    *,
    serializer: str | Serializer | None = None,
    clock: Callable[[], datetime] | None = None,
    **options: Any,
) -> StateStore:
    """Open a store by URL, or from configuration (arguments > DURASTATE_* > TOML > defaults).

    Keyword options that are settings (``max_custom_status_bytes``, ``accept``,
    ``pickle_keys``, ...) configure the store; every other option goes to the backend.
    """
    store_options = {key: options.pop(key) for key in list(options) if key in _SETTINGS_FIELDS}
    serializer_id = serializer.id if isinstance(serializer, Serializer) else serializer
    settings = load_settings(url=url, serializer=serializer_id, **store_options)
    backend_options = {**settings.options, **options}
    backend = open_backend(settings.url, **backend_options)
    codec = build_codec(
        serializer if isinstance(serializer, Serializer) else settings.serializer,
        settings.accept,
        compress_above=settings.compress_above,
        settings=settings,
    )
    return StateStore(
        backend,
        codec=codec,
        max_custom_status_bytes=settings.max_custom_status_bytes,
        max_payload_bytes=settings.max_payload_bytes,
        clock=clock,
        retention=settings.retention,
        retention_from=settings.retention_from,
    )


def open_async_store(
    url: str | None = None, *, serializer: str | Serializer | None = None, **options: Any
) -> AsyncStateStore:
    """`open_store`, for asyncio: the same URLs, settings and entry points; the backend's
    async face (native, its own connection threads, or a bounded thread pool)."""
    return AsyncStateStore(open_store(url, serializer=serializer, **options))
