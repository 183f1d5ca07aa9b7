"""Presenter view in a real browser: the convolution's player and its numbers fill one projector screen.

At 1280 x 720 and at 1920 x 1080, with ?present=1: the window on the image, the kernel, the products, the
sum, the output map and the step controls must all lie inside the window without scrolling, every number
shown whole inside its cell, and the digits tall enough to read from the back of a room: at least 16 px of
ink at 1280 x 720 and 24 px at 1920 x 1080 (issue 15). Ink is what the eye reads, not the font size (a
16 px font inks digits about 11 px tall): each digit 0-9 is drawn on a canvas in the grid's own computed
font, four times larger, and the rows holding ink are counted; the shortest digit counts. The heights are
printed (run with -s). Keys step the player as a presentation clicker does.
"""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import assert_no_exception, save_screenshot, wait_for_app
from tests.e2e.test_convolution_page import CONV, POOL, READ_STEP, _assert_shows_conv_step, _lesson_trace, open_tab

PARTS = {"step controls": ".bar", "window on the image": ".input-grid .window", "image region": ".input-grid",
         "kernel": ".kernel-grid", "products": ".products-grid", "window's values": ".patch-grid",
         "sum": ".equation .sum", "value": ".equation .value", "output map": ".output-grid"}
NUMBERS = {"image region": ".input-grid .cell", "output map": ".output-grid .cell", "kernel": ".kernel-grid .cell",
           "products": ".products-grid .cell", "window's values": ".patch-grid .cell", "sum": ".equation .sum",
           "value": ".equation .value"}
POOL_PARTS = {"step controls": ".bar", "window on the map": ".input-grid .window", "activated map": ".input-grid",
              "window's values": ".patch-grid", "value": ".equation .value", "pooled map": ".output-grid"}
POOL_NUMBERS = {"activated map": ".input-grid .cell", "pooled map": ".output-grid .cell",
                "window's values": ".patch-grid .cell", "value": ".equation .value"}
INK_AT_1280 = 16  # px, the bars
INK_AT_1920 = 24

# Boxes of the parts; for each kind of number its font and the ink height of its shortest digit; every
# number and caption whose text reaches past its box (cut); grids that hide their numbers.
MEASURE = """(root, [parts, numbers]) => {
  const boxes = {};
  for (const [name, selector] of Object.entries(parts)) {
    const box = root.querySelector(selector).getBoundingClientRect();
    boxes[name] = {left: box.left, top: box.top, right: box.right, bottom: box.bottom};
  }
  const SCALE = 4;
  const canvas = document.createElement('canvas');
  const context = canvas.getContext('2d', {willReadFrequently: true});
  const inkHeight = (font, digit) => {
    canvas.width = 4 * font.size * SCALE;
    canvas.height = 3 * font.size * SCALE;
    context.font = `${font.style} ${font.weight} ${font.size * SCALE}px ${font.family}`;
    context.textBaseline = 'alphabetic';
    context.fillText(digit, font.size * SCALE, 2 * font.size * SCALE);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let top = -1, bottom = -1;
    for (let row = 0; row < canvas.height; row++) {
      for (let col = 0; col < canvas.width; col++) {
        if (pixels[4 * (row * canvas.width + col) + 3] >= 128) {
          if (top < 0) top = row;
          bottom = row;
          break;
        }
      }
    }
    return top < 0 ? 0 : (bottom - top + 1) / SCALE;
  };
  const digits = {};
  for (const [name, selector] of Object.entries(numbers)) {
    const style = getComputedStyle(root.querySelector(selector));
    const font = {style: style.fontStyle, weight: style.fontWeight, size: parseFloat(style.fontSize),
                  family: style.fontFamily};
    const inks = [...'0123456789'].map((digit) => inkHeight(font, digit));
    digits[name] = {font: font.size, ink: Math.min(...inks), ink8: inks[8],
                    loaded: document.fonts.check(`${font.weight} ${font.size}px ${font.family}`)};
  }
  const cut = [];
  for (const cell of root.querySelectorAll('.grid .cell, .equation b')) {
    if (!cell.textContent) continue;
    const range = document.createRange();
    range.selectNodeContents(cell);
    const text = range.getBoundingClientRect();
    const box = cell.getBoundingClientRect();
    if (text.left < box.left - 0.5 || text.right > box.right + 0.5 || cell.scrollWidth > cell.clientWidth) {
      cut.push({text: cell.textContent, grid: cell.parentElement.className, room: box.width, need: text.width});
    }
  }
  for (const caption of root.querySelectorAll('figcaption')) {
    if (caption.textContent && (caption.scrollWidth > caption.clientWidth + 1
                                || caption.scrollHeight > caption.clientHeight + 1)) {
      cut.push({text: caption.textContent, grid: 'caption', room: [caption.clientWidth, caption.clientHeight],
                need: [caption.scrollWidth, caption.scrollHeight]});
    }
  }
  const hidden = [...root.querySelectorAll('.grid.no-numbers')].map((grid) => grid.className);
  return {boxes, digits, cut, hidden, width: innerWidth, height: innerHeight};
}"""


