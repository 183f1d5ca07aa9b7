"""Presenter view in a real browser: the convolution's player and its numbers fill one projector screen.

At 1280 x 720 and at 1920 x 1080, with ?present=1: the window on the image, the kernel, the products, the
sum, the output map and the step controls must all lie inside the window without scrolling, and the digits
be large enough: a font of at least 16 px at 1280 x 720 and 24 px at 1920 x 1080 in every grid and in the
equation. The digits' inked height (from the font's own glyph outlines, measured with a canvas) is printed
beside it (run with -s). Keys step the player as a presentation clicker does.
"""

import re

from playwright.sync_api import expect

from tests.e2e.browser import assert_no_exception, save_screenshot, wait_for_app
from tests.e2e.test_convolution_page import CONV, READ_STEP, _assert_shows_conv_step, _lesson_trace

PARTS = {"step controls": ".bar", "window on the image": ".input-grid .window", "image region": ".input-grid",
         "kernel": ".kernel-grid", "products": ".products-grid", "window's values": ".patch-grid",
         "sum": ".equation .sum", "value": ".equation .value", "output map": ".output-grid"}
NUMBERS = {"image region": ".input-grid .cell", "output map": ".output-grid .cell", "kernel": ".kernel-grid .cell",
           "products": ".products-grid .cell", "window's values": ".patch-grid .cell", "sum": ".equation .sum"}

MEASURE = """(root, [parts, numbers]) => {
  const boxes = {};
  for (const [name, selector] of Object.entries(parts)) {
    const box = root.querySelector(selector).getBoundingClientRect();
    boxes[name] = {left: box.left, top: box.top, right: box.right, bottom: box.bottom};
  }
  const canvas = document.createElement('canvas').getContext('2d');
  const digits = {};
  for (const [name, selector] of Object.entries(numbers)) {
    const style = getComputedStyle(root.querySelector(selector));
    canvas.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const ink = canvas.measureText('0123456789');
    digits[name] = {font: parseFloat(style.fontSize),
                    ink: ink.actualBoundingBoxAscent + ink.actualBoundingBoxDescent};
  }
  return {boxes, digits, width: innerWidth, height: innerHeight};
}"""


def _measure(player):
    return player.evaluate(MEASURE, [PARTS, NUMBERS])


def _assert_on_one_screen(measured, smallest_font):
    for name, box in measured["boxes"].items():
        assert box["left"] >= 0 and box["top"] >= 0, (name, box)
        assert box["right"] <= measured["width"] and box["bottom"] <= measured["height"], (name, box, measured)
    for name, size in measured["digits"].items():
        assert size["font"] >= smallest_font, (name, size)


def _open_presenting(page, width, height, query="present=1"):
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"/convolution?{query}")
    wait_for_app(page)
    player = page.locator(CONV)
    expect(player.locator(".status")).to_have_text(re.compile(r"^Step 1 of \d+$"), timeout=60_000)
    expect(player).to_have_class(re.compile(r"\bpresenting\b"))
    page.wait_for_timeout(300)  # the player measures the space below it after the page settles
    return player


def test_presenter_view_fits_the_player_on_one_screen(page):
    player = _open_presenting(page, 1280, 720)
    assert_no_exception(page)
    expect(page.get_by_test_id("stSidebar")).to_be_hidden()
    expect(page.get_by_text("A convolution layer slides a small grid of weights")).to_have_count(0)
    scrolled = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollTop")
    assert scrolled == 0

    small = _measure(player)
    save_screenshot(page, "presenter_convolution_1280x720", full_page=False)
    print(f"\n1280 x 720, digits (font px, inked px): "
          + ", ".join(f"{name} {size['font']:.1f}/{size['ink']:.1f}" for name, size in small["digits"].items()))
    _assert_on_one_screen(small, 16)

    # Keys, as a presentation clicker sends them, once the player has the focus.
    trace = _lesson_trace(page)
    player.locator(".status").click()
    for key, expected in (("ArrowRight", 2), ("PageDown", 3), ("PageDown", 4), ("PageUp", 3), ("ArrowLeft", 2)):
        page.keyboard.press(key)
        expect(player.locator(".step-number")).to_have_text(str(expected))
    _assert_shows_conv_step(player.evaluate(READ_STEP), trace)

    page.set_viewport_size({"width": 1920, "height": 1080})
    page.wait_for_timeout(500)
    large = _measure(player)
    save_screenshot(page, "presenter_convolution_1920x1080", full_page=False)
    print("1920 x 1080, digits (font px, inked px): "
          + ", ".join(f"{name} {size['font']:.1f}/{size['ink']:.1f}" for name, size in large["digits"].items()))
    _assert_on_one_screen(large, 24)


def test_presenter_view_with_the_colour_blind_safe_scheme(page):
    player = _open_presenting(page, 1280, 720, "present=1&colours=colourblind")
    assert_no_exception(page)
    window_colour = player.evaluate("(root) => getComputedStyle(root.querySelector('.input-grid .window'))"
                                    ".borderTopColor")
    assert window_colour == "rgb(0, 0, 0)"
    negative = player.evaluate("(root) => getComputedStyle(root.querySelector('.kernel-grid .cell'))"
                               ".backgroundColor")
    assert negative.startswith("rgb(") and negative != "rgb(255, 140, 0)"
    _assert_on_one_screen(_measure(player), 16)
    save_screenshot(page, "presenter_convolution_colourblind_1280x720", full_page=False)
    # Switching the presenter view off brings the sidebar and the explanations back.
    page.get_by_text("Presenter view").click()
    wait_for_app(page)
    expect(page.get_by_test_id("stSidebar")).to_be_visible()
    expect(page.get_by_text("A convolution layer slides a small grid of weights")).to_be_visible()
    expect(player).not_to_have_class(re.compile(r"\bpresenting\b"))
