"""Uploading scans in a real browser at 1280 x 720, a laptop's window: what a new user meets in the sidebar."""

import io
import re

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.browser import assert_no_exception, save_screenshot, wait_for_app

LAPTOP_VIEWPORT = {"width": 1280, "height": 720}


@pytest.fixture
def laptop_page(browser, app_server):
    context = browser.new_context(viewport=LAPTOP_VIEWPORT, base_url=app_server)
    new_page = context.new_page()
    new_page.set_default_timeout(120_000)
    yield new_page
    context.close()


def shipped_file(name):
    path = pydicom.data.get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install pydicom-data)")
    return path


def upload(page, *paths):
    page.locator("[data-testid='stSidebar'] [data-testid='stFileUploaderDropzoneInput']").set_input_files(list(paths))
    wait_for_app(page)


def open_input_page(page):
    page.goto("/input")
    wait_for_app(page)
    expect(page.get_by_role("heading", name="The input: from scan to network input")).to_be_visible()


def main_text(page, start):
    """The main area's text that starts with ``start``."""
    return page.locator("[data-testid='stMain']").get_by_text(re.compile("^" + re.escape(start))).first


def shown_image(page, caption_start):
    """The pixels (H, W, 3) of the main area's image whose caption starts with ``caption_start``, as served."""
    figure = page.locator("[data-testid='stMain'] [data-testid='stImage']").filter(has_text=caption_start)
    source = figure.locator("img").first.get_attribute("src")
    response = page.request.get(source)
    assert response.ok, source
    return np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))


def test_sixteen_bit_palette_ultrasound_shows_its_colours(laptop_page):
    page = laptop_page
    open_input_page(page)
    path = shipped_file("gdcm-US-ALOKA-16.dcm")
    upload(page, path)
    assert_no_exception(page)
    expect(main_text(page, "gdcm-US-ALOKA-16.dcm: window")).to_be_visible()
    dataset = pydicom.dcmread(path)
    expected = np.round(pydicom.pixels.apply_color_lut(dataset.pixel_array, dataset).astype(np.float64) * 255 / 65535)
    shown = shown_image(page, "The original colours").astype(np.float64)
    assert shown.shape == expected.shape
    # Served as JPEG: the colours agree to within a few levels on average, not exactly.
    assert np.mean(np.abs(shown - expected)) < 3, np.mean(np.abs(shown - expected))
    page.locator("[data-testid='stMain'] [data-testid='stImage']").nth(1).scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    save_screenshot(page, "upload_palette_ultrasound", full_page=False)
