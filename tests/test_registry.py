"""The scheme and serializer registries: lookups, install hints, and no silent clobbering."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from durastate import open_store, registry
from durastate.backends.memory import MemoryBackend
from durastate.backends.sqlite import SQLiteBackend
from durastate.errors import ConfigurationError, MissingDependency
from durastate.registry import (
    BACKEND_GROUP,
    BUILTIN_BACKENDS,
    BUILTIN_SERIALIZERS,
    SERIALIZER_GROUP,
    Known,
    _Registry,
)
from durastate.serializers.base import Serializer
from durastate.serializers.json import JsonSerializer


class OtherMemory(MemoryBackend):
    """A stand-in implementation to register in code."""


class UpperJson(JsonSerializer):
    """A stand-in serializer to register in code."""


@pytest.fixture
def fresh_backends(monkeypatch: pytest.MonkeyPatch) -> _Registry:
    """A registry with the built-ins and no entry points, installed as the global one."""
    table = _Registry("backend", BACKEND_GROUP, BUILTIN_BACKENDS)
    table._discovered = True  # no plugins: these tests are about the built-ins
    monkeypatch.setattr(registry, "backends", table)
    return table


@pytest.fixture
def fresh_serializers(monkeypatch: pytest.MonkeyPatch) -> _Registry:
    table = _Registry("serializer", SERIALIZER_GROUP, BUILTIN_SERIALIZERS)
    table._discovered = True
    monkeypatch.setattr(registry, "serializers", table)
    return table


def _forget_modules(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make the next import of these modules run again (restored after the test)."""
    for name in names:
        monkeypatch.delitem(sys.modules, name, raising=False)


# -- lookups -----------------------------------------------------------------------------


def test_builtins_resolve_lazily(fresh_backends: _Registry) -> None:
    assert {"memory", "sqlite", "azure-tables", "dynamodb", "s3"} <= set(fresh_backends.names())
    assert registry.backend_class("memory") is MemoryBackend
    assert registry.backend_class("sqlite") is SQLiteBackend
    assert fresh_backends.origin("sqlite") == "built-in"


def test_unknown_scheme_names_the_known_ones(fresh_backends: _Registry) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_store("nosuch://user:hunter2@host/db?sig=SAS-SECRET")
    message = str(raised.value)
    assert "'nosuch'" in message
    for scheme in ("memory", "sqlite", "azure-tables", "dynamodb", "s3"):
        assert scheme in message
    assert "hunter2" not in message
    assert "SAS-SECRET" not in message


def test_scheme_of() -> None:
    assert registry.scheme_of("SQLite:///x.db") == "sqlite"
    assert registry.scheme_of("azure-tables://account") == "azure-tables"
    for bad in ("durastate.db", "://nothing", ""):
        with pytest.raises(ConfigurationError, match="scheme://"):
            registry.scheme_of(bad)


