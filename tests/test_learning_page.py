"""The "Watch it learn" page in Streamlit's AppTest: a short training whose loss falls, one training per
person, teaching it a sample scan and an upload (whose results go when the upload is no longer chosen).

AppTest does not fire run_every timers: each run() is one rerun, so the tests rerun until the worker
thread is done."""

import io
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest
from tests.apptest import scan_uploader

PAGE = str(Path(__file__).resolve().parents[1] / "views" / "learning.py")
TIMEOUT = 300


@pytest.fixture
def app():
    page = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not page.exception, page.exception
    yield page
    for key in ("learn_run", "learn_scan_run"):  # no worker outlives its test
        run = page.session_state[key] if key in page.session_state else None
        if run is not None:
            run.stop()
            run.join(30)


def progress_text(page):
    return page.get("progress")[0].proto.text if page.get("progress") else ""


def rerun_until(page, pattern, timeout=TIMEOUT):
    """Rerun the page (as the browser's polling would) until its progress text matches ``pattern``."""
    deadline = time.monotonic() + timeout
    while True:
        page.run()
        assert not page.exception, page.exception
        if re.search(pattern, progress_text(page)):
            return page
        assert time.monotonic() < deadline, f"progress still {progress_text(page)!r}"
        time.sleep(0.5)


def captions(page):
    return [element.value for element in page.caption] + [caption for image in page.get("image")
                                                          for caption in image.captions]


def test_the_page_explains_training_and_offers_its_controls(app):
    from views.learning_lesson import MODEL_NOTICE
    from views.notices import TEACHING_NOTICE

    warnings = [warning.value for warning in app.warning]
    assert MODEL_NOTICE in warnings and TEACHING_NOTICE in warnings
    assert "Nobody designs a CNN's kernels: **training** does." in "\n".join(element.value for element in app.markdown)
    assert app.select_slider(key="learn_rate").value == 0.005 and app.select_slider(key="learn_batch").value == 32
    assert not app.button(key="learn_go").disabled
    assert app.button(key="learn_pause").disabled and app.button(key="learn_resume").disabled
    app.radio(key="learn_optimiser").set_value("sgd").run()
    assert app.select_slider(key="learn_rate").value == 0.05  # each optimiser starts at a rate that suits it


@pytest.mark.slow
def test_a_short_training_from_random_kernels_lowers_the_loss(app):
    app.select_slider(key="learn_steps").set_value(100).run()
    app.button(key="learn_go").click().run()
    assert not app.exception, app.exception
    assert app.button(key="learn_go").disabled and not app.button(key="learn_pause").disabled
    rerun_until(app, r"^Finished: step 100 of 100")
    loss_caption = next(caption for caption in captions(app) if caption.startswith("The loss of each step's batch"))
    means = re.search(r"first 10 steps ([0-9]+\.[0-9]+), of the last 10 ([0-9]+\.[0-9]+)", loss_caption)
    first, last = float(means.group(1)), float(means.group(2))
    assert last < 0.9 * first, loss_caption
    markdown = "\n".join(element.value for element in app.markdown)
    assert "**Step 100, for the centre weight of kernel 1 of stage 1" in markdown
    assert re.search(r"m = 0\.9 x \([-+0-9.e]+\) \+ 0\.1 x \([-+0-9.e]+\) = [-+0-9.e]+", markdown)
    assert "5. **Constraint.**" in markdown
    app.selectbox(key="learn_weight").set_value("dense.weight").run()
    assert "the dense layer's weight from the first pooled channel" in "\n".join(e.value for e in app.markdown)
    assert {"At the start", "Now", "What training changed"} <= set(captions(app))
    assert any(re.match(r"Now: lesion probability [0-9.]+ %", caption) for caption in captions(app))
    # Finished: the settings unlock on Reset, and a new training can start.
    app.button(key="learn_reset").click().run()
    assert app.session_state["learn_run"] is None and not app.button(key="learn_go").disabled


