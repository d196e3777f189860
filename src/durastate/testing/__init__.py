"""Tools for testing backends: the conformance suite, a call counter, emulator launchers.

The conformance suite needs pytest; it is imported only when asked for, so tools that just
count calls (the benchmark) work without the test dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durastate.errors import MissingDependency
from durastate.testing.counting import CountingBackend

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
            if exc.name != "pytest":
                raise
            raise MissingDependency(
                "durastate.testing (the conformance suite)", "testing", "pytest"
            ) from None
        return getattr(conformance, name)
    raise AttributeError(f"module 'durastate.testing' has no attribute {name!r}")


__all__ = [
    "BackendConformance",
    "CountingBackend",
    "FakeClock",
    "ProgressModel",
    "closing_opener",
]
