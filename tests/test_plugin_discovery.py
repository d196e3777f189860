"""Plugins arrive through entry points, and never replace a built-in.

Needs the example plugin installed (CI does it; so does scripts/setup):

    pip install -e examples/durastate-dirstore
"""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from importlib.metadata import EntryPoint, PackageNotFoundError, distribution
from pathlib import Path

import pytest

from durastate import RuntimeStatus, open_backend, open_store
from durastate.backends.memory import MemoryBackend
from durastate.core.backend import Backend
from durastate.errors import ConfigurationError
from durastate.registry import (
    BACKEND_GROUP,
    BUILTIN_BACKENDS,
    BUILTIN_SERIALIZERS,
    SERIALIZER_GROUP,
    _Registry,
    backends,
)
from durastate.serializers.json import JsonSerializer
from durastate.testing import BackendConformance

PLUGIN = "durastate-dirstore"
INSTALL = "pip install -e examples/durastate-dirstore"


@pytest.fixture(autouse=True)
def plugin_installed() -> None:
    """Fail (not skip) with the fix when the example plugin is missing."""
    try:
        distribution(PLUGIN)
    except PackageNotFoundError:
        pytest.fail(f"the example plugin {PLUGIN} is not installed: {INSTALL}")


# -- the installed example plugin ----------------------------------------------------------


def test_plugin_is_listed_with_its_distribution() -> None:
    assert "dirstore" in backends.names()
    assert backends.origin("dirstore") == f"plugin {PLUGIN}"
    assert backends.origin("memory") == "built-in"
    (entry,) = [e for e in distribution(PLUGIN).entry_points if e.group == BACKEND_GROUP]
    assert (entry.name, entry.value) == ("dirstore", "durastate_dirstore:DirStoreBackend")


def test_plugin_works_end_to_end_through_open_store(tmp_path: Path) -> None:
    url = f"dirstore://{tmp_path}/x"  # dirstore:///tmp/.../x: an absolute directory
    assert url.startswith("dirstore:///")
    store = open_store(url)
    assert type(store.backend).__module__.startswith("durastate_dirstore")
    assert store.capabilities.native_query is False

    etag = store.create_instance("order-42", name="checkout", input={"items": 3})
    store.set_custom_status("order-42", {"percent": 40, "stage": "payment"}, etag=etag)
    store.set_runtime_status("order-42", RuntimeStatus.RUNNING)
    store.create_instance("order-43", name="checkout", custom_status=0)

    reopened = open_store(url)  # a second handle on the same directory sees it all
    got = reopened.get_instance("order-42", fetch_payloads=True)
    assert got is not None
    assert got.custom_status == {"percent": 40, "stage": "payment"}
    assert got.input == {"items": 3}
    assert got.runtime_status is RuntimeStatus.RUNNING
    assert got.custom_status_updated_at is not None
    assert got.last_updated_at - got.created_at < timedelta(minutes=1)

    running = reopened.query(runtime_status=RuntimeStatus.RUNNING)
    assert [item.instance_id for item in running] == ["order-42"]
    everything = [item.instance_id for item in reopened.iter_instances(page_size=1)]
    assert everything == ["order-42", "order-43"]
    assert reopened.purge("order-43") is True
    assert store.get_instance("order-43") is None


