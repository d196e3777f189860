"""durastate's pytest plugin as a user gets it: fixtures, failures, imports, the emulators command.

The main proof builds the README's example project in a temporary directory, installs it with
``durastate[testing]`` from this checkout into a fresh venv, and runs its pytest there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from durastate.cli import app
from durastate.errors import DurastateError
from durastate.testing import BackendConformance, StoreTarget, node_tools
from durastate.testing.emulators import (
    AZURITE_KEY,
    AzuriteEmulator,
    DynaliteEmulator,
    EmulatorError,
    MotoEmulator,
    RedisEmulator,
    running,
    start_azurite,
    start_dynalite,
)

pytest_plugins = ["pytester"]

CHECKOUT = Path(__file__).resolve().parents[1]
README_SECTION = "## Testing your code and your plugin"


def _readme_example() -> tuple[str, str]:
    """The pyproject.toml and the test file of the README's testing section."""
    section = (CHECKOUT / "README.md").read_text().split(README_SECTION, 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```(toml|python)\n(.*?)```", section, re.DOTALL)
    (pyproject,) = [code for language, code in blocks if language == "toml"]
    (test_code,) = [code for language, code in blocks if language == "python"]
    return pyproject, test_code


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what ties a child to this checkout's venv."""
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env.pop(node_tools.NODE_TOOLS_ENV, None)
    return {**env, **extra}


@pytest.mark.emulator
def test_a_new_project_passes_with_only_the_plugin_fixtures(tmp_path: Path) -> None:
    pyproject, test_code = _readme_example()
    source = tmp_path / "durastate-src"  # a copy, so the build writes nothing into the checkout
    shutil.copytree(
        CHECKOUT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(CHECKOUT / name, source / name)
    project = tmp_path / "progress-app"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text(pyproject)
    (project / "tests" / "test_durastate.py").write_text(test_code)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
         "--disable-pip-version-check", f"{source}[testing]", f"{project}[test]"],
        capture_output=True, text=True, env=_clean_env(), timeout=900, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr

    env = _clean_env(**{node_tools.NODE_TOOLS_ENV: str(CHECKOUT / "tools")})
    run = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project, capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    passed = int(re.findall(r"(\d+) passed", output)[-1])
    conformance = [name for name in dir(BackendConformance) if name.startswith("test_")]
    assert passed >= 4 + 1 + len(conformance), output
    assert not re.search(r"\d+ (skipped|xfailed|failed|errors?)\b", output), output

    # the fixtures come from the installed plugin: without it, the same tests cannot run
    without = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:durastate",
         "-k", "servers_are_real"],
        cwd=project, capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert without.returncode != 0
    assert "fixture 'azurite' not found" in without.stdout


@pytest.mark.emulator
def test_every_test_gets_its_own_store_and_no_secret_in_a_repr(
    azure_target: StoreTarget,
    dynamodb_target: StoreTarget,
    dynalite_target: StoreTarget,
    s3_target: StoreTarget,
    azurite: AzuriteEmulator,
    moto_server: MotoEmulator,
    dynalite: DynaliteEmulator,
) -> None:
    targets = [azure_target, dynamodb_target, dynalite_target, s3_target]
    for target in targets:
        with target.open() as store:
            assert list(store.query()) == []  # fresh and empty
            store.create_instance("job", name="wf", custom_status={"n": 1})
    urls = {target.url for target in targets}
    urls |= {azurite.target().url, moto_server.target().url}
    assert len(urls) == 6
    with dynamodb_target.open() as again:
        assert again.get_custom_status("job") == {"n": 1}  # the same target, the same table
    assert azurite.connection_string.startswith("DefaultEndpointsProtocol=http;")
    assert azurite.table_endpoint != azurite.blob_endpoint
    assert dynalite.endpoint != moto_server.endpoint
    for target in targets:
        assert AZURITE_KEY not in repr(target)
        assert "testing" not in repr(target)  # the AWS test credentials' values
        assert AZURITE_KEY not in target.url
        assert "testing" not in target.url  # credentials travel as options, not in the URL
    assert "connection_string" in repr(azure_target)
    with pytest.raises(EmulatorError, match="dynalite serves dynamodb, not s3"):
        dynalite.target(scheme="s3")
    assert isinstance(EmulatorError("x"), DurastateError)


@pytest.mark.emulator
def test_redis_and_postgres_targets_are_fresh_stores(
    redis_target: StoreTarget, postgres_target: StoreTarget, redis_server: RedisEmulator
) -> None:
    for target in (redis_target, postgres_target):
        with target.open() as store, target.open() as other:
            assert list(store.query()) == []  # a prefix or table of its own
            store.create_instance("job", name="wf", custom_status="")
            assert other.get_custom_status("job") == ""
    with redis_server.target().open() as elsewhere:
        assert list(elsewhere.query()) == []  # another prefix on the same server


