"""Browser test of the input page: open it, upload a real DICOM through the sidebar, see the safe fields."""

import pydicom.data
import pytest
from playwright.sync_api import expect

from tests.e2e.browser import assert_no_exception, save_screenshot, wait_for_app
from views.pages import PAGE_TABLE

INPUT_PAGE = "views/input.py"
pytestmark = pytest.mark.skipif(all(entry.path != INPUT_PAGE for entry in PAGE_TABLE),
                                reason=f"{INPUT_PAGE} is not registered in views/pages.py yet")


def test_upload_a_dicom_on_the_input_page(page):
    page.goto("/input")
    wait_for_app(page)
    assert_no_exception(page)
    expect(page.get_by_role("heading", name="The input: from scan to network input")).to_be_visible()

    dicom_path = pydicom.data.get_testdata_file("CT_small.dcm")
    page.locator("[data-testid='stSidebar'] [data-testid='stFileUploaderDropzoneInput']").set_input_files(dicom_path)
    wait_for_app(page)
    sidebar = page.locator("[data-testid='stSidebar']")
    expect(sidebar.get_by_text("CT_small.dcm").first).to_be_visible()
    main = page.locator("[data-testid='stMain']")
    expect(main.get_by_text("CT Image Storage")).to_be_visible()
    expect(main.get_by_text("Hounsfield units (HU)")).to_be_visible()
    expect(main.locator("[data-testid='stImage'] img").first).to_be_visible()
    assert_no_exception(page)
    page.wait_for_timeout(500)  # let the images finish painting before the screenshot
    save_screenshot(page, "input_page_dicom_upload")
