"""Every table on every page, in a browser at 1280 x 720: each number is shown whole, as the browser draws it.

The tables are checked with their defaults and after a change that makes their numbers longer or their
columns more numerous: plain sums on the detection page, z-scores on the input page, four stages (the
kernel's weights are number fields of our own: tests/e2e/test_convolution_page.py checks them). tests/e2e/browser.py (table_cells) says how the canvas grids are read.
"""

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import TABLE_SELECTOR, assert_no_exception, cut_cells, save_screenshot, wait_for_app
from views.pages import PAGE_TABLE


def _click_text(text):
    def click(page):
        page.get_by_text(text, exact=True).click()
    return click


def _slider_to_end(label):
    def slide(page):
        slider = page.locator("[data-testid='stSlider']").filter(has_text=label).get_by_role("slider")
        slider.focus()
        slider.press("End")
    return slide


# Page path -> the changes made one after the other, each followed by a check of every table.
LONGER_NUMBERS = {
    "input": [_click_text("z-score")],
    "stacks": [_slider_to_end("Number of stages")],
    "detection": [_click_text("0/1 from a threshold (the article's figure)"),
                  _click_text("Plain sum of products (what a convolution layer computes)")],
}


def _assert_every_table_whole(page, where):
    cut = cut_cells(page)
    assert not cut, f"{where}: " + "; ".join(
        f"table {index + 1}, {cell['column']!r} row {cell['row']}: {cell['text']!r} needs {cell['need']:.0f} px, "
        f"has {cell['room']:.0f}" for index, cell in cut[:8])


@pytest.mark.parametrize("entry", PAGE_TABLE, ids=[entry.path for entry in PAGE_TABLE])
def test_every_number_in_every_table_is_shown_whole(page, entry):
    page.set_viewport_size({"width": 1280, "height": 720})
    name = entry.path.removeprefix("views/").removesuffix(".py")
    page.goto("/" if entry is PAGE_TABLE[0] else f"/{name}")
    wait_for_app(page)
    assert_no_exception(page)
    if name in LONGER_NUMBERS:
        expect(page.locator(TABLE_SELECTOR).first).to_be_visible(timeout=60_000)  # after the first run
    _assert_every_table_whole(page, name)
    for change in LONGER_NUMBERS.get(name, []):
        change(page)
        wait_for_app(page)
        assert_no_exception(page)
        _assert_every_table_whole(page, f"{name} after {change.__qualname__}")
    save_screenshot(page, f"tables_{name}")
