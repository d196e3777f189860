"""The `durastate` command against a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from durastate import open_store
from durastate.cli import app

runner = CliRunner()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_backends_lists_builtins_with_capabilities() -> None:
    result = runner.invoke(app, ["backends"])
    assert result.exit_code == 0, result.output
    for scheme in ("memory", "sqlite", "azure-tables", "dynamodb", "s3"):
        assert scheme in result.output


def test_backends_says_how_the_async_store_reaches_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    result = runner.invoke(app, ["backends"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if "built-in" in line}
    assert "native" in rows["memory"]
    assert "push" in rows["memory"]
    assert "connection threads" in rows["sqlite"]
    for scheme in ("azure-tables", "dynamodb", "s3"):
        assert "thread pool" in rows[scheme]


def test_create_set_status_get_query_purge(url: str) -> None:
    result = runner.invoke(
        app, ["create", "job-1", "--name", "resize", "--input", '{"f":1}', "--url", url]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["set-status", "job-1", '{"percent": 42}', "--url", url])
    assert result.exit_code == 0, result.output
    assert open_store(url).get_custom_status("job-1") == {"percent": 42}

    result = runner.invoke(app, ["get", "job-1", "--url", url])
    assert result.exit_code == 0, result.output
    shown = orjson.loads(result.output)
    assert shown["custom_status"] == {"percent": 42}
    assert "input" not in shown

    result = runner.invoke(app, ["query", "--status", "pending", "--json", "--url", url])
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in result.output.splitlines() if line.strip()]
    assert [line["instance_id"] for line in lines] == ["job-1"]

    result = runner.invoke(app, ["purge", "--status", "pending", "--url", url])
    assert result.exit_code == 0, result.output
    assert "purged 1" in result.output
    assert open_store(url).get_instance("job-1") is None


def test_set_status_with_stale_etag_fails_cleanly(url: str) -> None:
    store = open_store(url)
    etag = store.create_instance("job", name="wf")
    store.set_custom_status("job", 1)
    result = runner.invoke(app, ["set-status", "job", "2", "--etag", etag, "--url", url])
    assert result.exit_code == 1
    assert "ConcurrencyError" in result.output
    assert store.get_custom_status("job") == 1


def test_bad_json_and_missing_instance_exit_1(url: str) -> None:
    result = runner.invoke(app, ["set-status", "job", "{bad", "--url", url])
    assert result.exit_code == 1
    assert "not valid JSON" in result.output
    result = runner.invoke(app, ["get", "nope", "--url", url])
    assert result.exit_code == 1
    assert "not found" in result.output


def test_purge_without_filter_is_refused(url: str) -> None:
    result = runner.invoke(app, ["purge", "--url", url])
    assert result.exit_code == 1
    assert "needs a filter" in result.output


def test_url_from_environment(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURASTATE_URL", url)
    result = runner.invoke(app, ["create", "env-job", "--name", "wf"])
    assert result.exit_code == 0, result.output
    assert open_store(url).get_instance("env-job") is not None
