"""``durastate emulators``: install the Node emulators the pytest plugin starts, and find them.

pip cannot install npm packages, so this is the one step a user of ``durastate[testing]``
runs by hand for Azurite and dynalite (moto comes with the extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from durastate.testing import node_tools

emulators_app = typer.Typer(
    name="emulators",
    help="The Node emulators (Azurite, dynalite) used by durastate's pytest fixtures.",
    no_args_is_help=True,
)


@emulators_app.command("install")
def install(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="install here instead of the user cache directory"),
    ] = None,
) -> None:
    """npm-install the pinned Azurite and dynalite (needs Node.js 20 and npm)."""
    pins = ", ".join(f"{name}@{version}" for name, version in node_tools.NODE_PACKAGES.items())
    typer.echo(f"installing {pins} into {directory or node_tools.user_cache_dir()} ...")
    try:
        target = node_tools.install(directory)
    except node_tools.EmulatorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"installed into {target}")
    if directory is not None:
        typer.echo(f"point the launchers at it: export {node_tools.NODE_TOOLS_ENV}={target}")


@emulators_app.command("where")
def where() -> None:
    """Which executable each emulator would start from, or how to install it."""
    failed = False
    for name in node_tools.NODE_PACKAGES:
        try:
            typer.echo(f"{name}: {node_tools.find_node_tool(name)}")
        except node_tools.EmulatorError as exc:
            typer.echo(f"{name}: missing ({exc})")
            failed = True
    if failed:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add ``emulators`` to the durastate CLI."""
    app.add_typer(emulators_app)
