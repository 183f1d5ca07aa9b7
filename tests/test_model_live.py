"""Live training (model/live.py): the optimisers' arithmetic, a Trainer's steps and records, the worker's
pause / resume / stop, the server-wide slots, a run that pauses when nobody watches and stops when its
session drops it, the patches cut from one scan, and that fine-tuning on a scan helps on that scan."""

import gc
import threading
import time

import numpy as np
import pytest

from model import data, live
from model.network import Architecture, Network
from model.train import lesion_cells

# A toy network and toy data: the same Trainer, a hundredth of the arithmetic.
TOY = Architecture(input_size=16, channels=(4, 8), kernel_sizes=(5, 3), pool_after=(True, False), global_pool="max")


def toy_patches(count, seed):
    """Noisy 16 x 16 patches, half with a bright 3 x 3 square: (TrainingPatches, EvaluationPatches)."""
    rng = np.random.default_rng(seed)
    patches = rng.normal(0.4, 0.05, (count, 16, 16)).astype(np.float32)
    labels = np.zeros(count, dtype=np.int64)
    labels[: count // 2] = 1
    rng.shuffle(labels)
    masks = np.zeros((count, 16, 16), dtype=bool)
    for index in np.flatnonzero(labels):
        row, col = rng.integers(2, 12, 2)
        masks[index, row:row + 3, col:col + 3] = True
    patches[masks] += 0.4
    patches = np.clip(patches, 0, 1)
    training = live.TrainingPatches(np.ascontiguousarray(patches[:, None]), labels, lesion_cells(masks, TOY.stride))
    return training, live.EvaluationPatches(patches, labels)


def toy_trainer(*, steps=40, optimiser="adam", learning_rate=0.01, seed=0):
    training, _ = toy_patches(128, seed)
    _, evaluation = toy_patches(64, seed + 100)
    settings = live.LiveSettings(optimiser=optimiser, learning_rate=learning_rate, batch_size=16, steps=steps,
                                 seed=seed)
    return live.Trainer(Network(TOY, seed=seed), training, evaluation, settings, evaluate_every=10)


def wait_for(run, status, timeout=60):
    def reached(snapshot):  # a waiting run counts once it is in the queue
        return snapshot.status == status and (status != "waiting" or snapshot.queue_position is not None)

    snapshot = run.wait_until(reached, timeout)
    assert snapshot.status == status, (snapshot.status, snapshot.error)
    return snapshot


# ------------------------------------------------------------------------------ settings and optimisers


@pytest.mark.parametrize("changes, message", [
    ({"optimiser": "rmsprop"}, "optimiser must be one of"),
    ({"learning_rate": 0.0}, "learning rate must be in"),
    ({"batch_size": 0}, "batch size must be 1 to"),
    ({"steps": live.MAX_STEPS + 1}, "steps must be 1 to"),
    ({"start": "yesterday"}, "start must be one of"),
])
def test_settings_refuse_bad_values_with_the_value_in_the_message(changes, message):
    with pytest.raises(ValueError, match=message):
        live.LiveSettings(**changes)


def test_sgd_with_momentum_follows_its_formula():
    params = {"w": np.array([1.0, -2.0], dtype=np.float32)}
    optimiser = live.SGDMomentum(params, learning_rate=0.1, momentum=0.9)
    gradients = [np.array([0.5, 1.0], dtype=np.float32), np.array([-1.0, 0.25], dtype=np.float32)]
    velocity = np.zeros(2)
    expected = np.array([1.0, -2.0])
    for gradient in gradients:
        optimiser.step({"w": gradient})
        velocity = 0.9 * velocity + gradient
        expected = expected - 0.1 * velocity
    np.testing.assert_allclose(params["w"], expected, rtol=1e-6)
    assert optimiser.state_of("w", 1) == {"velocity": pytest.approx(velocity[1])}


# ------------------------------------------------------------------------------ a Trainer


def test_a_trainer_learns_the_toy_task_and_keeps_its_records():
    trainer = toy_trainer(steps=60)
    assert trainer.auc_steps == [0]  # measured before the first step
    while not trainer.finished:
        trainer.step()
    assert trainer.losses[-10:].mean() < 0.6 * trainer.losses[:10].mean(), trainer.losses
    assert trainer.auc_values[-1] > 0.9 and trainer.auc_values[0] < 0.8
    assert trainer.auc_steps == [0, 10, 20, 30, 40, 50, 60]
    assert trainer.gradient_rms.shape == (60, 3) and (trainer.gradient_rms > 0).all()
    assert set(trainer.weight_steps) == {"conv1.weight", "conv2.weight", "dense.weight"}
    with pytest.raises(RuntimeError, match="all its 60 steps"):
        trainer.step()


def test_one_weights_record_is_the_adam_update_that_was_applied():
    trainer = toy_trainer(steps=5)
    for _ in range(3):
        trainer.step()
    constants = live.optimiser_constants(trainer.optimiser)
    for key, step in trainer.weight_steps.items():
        beta1, beta2, eps, rate = constants["beta1"], constants["beta2"], constants["eps"], constants["learning_rate"]
        m = beta1 * step.state_before["m"] + (1 - beta1) * step.gradient
        v = beta2 * step.state_before["v"] + (1 - beta2) * step.gradient ** 2
        assert step.state_after["m"] == pytest.approx(m, rel=1e-5, abs=1e-12)
        assert step.state_after["v"] == pytest.approx(v, rel=1e-5, abs=1e-15)
        change = rate * (m / (1 - beta1 ** 3)) / (np.sqrt(v / (1 - beta2 ** 3)) + eps)
        assert step.updated == pytest.approx(step.before - change, abs=2e-7), key
        assert step.after == pytest.approx(float(trainer.network.parameters()[key][step.index]))
    # The first layer's kernels are projected back to zero sum after the update; the others are not.
    first = trainer.weight_steps["conv1.weight"]
    assert first.after != first.updated
    assert trainer.weight_steps["dense.weight"].after == trainer.weight_steps["dense.weight"].updated
    np.testing.assert_allclose(trainer.first_layer_kernels().sum(axis=(1, 2)), 0.0, atol=1e-6)


def test_sgd_records_its_velocity_and_update():
    trainer = toy_trainer(steps=3, optimiser="sgd", learning_rate=0.05)
    trainer.step()
    trainer.step()
    step = trainer.weight_steps["dense.weight"]
    velocity = live.SGD_MOMENTUM * step.state_before["velocity"] + step.gradient
    assert step.state_after["velocity"] == pytest.approx(velocity, rel=1e-5)
    assert step.updated == pytest.approx(step.before - 0.05 * velocity, abs=1e-7)


def test_from_scratch_is_seeded_noise_and_shipped_is_a_copy_that_training_leaves_alone():
    from model import load

    first = live.initial_network("scratch", 3).parameters()
    again = live.initial_network("scratch", 3).parameters()
    other = live.initial_network("scratch", 4).parameters()
    assert all(np.array_equal(first[key], again[key]) for key in first)
    assert not np.array_equal(first["conv1.weight"], other["conv1.weight"])
    kernels = first["conv1.weight"]
    np.testing.assert_allclose(kernels.sum(axis=(1, 2, 3)), 0.0, atol=1e-6)
    assert kernels.std() == pytest.approx(live.RANDOM_FIRST_KERNEL_SPREAD, rel=0.3)

    shipped_before = load().network.parameters()["conv1.weight"].copy()
    copy = live.initial_network("shipped", 0)
    copy.parameters()["conv1.weight"] += 1.0
    np.testing.assert_array_equal(load().network.parameters()["conv1.weight"], shipped_before)


# ------------------------------------------------------------------------------ runs, slots, threads


def toy_run(slots, *, steps=30, finish=None):
    def prepare():
        return toy_trainer(steps=steps), {"prepared": True}

    return live.TrainingRun(prepare, total_steps=steps, finish=finish, slots=slots)


def test_a_run_trains_in_its_thread_and_publishes_its_records():
    run = toy_run(live.TrainingSlots(1), finish=lambda trainer: {"final_auc": trainer.auc_values[-1]})
    snapshot = wait_for(run, "finished")
    assert run.join(10)
    assert snapshot.steps_done == snapshot.total_steps == 30
    assert len(snapshot.losses) == 30 and not snapshot.losses.flags.writeable
    assert snapshot.results == {"prepared": True, "final_auc": snapshot.auc_values[-1]}
    assert snapshot.kernels.shape == (4, 5, 5) and snapshot.initial_kernels.shape == (4, 5, 5)
    assert not np.array_equal(snapshot.kernels, snapshot.initial_kernels)
    assert snapshot.network(architecture=TOY) is not None and snapshot.optimiser == "adam"


def test_pause_stops_the_steps_and_resume_goes_on_from_there():
    run = toy_run(live.TrainingSlots(1), steps=400)
    wait_for(run, "running")
    run.pause()
    paused = wait_for(run, "paused")
    assert paused.pause_reason == "asked"
    time.sleep(0.3)
    assert run.snapshot().steps_done == paused.steps_done < 400
    run.resume()
    snapshot = run.wait_until(lambda snapshot: snapshot.steps_done > paused.steps_done, 30)
    assert snapshot.status in ("running", "finished")
    run.stop()
    wait_for(run, "stopped")
    assert run.join(10)


def test_slots_cap_concurrent_runs_and_a_paused_run_gives_its_slot_away():
    slots = live.TrainingSlots(1)
    first = toy_run(slots, steps=400)
    wait_for(first, "running")
    second = toy_run(slots, steps=20)
    waiting = wait_for(second, "waiting")
    assert waiting.queue_position == 0 and waiting.busy_slots == 1 and waiting.capacity == 1
    time.sleep(0.3)
    assert second.snapshot().steps_done == 0
    first.pause()
    wait_for(second, "finished")
    first.resume()
    wait_for(first, "running")
    first.stop()
    assert first.join(10) and second.join(10)
    assert slots.busy == 0


def test_first_come_first_served():
    slots = live.TrainingSlots(1)
    holder = toy_run(slots, steps=400)
    wait_for(holder, "running")
    early = toy_run(slots, steps=5)
    wait_for(early, "waiting")
    late = toy_run(slots, steps=5)
    assert wait_for(late, "waiting").queue_position == 1
    holder.stop()
    wait_for(early, "finished")
    finished_early = time.monotonic()
    wait_for(late, "finished")
    assert time.monotonic() >= finished_early
    assert slots.busy == 0


def test_a_run_nobody_watches_pauses_itself_and_frees_its_slot(monkeypatch):
    monkeypatch.setattr(live, "HEARTBEAT_TIMEOUT_S", 0.5)
    slots = live.TrainingSlots(1)
    run = toy_run(slots, steps=2000)
    wait_for(run, "running")
    deadline = time.monotonic() + 30
    while run._worker.snapshot.status == "running" and time.monotonic() < deadline:
        time.sleep(0.05)  # reading the worker's snapshot directly: no sign of life
    snapshot = run._worker.snapshot
    assert snapshot.status == "paused" and snapshot.pause_reason == "unwatched"
    assert slots.busy == 0
    run.stop()
    assert run.join(10)


def test_a_run_whose_session_disconnects_pauses_at_once_and_ignores_the_page_timer(monkeypatch):
    monkeypatch.setattr(live, "HEARTBEAT_TIMEOUT_S", 0.2)
    connected = threading.Event()
    connected.set()
    slots = live.TrainingSlots(1)

    def prepare():
        return toy_trainer(steps=2000), {}

    run = live.TrainingRun(prepare, total_steps=2000, slots=slots, connected=connected.is_set)
    wait_for(run, "running")
    time.sleep(0.6)  # the page is elsewhere (no polling) but the session is connected: it goes on
    assert run._worker.snapshot.status == "running"
    connected.clear()
    snapshot = run.wait_until(lambda snapshot: snapshot.status == "paused", 30)
    assert snapshot.pause_reason == "unwatched" and slots.busy == 0
    run.stop()
    assert run.join(10)


def test_a_dropped_run_stops_its_thread():
    slots = live.TrainingSlots(1)
    run = toy_run(slots, steps=2000)
    wait_for(run, "running")
    worker = run._worker
    del run
    gc.collect()
    worker.thread.join(10)
    assert not worker.thread.is_alive()
    assert worker.snapshot.status == "stopped" and slots.busy == 0
    assert worker.trainer is None  # its data and network went with it


def test_a_training_thread_runs_at_a_lower_priority_and_with_one_engine_thread():
    import os

    import numba

    seen = {}

    def prepare():
        seen["niceness"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen["threads"] = numba.get_num_threads()
        return toy_trainer(steps=2), {}

    run = live.TrainingRun(prepare, total_steps=2, slots=live.TrainingSlots(1))
    wait_for(run, "finished")
    assert seen["niceness"] == os.getpriority(os.PRIO_PROCESS, 0) + live.TRAINING_NICENESS
    assert seen["threads"] == live.TRAINING_THREADS == 1
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == os.getpriority(os.PRIO_PROCESS, 0)


def test_a_failing_run_reports_its_error_and_frees_its_slot():
    slots = live.TrainingSlots(1)

    def prepare():
        raise ValueError("no patches")

    run = live.TrainingRun(prepare, total_steps=5, slots=slots)
    snapshot = wait_for(run, "failed")
    assert snapshot.error == "ValueError: no patches"
    assert run.join(10) and slots.busy == 0


def test_slots_refuse_a_release_without_a_take():
    slots = live.TrainingSlots(2)
    with pytest.raises(RuntimeError, match="not taken"):
        slots.release()
    assert slots.acquire(object(), lambda: False)
    assert slots.busy == 1
    gave_up = threading.Event()
    assert slots.acquire(object(), lambda: False) and slots.busy == 2
    assert not slots.acquire(object(), lambda: gave_up.set() or True)
    assert gave_up.is_set()


# ------------------------------------------------------------------------------ one scan's patches


def scan_like_image(shape=(200, 240), seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    image = 0.5 + 0.2 * np.sin(rows / 9.0) * np.cos(cols / 13.0) + rng.normal(0, 0.02, shape)
    return np.clip(image, 0, 1).astype(np.float32)


def test_cut_scan_patches_are_windows_of_the_image_half_with_a_lesion():
    image = scan_like_image((120, 140))
    patch_set = live.cut_scan_patches(image, 40, seed=1, paired=True)
    assert patch_set.patches.shape == (40, 64, 64) and patch_set.labels.sum() == 20
    windows = np.lib.stride_tricks.sliding_window_view(image, (64, 64)).reshape(-1, 64 * 64)
    for patch, label, mask in zip(patch_set.patches, patch_set.labels, patch_set.lesion_masks):
        if label == 0:
            assert (np.abs(windows - patch.reshape(-1)).max(axis=1) == 0).any()  # a window as it is
            assert not mask.any()
        else:
            assert mask.any()
    # Paired: every lesion patch has its window without the lesion in the set (most pixels equal: the
    # lesion's soft edge reaches a few pixels beyond its mask).
    negatives = patch_set.patches[patch_set.labels == 0]
    for patch in patch_set.patches[patch_set.labels == 1]:
        assert any(np.median(np.abs(patch - negative)) < 1e-4 for negative in negatives)
    again = live.cut_scan_patches(image, 40, seed=1, paired=True)
    np.testing.assert_array_equal(again.patches, patch_set.patches)


def test_scan_patches_test_windows_are_cut_apart_from_the_training_windows():
    patches = live.scan_patches(scan_like_image(), training_count=64, test_count=32)
    assert patches.training.inputs.shape == (64, 1, 64, 64) and patches.test.patches.shape == (32, 64, 64)
    assert patches.training.targets.shape == (64, 8, 8)
    assert patches.test.labels.sum() == 16
    training = patches.training.inputs[:, 0].reshape(64, -1)
    assert not any((np.abs(training - test.reshape(-1)).max(axis=1) == 0).any() for test in patches.test.patches)


@pytest.mark.parametrize("shape, expected", [((1280, 960), (640, 480)), ((300, 200), (300, 200)),
                                             ((40, 80), (64, 128)), ((64, 64), (64, 64))])
def test_fit_image_keeps_the_long_side_at_most_640_and_the_short_side_at_least_64(shape, expected):
    assert live.fit_image(np.zeros(shape, dtype=np.float32)).shape == expected


def test_cut_scan_patches_refuses_an_image_smaller_than_a_window():
    with pytest.raises(ValueError, match="at least 64 x 64 pixels, got shape"):
        live.cut_scan_patches(np.zeros((50, 200), dtype=np.float32), 4, seed=0, paired=False)


# ------------------------------------------------------------------------------ the shipped data


def test_the_lesson_trains_on_shipped_scans_and_holds_out_every_mr():
    training, held_out = data.shipped_images()
    assert training and held_out
    assert {image.modality for image in held_out} == {data.HELD_OUT_MODALITY}
    assert data.HELD_OUT_MODALITY not in {image.modality for image in training}
    names = {image.name for image in training}
    assert "Chest radiograph" in names and "Head CT slice" in names
    assert any(name.startswith("pyradiomics_lung1_image.nrrd") for name in names)  # the vendored scans
    assert {image.name for image in held_out} >= {"Abdomen MR with a liver lesion", "Shoulder MR"}


@pytest.mark.slow
def test_fine_tuning_on_a_weak_scan_raises_its_held_out_auc():
    """The bar: on a sample where the shipped model is weak (the abdominal MR with a liver lesion: 0.815
    at the tenth session, though that scan is among its training images), 100 steps on that scan's
    patches raise the AUC on its test patches."""
    from scans import apply_window, read_sample

    scan = read_sample("Abdomen MR with a liver lesion")
    image = live.fit_image(apply_window(scan.pixels, *scan.default_window))
    run = live.scan_run(image, live.LiveSettings(start="shipped", learning_rate=0.001, steps=100))
    snapshot = run.wait_until(lambda snapshot: not snapshot.active, 600)
    assert snapshot.status == "finished", snapshot.error
    before, after = snapshot.results["before"], snapshot.results["after"]
    print(f"held-out patch AUC of this scan: {before.auc:.3f} -> {after.auc:.3f}")
    assert before.auc < 0.85
    assert after.auc > before.auc + 0.02