def test_pause_and_resume_in_the_page(app):
    app.button(key="learn_go").click().run()
    rerun_until(app, r"^Training: step [1-9]")
    app.button(key="learn_pause").click().run()
    assert progress_text(app).startswith("Paused: step")
    paused_at = app.session_state["learn_run"].snapshot().steps_done
    time.sleep(1.0)
    app.run()
    assert app.session_state["learn_run"].snapshot().steps_done == paused_at
    assert not app.button(key="learn_resume").disabled and app.button(key="learn_pause").disabled
    assert app.select_slider(key="learn_rate").disabled  # the settings belong to this run until Reset
    # One training per person: the scan's training waits while this one could resume.
    app.button(key="learn_resume").click().run()
    assert app.button(key="learn_scan_go").disabled
    rerun_until(app, rf"^Training: step (?!{paused_at} )\d+")


def test_resume_draws_a_page_that_keeps_polling_even_when_the_worker_wakes_late(app, monkeypatch):
    # In the browser (CI, a loaded machine) the rerun after Resume once drew "Paused" before the worker
    # had woken: a paused page does not poll, so it stayed at "Paused" while the run trained unseen.
    from model.live import _Worker

    wake = _Worker._wait_while_paused

    def wake_late(worker):
        stop = wake(worker)
        time.sleep(0.5)
        return stop

    monkeypatch.setattr(_Worker, "_wait_while_paused", wake_late)
    app.button(key="learn_go").click().run()
    rerun_until(app, r"^Training: step [1-9]")
    app.button(key="learn_pause").click().run()
    assert progress_text(app).startswith("Paused: step")
    app.button(key="learn_resume").click().run()
    assert not progress_text(app).startswith("Paused"), progress_text(app)
    assert not app.button(key="learn_pause").disabled and app.button(key="learn_resume").disabled


@pytest.mark.slow
def test_teaching_it_a_sample_scan_maps_it_before_and_after(app):
    app.selectbox(key="scan_source").set_value("Head CT slice").run()
    app.select_slider(key="learn_scan_steps").set_value(25).run()
    app.button(key="learn_scan_go").click().run()
    assert app.button(key="learn_go").disabled  # one training per person
    rerun_until(app, r"^Finished: step 25 of 25")
    text = "\n".join(element.value for element in app.markdown)
    match = re.search(r"the ROC AUC went from \*\*([0-9.]+)\*\* to \*\*([0-9.]+)\*\*", text)
    assert match, text
    assert any(caption.startswith("Before: the shipped network. ROC AUC on this scan's test patches")
               for caption in captions(app))
    assert any(caption.startswith("After 25 steps on this scan: ROC AUC") for caption in captions(app))
    # Another scan picked: the results stay, marked as the earlier scan's.
    app.selectbox(key="scan_source").set_value("Chest radiograph").run()
    assert any(caption.startswith("These results are for Head CT slice") for caption in captions(app))


@pytest.mark.slow
def test_an_uploads_patches_are_taught_and_dropped_when_another_scan_is_chosen(app):
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:200, 0:260]
    picture = (120 + 60 * np.sin(rows / 11.0) * np.cos(cols / 17.0) + rng.normal(0, 6, rows.shape)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    scan_uploader(app).set_value(("phantom.png", buffer.getvalue(), "image/png")).run()
    assert not app.exception, app.exception
    app.select_slider(key="learn_scan_steps").set_value(25).run()
    app.button(key="learn_scan_go").click().run()
    rerun_until(app, r"^Finished: step 25 of 25")
    assert app.session_state["learn_scan_run"].snapshot().results["image"].shape == (200, 260)
    app.selectbox(key="scan_source").set_value("Chest radiograph").run()
    assert app.session_state["learn_scan_run"] is None  # the upload's patches and maps are gone


def test_a_tiny_image_cannot_be_taught_and_says_why(app):
    app.selectbox(key="scan_source").set_value("Head MR volume").run()
    assert any("is only 64 x 64 pixels" in warning.value for warning in app.warning)
    assert "learn_scan_go" not in [button.key for button in app.button]
