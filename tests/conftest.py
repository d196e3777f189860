"""The session's servers come from durastate's own pytest plugin, the one users get.

`durastate.testing.pytest_plugin` (entry point ``pytest11``) provides ``azurite``,
``moto_server``, ``dynalite``, ``redis_server``, ``postgres_server`` and a fresh store target
per test. A backend test never skips
because its server is missing: if the emulator cannot start, its tests fail with the reason.
"""

from __future__ import annotations

import importlib

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Load the plugin in a .venv installed before its entry point existed (scripts/setup)."""
    if not config.pluginmanager.has_plugin("durastate"):
        plugin = importlib.import_module("durastate.testing.pytest_plugin")
        config.pluginmanager.register(plugin, "durastate")
