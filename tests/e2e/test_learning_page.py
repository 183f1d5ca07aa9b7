"""The "Watch it learn" lesson in a real browser: start a training, watch it update by itself, pause it,
resume it; the page answers while it trains; the training goes on while the person visits another
lesson, a second session waits for the slot, and a closed tab gives its slot back."""

import contextlib
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import assert_no_exception, save_screenshot, wait_for_app

PROGRESS = re.compile(r"(Training|Paused|Finished|Waiting for a free training slot|Cutting the training patches): "
                      r"step (\d+) of (\d+)")
TRAINING_TIMEOUT_MS = 300_000  # the first training of a server cuts the lesson's patches first


def _progress(page):
    text = page.get_by_text(PROGRESS).first.inner_text()
    match = PROGRESS.search(text)
    return match.group(1), int(match.group(2))


def test_start_pause_and_resume_a_training(page):
    page.goto("/learning")
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Watch it learn")).to_be_visible()
    assert_no_exception(page)
    # The longest training, so that on a quiet machine it is still running when Pause is pressed.
    page.locator("input[aria-label='Steps']").focus()
    page.keyboard.press("End")
    wait_for_app(page)

    page.get_by_role("button", name="Start training").click()
    # The page polls the run by itself: the step count climbs with no click.
    expect(page.get_by_text(re.compile(r"Training: step ([3-9]|\d\d+) of 1000"))).to_be_visible(
        timeout=TRAINING_TIMEOUT_MS)
    expect(page.locator("[data-testid='stVegaLiteChart']").first).to_be_visible()
    expect(page.get_by_text("What training changed")).to_be_visible()
    assert_no_exception(page)
    page.get_by_text("The first layer's kernels.").scroll_into_view_if_needed()
    save_screenshot(page, "learning_training", full_page=False)

    # While it trains, a widget still answers: follow another layer's weight.
    page.get_by_text("What one step does").scroll_into_view_if_needed()
    page.get_by_test_id("stSelectbox").filter(has_text="Follow one weight of").click()
    page.get_by_role("option", name="dense layer").click()
    expect(page.get_by_text(re.compile(r"the dense layer's weight from the first pooled channel"))).to_be_visible()

    page.get_by_role("button", name="Pause").first.click()
    expect(page.get_by_text(re.compile(r"Paused: step \d+ of 1000"))).to_be_visible()
    status, paused_at = _progress(page)
    assert status == "Paused"
    page.wait_for_timeout(3000)  # nothing moves while paused
    assert _progress(page) == ("Paused", paused_at)
    expect(page.get_by_role("button", name="Resume").first).to_be_enabled()
    save_screenshot(page, "learning_paused")

    page.get_by_role("button", name="Resume").first.click()
    # On a quiet machine the remaining steps can all be done before the page next looks: "Finished" too.
    expect(page.get_by_text(re.compile(rf"(Training|Finished): step (?!{paused_at} )\d+ of 1000"))).to_be_visible(
        timeout=TRAINING_TIMEOUT_MS)
    status, step = _progress(page)
    assert status in ("Training", "Finished") and step > paused_at
    assert_no_exception(page)
    save_screenshot(page, "learning_resumed")

    page.get_by_role("button", name="Reset").first.click()  # leaves the slot to other tests
    wait_for_app(page)
    expect(page.get_by_role("button", name="Start training")).to_be_enabled()


def test_training_goes_on_across_pages_and_a_closed_tab_frees_its_slot(browser, app_server):
    first = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=app_server)
    second = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=app_server)
    try:
        lecturer = first.new_page()
        lecturer.set_default_timeout(TRAINING_TIMEOUT_MS)
        lecturer.goto("/learning")
        wait_for_app(lecturer)
        for label in ("Batch size (patches per step)", "Steps"):  # the longest training: it must outlast the test
            lecturer.locator(f"input[aria-label='{label}']").focus()
            lecturer.keyboard.press("End")
            wait_for_app(lecturer)
        lecturer.get_by_role("button", name="Start training").click()
        expect(lecturer.get_by_text(re.compile(r"Training: step [1-9]\d* of 1000"))).to_be_visible(
            timeout=TRAINING_TIMEOUT_MS)
        _, before = _progress(lecturer)

        # Another lesson meanwhile: the training is the session's, not the page's.
        lecturer.get_by_role("link", name="Does this patch contain a lesion?").click()
        wait_for_app(lecturer)
        lecturer.wait_for_timeout(3000)
        lecturer.get_by_role("link", name="Watch it learn").click()
        wait_for_app(lecturer)
        status, after = _progress(lecturer)
        assert status == "Training" and after > before, (status, before, after)

        # A student starts too: with one slot (a 2-core server) theirs waits, and says so.
        student = second.new_page()
        student.set_default_timeout(TRAINING_TIMEOUT_MS)
        student.goto("/learning")
        wait_for_app(student)
        student.get_by_role("button", name="Start training").click()
        expect(student.get_by_text(PROGRESS)).to_be_visible(timeout=30_000)
        if _progress(student)[0] != "Waiting for a free training slot":
            pytest.skip("this server trains more than one network at a time: nothing waits")
        expect(student.get_by_text(re.compile(r"Waiting for a free slot: this server trains 1 network at a time"))
               ).to_be_visible()
        student.get_by_text(re.compile(r"^Waiting for a free slot")).evaluate(
            "element => element.scrollIntoView({block: 'center'})")
        save_screenshot(student, "learning_waiting", full_page=False)

        # The lecturer's tab closes: its training pauses and the student's starts by itself.
        first.close()
        expect(student.get_by_text(re.compile(r"Training: step \d+ of 200"))).to_be_visible(timeout=30_000)
        assert_no_exception(student)
        student.get_by_role("button", name="Reset").first.click()
        wait_for_app(student)
    finally:
        second.close()
        with contextlib.suppress(Exception):
            first.close()
