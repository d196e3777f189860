"""Tools for testing backends: the conformance suite, a call counter, emulator launchers.

The conformance suite needs pytest (``pip install 'durastate[testing]'``); it is imported only
when asked for, so tools that just count calls (the benchmark) or start emulators work
without the test dependencies. The pytest fixtures live in
`durastate.testing.pytest_plugin`, which pytest loads by itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durastate.errors import MissingDependency
from durastate.testing.counting import CountingBackend
from durastate.testing.targets import StoreTarget

if TYPE_CHECKING:
    from durastate.testing.conformance import (
        BackendConformance,
        FakeClock,
        ProgressModel,
        closing_opener,
    )

_FROM_CONFORMANCE = {"BackendConformance", "FakeClock", "ProgressModel", "closing_opener"}


def __getattr__(name: str) -> Any:
    if name in _FROM_CONFORMANCE:
        try:
            import pytest

            # failed checks then show their values, as in the test module's own asserts
            pytest.register_assert_rewrite("durastate.testing.conformance")
            from durastate.testing import conformance
        except ModuleNotFoundError as exc:
            if exc.name not in {"pytest", "_pytest"}:
                raise
            raise MissingDependency(f"durastate.testing.{name}", "testing", "pytest") from None
        return getattr(conformance, name)
    raise AttributeError(f"module 'durastate.testing' has no attribute {name!r}")


__all__ = [
    "BackendConformance",
    "CountingBackend",
    "FakeClock",
    "ProgressModel",
    "StoreTarget",
    "closing_opener",
]
