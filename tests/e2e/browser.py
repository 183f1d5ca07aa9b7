"""Helpers for browser tests: wait for a Streamlit run to finish, check for errors, save screenshots."""

from pathlib import Path

SCREENSHOT_DIR = Path(__file__).resolve().parent / "screenshots"


def wait_for_app(page):
    """Wait until the app is connected and its script has finished its current run."""
    page.wait_for_selector("[data-testid='stApp']", state="attached")
    # A run may not have started yet when the page has just loaded: give it a moment to begin.
    page.wait_for_timeout(300)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", state="attached")
    page.wait_for_selector("[data-testid='stStatusWidget']", state="detached")


def assert_no_exception(page):
    exceptions = page.locator("[data-testid='stException']")
    assert exceptions.count() == 0, exceptions.first.inner_text()


def save_screenshot(page, name, *, full_page=True):
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
