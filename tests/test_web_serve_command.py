"""``durastate serve``: refusals before anything starts, the install hint, and ``--demo``
showing live progress over a real server subprocess."""

from __future__ import annotations

import json
import sys

import httpx
import pytest
from typer.testing import CliRunner

from durastate.backends.azure_tables import ENV_CONNECTION_STRING
from durastate.cli import app
from durastate.errors import MissingDependency
from durastate.testing.emulators import AzuriteEmulator
from tests.test_web_page import Serve
from tests.web_server import account_key

runner = CliRunner()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_a_public_bind_without_a_token_is_refused(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DURASTATE_SERVE_TOKEN", raising=False)
    result = runner.invoke(app, ["serve", "--url", "memory://", "--host", host])
    assert result.exit_code == 2
    assert "--token" in result.output
    assert "--no-auth" in result.output


def test_demo_makes_its_own_store() -> None:
    result = runner.invoke(app, ["serve", "--demo", "--url", "memory://"])
    assert result.exit_code == 2
    assert "--demo" in result.output


def test_without_the_web_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from durastate.opening import open_async_store
    from durastate.web import create_app

    monkeypatch.setitem(sys.modules, "starlette", None)
    monkeypatch.setitem(sys.modules, "starlette.applications", None)
    monkeypatch.delitem(sys.modules, "durastate.web.app", raising=False)
    with pytest.raises(MissingDependency, match=r"durastate\[web\]"):
        create_app(open_async_store("memory://"))


def test_demo_shows_workflows_making_progress() -> None:
    server = Serve.demo()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            listed = client.get("/instances").json()
            assert len(listed) >= 4
            running = next(item for item in listed if item["runtimeStatus"] == "Running")
            path = f"/instances/{running['instanceId']}/events"
            with client.stream("GET", path) as response:
                percents = []
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        status = json.loads(line[5:])["customStatus"] or {}
                        if "percent" in status:
                            percents.append(status["percent"])
                    if len(percents) >= 3:
                        break
            assert percents == sorted(percents)
            assert percents[0] < percents[-1]
    finally:
        server.stop()


def test_the_cli_works_without_the_web_extra() -> None:
    """Without starlette/uvicorn every other command works, and serve names the extra."""
    import subprocess

    blocked = "import sys; sys.modules['starlette'] = sys.modules['uvicorn'] = None; "
    run = [sys.executable, "-c", blocked + "from durastate.cli import app; app()"]
    listed = subprocess.run([*run, "backends"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    served = subprocess.run(
        [*run, "serve", "--url", "memory://"], capture_output=True, text=True, timeout=60
    )
    assert served.returncode != 0
    assert "durastate[web]" in served.stdout + served.stderr


def test_no_secret_of_the_store_in_answers_pages_or_the_log(azurite: AzuriteEmulator) -> None:
    """An Azure store whose key comes from the environment: the key is in no answer, page
    or line the server prints (its URL shows redacted)."""
    connection_string = azurite.connection_string
    secret = account_key(connection_string)
    target = azurite.target()
    server = Serve(target.url, "--allow-purge", env={ENV_CONNECTION_STRING: connection_string})
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            answers = [
                client.get(path)
                for path in ("/", "/ui/instances/x", "/static/app.js", "/instances",
                             "/instances/x", "/instances?top=0", "/instances/x/events",
                             "/healthz")
            ]  # fmt: skip
            answers.append(client.delete("/instances/x"))
        assert [answer.status_code for answer in answers[4:]] == [404, 400, 404, 200, 404]
        for answer in answers:
            assert secret not in answer.text + str(answer.headers)
    finally:
        log = server.stop()
    assert "durastate serve:" in log
    assert secret not in log
