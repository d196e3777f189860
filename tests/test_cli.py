"""The `durastate` command against a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from durastate import open_store
from durastate.backends.sqlite import SQLiteBackend
from durastate.cli import app
from durastate.core.store import StateStore
from durastate.testing.conformance import FakeClock

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
    for scheme in ("azure-tables", "dynamodb", "s3"):  # the same plans, asyncio driver
        assert "native" in rows[scheme]


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
    assert "no instance 'nope'" in result.output


def test_purge_without_filter_is_refused_naming_the_cli_options(url: str) -> None:
    open_store(url).create_instance("kept", name="wf")
    result = runner.invoke(app, ["purge", "--url", url])
    assert result.exit_code == 1
    for option in ("--status", "--created-from", "--created-to", "--prefix"):
        assert option in result.output
    assert "purge_by" not in result.output  # the Python API is not the user's interface
    assert open_store(url).get_instance("kept") is not None


def test_missing_instance_is_a_clear_message_and_exit_1(url: str) -> None:
    for command in (["get", "nosuch"], ["set-status", "nosuch", "1"]):
        result = runner.invoke(app, [*command, "--url", url])
        assert result.exit_code == 1, result.output
        assert "no instance 'nosuch' in this store" in result.output
        assert "durastate create nosuch --name NAME" in result.output
        assert "LookupError" not in result.output
        assert "InstanceNotFound" not in result.output


def test_install_hints_keep_their_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich markup would eat ``[azure]`` from ``pip install 'durastate[azure]'``."""
    from durastate.registry import Known, backends

    monkeypatch.setitem(
        backends._known,
        "needs-extra",
        Known("durastate_missing_sdk_xyz:Backend", "azure", "durastate_missing_sdk_xyz"),
    )
    result = runner.invoke(app, ["get", "job", "--url", "needs-extra://x"])
    assert result.exit_code == 1
    assert "pip install 'durastate[azure]'" in result.output
    result = runner.invoke(app, ["backends"])
    assert "durastate[azure]" in result.output.replace("\n", "")


def test_user_text_is_not_read_as_markup(url: str) -> None:
    instance_id = "job-[bold]x[/bold]-[red]"
    result = runner.invoke(app, ["create", instance_id, "--name", "[i]wf[/i]", "--url", url])
    assert result.exit_code == 0, result.output
    assert instance_id in result.output
    result = runner.invoke(app, ["query", "--url", url])
    assert result.exit_code == 0, result.output
    assert "[bold]" in result.output
    assert "[i]wf" in result.output


def test_query_json_stays_valid_json_with_a_corrupt_record(url: str, tmp_path: Path) -> None:
    import sqlite3

    store = open_store(url)
    store.create_instance("good", name="wf", custom_status={"ok": True})
    store.create_instance("bad", name="wf", custom_status={"ok": True})
    raw = sqlite3.connect(tmp_path / "cli.db", isolation_level=None)
    try:
        raw.execute("UPDATE instances SET custom_status = x'fffe7b' WHERE instance_id = 'bad'")
    finally:
        raw.close()
    result = runner.invoke(app, ["query", "--json", "--url", url])
    assert result.exit_code == 0, result.output
    lines = {
        line["instance_id"]: line
        for line in map(orjson.loads, filter(str.strip, result.output.splitlines()))
    }
    assert lines["good"]["custom_status"] == {"ok": True}
    assert lines["bad"]["custom_status"] is None
    assert lines["bad"]["error"].startswith("CorruptRecord")