def _measure(player, parts=PARTS, numbers=NUMBERS):
    return player.evaluate(MEASURE, [parts, numbers])


def _report(size, measured):
    print(f"\n{size}, digits (font px / ink px of the shortest digit / of an 8): "
          + ", ".join(f"{name} {d['font']:.1f}/{d['ink']:.2f}/{d['ink8']:.2f}" for name, d in measured["digits"].items()))


def _assert_on_one_screen(measured, smallest_ink):
    rounding = 0.5  # px: a scrolled page may stop a fraction of a pixel off
    for name, box in measured["boxes"].items():
        assert box["left"] >= -rounding and box["top"] >= -rounding, (name, box)
        assert box["right"] <= measured["width"] + rounding and box["bottom"] <= measured["height"] + rounding, \
            (name, box, measured)
    assert not measured["cut"], measured["cut"]
    assert not measured["hidden"], measured["hidden"]
    for name, size in measured["digits"].items():
        assert size["loaded"], f"the {name}'s font is not loaded, so its ink cannot be measured: {size}"
        assert size["ink"] >= smallest_ink, (name, size)


def _open_presenting(page, width, height, query="present=1"):
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"/convolution?{query}")
    wait_for_app(page)
    player = page.locator(CONV)
    expect(player.locator(".status")).to_have_text(re.compile(r"^Step 1 of \d+$"), timeout=60_000)
    expect(player).to_have_class(re.compile(r"\bpresenting\b"))
    page.wait_for_timeout(300)  # the player measures the space below it after the page settles
    return player


SCREENS = {"1280x720": (1280, 720, INK_AT_1280), "1920x1080": (1920, 1080, INK_AT_1920)}


@pytest.mark.parametrize("screen", SCREENS)
def test_presenter_view_fits_the_player_on_one_screen(page, screen):
    width, height, smallest_ink = SCREENS[screen]
    player = _open_presenting(page, width, height)
    assert_no_exception(page)
    expect(page.get_by_test_id("stSidebar")).to_be_hidden()
    expect(page.get_by_text("A convolution layer slides a small grid of weights")).to_have_count(0)
    scrolled = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollTop")
    assert scrolled == 0

    measured = _measure(player)
    save_screenshot(page, f"presenter_convolution_{screen}", full_page=False)
    _report(screen, measured)
    _assert_on_one_screen(measured, smallest_ink)


def test_presenter_view_fits_the_pooling_player_on_one_screen_when_scrolled_to(page):
    _open_presenting(page, 1280, 720)
    open_tab(page, "5.")  # only the open tab is drawn
    pool = page.locator(POOL)
    expect(pool.locator(".status")).to_have_text(re.compile(r"^Step 1 of \d+$"))
    expect(pool).to_have_class(re.compile(r"\bpresenting\b"))
    for screen, (width, height, smallest_ink) in SCREENS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
        pool.locator(".bar").evaluate("(bar) => bar.scrollIntoView({block: 'start'})")  # the lecturer scrolls down
        page.wait_for_timeout(300)
        measured = _measure(pool, POOL_PARTS, POOL_NUMBERS)
        save_screenshot(page, f"presenter_pooling_{screen}", full_page=False)
        _report(f"pooling {screen}", measured)
        _assert_on_one_screen(measured, smallest_ink)


def test_presenter_view_steps_by_keys_and_follows_the_window_size(page):
    player = _open_presenting(page, 1280, 720)
    # Keys, as a presentation clicker sends them, once the player has the focus.
    trace = _lesson_trace(page)
    player.locator(".status").click()
    for key, expected in (("ArrowRight", 2), ("PageDown", 3), ("PageDown", 4), ("PageUp", 3), ("ArrowLeft", 2)):
        page.keyboard.press(key)
        expect(player.locator(".step-number")).to_have_text(str(expected))
    _assert_shows_conv_step(player.evaluate(READ_STEP), trace)

    # The lecturer's laptop window moved to the projector's screen: the layout grows with it.
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.wait_for_timeout(500)
    _assert_on_one_screen(_measure(player), INK_AT_1920)


def test_presenter_view_with_the_colour_blind_safe_scheme(page):
    player = _open_presenting(page, 1280, 720, "present=1&colours=colourblind")
    assert_no_exception(page)
    window_colour = player.evaluate("(root) => getComputedStyle(root.querySelector('.input-grid .window'))"
                                    ".borderTopColor")
    assert window_colour == "rgb(0, 0, 0)"
    negative = player.evaluate("(root) => getComputedStyle(root.querySelector('.kernel-grid .cell'))"
                               ".backgroundColor")
    assert negative.startswith("rgb(") and negative != "rgb(255, 140, 0)"
    _assert_on_one_screen(_measure(player), INK_AT_1280)
    save_screenshot(page, "presenter_convolution_colourblind_1280x720", full_page=False)
    # Switching the presenter view off brings the sidebar and the explanations back.
    page.get_by_text("Presenter view").click()
    wait_for_app(page)
    expect(page.get_by_test_id("stSidebar")).to_be_visible()
    expect(page.get_by_text("A convolution layer slides a small grid of weights")).to_be_visible()
    expect(player).not_to_have_class(re.compile(r"\bpresenting\b"))