def test_plugin_is_configured_like_a_built_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("DURASTATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [tool.durastate]
            url = "dirstore://{tmp_path}/from-toml"

            [tool.durastate.options]
            fsync = false
            lock_timeout = 2.5
            """
        )
    )
    store = open_store()
    assert getattr(store.backend, "fsync", None) is False
    assert getattr(store.backend, "lock_timeout", None) == 2.5
    store.create_instance("i", name="wf", custom_status="configured")
    assert (tmp_path / "from-toml" / "dirstore.json").is_file()

    monkeypatch.setenv("DURASTATE_URL", f"dirstore://{tmp_path}/from-env")
    assert open_store().get_instance("i") is None  # another directory
    assert (tmp_path / "from-env" / "dirstore.json").is_file()


class TestPluginConformanceViaRegistry(BackendConformance):
    """The conformance suite on the class the registry loads for ``dirstore://``."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        backend = open_backend(f"dirstore://{tmp_path}/conformance", fsync=False)
        yield backend
        backend.close()


# -- no silent clobbering ------------------------------------------------------------------


class EvilMemory(MemoryBackend):
    """What a plugin claiming ``memory`` would provide."""


def test_entry_point_named_like_a_builtin_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = EntryPoint(name="memory", value=f"{__name__}:EvilMemory", group=BACKEND_GROUP)
    monkeypatch.setattr(
        "durastate.registry.entry_points",
        lambda group: [fake] if group == BACKEND_GROUP else [],
    )
    table = _Registry("backend", BACKEND_GROUP, BUILTIN_BACKENDS)
    with caplog.at_level(logging.WARNING, logger="durastate.registry"):
        names = table.names()
    assert "memory" in names
    assert table.get("memory") is MemoryBackend
    assert table.origin("memory") == "built-in"
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.name == "durastate.registry"
    message = warning.getMessage()
    assert "memory" in message
    assert "EvilMemory" in message
    assert "built-in" in message


def test_code_registration_does_not_silently_shadow_an_installed_plugin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = EntryPoint(name="mine", value=f"{__name__}:EvilMemory", group=BACKEND_GROUP)
    monkeypatch.setattr("durastate.registry.entry_points", lambda group: [fake])
    table = _Registry("backend", BACKEND_GROUP, BUILTIN_BACKENDS)
    with pytest.raises(ConfigurationError, match="already registered"):
        table.register("mine", MemoryBackend)
    table.register("mine", MemoryBackend, clobber=True)
    assert table.get("mine") is MemoryBackend
    assert table.origin("mine") == "registered in code"


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real (if tiny) installed distribution on sys.path, found by importlib.metadata."""
    module = "fake_durastate_plugin"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            from durastate.backends.memory import MemoryBackend
            from durastate.serializers.json import JsonSerializer

            class EvilBackend(MemoryBackend):
                pass

            class FakeBackend(MemoryBackend):
                pass

            class EvilJson(JsonSerializer):
                pass
            """
        )
    )
    info = tmp_path / "fake_durastate_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-durastate-plugin\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""
            [durastate.backends]
            memory = {module}:EvilBackend
            sqlite = {module}:EvilBackend
            fakeplugin = {module}:FakeBackend

            [durastate.serializers]
            json = {module}:EvilJson
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop(module, None)


def test_a_fake_distribution_adds_names_but_cannot_take_builtins(
    fake_distribution: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = _Registry("backend", BACKEND_GROUP, BUILTIN_BACKENDS)
    with caplog.at_level(logging.WARNING, logger="durastate.registry"):
        names = table.names()
    assert "fakeplugin" in names
    assert "dirstore" in names  # the real plugin is discovered alongside
    assert table.origin("fakeplugin") == "plugin fake-durastate-plugin"
    assert "fake_durastate_plugin" not in sys.modules  # listed, not imported

    assert table.get("memory") is MemoryBackend
    assert table.origin("sqlite") == "built-in"
    assert "entry point memory=fake_durastate_plugin:EvilBackend" in caplog.text
    assert "entry point sqlite=fake_durastate_plugin:EvilBackend" in caplog.text
    assert all(r.levelno == logging.WARNING for r in caplog.records)

    loaded = table.get("fakeplugin")
    assert loaded.__name__ == "FakeBackend"
    assert loaded.__module__ == "fake_durastate_plugin"


def test_a_fake_distribution_cannot_take_a_builtin_serializer(
    fake_distribution: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = _Registry("serializer", SERIALIZER_GROUP, BUILTIN_SERIALIZERS)
    with caplog.at_level(logging.WARNING, logger="durastate.registry"):
        assert table.get("json") is JsonSerializer
    assert table.origin("json") == "built-in"
    assert "json" in caplog.text
    assert "fake_durastate_plugin:EvilJson" in caplog.text
