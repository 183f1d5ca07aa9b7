"""Browser-test harness: a real `streamlit run app.py` server driven by Debian's Chromium via Playwright.

Fixtures: ``app_server`` (the base URL of a server started once per test session), ``page`` (a fresh
Playwright page per test, its base URL set to the server). Helpers for the tests are in tests/e2e/browser.py.
In CI (CI=true) a missing Chromium fails the run; elsewhere the browser tests are skipped with a note
on how to get one.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.browser import SCREENSHOT_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_S = 180  # a cold start compiles the Numba engine once
APP_RUN_TIMEOUT_MS = 120_000
CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # This machine has no internet: keep Chromium from trying to reach its services.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _chromium_path():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def pytest_collection_modifyitems(config, items):
    # Every test in this folder is a browser test.
    here = Path(__file__).resolve().parent
    for item in items:
        if Path(str(item.fspath)).resolve().parent == here:
            item.add_marker(pytest.mark.e2e)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_healthy(base_url, server):
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited early with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer {base_url}/_stcore/health in {SERVER_START_TIMEOUT_S} s")


@pytest.fixture(scope="session")
def chromium_executable():
    path = _chromium_path()
    if path is None:
        message = (
            "Chromium not found, so the browser tests cannot run. Install Debian's package with "
            "'apt-get update && apt-get install -y chromium' (Playwright's own browser download is not used)."
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def app_server(chromium_executable):
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = SCREENSHOT_DIR / "streamlit-server.log"
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py",
             "--server.headless", "true", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        _wait_until_healthy(base_url, server)
        yield base_url
    finally:
        # The server runs in its own process group: stop it and anything it started.
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=15)


@pytest.fixture(scope="session")
def browser(chromium_executable):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_executable, headless=True,
                                              args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, app_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=app_server)
    new_page = context.new_page()
    new_page.set_default_timeout(APP_RUN_TIMEOUT_MS)
    yield new_page
    context.close()
