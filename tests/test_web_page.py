"""The progress page in a real browser: Debian's Chromium driven by Playwright, against
``durastate serve`` started as a subprocess over a SQLite file this test writes to."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from durastate.core.store import StateStore
from durastate.opening import open_store
from durastate.testing.emulators import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS = '<img src=x onerror="window.__xss = 1; alert(1)">'
pytestmark = pytest.mark.timeout(120)


class Serve:
    """``durastate serve`` as a subprocess; stopped by its PID."""

    def __init__(
        self, store_url: Path | str | None, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if isinstance(store_url, Path):
            store_url = f"sqlite:///{store_url}"
        store = ["--url", store_url] if store_url else []
        command = [
            sys.executable, "-m", "durastate.cli", "serve", *store, "--port", str(self.port),
            *extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, env={**os.environ, **(env or {})}, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("durastate serve did not start") from None
                time.sleep(0.1)

    @classmethod
    def demo(cls) -> Serve:
        """``durastate serve --demo`` (its own temporary SQLite store)."""
        return cls(None, "--demo")

    def stop(self) -> str:
        self.process.terminate()
        try:
            _, errors = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, errors = self.process.communicate()
        return errors.decode(errors="replace")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def dialogs(page: Page) -> list[str]:
    """The messages of alert/confirm dialogs the page opened (each dismissed)."""
    seen: list[str] = []

    def record(dialog: Dialog) -> None:
        seen.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    return seen


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    store = open_store(f"sqlite:///{tmp_path / 'page.db'}")
    yield store
    store.close()


@pytest.fixture
def served(tmp_path: Path, store: StateStore) -> Iterator[Serve]:
    server = Serve(tmp_path / "page.db")
    yield server
    server.stop()


def start(store: StateStore, instance_id: str, status: object) -> None:
    store.create_instance(instance_id, name="resize", input={"file": "a.png"})
    store.set_runtime_status(instance_id, "running")
    store.set_custom_status(instance_id, status)


def test_the_page_shows_new_progress_without_a_reload(
    store: StateStore, served: Serve, page: Page
) -> None:
    start(store, "job-42", {"percent": 10, "stage": "decode"})
    page.goto(f"{served.url}/ui/instances/job-42")
    percent = page.locator("#instance-progress .percent")
    expect(percent).to_have_text("10 %")
    expect(page.locator("#instance-status")).to_have_text("Running")
    page.evaluate("window.__sameDocument = true")
    store.set_custom_status("job-42", {"percent": 55, "stage": "resize"})
    expect(percent).to_have_text("55 %", timeout=10_000)
    expect(page.locator("#instance-progress .detail")).to_have_text("stage: resize")
    width = page.locator("#instance-progress .bar > span").evaluate("node => node.style.width")
    assert width == "55%"
    store.set_runtime_status("job-42", "completed", output={"file": "b.png"})
    expect(page.locator("#instance-status")).to_have_text("Completed", timeout=10_000)
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    # the list shows it too
    page.goto(served.url)
    row = page.locator("tr[data-instance-id='job-42']")
    expect(row.locator(".percent")).to_have_text("55 %")


def test_a_script_in_a_value_renders_as_text_and_runs_nothing(
    store: StateStore, served: Serve, page: Page, dialogs: list[str]
) -> None:
    start(store, "evil", {"note": XSS})
    store.create_instance(XSS, name=XSS)
    page.goto(f"{served.url}/ui/instances/evil")
    expect(page.locator("#instance-progress pre")).to_contain_text(XSS.replace('"', '\\"'))
    page.goto(served.url)
    expect(page.locator("#instance-rows a", has_text=XSS)).to_have_count(1)
    expect(page.locator("#instance-rows td", has_text=XSS)).to_have_count(2)  # id and name
    page.goto(f"{served.url}/ui/instances/{urllib.parse.quote(XSS, safe='')}")
    expect(page.locator("#instance-id")).to_have_text(XSS)
    page.wait_for_timeout(300)
    assert page.locator("img").count() == 0
    assert page.evaluate("window.__xss") is None
    assert dialogs == []


def test_the_token_prompt(tmp_path: Path, store: StateStore, page: Page) -> None:
    start(store, "secret-job", {"percent": 70})
    server = Serve(tmp_path / "page.db", "--token", "tok-7f2c")
    try:
        page.goto(server.url)
        expect(page.locator("#token-box")).to_be_visible()
        expect(page.locator("#list-view")).to_be_hidden()
        page.fill("#token", "wrong")
        page.click("#token-form button")
        expect(page.locator("#token-error")).to_be_visible()
        page.fill("#token", "tok-7f2c")
        page.click("#token-form button")
        expect(page.locator("tr[data-instance-id='secret-job'] .percent")).to_have_text("70 %")
        assert page.evaluate("sessionStorage.getItem('durastate.token')") == "tok-7f2c"
        page.goto(f"{server.url}/ui/instances/secret-job")  # asked once per session
        expect(page.locator("#instance-progress .percent")).to_have_text("70 %")
        expect(page.locator("#token-box")).to_be_hidden()
    finally:
        log = server.stop()
    assert "tok-7f2c" not in log