def test_a_server_that_cannot_start_fails_its_tests_with_the_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(node_tools.NODE_TOOLS_ENV, str(tmp_path / "no-tools"))
    pytester.makeconftest("import sys\nsys.modules['moto'] = None  # moto not installed\n")
    pytester.makepyfile(
        textwrap.dedent(
            """
            def test_azure(azure_target): pass
            def test_dynalite(dynalite): pass
            def test_moto(moto_server): pass
            def test_s3(s3_target): pass
            def test_needs_no_server(): pass
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=4)
    result.stdout.fnmatch_lines(
        [
            "durastate: azurite is not installed in $DURASTATE_NODE_TOOLS=*no-tools*"
            "*run `durastate emulators install` (needs Node.js 20 and npm)*",
            "durastate: dynalite is not installed*",
            "durastate: moto_server needs moto: pip install 'durastate[testing]'",
        ]
    )
    assert "skipped" not in result.stdout.str()


def test_containers_asked_for_without_docker_stop_the_run_with_the_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\nexit 1\n")  # a docker CLI, but no engine
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    pytester.makepyfile("def test_azure(azurite): pass\ndef test_plain(): pass\n")
    result = pytester.runpytest_subprocess("--durastate-containers", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--durastate-containers: no Docker engine answers at unix://*no-engine.sock*"]
    )
    assert "passed" not in result.stdout.str()
    assert "skipped" not in result.stdout.str()


def test_durastate_testing_imports_without_pytest_and_names_the_extra() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["pytest"] = None  # as if pytest were not installed
        from durastate.errors import MissingDependency
        from durastate.testing import CountingBackend, StoreTarget
        from durastate.testing import emulators, node_tools
        for name in ("BackendConformance", "FakeClock"):
            try:
                getattr(__import__("durastate.testing", fromlist=[name]), name)
            except MissingDependency as exc:
                print(name, exc)
        try:
            import durastate.testing.pytest_plugin
        except MissingDependency as exc:
            print("plugin", exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3, done.stdout
    assert all("'pytest'" in line for line in lines), done.stdout
    assert all("pip install 'durastate[testing]'" in line for line in lines), done.stdout


def test_the_pins_match_the_checkouts_tools() -> None:
    package = json.loads((CHECKOUT / "tools" / "package.json").read_text())
    assert package["dependencies"] == node_tools.NODE_PACKAGES


def test_lookup_order_checkout_first_then_cache_and_the_variable_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(node_tools.NODE_TOOLS_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    dirs = node_tools.search_dirs()
    assert dirs[0] == CHECKOUT / "tools"
    assert dirs[-1] == tmp_path / "cache" / "durastate" / "node-tools"
    assert node_tools.find_node_tool("azurite").startswith(str(CHECKOUT / "tools"))
    monkeypatch.setenv(node_tools.NODE_TOOLS_ENV, str(tmp_path / "elsewhere"))
    assert node_tools.search_dirs() == [tmp_path / "elsewhere"]
    with pytest.raises(EmulatorError, match="dynalite is not installed in"):
        node_tools.find_node_tool("dynalite")


def test_install_without_node_or_npm_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no node, no npm
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["emulators", "install"])
    assert result.exit_code == 1
    assert "node and npm not found on PATH" in result.output
    assert "Node.js 20" in result.output
    assert not (tmp_path / "cache" / "durastate").exists()


@pytest.mark.emulator
def test_install_fills_the_user_cache_and_the_emulators_start_from_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["emulators", "install"])
    assert result.exit_code == 0, result.output
    cache = tmp_path / "cache" / "durastate" / "node-tools"
    assert json.loads((cache / "package.json").read_text())["dependencies"] == (
        node_tools.NODE_PACKAGES
    )
    monkeypatch.setenv(node_tools.NODE_TOOLS_ENV, str(cache))
    where = CliRunner().invoke(app, ["emulators", "where"])
    assert where.exit_code == 0, where.output
    assert f"azurite: {cache}/node_modules/.bin/azurite" in where.output
    for start in (start_azurite, start_dynalite):
        with running(start()) as emulator:
            assert str(emulator.process.args[0]).startswith(str(cache))  # type: ignore[index]
            with emulator.target().open() as store:
                store.create_instance("job", name="wf", custom_status=0)
                assert store.get_custom_status("job") == 0
