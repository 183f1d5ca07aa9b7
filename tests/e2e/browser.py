"""Helpers for browser tests: wait for a Streamlit run to finish, check for errors, save screenshots."""

from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

RERUN_START_MS = 1000
SCREENSHOT_DIR = Path(__file__).resolve().parent / "screenshots"


def wait_for_app(page):
    """Wait until the app is connected and its script has finished its current run.

    After a click the rerun may not have started yet (a busy server takes a moment): first give it up
    to RERUN_START_MS to start, then wait for it to finish.
    """
    page.wait_for_selector("[data-testid='stApp']", state="attached")
    try:
        page.wait_for_selector("[data-testid='stApp'][data-test-script-state='running']", state="attached",
                               timeout=RERUN_START_MS)
    except PlaywrightTimeoutError:
        pass  # the run was quicker than the poll, or nothing reran
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", state="attached")
    page.wait_for_selector("[data-testid='stStatusWidget']", state="detached")


def assert_no_exception(page):
    exceptions = page.locator("[data-testid='stException']")
    assert exceptions.count() == 0, exceptions.first.inner_text()


def save_screenshot(page, name, *, full_page=True):
    """Save tests/e2e/screenshots/<name>.png; ``full_page`` captures the whole page, not just the window.

    Streamlit scrolls inside its own container, so Playwright's full_page option alone sees only the
    window: the viewport is stretched to the content's height for the shot, then restored.
    """
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    viewport = page.viewport_size
    if full_page and viewport is not None:
        content_height = page.evaluate(
            """() => Math.max(...['[data-testid="stMain"]', '[data-testid="stAppViewContainer"]',
                                  '[data-testid="stSidebarContent"]']
                .map((selector) => document.querySelector(selector))
                .filter((element) => element !== null)
                .map((element) => element.scrollHeight), 0)"""
        )
        page.set_viewport_size({"width": viewport["width"], "height": max(viewport["height"], content_height)})
        page.wait_for_timeout(300)
        page.screenshot(path=str(path))
        page.set_viewport_size(viewport)
    else:
        page.screenshot(path=str(path))
    return path
