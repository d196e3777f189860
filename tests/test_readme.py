"""The README's samples work as written: a new user copies them, so CI runs them."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from durastate.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_quickstart_runs_twice_in_a_fresh_directory(tmp_path: Path) -> None:
    quickstart = re.findall(r"```python\n(.*?)```", _section("Quickstart"), flags=re.DOTALL)[0]
    script = tmp_path / "quickstart.py"
    script.write_text(quickstart)
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert "percent=99" in run.stdout


def test_command_line_samples_can_be_pasted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DURASTATE_URL", f"sqlite:///{tmp_path / 'readme.db'}")
    block = next(block for block in _blocks("bash") if "durastate create" in block)
    runner = CliRunner()
    ran = 0
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[1:2] in (["bench"], ["serve"]) or words[1:3] == [
            "emulators",
            "install",
        ]:
            # long-running (a benchmark, a server, an npm install): each has its own tests
            # (tests/test_bench.py, tests/test_web_serve_command.py, tests/test_pytest_plugin.py)
            continue
        assert words[0] == "durastate"
        assert not {"|", "[", "]"} & set("".join(words)), line
        result = runner.invoke(app, words[1:])
        assert result.exit_code == 0, (line, result.output)
        ran += 1
    assert ran >= 8


def test_plugin_snippet_has_its_imports() -> None:
    import ast
    import builtins

    snippet = next(block for block in _blocks("python") if "BackendConformance" in block)
    tree = ast.parse(snippet)
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            defined.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ClassDef | ast.FunctionDef):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    used = {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }
    assert used <= defined, f"the snippet uses {sorted(used - defined)} without importing it"
    namespace: dict[str, object] = {}
    exec(compile(snippet, "README plugin snippet", "exec"), namespace)
    assert "TestDirStore" in namespace


def test_the_conformance_suite_names_its_extra_when_pytest_is_missing() -> None:
    code = (
        "import sys; sys.modules['pytest'] = None\n"
        "from durastate.errors import MissingDependency\n"
        "try:\n"
        "    from durastate.testing import BackendConformance\n"
        "except MissingDependency as exc:\n"
        "    print(exc)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr[-1000:]
    assert "pip install 'durastate[testing]'" in run.stdout
