"""Uploading scans in a real browser at 1280 x 720, a laptop's window: what a new user meets in the sidebar."""

import io
import re
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.browser import assert_no_exception, save_screenshot, wait_for_app

LAPTOP_VIEWPORT = {"width": 1280, "height": 720}
SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"


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


def upload(page, *files):
    """Choose ``files`` (paths, or Playwright payloads {name, mimeType, buffer}) together in the sidebar uploader."""
    page.locator("[data-testid='stSidebar'] [data-testid='stFileUploaderDropzoneInput']").set_input_files(list(files))
    wait_for_app(page)


def listed_uploads(page):
    """The file names the sidebar uploader lists."""
    return page.locator("[data-testid='stSidebar'] [data-testid='stFileUploaderFileName']").all_inner_texts()


def ct_slice(name, position):
    """pydicom's CT_small as one slice at ``position`` mm along the slice normal, as an in-memory file."""
    dataset = pydicom.dcmread(shipped_file("CT_small.dcm"))
    dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    dataset.ImagePositionPatient = [0, 0, position]
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return {"name": name, "mimeType": "application/dicom", "buffer": buffer.getvalue()}


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


def test_a_second_upload_replaces_the_first(laptop_page):
    page = laptop_page
    open_input_page(page)
    upload(page, str(SAMPLES / "fundus_retina.png"))
    expect(main_text(page, "fundus_retina.png: window")).to_be_visible()
    upload(page, shipped_file("CT_small.dcm"))
    assert_no_exception(page)
    expect(main_text(page, "CT_small.dcm: window")).to_be_visible()
    expect(page.get_by_text("Hounsfield units (HU)")).to_be_visible()
    assert page.locator("[data-testid='stAlertContentError']").count() == 0, \
        page.locator("[data-testid='stAlertContentError']").first.inner_text()
    assert "fundus_retina.png" not in listed_uploads(page)
    expect(page.locator("[data-testid='stSidebar']").get_by_text("Read and kept: CT_small.dcm")).to_be_visible()
    page.wait_for_timeout(500)
    save_screenshot(page, "upload_second_replaces_first", full_page=False)

    # Slices chosen together are one series; a file added later replaces the series.
    upload(page, ct_slice("slice_a.dcm", 0.0), ct_slice("slice_b.dcm", 2.5), ct_slice("slice_c.dcm", 5.0))
    expect(main_text(page, "slice_a.dcm (+2 files), slice 2 of 3")).to_be_visible()
    assert page.locator("[data-testid='stAlertContentError']").count() == 0
    save_screenshot(page, "upload_series_together", full_page=False)
    upload(page, str(SAMPLES / "fundus_retina.png"))
    expect(main_text(page, "fundus_retina.png: window")).to_be_visible()
    assert page.locator("[data-testid='stAlertContentError']").count() == 0
    assert not {"slice_a.dcm", "slice_b.dcm", "slice_c.dcm"} & set(listed_uploads(page))


@pytest.mark.parametrize("address", ["/input", "/classifier"])  # the classifier's top holds two notices
def test_a_refused_upload_is_reported_where_the_person_is_looking(laptop_page, address):
    page = laptop_page
    page.goto(address)
    wait_for_app(page)
    upload(page, {"name": "notes.dcm", "mimeType": "application/dicom", "buffer": b"not a scan, only text " * 40})
    # Seen without scrolling at 1280 x 720: a toast (shown for 10 s), the message at the page's top naming
    # the file, why, and which image is still shown; the refused file is not listed as if in use.
    expect(page.locator("[data-testid='stToast']").filter(has_text="notes.dcm")).to_be_visible()
    assert_no_exception(page)
    on_page = page.locator("[data-testid='stMain'] [data-testid='stAlertContentError']").filter(has_text="notes.dcm")
    expect(on_page).to_be_in_viewport()
    expect(on_page).to_contain_text("not a DICOM file")
    expect(on_page).to_contain_text("The page still shows the sample “Chest radiograph”")
    expect(page.locator("[data-testid='stSidebar'] [data-testid='stAlertContentError']")
           .filter(has_text="notes.dcm")).to_have_count(1)
    assert listed_uploads(page) == []
    save_screenshot(page, f"upload_refused_{address.strip('/')}", full_page=False)


def test_a_twelve_bit_jpeg_is_refused_in_one_sentence_and_why_is_one_click_away(laptop_page):
    page = laptop_page
    open_input_page(page)
    upload(page, shipped_file("JPEG-lossy.dcm"))  # JPEG Extended, 12 bits stored
    assert_no_exception(page)
    main = page.locator("[data-testid='stMain']")
    message = main.locator("[data-testid='stAlertContentError']").filter(has_text="JPEG-lossy.dcm")
    expect(message).to_be_in_viewport()
    expect(message).to_contain_text("12-bit JPEG Extended")
    expect(message).not_to_contain_text("pylibjpeg")
    why = main.locator("[data-testid='stExpander']").filter(has_text="Why?")
    expect(why).to_be_in_viewport()
    why.get_by_text("Why?").click()
    expect(why.get_by_text("GPL-3")).to_be_visible()
    page.wait_for_timeout(300)
    save_screenshot(page, "upload_twelve_bit_jpeg_why", full_page=False)
