"""A very small upload in a real browser: pydicom's rtdose.dcm (15 slices of 10 x 10) on the image lessons.

A new user met its pixels hidden under the region box and the peak ring; the pages must work on it and
show it large enough that the overlays stay thin lines.
"""

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import assert_no_exception, save_screenshot, wait_for_app

pydicom_data = pytest.importorskip("pydicom.data")
RTDOSE = Path(pydicom_data.get_testdata_file("rtdose.dcm"))
PICTURE = ".picture img"  # a picture of views/components/picture


def _upload(page, path):
    page.locator("[data-testid='stSidebar'] input[type='file']").set_input_files(str(path))


def _shown_pixels(picture):
    """The clickable picture's natural size in pixels (what was drawn, before the browser scales it)."""
    return picture.evaluate("img => [img.naturalWidth, img.naturalHeight]")


def test_convolution_lesson_on_a_10_by_10_dose_grid(page):
    page.goto("/convolution")
    wait_for_app(page)
    _upload(page, RTDOSE)
    expect(page.get_by_text(re.compile(r"^rtdose\.dcm, 10 x 10 pixels"))).to_be_visible(timeout=60_000)
    wait_for_app(page)
    assert_no_exception(page)
    picture = page.locator(PICTURE).first
    expect(picture).to_be_visible()
    width, height = _shown_pixels(picture)
    assert min(width, height) >= 200, f"a 10 x 10 image should be drawn enlarged, got {width} x {height}"

    # The largest region is the whole image: the position sliders have nowhere to go.
    size_slider = page.get_by_role("slider", name="Region size (pixels)")
    size_slider.focus()
    size_slider.press("End")
    wait_for_app(page)
    assert_no_exception(page)
    expect(page.get_by_text("Top row: 0, the region is as tall as the image.")).to_be_visible()
    page.get_by_role("heading", name="1. The image and the region").scroll_into_view_if_needed()
    save_screenshot(page, "small_image_convolution", full_page=False)


@pytest.mark.parametrize("path, heading", [("/detection", "Where is it?"),
                                           ("/classifier", "Does this patch contain a lesion?")])
def test_other_image_lessons_on_a_10_by_10_dose_grid(page, path, heading):
    page.goto(path)
    wait_for_app(page)
    expect(page.get_by_role("heading", name=heading)).to_be_visible()
    _upload(page, RTDOSE)
    wait_for_app(page)
    expect(page.locator("[data-testid='stSidebar']").get_by_text(re.compile(r"rtdose\.dcm")).first).to_be_visible()
    assert_no_exception(page)
    picture = page.locator(PICTURE).first
    expect(picture).to_be_visible()
    width, height = _shown_pixels(picture)
    assert min(width, height) >= 200, f"a 10 x 10 image should be drawn enlarged, got {width} x {height}"
    save_screenshot(page, f"small_image_{path.strip('/')}", full_page=False)
