"""`durastate.backend` is the one import point for backend authors, and the example plugin
uses nothing else of durastate's internals."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import durastate.backend
from durastate.core.backend import Backend
from durastate.errors import BackendUnavailable, OutcomeUnknown
from durastate.registry import BACKEND_GROUP

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "durastate-dirstore"

#: What the issue promises a backend author finds there.
PROMISED = {
    "Backend",
    "AsyncBackend",
    "NewInstance",
    "InstanceRecord",
    "Payload",
    "RecordPage",
    "WriteResult",
    "Capabilities",
    "InstanceQuery",
    "RuntimeStatus",
    "encode_token",
    "decode_token",
    "after_token",
    "decode_after",
    "skip_unreadable",
    "read_in_threads",
    "LRU",
    "RecentPayloads",
    "InstanceExists",
    "InstanceNotFound",
    "ConcurrencyError",
    "CorruptRecord",
    "BackendUnavailable",
    "OutcomeUnknown",
    "PayloadTooLarge",
    "InvalidContinuationToken",
    "InvalidInstanceId",
    "BACKEND_GROUP",
}


def test_every_name_in_all_exists_and_the_promised_ones_are_there() -> None:
    names = durastate.backend.__all__
    assert len(names) == len(set(names))
    missing = [name for name in names if not hasattr(durastate.backend, name)]
    assert missing == []
    assert set(names) >= PROMISED
    assert durastate.backend.Backend is Backend  # the same classes, not copies
    assert durastate.backend.OutcomeUnknown is OutcomeUnknown
    assert issubclass(OutcomeUnknown, BackendUnavailable)
    assert durastate.backend.__doc__ is not None
    assert BACKEND_GROUP in durastate.backend.__doc__


def _durastate_imports(path: Path) -> list[str]:
    """The durastate modules a file imports (``from X import`` and ``import X``)."""
    modules = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
        elif isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
    return [module for module in modules if module.split(".")[0] == "durastate"]


def test_the_example_plugin_imports_nothing_private() -> None:
    sources = sorted((EXAMPLE / "src").rglob("*.py"))
    tests = sorted((EXAMPLE / "tests").rglob("*.py"))
    assert sources
    assert tests
    for path in sources:  # the plugin itself: the import point only
        assert set(_durastate_imports(path)) <= {"durastate.backend"}, path
    for path in tests:  # its tests may open stores and use the testing kit too
        for module in _durastate_imports(path):
            assert not module.startswith(("durastate.core", "durastate.backends")), (path, module)


def test_the_example_registers_through_the_one_entry_point_group() -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert list(project["entry-points"]) == [BACKEND_GROUP]
    assert project["entry-points"][BACKEND_GROUP] == {
        "dirstore": "durastate_dirstore:DirStoreBackend"
    }


def test_outcome_unknown_is_one_error_class_wherever_it_is_imported_from() -> None:
    import durastate
    import durastate.transport
    import durastate.transport.policy

    assert durastate.OutcomeUnknown is OutcomeUnknown
    assert durastate.transport.OutcomeUnknown is OutcomeUnknown
    assert durastate.transport.policy.OutcomeUnknown is OutcomeUnknown
    assert OutcomeUnknown.__module__ == "durastate.errors"
    assert issubclass(OutcomeUnknown, BackendUnavailable)
