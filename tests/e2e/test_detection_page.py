"""The detection lesson in a real browser: drag a box on the image, and the kernel cut from it finds its place."""

import re

import pytest
from playwright.sync_api import expect

from tests.apptest import run_page_file
from tests.e2e.browser import TABLE_SELECTOR, assert_no_exception, is_cut, save_screenshot, table_cells, wait_for_app

PICTURE = ".picture img"  # a picture of views/components/picture


def _number(page, label):
    return int(page.get_by_label(label, exact=True).input_value())


def test_drag_a_box_and_find_it(page):
    page.goto("/detection")
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Where is it?")).to_be_visible()
    assert_no_exception(page)

    image = page.locator(PICTURE).first
    expect(image).to_be_visible()
    image.scroll_into_view_if_needed()
    natural_width, natural_height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    frame_box = image.bounding_box()
    # Drag from (30 %, 50 %) to (37 %, 57 %) of the image's height and width: a box over the left hilum.
    start = (frame_box["x"] + 0.50 * frame_box["width"], frame_box["y"] + 0.30 * frame_box["height"])
    end = (frame_box["x"] + 0.57 * frame_box["width"], frame_box["y"] + 0.37 * frame_box["height"])
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    page.mouse.move(*end)
    page.mouse.up()
    wait_for_app(page)

    # The box now starts where the drag began (in image pixels: the picture may be shown enlarged).
    image_rows, image_cols = 640, 603  # the default sample, the chest radiograph
    expect(page.get_by_label("Box height", exact=True)).not_to_have_value("48")  # the default box's size
    top, left = _number(page, "Box top row"), _number(page, "Box left column")
    height, width = _number(page, "Box height"), _number(page, "Box width")
    assert abs(top - 0.30 * image_rows) <= 3 and abs(left - 0.50 * image_cols) <= 3, (top, left)
    assert abs(height - 0.07 * image_rows) <= 4 and abs(width - 0.07 * image_cols) <= 4, (height, width)
    expect(page.get_by_text(f"Highest response at row {top}, column {left} (score 1.000)")).to_be_visible()
    expect(page.get_by_text(re.compile("found exactly"))).to_be_visible()
    assert natural_width >= image_cols and natural_height >= image_rows
    assert_no_exception(page)
    page.get_by_role("heading", name="2. Slide it over an image and look for the highest response").scroll_into_view_if_needed()
    save_screenshot(page, "detection_found", full_page=False)

    page.get_by_text("a shifted copy", exact=True).click()
    wait_for_app(page)
    expect(page.get_by_text(re.compile(r"The structure is at row \d+, column \d+: found"))).to_be_visible()
    assert_no_exception(page)
    save_screenshot(page, "detection_shifted", full_page=False)


def test_plain_sums_are_shown_whole_in_the_matches_table(page):
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto("/detection")
    wait_for_app(page)
    page.get_by_text("0/1 from a threshold").click()
    wait_for_app(page)
    page.get_by_text("Plain sum of products").click()
    wait_for_app(page)
    assert_no_exception(page)
    expect(page.get_by_text(re.compile(r"Highest response at row \d+, column \d+ \(score \d{4}\.\d+\)"))).to_be_visible()
    table = page.locator(TABLE_SELECTOR).first  # the matches come before the tiles of section 3
    shown = [cell for cell in table_cells(table) if cell["row"] >= 0]

    # The same choices under AppTest give the numbers the table was made from.
    app = run_page_file("views/detection.py")
    app.radio(key="det_kind").set_value("binary").run()
    app.radio(key="det_score").set_value("plain").run()
    data = [*app.table, *app.dataframe][0].value
    assert data["score"].astype(float).max() >= 1000  # the case met: four digits before the decimal point
    assert len(shown) == data.size
    for cell in shown:
        assert not is_cut(cell), f"{cell['column']} {cell['text']!r} needs {cell['need']:.0f} px, has {cell['room']:.0f}"
        decimals = len(cell["text"].partition(".")[2])
        value = float(data[cell["column"]][cell["row"]])
        assert float(cell["text"]) == pytest.approx(value, abs=0.5 * 10 ** -decimals + 1e-9), (cell, value)
    table.scroll_into_view_if_needed()
    save_screenshot(page, "detection_plain_sums", full_page=False)
