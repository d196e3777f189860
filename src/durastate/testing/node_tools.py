"""Where the Node emulators (Azurite, dynalite) are found, and installing them with npm.

They are npm packages, so pip cannot bring them: ``durastate emulators install`` runs npm for
the pinned versions into a user cache directory. Lookup order of `find_node_tool`:

1. ``$DURASTATE_NODE_TOOLS`` when it is set, and nothing else (a directory holding
   ``node_modules/.bin``: the way to point a test run at one chosen installation);
2. ``tools/`` of the durastate checkout this module runs from (``scripts/setup`` fills it
   from ``tools/package.json``), then ``tools/`` of the current directory and its parents;
3. the user cache, ``$XDG_CACHE_HOME/durastate/node-tools`` (default ``~/.cache/...``);
4. ``PATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from durastate.errors import DurastateError

#: The pinned versions; tools/package.json pins the same ones for the project's own checkout.
#: Azurite 3.35.0 is the last release that runs on Node 20 (3.37 needs Node 22).
NODE_PACKAGES = {"azurite": "3.35.0", "dynalite": "4.0.0"}

NODE_TOOLS_ENV = "DURASTATE_NODE_TOOLS"
_INSTALL_HINT = "run `durastate emulators install` (needs Node.js 20 and npm)"


class EmulatorError(DurastateError, RuntimeError):
    """An emulator could not be found, installed or started; the message names the fix."""


def user_cache_dir() -> Path:
    """The directory `durastate emulators install` fills, following XDG_CACHE_HOME."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "durastate" / "node-tools"


def _checkout_tools() -> Path | None:
    """``tools/`` of the durastate checkout this module was loaded from, if it is one."""
    root = Path(__file__).resolve().parents[3]
    return root / "tools" if (root / "tools" / "package.json").exists() else None


def search_dirs() -> list[Path]:
    """The directories searched for ``node_modules/.bin/<tool>``, in order."""
    chosen = os.environ.get(NODE_TOOLS_ENV)
    if chosen:
        return [Path(chosen)]
    here = Path.cwd().resolve()
    candidates = [_checkout_tools(), *(d / "tools" for d in (here, *here.parents))]
    ordered = [d for d in candidates if d is not None] + [user_cache_dir()]
    return list(dict.fromkeys(ordered))


def find_node_tool(name: str) -> str:
    """The path of an npm-installed executable, or an `EmulatorError` naming the fix."""
    for directory in search_dirs():
        candidate = directory / "node_modules" / ".bin" / name
        if candidate.exists():
            return str(candidate)
    if os.environ.get(NODE_TOOLS_ENV):
        raise EmulatorError(
            f"{name} is not installed in ${NODE_TOOLS_ENV}={os.environ[NODE_TOOLS_ENV]} "
            f"(no node_modules/.bin/{name} there): unset it, or {_INSTALL_HINT} "
            f"and point it at {user_cache_dir()}"
        )
    found = shutil.which(name)
    if found:
        return found
    raise EmulatorError(
        f"{name} is not installed: {_INSTALL_HINT}; in a durastate checkout, scripts/setup"
    )


def install(directory: Path | None = None, *, timeout: float = 600.0) -> Path:
    """npm-install the pinned emulators into ``directory`` (default: the user cache)."""
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        missing = " and ".join(t for t, path in (("node", node), ("npm", npm)) if path is None)
        raise EmulatorError(
            f"{missing} not found on PATH: install Node.js 20 with npm "
            "(e.g. `apt-get install nodejs npm`, or from nodejs.org), then run "
            "`durastate emulators install` again"
        )
    target = directory or user_cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": "durastate-node-tools",
        "private": True,
        "description": "Emulators for durastate's pytest plugin (durastate emulators install)",
        "dependencies": NODE_PACKAGES,
    }
    (target / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    try:
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefer-offline"],
            cwd=target,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise EmulatorError(f"npm install in {target} took longer than {timeout:.0f} s") from None
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).splitlines()[-15:])
        raise EmulatorError(f"npm install in {target} failed ({result.returncode}):\n{tail}")
    return target
