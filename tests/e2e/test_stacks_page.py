"""The stacks lesson in a real browser: build a 3-stage stack, click a cell of stage 3, see its receptive field."""

import re

import numpy as np
from playwright.sync_api import expect

from tests.e2e.browser import assert_no_exception, save_screenshot, wait_for_app
from viz.stacks import maps_strip

PICTURE = ".picture img"  # a picture of views/components/picture


def test_three_stage_stack_and_a_clicked_receptive_field(page):
    page.goto("/stacks")
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Deeper layers see larger things")).to_be_visible()
    assert_no_exception(page)

    # Two stages by default: one step right on the slider makes three.
    stage_slider = page.locator("[data-testid='stSlider']").filter(has_text="Number of stages").get_by_role("slider")
    stage_slider.focus()
    stage_slider.press("ArrowRight")
    wait_for_app(page)
    stage_three = page.locator("[data-testid='stRadio']").filter(has_text="Stage").get_by_text("stage 3", exact=True)
    expect(stage_three).to_be_visible()  # the receptive-field picker now offers the third stage
    stage_three.click()
    wait_for_app(page)
    caption = page.get_by_text(re.compile(r"^Stage 3: \d+ maps of \d+ x \d+ cells")).inner_text()
    maps, rows, cols = (int(n) for n in re.match(r"Stage 3: (\d+) maps of (\d+) x (\d+)", caption).groups())
    assert maps >= 2  # the default stage 3 has two kernels

    # Click the centre of cell (row 3, column 5) of map 2, wherever the browser drew the strip.
    image = page.locator(PICTURE).first
    expect(image).to_be_visible()
    natural_width, natural_height, shown_width, shown_height = image.evaluate(
        "img => [img.naturalWidth, img.naturalHeight, img.width, img.height]")
    # The strip is maps x cols cells of strip_scale pixels plus a fixed gap between maps.
    gaps = (maps - 1) * (maps_strip(np.zeros((2, 1, 1)), scale=1)[1].size[1] - 2)
    strip_scale = (natural_width - gaps) // (maps * cols)
    _, strip_layout = maps_strip(np.zeros((maps, rows, cols)), scale=strip_scale, titles=["t"] * maps)
    assert strip_layout.size == (natural_height, natural_width)
    top, left, bottom, right = strip_layout.cell_box(1, 3, 5)
    image.click(position={"x": (left + right) / 2 * shown_width / natural_width,
                          "y": (top + bottom) / 2 * shown_height / natural_height})
    wait_for_app(page)
    expect(page.get_by_text(re.compile(r"^Cell \(3, 5\) of stage 3 depends on the \d+ x \d+ pixels"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Map 2 of stage 3 at \(3, 5\)"))).to_be_visible()
    assert_no_exception(page)
    page.get_by_role("heading", name="What does one cell see?").scroll_into_view_if_needed()
    save_screenshot(page, "stacks_receptive_field", full_page=False)

    # Each input map's multiply step is text (patch x kernel = products), readable on a projector.
    arithmetic = page.locator(".arithmetic").first
    arithmetic.scroll_into_view_if_needed()
    expect(arithmetic).to_be_visible()
    cells = arithmetic.locator(".value-grid > div")
    assert cells.count() == 27  # three 3 x 3 grids
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", text) for text in cells.all_inner_texts())
    font_size = float(cells.first.evaluate("cell => getComputedStyle(cell).fontSize").removesuffix("px"))
    assert font_size >= 14, font_size
    page.get_by_role("heading", name="How one value adds up over the maps below").scroll_into_view_if_needed()
    save_screenshot(page, "stacks_channel_sums", full_page=False)


def _choose_option(page, label, option):
    box = page.get_by_role("combobox", name=label, exact=True).first
    box.click()
    box.press("ArrowDown")  # opens the list (a click only focuses the box)
    page.get_by_role("option", name=option, exact=True).click()
    wait_for_app(page)


def test_choosing_stage_one_then_changing_the_stack_keeps_the_map_box_on_stage_one(page):
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto("/stacks")
    wait_for_app(page)
    map_box = page.get_by_role("combobox", name="Map", exact=True)
    expect(map_box).to_have_value("1: gaussian blur")  # stage 2, the deepest, is chosen first
    page.locator("[data-testid='stRadio']").filter(has_text="Stage").get_by_text("stage 1", exact=True).click()
    wait_for_app(page)
    expect(map_box).to_have_value("1: sobel x")
    _choose_option(page, "Pooling", "average pooling")  # stage 1's pooling, the first on the page
    assert_no_exception(page)
    expect(map_box).to_have_value("1: sobel x")
    expect(page.get_by_text(re.compile(r"^Map 1 of stage 1 at \(\d+, \d+\): average pooling"))).to_be_visible()
    # The whole label is shown, not cut by the box's edge.
    assert map_box.evaluate("box => box.scrollWidth <= box.clientWidth"), map_box.evaluate("box => [box.scrollWidth, box.clientWidth]")
    page.get_by_role("heading", name="What does one cell see?").scroll_into_view_if_needed()
    save_screenshot(page, "stacks_stage_one_after_a_change", full_page=False)
