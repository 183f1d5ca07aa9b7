"""The sections of the lesson "Watch it learn": train the classifier here, then teach it one scan.

The training itself runs in model/live.py (a worker thread per session, a server-wide cap on
trainings at once); this module reads the widgets, starts, pauses, resumes and resets runs, and
draws their snapshots. While a run is active a fragment polls it about once a second; otherwise
nothing polls. views/learning.py runs ``main()``.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from lessons.classifier import probability_on_image
from model import load
from model.live import (
    LESSON_EVALUATION_COUNT,
    LESSON_TRAINING_COUNT,
    MAP_STRIDE,
    OPTIMISERS,
    SCAN_TEST_COUNT,
    SCAN_TRAINING_COUNT,
    STARTS,
    LiveSettings,
    fit_image,
    lesson_data,
    lesson_run,
    scan_run,
)
from model.network import Classifier
from views.notices import show_teaching_notice
from views.presenter import explain
from views.scan_picker import choose_image
from viz.charts import auc_chart, gradient_chart, loss_chart
from viz.images import grey_rgb
from viz.network import cam_overlay, kernel_bank, lesion_outline

POLL_S = 1.0  # how often an active run's panel asks for news
PATCH_ZOOM = 4
SMOOTHING = 10  # batches in the running mean of the loss curve
LEARNING_RATES = (0.0001, 0.0003, 0.001, 0.003, 0.005, 0.01, 0.03, 0.05, 0.1, 0.3)
DEFAULT_LEARNING_RATES = {"adam": 0.005, "sgd": 0.05}
BATCH_SIZES = (8, 16, 32, 64, 128)
STEP_CHOICES = (20, 50, 100, 200, 400, 800, 1000)
SCAN_STEP_CHOICES = (25, 50, 100, 200)
SCAN_LEARNING_RATES = (0.0001, 0.0003, 0.001, 0.003)
LAYER_NAMES = {"conv1.weight": "stage 1", "conv2.weight": "stage 2", "conv3.weight": "stage 3",
               "conv4.weight": "stage 4", "conv5.weight": "stage 5", "conv6.weight": "stage 6",
               "dense.weight": "dense layer"}
MODEL_NOTICE = (
    "**The lesions here are synthetic**: soft blobs inserted into real scans by the same generator that "
    "made the shipped model's training data. What the network learns on this page is for teaching only."
)
STATUS_TEXT = {
    "waiting": "Waiting for a free training slot",
    "preparing": "Cutting the training patches",
    "running": "Training",
    "paused": "Paused",
    "finished": "Finished",
    "stopped": "Stopped",
    "failed": "Training failed",
}


# ------------------------------------------------------------------------------- state and runs


def _init_state():
    # Widgets get their defaults as arguments, not through session state: in a browser test a value
    # preset in session state once came back as the slider's first option (its built-in default).
    defaults = {"learn_run": None, "learn_settings": None, "learn_scan_run": None, "learn_scan_source": None,
                "learn_polled": {}}
    for key, value in defaults.items():
        if key not in st.session_state:
            st.session_state[key] = value


def _connection_check():
    """A callable saying whether this browser session is still connected, for the training's worker
    thread (it holds the session's id, not its state); None where no server runs the page (AppTest)."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx()
    if context is None or not Runtime.exists():
        return None
    runtime, session_id = Runtime.instance(), context.session_id
    return lambda: runtime.is_active_session(session_id)


def _snapshot(run_key):
    run = st.session_state[run_key]
    return None if run is None else run.snapshot()


def _other_run_active(run_key):
    other = "learn_scan_run" if run_key == "learn_run" else "learn_run"
    snapshot = _snapshot(other)
    return snapshot is not None and snapshot.active


def _replace_run(run_key, run):
    old = st.session_state[run_key]
    if old is not None:
        old.stop()
    st.session_state[run_key] = run


def _on_optimiser_change():
    st.session_state["learn_rate"] = DEFAULT_LEARNING_RATES[st.session_state["learn_optimiser"]]


def _start_lesson_run():
    if _other_run_active("learn_run"):
        return  # one training per session; the button says so
    settings = LiveSettings(start=st.session_state["learn_start"], optimiser=st.session_state["learn_optimiser"],
                            learning_rate=float(st.session_state["learn_rate"]),
                            batch_size=int(st.session_state["learn_batch"]), steps=int(st.session_state["learn_steps"]),
                            seed=int(st.session_state["learn_seed"]))
    _replace_run("learn_run", lesson_run(settings, connected=_connection_check()))
    st.session_state["learn_settings"] = settings


def _pause(run_key):
    run = st.session_state[run_key]
    run.pause()
    # The worker finishes its step first (a few tens of ms): wait for it, so this rerun draws "Paused".
    run.wait_until(lambda snapshot: snapshot.status != "running", timeout=2.0)


def _resume(run_key):
    if _other_run_active(run_key):
        return
    run = st.session_state[run_key]
    run.resume()
    # Wait for the worker to wake: a rerun that still draws "Paused" would not poll the run again.
    run.wait_until(lambda snapshot: snapshot.status != "paused", timeout=5.0)


def _reset(run_key):
    _replace_run(run_key, None)


def _controls(run_key, snapshot, start, start_label):
    """Start, pause, resume and reset buttons for one run."""
    active = snapshot is not None and snapshot.active
    paused = snapshot is not None and snapshot.status == "paused"
    blocked = _other_run_active(run_key)
    prefix = run_key.removesuffix("_run")
    start_column, pause_column, resume_column, reset_column = st.columns(4)
    start_column.button(start_label, key=f"{prefix}_go", type="primary", icon=":material/play_arrow:",
                        on_click=start, disabled=active or paused or blocked, width="stretch")
    pause_column.button("Pause", key=f"{prefix}_pause", icon=":material/pause:", on_click=_pause, args=(run_key,),
                        disabled=not active, width="stretch")
    resume_column.button("Resume", key=f"{prefix}_resume", icon=":material/resume:", on_click=_resume,
                         args=(run_key,), disabled=not paused or blocked, width="stretch")
    reset_column.button("Reset", key=f"{prefix}_reset", icon=":material/restart_alt:", on_click=_reset,
                        args=(run_key,), disabled=snapshot is None, width="stretch")
    if blocked:
        st.caption("The other training on this page is running: one training per person at a time. "
                   "Pause it or wait for it to finish.")
    elif snapshot is None:
        st.caption("One training per person; the server trains a few at a time and queues the rest.")


def _live_panel(run_key, draw):
    """Draw a run's snapshot; a fragment that reruns every POLL_S seconds while the run is active."""

    def panel():
        snapshot = _snapshot(run_key)
        if snapshot is None:
            return
        if st.session_state["learn_polled"].get(run_key) and not snapshot.active:
            # The run ended or paused since the page was drawn: redraw it all (buttons), and stop polling.
            st.session_state["learn_polled"][run_key] = False
            st.rerun()
        draw(snapshot)

    snapshot = _snapshot(run_key)
    active = snapshot is not None and snapshot.active
    st.session_state["learn_polled"][run_key] = active
    st.fragment(panel, run_every=POLL_S if active else None)()


def _status(snapshot, what):
    """The status line and the progress bar."""
    done, total = snapshot.steps_done, snapshot.total_steps
    text = f"{STATUS_TEXT[snapshot.status]}: step {done} of {total}"
    if snapshot.seconds and done:
        text += f" ({snapshot.seconds:.1f} s, {1000 * snapshot.seconds / done:.0f} ms a step with its measurements)"
    st.progress(snapshot.fraction_done, text=text)
    if snapshot.status == "waiting":
        ahead = snapshot.queue_position or 0
        st.info(f"Waiting for a free slot: this server trains {snapshot.capacity} network"
                f"{'s' if snapshot.capacity > 1 else ''} at a time so that every page stays quick for the class, "
                f"and {snapshot.busy_slots} {'is' if snapshot.busy_slots == 1 else 'are'} training now"
                + (f", with {ahead} more waiting ahead of yours." if ahead else ".")
                + f" Yours starts by itself when a slot frees up; {what} meanwhile.", icon=":material/hourglass_top:")
    elif snapshot.status == "preparing":
        st.info("Cutting patches and inserting synthetic lesions (the lesson's own patches are cut once per "
                "server start, which takes a few seconds).", icon=":material/content_cut:")
    elif snapshot.status == "paused" and snapshot.pause_reason == "unwatched":
        st.warning("Paused by itself: nobody was watching (the tab was closed or lost its connection), so it "
                   "gave its slot to others. Press Resume to go on.", icon=":material/visibility_off:")
    elif snapshot.status == "failed":
        st.error(f"The training stopped with an error: {snapshot.error}. Press Reset and try other settings; "
                 "the rest of the app is not affected.", icon=":material/error:")


# ------------------------------------------------------------------------------- what a step does


def _step_explanation(snapshot, settings, key):
    """One step of the run in words, with this step's numbers for one weight."""
    step = snapshot.weight_steps[key]
    done = snapshot.steps_done
    batch = settings.batch_size
    answer = snapshot.answer_losses[-1]
    total = snapshot.losses[-1]
    correct = int(round(snapshot.accuracies[-1] * batch))
    where = (total - answer) / settings.localisation_weight if settings.localisation_weight else 0.0
    layer = LAYER_NAMES[key]
    if key.startswith("conv"):
        what = (f"the centre weight of kernel 1 of {layer} (row {step.index[2] + 1}, column {step.index[3] + 1} "
                f"of its first {'' if step.index[1] == 0 and key == 'conv1.weight' else 'input '}channel)")
    else:
        what = "the dense layer's weight from the first pooled channel to \"lesion\""
    lines = [
        f"**Step {done}, for {what}.**",
        f"1. **Forward.** A batch of {batch} patches (half of the training patches hold a synthetic lesion) "
        f"goes through the network as it was before this step: {correct} of {batch} answers were right.",
        f"2. **Loss.** How wrong the answers were: the cross-entropy of the answers, {answer:.4f}, plus "
        f"{settings.localisation_weight:g} x the \"where\" loss (is the class activation map highest on the "
        f"lesion?), {where:.4f}: loss = **{total:.4f}**.",
        f"3. **Backward.** Backpropagation carries the loss back through every layer and gives each weight its "
        f"gradient: how much the loss would grow if that weight grew a little. For this weight, "
        f"d loss / d w = **{step.gradient:+.3e}**"
        + (" (with the kernel's mean gradient taken out, so the kernel stays zero-sum)"
           if key == "conv1.weight" else "")
        + ".",
    ]
    constants = snapshot.optimiser_constants
    rate = constants["learning_rate"]
    if snapshot.optimiser == "adam":
        beta1, beta2, eps = constants["beta1"], constants["beta2"], constants["eps"]
        m_before, v_before = step.state_before["m"], step.state_before["v"]
        m_after, v_after = step.state_after["m"], step.state_after["v"]
        m_hat, v_hat = m_after / (1 - beta1 ** done), v_after / (1 - beta2 ** done)
        change = rate * m_hat / (np.sqrt(v_hat) + eps)
        lines.append(
            f"4. **Update (Adam).** Adam keeps a running mean of each weight's gradient, m, and of its square, v, "
            f"and moves the weight by the learning rate times m / sqrt(v): a step of about the learning rate in "
            f"the direction the gradients agree on, whatever their size.  \n"
            f"m = {beta1:g} x ({m_before:+.3e}) + {1 - beta1:.3g} x ({step.gradient:+.3e}) = {m_after:+.3e}  \n"
            f"v = {beta2:g} x {v_before:.3e} + {1 - beta2:.3g} x ({step.gradient:+.3e})^2 = {v_after:.3e}  \n"
            f"both started at zero, so they are scaled up while few steps have been taken (divided by "
            f"1 - {beta1:g}^{done} and 1 - {beta2:g}^{done}): m' = {m_hat:+.3e}, v' = {v_hat:.3e}  \n"
            f"w = {step.before:+.5f} - {rate:g} x m' / (sqrt(v') + {eps:g}) = {step.before:+.5f} - ({change:+.3e}) "
            f"= **{step.updated:+.5f}**")
    else:
        momentum = constants["momentum"]
        velocity_before, velocity_after = step.state_before["velocity"], step.state_after["velocity"]
        lines.append(
            f"4. **Update (SGD with momentum).** The velocity remembers the recent gradients; the weight moves "
            f"against it, by the learning rate times the velocity.  \n"
            f"velocity = {momentum:g} x ({velocity_before:+.3e}) + ({step.gradient:+.3e}) = {velocity_after:+.3e}  \n"
            f"w = {step.before:+.5f} - {rate:g} x ({velocity_after:+.3e}) = **{step.updated:+.5f}**")
    if step.after != step.updated:
        lines.append(f"5. **Constraint.** Every weight of the kernel is shifted by the same amount so that they "
                     f"add up to zero again (the first layer's rule): w = **{step.after:+.5f}**.")
    st.markdown("\n".join(lines))
    st.markdown(f"All {snapshot.parameter_count:,} weights of the network took such a step at the same time, "
                "each with its own gradient. Then the next batch.")


# ------------------------------------------------------------------------------- section 1


def _settings_ui(locked):
    start_column, rate_column, steps_column = st.columns(3, gap="medium")
    with start_column:
        st.radio("Start from", tuple(STARTS), index=0, key="learn_start", format_func=STARTS.get, disabled=locked)
        st.radio("Optimiser", tuple(OPTIMISERS), key="learn_optimiser", format_func=OPTIMISERS.get,
                 on_change=_on_optimiser_change, disabled=locked, horizontal=True)
    with rate_column:
        st.select_slider("Learning rate", LEARNING_RATES, value=DEFAULT_LEARNING_RATES["adam"], key="learn_rate",
                         disabled=locked,
                         help="How far each step moves the weights.")
        st.select_slider("Batch size (patches per step)", BATCH_SIZES, value=32, key="learn_batch", disabled=locked)
    with steps_column:
        st.select_slider("Steps", STEP_CHOICES, value=200, key="learn_steps", disabled=locked)
        st.number_input("Seed (random kernels and batch order)", 0, 9999, value=0, key="learn_seed", step=1,
                        disabled=locked)


# Charts are Vega-Lite specifications written here: st.line_chart builds them with Altair, whose schema
# validation cost 250 ms a chart on the classroom server, and a training page draws three every second.
CHART_HEIGHT = 220


def _chart(frame_and_spec):
    frame, spec = frame_and_spec
    st.vega_lite_chart(frame, spec, height=CHART_HEIGHT, width="stretch")


def _curves(snapshot, what_auc):
    loss_column, auc_column = st.columns(2, gap="large")
    with loss_column:
        if len(snapshot.losses):
            _chart(loss_chart(snapshot.losses, SMOOTHING))
            count = min(SMOOTHING, len(snapshot.losses))
            st.caption(f"The loss of each step's batch: it falls as the network learns (each batch is different, "
                       f"so it jitters). Mean of the first {count} steps {snapshot.losses[:count].mean():.3f}, "
                       f"of the last {count} {snapshot.losses[-count:].mean():.3f}.")
    with auc_column:
        if snapshot.auc_values:
            _chart(auc_chart(snapshot.auc_steps, snapshot.auc_values))
            st.caption(f"ROC AUC on {what_auc}: 0.5 is guessing (dashed), 1 a perfect ranking "
                       f"(now {snapshot.auc_values[-1]:.3f}, at the start {snapshot.auc_values[0]:.3f}).")


def _kernels(snapshot):
    st.markdown("**The first layer's kernels.** Nobody draws them: they start as they start, and every step "
                "changes them. On the right, what training has written into them so far (now minus start, on "
                "its own colour scale).")
    banks = (("At the start", snapshot.initial_kernels), ("Now", snapshot.kernels),
             ("What training changed", snapshot.kernels - snapshot.initial_kernels))
    for column, (title, kernels) in zip(st.columns(len(banks), gap="small"), banks):
        column.image(kernel_bank(kernels, tile=90, columns=4), caption=title, width="stretch")


def _gradient_sizes(snapshot):
    recent = snapshot.gradient_rms[-SMOOTHING:].mean(axis=0)
    _chart(gradient_chart([LAYER_NAMES[key] for key in snapshot.weight_keys], recent))
    st.caption(f"The typical size of one weight's gradient in each layer (root mean square, mean of the last "
               f"{min(SMOOTHING, len(snapshot.gradient_rms))} steps): how hard the loss pulls on that layer's weights.")


def _cam_before_after(snapshot):
    lesson = lesson_data()
    patch, mask = lesson.evaluation.patches[lesson.example], lesson.example_mask
    columns = st.columns(2, gap="medium")
    for column, (title, initial) in zip(columns, (("At the start", True), ("Now", False))):
        classifier = Classifier(snapshot.network(initial=initial))
        probability = float(classifier.predict_proba(patch)[0, 1])
        picture = lesion_outline(cam_overlay(patch, classifier.cam(patch), scale=PATCH_ZOOM), mask, scale=PATCH_ZOOM)
        column.image(picture, width="stretch", caption=f"{title}: lesion probability {100 * probability:.1f} %")
    st.caption(
        "A held-out patch with a synthetic lesion (green line). The heat is the class activation map: where the "
        "network finds evidence for \"lesion\". Random kernels find it anywhere; a trained network should put "
        "it on the lesion and raise the probability.")


def _draw_lesson(snapshot):
    settings = st.session_state["learn_settings"]
    _status(snapshot, "the page works as usual")
    if snapshot.parameters is None:
        return
    _curves(snapshot, f"{LESSON_EVALUATION_COUNT} held-out patches from the MR samples (a modality this training "
                      "never sees)")
    _kernels(snapshot)
    gradient_column, cam_column = st.columns([2, 3], gap="large")
    with gradient_column:
        if snapshot.steps_done:
            st.markdown("**How hard the loss pulls on each layer**")
            _gradient_sizes(snapshot)
    with cam_column:
        st.markdown("**One held-out patch, at the start and now**")
        _cam_before_after(snapshot)
    if snapshot.steps_done:
        st.markdown("#### What one step does")
        st.selectbox("Follow one weight of", tuple(LAYER_NAMES), key="learn_weight", format_func=LAYER_NAMES.get)
        _step_explanation(snapshot, settings, st.session_state["learn_weight"])


def _training_section():
    st.subheader("1. Train the network here")
    explain(
        "Nobody designs a CNN's kernels: **training** does. It shows the network a batch of patches, measures how "
        "wrong the answers are (the **loss**), works out for every weight which way would make the loss smaller "
        "(**backpropagation**), and moves every weight a little that way, the classification weights and the "
        "convolution kernels together. Then the next batch. Start from random kernels and watch noise turn into "
        f"edge and spot detectors, or go on from the shipped weights. The patches: {LESSON_TRAINING_COUNT} windows "
        "of the shipped CT, radiograph, angiography and ultrasound scans, half with a synthetic lesion."
    )
    snapshot = _snapshot("learn_run")
    locked = snapshot is not None and (snapshot.active or snapshot.status == "paused")
    _settings_ui(locked)
    if locked:
        st.caption("The settings apply to the next training: press Reset to change them.")
    _controls("learn_run", snapshot, _start_lesson_run, "Start training")
    if snapshot is None:
        return
    _live_panel("learn_run", _draw_lesson)


# ------------------------------------------------------------------------------- section 2


def _source_identity(chosen):
    return {"name": chosen.name, "is_upload": chosen.is_upload, "slice": chosen.slice_index,
            "level": chosen.level, "width": chosen.width}


def _start_scan_run(image, identity):
    if _other_run_active("learn_scan_run"):
        return
    settings = LiveSettings(start="shipped", optimiser="adam", learning_rate=float(st.session_state["learn_scan_rate"]),
                            batch_size=32, steps=int(st.session_state["learn_scan_steps"]), seed=0)
    _replace_run("learn_scan_run", scan_run(image, settings, connected=_connection_check()))
    st.session_state["learn_scan_source"] = identity


def _draw_scan(snapshot):
    _status(snapshot, "the rest of the page works as usual")
    image = snapshot.results.get("image")
    before, after = snapshot.results.get("before"), snapshot.results.get("after")
    if snapshot.parameters is not None:
        _curves(snapshot, f"{SCAN_TEST_COUNT} patches of this scan it never trains on")
    if before is None:
        return
    before_column, after_column = st.columns(2, gap="large")
    with before_column:
        st.image(probability_on_image(image, before.probabilities, before.tops, before.lefts, 480), width="stretch",
                 caption=f"Before: the shipped network. ROC AUC on this scan's test patches {before.auc:.3f}; "
                         f"highest window {100 * before.probabilities.max():.1f} %.")
    with after_column:
        if after is None:
            st.image(grey_rgb(image), width="stretch", caption="After: shown when the training has finished.")
        else:
            st.image(probability_on_image(image, after.probabilities, after.tops, after.lefts, 480), width="stretch",
                     caption=f"After {snapshot.steps_done} steps on this scan: ROC AUC {after.auc:.3f}; "
                             f"highest window {100 * after.probabilities.max():.1f} %.")
    if after is not None:
        st.markdown(
            f"On patches of this scan it never trained on, the ROC AUC went from **{before.auc:.3f}** to "
            f"**{after.auc:.3f}** ({after.auc - before.auc:+.3f}). The maps show every {MAP_STRIDE}-pixel window's "
            "lesion probability (clear below 50 %, then heat). The scan itself holds no synthetic lesion, so heat "
            "that remains after teaching is where this scan's own anatomy still looks like a lesion to the network. "
            "A network taught one scan may do worse on others: that is why real training uses many scans.")


# Fewer window positions than this and the scan's patches would be near copies of each other.
MIN_WINDOW_POSITIONS = 256


def _scan_section(chosen):
    st.subheader("2. Teach it your scan")
    explain(
        f"Pick a sample or upload a scan in the sidebar. ConvScope cuts {SCAN_TRAINING_COUNT // 2} windows from it, "
        f"uses each twice (once with a synthetic lesion, once without), and fine-tunes a copy of the shipped network "
        f"on them. It then measures {SCAN_TEST_COUNT} other windows of the same scan with new lesions, which it never "
        "trains on, and maps the lesion probability over the whole scan before and after. An uploaded scan's "
        "patches stay in your session's memory only."
    )
    identity = _source_identity(chosen)
    source = st.session_state["learn_scan_source"]
    if st.session_state["learn_scan_run"] is not None and source is not None and source["is_upload"] \
            and source != identity:
        _reset("learn_scan_run")  # an upload's results are kept only while that upload is the chosen scan
    snapshot = _snapshot("learn_scan_run")
    locked = snapshot is not None and (snapshot.active or snapshot.status == "paused")
    steps_column, rate_column = st.columns(2, gap="medium")
    steps_column.select_slider("Fine-tuning steps (batches of 32)", SCAN_STEP_CHOICES, value=100,
                               key="learn_scan_steps", disabled=locked)
    rate_column.select_slider("Learning rate (Adam)", SCAN_LEARNING_RATES, value=0.001, key="learn_scan_rate",
                              disabled=locked)
    image = fit_image(chosen.image)
    size = load().input_size
    positions = (image.shape[0] - size + 1) * (image.shape[1] - size + 1)
    if positions < MIN_WINDOW_POSITIONS and snapshot is None:
        st.warning(f"This image is only {chosen.image.shape[0]} x {chosen.image.shape[1]} pixels: its "
                   f"{size} x {size} windows would be nearly the same patch. Pick a larger scan or image to teach it.",
                   icon=":material/crop_free:")
        return
    _controls("learn_scan_run", snapshot, lambda: _start_scan_run(image, identity), "Teach it this scan")
    if snapshot is None:
        return
    source = st.session_state["learn_scan_source"]
    if source != identity:
        st.caption(f"These results are for {source['name']}, not for the scan picked now: press Reset, then "
                   "Teach it this scan, to teach it the one picked now.")
    _live_panel("learn_scan_run", _draw_scan)


def main():
    st.title("Watch it learn")
    st.warning(MODEL_NOTICE, icon=":material/science:")
    show_teaching_notice()
    _init_state()
    chosen = choose_image()
    _training_section()
    st.divider()
    _scan_section(chosen)
