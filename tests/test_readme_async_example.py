"""The README's async example runs: the watch loop prints progress to the terminal status,
and the Starlette handler answers 202, 200 and 404 from `await store.get_instance`."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> dict[str, Any]:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- async-example:.*?-->\n```python\n(.*?)```", text, re.DOTALL)
    assert block is not None, "the README lost its async example"
    namespace: dict[str, Any] = {"__name__": "readme_async_example"}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    return namespace


async def _get(app: Any, path: str) -> tuple[int, Any]:
    """One GET through the ASGI interface (no HTTP client needed)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(message.get("body", b"") for message in sent)
    return sent[0]["status"], orjson.loads(body)


def test_readme_watch_loop_and_handler(capsys: pytest.CaptureFixture[str]) -> None:
    example = _example()
    store, app = example["store"], example["app"]

    async def run() -> list[tuple[int, Any]]:
        await asyncio.wait_for(example["main"](), 30)
        answers = [await _get(app, "/status/job-1"), await _get(app, "/status/nope")]
        await store.create_instance("job-2", name="resize", custom_status={"percent": 5})
        answers.append(await _get(app, "/status/job-2"))
        return answers

    done, missing, running = asyncio.run(run())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "pending None"  # the current state first
    assert lines[-1] == "completed {'percent': 100}"  # ended after the terminal status
    percents = [int(p) for p in re.findall(r"'percent': (\d+)", "\n".join(lines))]
    assert percents == sorted(percents)  # progress in order
    assert len(lines) >= 3  # progress was seen on the way, not only the end
    assert done == (200, {"runtimeStatus": "completed", "customStatus": {"percent": 100}})
    assert missing[0] == 404
    assert running == (202, {"runtimeStatus": "pending", "customStatus": {"percent": 5}})
