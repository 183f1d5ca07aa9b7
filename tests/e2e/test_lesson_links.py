"""Lesson links in a real browser: a link opens the lesson at its step with its kernel; "Link this step" updates it.

The player's numbers are checked against a trace computed here with kernels/ from the link's own
settings. Asking for a link is the one time the player sends its step to the server: stepping before
it sends nothing.
"""

import re
from urllib.parse import parse_qs, urlparse

import numpy as np
from playwright.sync_api import expect

from kernels import conv2d_trace
from scans import apply_window, read_sample
from tests.e2e.browser import assert_no_exception, save_screenshot, students_link, wait_for_app
from tests.e2e.test_convolution_page import CONV, READ_STEP, _assert_shows_conv_step, _shown_text
from views.components.step_player import conv_payload

KERNEL = np.array([[0.5, -1, 0.5], [1, -2, 1], [0.5, -1, 0.5]], dtype=np.float32)
LINK = ("/convolution?sample=ct_head&level=40.0&width=100.0&region=240,250,8&source=bank&kname=sobel+x"
        "&k=0.5,-1,0.5;1,-2,1;0.5,-1,0.5&stride=1&padding=1&pad_mode=zeros&dilation=1&bias=0.25&step=12")


def _trace():
    scan = read_sample("Head CT slice")
    region = apply_window(scan.pixels, 40.0, 100.0)[240:248, 250:258]
    return conv2d_trace(region, KERNEL, 0.25, padding=1, padding_mode="zeros")


def test_a_lesson_link_opens_its_step_and_kernel_and_links_a_new_step(page):
    frames_sent = []
    page.on("websocket", lambda socket: socket.on("framesent", lambda payload: frames_sent.append(payload)))
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(LINK)
    wait_for_app(page)
    assert_no_exception(page)
    conv = page.locator(CONV)
    trace = _trace()
    expect(conv.locator(".status")).to_have_text(f"Step 12 of {trace.num_steps}", timeout=60_000)
    _assert_shows_conv_step(conv.evaluate(READ_STEP), trace)
    decimals = conv_payload(trace, titles={}, memory="test")["kernel"]["decimals"]
    kernel_texts = conv.evaluate("(root) => [...root.querySelectorAll('.kernel-grid .cell')].map((c) => c.textContent)")
    assert kernel_texts == [_shown_text(value, decimals) for value in KERNEL.ravel()]
    expect(page.get_by_role("button", name="Link for students")).to_be_visible()
    assert "step=12" in students_link(page)
    expect(page.get_by_text("could not be used")).to_have_count(0)  # nothing in the link was refused

    # Step on in the browser (nothing sent), then ask for a link to this step (one message).
    conv.get_by_role("button", name="Next").click()
    conv.get_by_role("button", name="Next").click()
    expect(conv.locator(".step-number")).to_have_text("14")
    sent_before = len(frames_sent)
    page.wait_for_timeout(500)
    assert len(frames_sent) == sent_before, "stepping sent nothing"
    conv.get_by_role("button", name="Link this step").click()
    page.wait_for_function("() => new URLSearchParams(location.search).get('step') === '14'", timeout=30_000)
    wait_for_app(page)
    assert parse_qs(urlparse(page.url).query)["step"] == ["14"], page.url

    # The "Link for students" popover at the top holds the link and its QR code for the projector.
    page.get_by_role("button", name="Link for students").scroll_into_view_if_needed()
    page.get_by_role("button", name="Link for students").click()
    expect(page.get_by_test_id("stCode").filter(has_text="step=14")).to_be_visible(timeout=30_000)
    qr_code = page.get_by_test_id("stImage").filter(has_text="Link for students")
    expect(qr_code).to_be_visible()
    wait_for_app(page)
    save_screenshot(page, "lesson_link_qr", full_page=False)
    page.keyboard.press("Escape")
    expect(qr_code).to_have_count(0)
    wait_for_app(page)
    expect(conv.locator(".step-number")).to_have_text("14")  # the reruns left the player where it was

    # A reload (a new session) opens the same lesson at the linked step.
    page.reload()
    wait_for_app(page)
    expect(conv.locator(".status")).to_have_text(f"Step 14 of {trace.num_steps}", timeout=60_000)
    _assert_shows_conv_step(conv.evaluate(READ_STEP), trace)
    assert_no_exception(page)


def test_a_tampered_link_opens_the_lesson_with_a_note(page):
    page.goto("/convolution?stride=banana&k=1,2;3&step=999999&region=1,2,3,4")
    wait_for_app(page)
    assert_no_exception(page)
    expect(page.get_by_text(re.compile("could not be used"))).to_be_visible(timeout=60_000)
    expect(page.locator(CONV).locator(".status")).to_have_text(re.compile(r"^Step 64 of 64$"), timeout=60_000)
    assert "step=64" in students_link(page)  # a step past the last is linked as the last
    save_screenshot(page, "lesson_link_tampered", full_page=False)