def test_url_from_environment(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURASTATE_URL", url)
    result = runner.invoke(app, ["create", "env-job", "--name", "wf"])
    assert result.exit_code == 0, result.output
    assert open_store(url).get_instance("env-job") is not None


def test_secrets_typed_into_the_url_stay_out_of_cli_output() -> None:
    secret = "Zm9vYmFyLXNlY3JldC1rZXktMDEyMzQ1Njc4OQ=="
    for url in (
        f"azure-tables://acct:{secret}@Table",
        f"dynamodb://AKIAIOSFODNN7EXAMPLE:{secret}@table",
        f"DefaultEndpointsProtocol=https;AccountKey={secret};BlobEndpoint=https://a.b",
    ):
        result = runner.invoke(app, ["get", "job", "--url", url])
        assert result.exit_code == 1
        assert secret not in result.output
        assert "AKIAIOSFODNN7EXAMPLE" not in result.output


def test_query_by_name_and_update_time_count_and_get_many(url: str) -> None:
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    with StateStore(SQLiteBackend.from_url(url), clock=clock) as store:
        store.create_instance("a", name="resize")
        store.create_instance("b", name="encode")
        store.create_instance("c", name="resize")
        clock.advance(minutes=1)
        store.set_runtime_status("c", "completed")

    result = runner.invoke(app, ["query", "--name", "resize", "--json", "--url", url])
    assert result.exit_code == 0, result.output
    assert [orjson.loads(line)["instance_id"] for line in result.output.splitlines()] == ["a", "c"]

    moment = "2030-01-01T00:01:00"  # naive on the command line: UTC
    result = runner.invoke(app, ["query", "--updated-from", moment, "--json", "--url", url])
    assert result.exit_code == 0, result.output
    assert [orjson.loads(line)["instance_id"] for line in result.output.splitlines()] == ["c"]
    result = runner.invoke(app, ["query", "--updated-to", moment, "--json", "--url", url])
    assert [orjson.loads(line)["instance_id"] for line in result.output.splitlines()] == ["a", "b"]

    result = runner.invoke(app, ["count", "--name", "resize", "--json", "--url", url])
    assert result.exit_code == 0, result.output
    counts = orjson.loads(result.output)
    assert counts["pending"] == 1
    assert counts["completed"] == 1
    assert sum(counts.values()) == 2
    result = runner.invoke(app, ["count", "--url", url])
    assert result.exit_code == 0, result.output
    assert "total" in result.output

    result = runner.invoke(app, ["get", "a", "zz", "c", "--url", url])
    assert result.exit_code == 0, result.output
    shown = orjson.loads(result.output)
    assert list(shown) == ["a", "zz", "c"]
    assert shown["zz"] is None
    assert shown["c"]["runtime_status"] == "completed"


def test_create_with_its_own_ttl_and_purge_it_when_expired(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = runner.invoke(app, ["create", "short", "--name", "wf", "--ttl", "PT90M", "--url", url])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["create", "plain", "--name", "wf", "--url", url])
    assert result.exit_code == 0, result.output
    backend = SQLiteBackend.from_url(url)
    stored = backend.read("short")
    assert stored is not None
    assert stored.ttl == timedelta(minutes=90)
    long_ago = FakeClock(datetime(2020, 1, 1, tzinfo=UTC))
    with StateStore(backend, clock=long_ago, expiring=True) as store:
        store.set_runtime_status("short", "completed")  # completed in 2020: expired by now
        store.set_runtime_status("plain", "completed")
    monkeypatch.setenv("DURASTATE_EXPIRING", "1")
    _purge_expired_deletes(url, gone="short", kept="plain")  # plain: no ttl, no retention
    for bad in ("soon", "-5", "0"):
        result = runner.invoke(app, ["create", "x", "--name", "wf", "--ttl", bad, "--url", url])
        assert result.exit_code == 1
        assert "ttl" in result.output
        assert "Traceback" not in result.output
    with open_store(url) as store:
        assert store.get_instance("x") is None


def test_purge_expired_uses_the_configured_retention(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(datetime(2020, 1, 1, tzinfo=UTC))  # long ago: expired by now
    with StateStore(SQLiteBackend.from_url(url), clock=clock) as store:
        store.create_instance("old", name="wf")
        store.set_runtime_status("old", "completed")
        store.create_instance("live", name="wf")
    result = runner.invoke(app, ["purge", "--expired", "--url", url])
    assert result.exit_code == 1
    assert "retention" in result.output
    monkeypatch.setenv("DURASTATE_RETENTION", "P1D")
    _purge_expired_deletes(url, gone="old", kept="live")


def _purge_expired_deletes(url: str, *, gone: str, kept: str) -> None:
    """``durastate purge --expired`` deletes exactly ``gone`` of the two instances."""
    result = runner.invoke(app, ["purge", "--expired", "--url", url])
    assert result.exit_code == 0, result.output
    assert "purged 1" in result.output
    with open_store(url) as store:
        assert store.get_instance(gone) is None
        assert store.get_instance(kept) is not None
