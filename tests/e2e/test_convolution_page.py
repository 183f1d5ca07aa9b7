"""The convolution lesson in a real browser: step three times, play for a second, pause, upload a DICOM."""

import re
from pathlib import Path

from playwright.sync_api import expect

from tests.e2e.browser import assert_no_exception, save_screenshot, wait_for_app

DICOM = Path(__file__).resolve().parents[2] / "sample_images" / "ct_head.dcm"


def _shown_step(page):
    """The step number (from 1) the convolution stepper shows."""
    text = page.get_by_text(re.compile(r"^Step \d+ of \d+: the \d+ products")).first.inner_text()
    return int(re.match(r"Step (\d+)", text)[1])


def test_convolution_lesson_in_browser(page):
    page.goto("/convolution")
    wait_for_app(page)
    expect(page.get_by_role("heading", name="A kernel scans the image")).to_be_visible()
    assert_no_exception(page)
    assert _shown_step(page) == 1

    # Clicking the image moves the region there (the click arrives in displayed pixels).
    top_row = page.locator("[data-testid='stSlider']").filter(has_text="Top row")
    top_before = top_row.get_by_test_id("stSliderThumbValue").inner_text()
    picture = page.frame_locator("iframe[title*='streamlit_image_coordinates']").locator("img")
    size = picture.bounding_box()
    picture.click(position={"x": size["width"] * 0.3, "y": size["height"] * 0.7})
    expect(top_row.get_by_test_id("stSliderThumbValue")).not_to_have_text(top_before, timeout=30_000)
    wait_for_app(page)
    assert _shown_step(page) == 1

    next_button = page.get_by_role("button", name="Next").first
    for expected_step in (2, 3, 4):
        next_button.click()
        # The click reruns only the stepping fragment; wait for its new text rather than sleeping.
        expect(page.get_by_text(re.compile(rf"^Step {expected_step} of \d+: the"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"^output\[0, 3\] = "))).to_be_visible()
    assert_no_exception(page)
    page.get_by_role("heading", name="3. Step by step: multiply and add").scroll_into_view_if_needed()
    save_screenshot(page, "convolution_steps", full_page=False)

    page.get_by_role("button", name="Play").first.click()
    wait_for_app(page)
    page.wait_for_timeout(1500)  # 2 steps per second: about three automatic steps
    page.get_by_role("button", name="Pause").first.click()
    wait_for_app(page)
    after_play = _shown_step(page)
    assert after_play >= 5, f"playing for a second should have moved past step 4, shows step {after_play}"
    page.wait_for_timeout(1200)
    assert _shown_step(page) == after_play, "paused: the step stays put"
    assert_no_exception(page)
    save_screenshot(page, "convolution_paused", full_page=False)

    page.locator("[data-testid='stSidebar'] input[type='file']").set_input_files(str(DICOM))
    # The uploaded file becomes the lesson's image: the page names it with its size.
    expect(page.get_by_text(re.compile(r"^ct_head\.dcm, 512 x 512 pixels"))).to_be_visible(timeout=60_000)
    wait_for_app(page)
    assert_no_exception(page)
    page.get_by_role("heading", name="A kernel scans the image").scroll_into_view_if_needed()
    save_screenshot(page, "convolution_upload", full_page=False)
