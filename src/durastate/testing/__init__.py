"""Tools for testing backends: the conformance suite, a call counter, emulator launchers."""

from durastate.testing.conformance import BackendConformance, FakeClock, ProgressModel
from durastate.testing.counting import CountingBackend

__all__ = ["BackendConformance", "CountingBackend", "FakeClock", "ProgressModel"]
