"""Every page at a laptop's 1280 x 720 and a projector's 1920 x 1080: no text a person needs is cut off.

A new user at 1280 x 720 met lesson summaries cut mid-word, a toggle label and a metric cut with "...",
and a 9 x 9 kernel editor that scrolled sideways. Each page is opened at each size, saved as a full-page
screenshot (tests/e2e/screenshots/layout_<size>_<page>.png) and searched for text reaching past the box
that holds it; tables must show all their columns without a horizontal scroll.
"""

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import (assert_no_exception, cut_texts, render_tables, save_screenshot, scrolling_tables,
                               wait_for_app)
from views.pages import PAGE_TABLE

VIEWPORTS = {"1280x720": {"width": 1280, "height": 720}, "1920x1080": {"width": 1920, "height": 1080}}


def _url(entry):
    return "/" if entry is PAGE_TABLE[0] else f"/{Path(entry.path).stem}"


def _assert_nothing_cut(page):
    problems = [f"text cut off: {item}" for item in cut_texts(page)]
    problems += [f"table needs a horizontal scroll: {item}" for item in scrolling_tables(page)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("size", VIEWPORTS)
@pytest.mark.parametrize("entry", PAGE_TABLE, ids=lambda entry: Path(entry.path).stem)
def test_no_text_is_cut_on_any_page(page, entry, size):
    page.set_viewport_size(VIEWPORTS[size])
    page.goto(_url(entry))
    wait_for_app(page)
    expect(page.get_by_role("heading", level=1).first).to_be_visible()
    assert_no_exception(page)
    render_tables(page)
    page.wait_for_timeout(500)  # images finish their layout after the run
    save_screenshot(page, f"layout_{size}_{Path(entry.path).stem}")
    _assert_nothing_cut(page)


@pytest.mark.parametrize("size", VIEWPORTS)
def test_a_9_by_9_kernel_editor_shows_all_its_columns(page, size):
    page.set_viewport_size(VIEWPORTS[size])
    page.goto("/convolution")
    wait_for_app(page)
    page.get_by_text("Random", exact=True).click()
    wait_for_app(page)
    kernel_size = page.get_by_role("slider", name="Kernel size")
    kernel_size.focus()
    kernel_size.press("End")
    wait_for_app(page)
    expect(page.get_by_text("The 9 x 9 kernel")).to_be_visible()
    assert_no_exception(page)
    render_tables(page)
    save_screenshot(page, f"layout_{size}_convolution_9x9")
    last = page.get_by_role("textbox", name="Weight at row 9, column 9")
    last.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    save_screenshot(page, f"layout_{size}_convolution_9x9_editor", full_page=False)
    fields = page.get_by_role("textbox", name=re.compile(r"^Weight at row"))
    expect(fields).to_have_count(81)
    box = last.bounding_box()
    assert box["x"] + box["width"] <= VIEWPORTS[size]["width"], "the 9 x 9 grid's last column is off the page"
    _assert_nothing_cut(page)
