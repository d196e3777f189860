"""open_store: configuration -> backend + serializers -> StateStore."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from durastate.config import Settings, load_settings
from durastate.core.async_store import AsyncStateStore
from durastate.core.backend import Backend
from durastate.core.codec import PayloadCodec
from durastate.core.store import StateStore
from durastate.errors import ConfigurationError, DurastateError
from durastate.registry import backend_class, scheme_of, serializer_class
from durastate.serializers.base import Serializer

_SETTINGS_FIELDS = set(Settings.model_fields) - {"url", "options"}


def redact_url(url: str) -> str:
    """The URL without its query string or credentials, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    rest = rest.split("?", 1)[0]
    if "@" in rest.split("/", 1)[0]:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def open_backend(url: str, **options: Any) -> Backend:
    """The backend registered for the URL's scheme, built from the URL and options."""
    cls = backend_class(scheme_of(url))
    try:
        return cls.from_url(url, **options)
    except DurastateError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"cannot open {redact_url(url)}: {exc}") from None


def build_serializer(serializer_id: str, settings: Settings) -> Serializer:
    return serializer_class(serializer_id).from_settings(settings)


def build_codec(settings: Settings, serializer: Serializer | None = None) -> PayloadCodec:
    """The writer from settings (or the given instance), readers from the accept-list."""
    writer = serializer or build_serializer(settings.serializer, settings)
    readers: dict[str, Serializer] = {writer.id: writer}
    for serializer_id in settings.accepted_serializers():
        if serializer_id not in readers:
            try:
                readers[serializer_id] = build_serializer(serializer_id, settings)
            except ConfigurationError:
                if serializer_id == settings.serializer or settings.accept is not None:
                    raise
                # a default reader whose extra is missing (msgpack) is simply not offered
    return PayloadCodec(writer, readers, compress_above=settings.compress_above)


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
    codec = build_codec(settings, serializer if isinstance(serializer, Serializer) else None)
    return StateStore(
        backend,
        codec=codec,
        max_custom_status_bytes=settings.max_custom_status_bytes,
        max_payload_bytes=settings.max_payload_bytes,
        clock=clock,
    )


def open_async_store(
    url: str | None = None, *, serializer: str | Serializer | None = None, **options: Any
) -> AsyncStateStore:
    """`open_store`, for asyncio: the same URLs, settings and entry points; the backend's
    async face (native, its own connection threads, or a bounded thread pool)."""
    return AsyncStateStore(open_store(url, serializer=serializer, **options))
