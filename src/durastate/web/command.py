"""``durastate serve``: the status API, event stream and page over uvicorn.

Loopback by default; a non-loopback bind needs a token (``--token`` or
``DURASTATE_SERVE_TOKEN``) or an explicit ``--no-auth``. Neither the token nor the store's
URL is ever printed: the store shows as its redacted URL.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from durastate.errors import DurastateError, MissingDependency
from durastate.redaction import redact_url

TOKEN_ENV = "DURASTATE_SERVE_TOKEN"  # noqa: S105 - a variable name, not a secret


def serve(
    url: Annotated[str | None, typer.Option(help="store URL (default: configuration)")] = None,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    token: Annotated[
        str | None, typer.Option(help=f"require Authorization: Bearer TOKEN (or ${TOKEN_ENV})")
    ] = None,
    allow_purge: Annotated[bool, typer.Option(help="allow DELETE /instances/{id}")] = False,
    base_url: Annotated[str | None, typer.Option(help="public URL for Location headers")] = None,
    trust_forwarded: Annotated[
        bool, typer.Option(help="honour X-Forwarded-Proto/-Host (behind your own proxy)")
    ] = False,
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="allow this browser origin (repeatable)")
    ] = None,
    no_auth: Annotated[
        bool, typer.Option(help="allow a non-loopback bind without a token")
    ] = False,
    demo: Annotated[
        bool, typer.Option(help="sample workflows on a temporary SQLite store")
    ] = False,
) -> None:
    """Serve instance status over HTTP: Durable Functions' API, live events and a page."""
    token = token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and not token and not no_auth:
        typer.echo(
            f"durastate serve: refusing to bind {host} without a token; give --token "
            f"(or ${TOKEN_ENV}), or --no-auth if the network is yours",
            err=True,
        )
        raise typer.Exit(2)
    if demo and url:
        typer.echo("durastate serve: --demo makes its own store; leave out --url", err=True)
        raise typer.Exit(2)
    options = {
        "allow_purge": allow_purge,
        "token": token,
        "base_url": base_url,
        "trust_forwarded": trust_forwarded,
        "cors_origins": tuple(cors_origin or ()),
    }
    try:
        if demo:
            with tempfile.TemporaryDirectory(prefix="durastate-demo-") as folder:
                _serve_demo(Path(folder) / "demo.db", host, port, options)
        else:
            _serve(url, host, port, options)
    except DurastateError as exc:
        typer.echo(f"durastate serve: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None


def _serve(url: str | None, host: str, port: int, options: dict[str, Any]) -> None:
    try:
        import uvicorn

        from durastate.web import create_app
    except ModuleNotFoundError as exc:
        raise MissingDependency("durastate serve", "web", exc.name or "uvicorn") from None
    from durastate.opening import open_async_store

    store = open_async_store(url)
    shown = redact_url(url) if url else "the configured store"
    app = create_app(store, **options)
    typer.echo(f"durastate serve: {shown} on http://{_url_host(host)}:{port}/", err=True)
    # proxy headers are handled by the app itself, and only with --trust-forwarded
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=False,
        log_level="warning",
        timeout_graceful_shutdown=2,  # open event streams would hold a stop forever
    )


def _serve_demo(path: Path, host: str, port: int, options: dict[str, Any]) -> None:
    from durastate.opening import open_store
    from durastate.web.demo import start_demo, stop_demo

    url = f"sqlite:///{path}"
    writer = open_store(url)
    stop, threads = start_demo(writer)
    try:
        _serve(url, host, port, options)
    finally:
        stop_demo(stop, threads)
        writer.close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the durastate CLI."""
    app.command("serve")(serve)