def test_importing_durastate_imports_no_sdk_and_no_plugin() -> None:
    """Listing schemes must not import a cloud SDK or any plugin's code."""
    code = textwrap.dedent(
        """
        import sys
        import durastate
        from durastate.registry import backends, serializers
        backends.names(), serializers.names()
        durastate.open_store("memory://")
        heavy = ("azure", "boto3", "botocore", "durastate_dirstore", "durastate.backends.s3")
        print(sorted(m for m in sys.modules if m.startswith(heavy)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


# -- missing extras ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "url", "sdk_module", "extra", "backend_modules"),
    [
        (
            "azure-tables",
            "azure-tables://devstoreaccount1",
            "azure.data.tables",
            "azure",
            ["durastate.backends.azure_tables"],
        ),
        (
            "dynamodb",
            "dynamodb://table",
            "boto3",
            "aws",
            ["durastate.backends.dynamodb", "durastate.backends._aws"],
        ),
        (
            "redis",
            "redis://localhost:6379/0",
            "redis",
            "redis",
            [
                "durastate.backends.redis",
                "durastate.backends.redis.backend",
                "durastate.backends.redis.failures",
            ],
        ),
    ],
)
def test_missing_extra_gives_install_hint(
    fresh_backends: _Registry,
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
    url: str,
    sdk_module: str,
    extra: str,
    backend_modules: list[str],
) -> None:
    # None in sys.modules makes `import <sdk_module>` raise ImportError, as if not installed.
    monkeypatch.setitem(sys.modules, sdk_module, None)
    _forget_modules(monkeypatch, *backend_modules)
    with pytest.raises(MissingDependency) as raised:
        open_store(url)
    error = raised.value
    assert isinstance(error, ConfigurationError)
    assert isinstance(error, ImportError)
    assert f"pip install 'durastate[{extra}]'" in str(error)
    assert scheme in str(error)
    assert error.extra == extra
    assert error.__cause__ is None  # the hint, not a traceback into the SDK


def test_missing_serializer_extra_gives_install_hint(
    fresh_serializers: _Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)
    _forget_modules(monkeypatch, "durastate.serializers.msgpack")
    with pytest.raises(MissingDependency, match=r"pip install 'durastate\[msgpack\]'"):
        registry.serializer_class("msgpack")
    with pytest.raises(MissingDependency, match=r"durastate\[msgpack\]"):
        open_store("memory://", serializer="msgpack")
    # a default *reader* whose extra is missing is simply not offered
    store = open_store("memory://")
    assert store.codec.writer.id == "json"


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("fake_cloud_backend", "broken_backend"):
        sys.modules.pop(name, None)


def test_missing_sdk_of_a_lazily_listed_module(module_dir: Path) -> None:
    """A real module whose SDK import fails: the hint names the extra that provides it."""
    (module_dir / "fake_cloud_backend.py").write_text(
        "import durastate_test_absent_sdk  # not installed anywhere\n"
        "class FakeCloudBackend: ...\n"
    )
    table = _Registry(
        "backend",
        BACKEND_GROUP,
        {
            "fakecloud": Known(
                "fake_cloud_backend:FakeCloudBackend", "fakecloud", "durastate_test_absent_sdk"
            )
        },
    )
    table._discovered = True
    with pytest.raises(MissingDependency) as raised:
        table.get("fakecloud")
    assert "pip install 'durastate[fakecloud]'" in str(raised.value)
    assert "durastate_test_absent_sdk" in str(raised.value)


def test_other_import_errors_are_not_blamed_on_the_extra(module_dir: Path) -> None:
    """A bug in the backend module itself is a ConfigurationError, not an install hint."""
    (module_dir / "broken_backend.py").write_text("import durastate_no_such_helper\n")
    table = _Registry(
        "backend",
        BACKEND_GROUP,
        {
            "broken": Known("broken_backend:Backend", "azure", "azure.data.tables"),
            "absent": Known("durastate.backends.no_such_module:Backend", "aws", "boto3"),
        },
    )
    table._discovered = True
    for name in ("broken", "absent"):
        with pytest.raises(ConfigurationError, match="could not be imported") as raised:
            table.get(name)
        assert not isinstance(raised.value, MissingDependency)


def test_missing_attribute_is_a_configuration_error() -> None:
    table = _Registry(
        "backend", BACKEND_GROUP, {"typo": Known("durastate.backends.memory:MemoryBackendd")}
    )
    table._discovered = True
    with pytest.raises(ConfigurationError, match="MemoryBackendd"):
        table.get("typo")


# -- registering in code -----------------------------------------------------------------


def test_register_backend_refuses_to_replace_without_clobber(fresh_backends: _Registry) -> None:
    with pytest.raises(ConfigurationError, match="already registered"):
        registry.register_backend("memory", OtherMemory)
    assert registry.backend_class("memory") is MemoryBackend
    assert fresh_backends.origin("memory") == "built-in"

    registry.register_backend("memory", OtherMemory, clobber=True)
    assert registry.backend_class("memory") is OtherMemory
    assert fresh_backends.origin("memory") == "registered in code"
    assert isinstance(open_store("memory://").backend, OtherMemory)


def test_register_new_scheme_then_refuse_a_second(fresh_backends: _Registry) -> None:
    registry.register_backend("mine", OtherMemory)
    assert "mine" in fresh_backends.names()
    assert fresh_backends.origin("mine") == "registered in code"
    assert isinstance(open_store("mine://ns").backend, OtherMemory)
    with pytest.raises(ConfigurationError, match="'mine' is already registered"):
        registry.register_backend("mine", MemoryBackend)
    assert registry.backend_class("mine") is OtherMemory
    registry.register_backend("mine", MemoryBackend, clobber=True)
    assert registry.backend_class("mine") is MemoryBackend


def test_loaded_builtin_is_still_protected(fresh_backends: _Registry) -> None:
    assert registry.backend_class("sqlite") is SQLiteBackend  # now cached as loaded
    with pytest.raises(ConfigurationError, match="clobber=True"):
        registry.register_backend("sqlite", OtherMemory)


def test_serializer_registry_works_likewise(fresh_serializers: _Registry) -> None:
    assert {"json", "msgpack", "pickle-safe"} <= set(fresh_serializers.names())
    assert registry.serializer_class("json") is JsonSerializer
    with pytest.raises(ConfigurationError) as raised:
        registry.serializer_class("yaml")
    assert "'yaml'" in str(raised.value)
    for known in ("json", "msgpack", "pickle-safe"):
        assert known in str(raised.value)

    with pytest.raises(ConfigurationError, match="already registered"):
        registry.register_serializer("json", UpperJson)
    assert registry.serializer_class("json") is JsonSerializer
    registry.register_serializer("json", UpperJson, clobber=True)
    assert registry.serializer_class("json") is UpperJson
    assert fresh_serializers.origin("json") == "registered in code"

    registry.register_serializer("json-upper", UpperJson)
    with pytest.raises(ConfigurationError, match="already registered"):
        registry.register_serializer("json-upper", JsonSerializer)


def test_unknown_serializer_via_open_store(fresh_serializers: _Registry) -> None:
    with pytest.raises(ConfigurationError, match="unknown serializer 'yaml'"):
        open_store("memory://", serializer="yaml")


def test_a_registered_serializer_is_used_by_open_store(fresh_serializers: _Registry) -> None:
    class Tagged(Serializer):
        id = "tagged"

        def dumps(self, value: Any, *, instance_id: str) -> bytes:
            return b"T" + JsonSerializer().dumps(value, instance_id=instance_id)

        def loads(self, data: bytes, *, instance_id: str) -> Any:
            return JsonSerializer().loads(data[1:], instance_id=instance_id)

    registry.register_serializer("tagged", Tagged)
    store = open_store("memory://", serializer="tagged")
    store.create_instance("i", name="wf", custom_status={"n": 1})
    record = store.backend.read("i")
    assert record is not None
    assert record.custom_status is not None
    assert record.custom_status.serializer == "tagged"
    assert record.custom_status.data.startswith(b"T")
    assert store.get_custom_status("i") == {"n": 1}
