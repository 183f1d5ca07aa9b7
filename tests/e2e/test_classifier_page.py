"""The trained-classifier lesson in a real browser: click to place the window, add a synthetic lesion,
and the answer turns to "lesion"."""

import re

from playwright.sync_api import expect

from tests.e2e.browser import assert_no_exception, save_screenshot, wait_for_app

PICTURE = ".picture img"  # a picture of views/components/picture


def _number(page, label):
    return int(page.get_by_label(label, exact=True).input_value())


def _lesion_probability(page):
    sentence = page.get_by_text(re.compile(r"The network answers")).first.inner_text()
    return float(re.search(r"lesion probability ([0-9.]+) %", sentence).group(1))


def test_click_add_a_lesion_and_the_answer_changes(page):
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto("/classifier")
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Does this patch contain a lesion?")).to_be_visible()
    expect(page.get_by_text("trained on synthetic lesions inserted into real scans")).to_be_visible()
    assert_no_exception(page)
    opening_top = _number(page, "Window top row")  # on anatomy, chosen from the image (model.network.anatomy_window)
    page.get_by_role("heading", name="2. The network's input and its answer").scroll_into_view_if_needed()
    save_screenshot(page, "classifier_opening_window", full_page=False)

    # Click at 42.5 % down, 31.8 % across the chest radiograph (640 rows x 603 columns): the window centres there,
    # where the network is much less sure of a crisp lesion (it finds most: issue #18, thirteenth session).
    image = page.locator(PICTURE).first
    expect(image).to_be_visible()
    image.scroll_into_view_if_needed()
    box = image.bounding_box()
    page.mouse.click(box["x"] + 0.318 * box["width"], box["y"] + 0.425 * box["height"])
    wait_for_app(page)
    expect(page.get_by_label("Window top row", exact=True)).not_to_have_value(str(opening_top))
    top, left = _number(page, "Window top row"), _number(page, "Window left column")
    assert abs(top + 32 - 0.425 * 640) <= 3 and abs(left + 32 - 0.318 * 603) <= 3, (top, left)
    before = _lesion_probability(page)

    page.get_by_role("button", name="Add a synthetic lesion here").click()
    wait_for_app(page)
    assert_no_exception(page)
    expect(page.get_by_text(re.compile(r"Lesion at row \d+, column \d+, radius"))).to_be_visible()
    after = _lesion_probability(page)
    assert after > before and after > 50.0, (before, after)
    page.get_by_role("heading", name="2. The network's input and its answer").scroll_into_view_if_needed()
    save_screenshot(page, "classifier_lesion_added", full_page=False)
    page.get_by_role("heading", name="6. Where: the class activation map").scroll_into_view_if_needed()
    save_screenshot(page, "classifier_cam", full_page=False)

    # The same lesion with an edge crisper than any training lesion's: here the network is much less sure.
    page.get_by_role("heading", name="1. Place the window").scroll_into_view_if_needed()
    page.get_by_text("crisp, like none of them").click()
    wait_for_app(page)
    page.get_by_role("button", name="Add a synthetic lesion here").click()
    wait_for_app(page)
    assert_no_exception(page)
    expect(page.get_by_text(re.compile(r"Lesion at row \d+, column \d+, .* crisp edge"))).to_be_visible()
    crisp = _lesion_probability(page)
    assert crisp < after - 20.0, (after, crisp)
    page.get_by_role("heading", name="2. The network's input and its answer").scroll_into_view_if_needed()
    save_screenshot(page, "classifier_crisp_lesion", full_page=False)
    page.get_by_text("Compute the lesion-probability map").click()
    wait_for_app(page)
    expect(page.get_by_text(re.compile(r"\d+ windows; highest lesion probability"))).to_be_visible()
    assert_no_exception(page)
    page.get_by_role("heading", name="7. Slide the window over the whole image").scroll_into_view_if_needed()
    save_screenshot(page, "classifier_probability_map", full_page=False)
    save_screenshot(page, "classifier_full_page")
