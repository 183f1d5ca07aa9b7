"""The home page in a real browser: it loads, shows the notice and a sample scan, and has no error."""

from playwright.sync_api import expect

from tests.e2e.browser import assert_no_exception, save_screenshot, wait_for_app


def test_home_page_in_browser(page):
    page.goto("/")
    wait_for_app(page)
    expect(page.get_by_role("heading", name="ConvScope")).to_be_visible()
    expect(page.get_by_text("For teaching only, not for diagnosis.")).to_be_visible()
    expect(page.locator("[data-testid='stImage'] img").first).to_be_visible()
    assert_no_exception(page)
    save_screenshot(page, "home")
