"""Training the lesion classifier live, inside the app: one step at a time, in a worker thread per session.

The "Watch it learn" lesson trains the shipped architecture (model/train.py ARCHITECTURE) with the
same arithmetic as ``python -m model.train`` (the engine's forward and backward passes, the answer
and localisation losses, a zero-sum first layer), but step by step so a page can watch:

* :class:`Trainer` takes one step (:meth:`Trainer.step`) and keeps what the page draws: the losses,
  the held-out ROC AUC, the size of each layer's gradient, and one weight's numbers through the step;
* :class:`TrainingRun` runs a Trainer in a worker thread with pause, resume and stop, on one engine
  thread at a lower priority (:data:`TRAINING_THREADS`, :data:`TRAINING_NICENESS`). The engine's
  Numba kernels release the GIL, so the pages stay responsive while it trains. A run pauses itself
  when its page stops asking for news (:data:`HEARTBEAT_TIMEOUT_S`) and stops when the session
  that owns it is dropped;
* :data:`SLOTS` caps how many runs train at once in the whole server (first come, first served);
* the data need nothing but the repository: patches cut from the shipped scans
  (:func:`model.data.shipped_images`), computed once per process, or from one person's scan
  (:func:`scan_patches`; an upload's patches live only in that session's run).

Nothing here imports Streamlit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import NamedTuple

import numba
import numpy as np

from model import data
from model.layers import softmax_cross_entropy
from model.network import Classifier, Network, initial_parameters
from model.train import ARCHITECTURE, Adam, lesion_cells, localisation_loss, roc_auc

# ---------------------------------------------------------------------------------------------------
# Settings

OPTIMISERS = {"adam": "Adam", "sgd": "SGD with momentum"}
STARTS = {"scratch": "random kernels (from scratch)", "shipped": "the shipped weights"}
MAX_STEPS = 2000  # bounds a run's history (and how long one session can hold a slot)
MAX_BATCH_SIZE = 128
SGD_MOMENTUM = 0.9

# A from-scratch first layer starts as seeded noise of this spread (the deeper layers get He-normal
# noise, as model.network.initial_parameters gives them). He's own scale for 5 x 5 kernels, 0.28,
# is noise that 200 steps of Adam only tint; at 0.1 what training writes into the kernels (edges,
# spots) shows within 200 steps, and the held-out AUC after 200 steps was as good or better
# (0.68 at learning rate 5e-3, against 0.62 with He's scale at 2e-3, on this lesson's data).
RANDOM_FIRST_KERNEL_SPREAD = 0.1

# Threads each training uses for the engine's parallel loops. One: on the 2-core classroom server
# the other core stays free for everybody else's clicks (numba.set_num_threads is per thread, so
# other sessions keep theirs). CONVSCOPE_TRAINING_THREADS changes it.
TRAINING_THREADS = max(1, int(os.environ.get("CONVSCOPE_TRAINING_THREADS", "1")))

# A training's thread runs at this niceness (Linux: per thread), so the class's clicks get a core first
# when both are busy. CONVSCOPE_TRAINING_NICE changes it; 0 keeps the server's own priority.
TRAINING_NICENESS = int(os.environ.get("CONVSCOPE_TRAINING_NICE", "10"))

# How many runs may train at once in this server process (the others wait their turn).
# CONVSCOPE_TRAINING_SLOTS changes it; the default leaves half the cores to the class.
TRAINING_SLOTS = max(1, int(os.environ.get("CONVSCOPE_TRAINING_SLOTS", str(max(1, (os.cpu_count() or 2) // 2)))))

# A running (or waiting) run pauses itself and gives its slot back as soon as its browser session is
# no longer connected (when the page can tell it, see TrainingRun's ``connected``); otherwise when
# its page has not asked for news for this long (the page asks every second or so while it shows it).
HEARTBEAT_TIMEOUT_S = 45.0

EVALUATION_BATCH = 64  # patches per forward pass when measuring the AUC (bounds memory)


@dataclass(frozen=True)
class LiveSettings:
    """The settings of one live training run.

    Attributes
    ----------
    start : {"scratch", "shipped"}
        Seeded random weights, or a copy of the shipped weights (model/weights.npz).
    optimiser : {"adam", "sgd"}
        Adam, or stochastic gradient descent with momentum :data:`SGD_MOMENTUM`.
    learning_rate : float
        Constant through the run, so that each step's update can be read off the page.
    batch_size, steps, seed : int
        Patches per step; steps in the run (at most :data:`MAX_STEPS`); seed of the random
        weights and of the batch order.
    localisation_weight : float
        Weight of the "where is the lesion?" loss next to the answer's, as in model/train.py.
    """

    start: str = "scratch"
    optimiser: str = "adam"
    learning_rate: float = 5e-3
    batch_size: int = 32
    steps: int = 200
    seed: int = 0
    localisation_weight: float = 1.0

    def __post_init__(self):
        if self.start not in STARTS:
            raise ValueError(f"start must be one of {sorted(STARTS)}, got {self.start!r}")
        if self.optimiser not in OPTIMISERS:
            raise ValueError(f"optimiser must be one of {sorted(OPTIMISERS)}, got {self.optimiser!r}")
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"learning rate must be in (0, 1], got {self.learning_rate}")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch size must be 1 to {MAX_BATCH_SIZE} patches, got {self.batch_size}")
        if not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be 1 to {MAX_STEPS}, got {self.steps}")
        if self.localisation_weight < 0:
            raise ValueError(f"localisation weight must be >= 0, got {self.localisation_weight}")


# ---------------------------------------------------------------------------------------------------
# Optimisers


class SGDMomentum:
    """Stochastic gradient descent with momentum, updating a dict of arrays in place.

    For each parameter p with gradient g: ``velocity = momentum * velocity + g``;
    ``p -= learning_rate * velocity`` (the form PyTorch's SGD uses).

    Parameters
    ----------
    params : dict of str to float32 array
        The arrays to update (modified in place).
    learning_rate, momentum : float
    """

    def __init__(self, params, *, learning_rate=0.05, momentum=SGD_MOMENTUM):
        self.params = params
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.velocity = {key: np.zeros_like(value) for key, value in params.items()}
        self.steps = 0

    def step(self, grads):
        """Apply one update from ``grads`` (same keys and shapes as ``params``)."""
        self.steps += 1
        for key, param in self.params.items():
            velocity = self.velocity[key]
            velocity *= self.momentum
            velocity += grads[key]
            param -= (self.learning_rate * velocity).astype(np.float32)

    def state_of(self, key, index):
        """The velocity of one weight: {"velocity": value}."""
        return {"velocity": float(self.velocity[key][index])}


def optimiser_constants(optimiser):
    """The numbers an optimiser's update uses besides the gradient: {"learning_rate": ..., ...}."""
    if isinstance(optimiser, Adam):
        return {"learning_rate": optimiser.learning_rate, "beta1": optimiser.beta1, "beta2": optimiser.beta2,
                "eps": optimiser.eps}
    return {"learning_rate": optimiser.learning_rate, "momentum": optimiser.momentum}


def make_optimiser(name, params, learning_rate):
    """An optimiser from :data:`OPTIMISERS` over ``params`` (a dict of arrays updated in place)."""
    if name == "adam":
        return Adam(params, learning_rate=learning_rate)
    if name == "sgd":
        return SGDMomentum(params, learning_rate=learning_rate)
    raise ValueError(f"optimiser must be one of {sorted(OPTIMISERS)}, got {name!r}")


# ---------------------------------------------------------------------------------------------------
# Networks to start from


def initial_network(start, seed, architecture=ARCHITECTURE):
    """A fresh Network to train: seeded random weights ("scratch") or a copy of the shipped ones ("shipped").

    From scratch every layer is seeded noise: He-normal as :func:`model.network.initial_parameters`
    draws it, except the first layer, which is noise of spread :data:`RANDOM_FIRST_KERNEL_SPREAD`
    made zero-sum (the shipped training starts it as centre-surround detectors instead).
    The shipped weights are copied: the classifier that every page shares is never changed.
    """
    if start == "shipped":
        from model import load

        shipped = load()
        if shipped.architecture != architecture:
            raise ValueError(f"the shipped weights have architecture {shipped.architecture}, not {architecture}")
        return Network(architecture, {key: value.copy() for key, value in shipped.network.parameters().items()})
    if start != "scratch":
        raise ValueError(f"start must be one of {sorted(STARTS)}, got {start!r}")
    params = initial_parameters(architecture, seed)
    first = params["conv1.weight"]
    noise = np.random.default_rng([seed, 1]).normal(0.0, RANDOM_FIRST_KERNEL_SPREAD, first.shape)
    params["conv1.weight"] = (noise - noise.mean(axis=(1, 2, 3), keepdims=True)).astype(np.float32)
    return Network(architecture, params)


def tracked_weights(network):
    """One weight per layer whose numbers a page can follow through each step: {key: index}.

    The centre tap of each convolution's first kernel (on its first input channel) and the dense
    layer's weight from the first pooled channel to "lesion".
    """
    tracked = {}
    for key, value in network.parameters().items():
        if not key.endswith(".weight"):
            continue
        if value.ndim == 4:
            tracked[key] = (0, 0, value.shape[2] // 2, value.shape[3] // 2)
        else:
            tracked[key] = (0, value.shape[1] - 1)
    return tracked


# ---------------------------------------------------------------------------------------------------
# Data


class TrainingPatches(NamedTuple):
    """What a Trainer learns from.

    inputs : float32 (N, 1, S, S), windowed patches in [0, 1]
    labels : int64 (N,), 1 where a synthetic lesion was inserted
    targets : bool (N, S / stride, S / stride), the score-map cells each lesion occupies
    """

    inputs: np.ndarray
    labels: np.ndarray
    targets: np.ndarray


class EvaluationPatches(NamedTuple):
    """Patches a Trainer measures its ROC AUC on and never trains on: (N, S, S) in [0, 1], labels (N,)."""

    patches: np.ndarray
    labels: np.ndarray


def _training_patches(patch_set, architecture=ARCHITECTURE):
    return TrainingPatches(np.ascontiguousarray(patch_set.patches[:, None]), patch_set.labels,
                           lesion_cells(patch_set.lesion_masks, architecture.stride))


LESSON_TRAINING_COUNT = 2048  # paired: 1024 backgrounds, each with and without a lesion (32 MB)
LESSON_EVALUATION_COUNT = 256


class LessonData(NamedTuple):
    """The lesson's patches, built once per process and shared read-only by every session's runs.

    training : TrainingPatches from the shipped non-MR scans
    evaluation : EvaluationPatches from the MR samples, a modality the training never sees
    example : index of an evaluation patch with a plainly visible lesion (the page's before / after map)
    example_mask : bool (S, S), that lesion
    """

    training: TrainingPatches
    evaluation: EvaluationPatches
    example: int
    example_mask: np.ndarray


_data_lock = threading.Lock()


def lesson_data():
    """The lesson's :class:`LessonData`, cut on first use (a few seconds); concurrent first callers wait for one build.

    The training patches are built as model/train.py builds its training set (paired, augmented, a
    fifth on photographs and some on synthetic anatomy; :func:`model.data.make_patch_set`), smaller. The
    source scans and the build's temporaries (image and photograph pyramids) are let go afterwards: only
    the patches stay (about 38 MB).
    """
    with _data_lock:
        return _lesson_data()


@functools.lru_cache(maxsize=1)
def _lesson_data():
    training_images, held_images = data.shipped_images()
    training_set = data.make_patch_set(training_images, LESSON_TRAINING_COUNT, data.TRAINING_SEED,
                                       paired=True, augment=True)
    evaluation_set = data.make_patch_set(held_images, LESSON_EVALUATION_COUNT, data.HELD_OUT_SEED)
    # The example: the first lesion that is plainly there (large and contrasted enough to be seen on a
    # projector), so the class can judge the map by eye.
    clear = (evaluation_set.labels == 1) & (evaluation_set.radii >= 6.0) & (np.abs(evaluation_set.contrasts) >= 0.2)
    example = int(np.flatnonzero(clear)[0]) if clear.any() else int(np.flatnonzero(evaluation_set.labels == 1)[0])
    lesson = LessonData(_training_patches(training_set),
                        EvaluationPatches(evaluation_set.patches, evaluation_set.labels), example,
                        evaluation_set.lesion_masks[example].copy())
    del training_images, held_images, training_set, evaluation_set
    _give_back_freed_memory()
    return lesson


def _give_back_freed_memory():
    """Return freed heap memory to the system (glibc's malloc_trim): building the lesson's data once
    leaves about 70 MB of freed temporaries that the process would otherwise keep. Elsewhere a no-op."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError):
        if name is not None:
            ctypes.CDLL(name).malloc_trim(0)


def fit_image(image, size=ARCHITECTURE.input_size, max_side=data.SHOWN_MAX_SIDE):
    """The windowed image scaled so its long side is at most ``max_side`` and its short side at least ``size``.

    As the classifier lesson shows an image: a large scan is reduced so that a size x size window
    covers a useful part of it; a small one is enlarged to hold at least one window.

    Returns
    -------
    float32 (H', W') in [0, 1]
    """
    from scans.preprocess import resize

    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"the image must be 2-D (H, W), got shape {image.shape}")
    shape = data.shown_shape(image.shape, size, max_side)
    if shape == image.shape:
        return image
    return np.clip(resize(image, shape), 0.0, 1.0).astype(np.float32)


# A scan's windows flatter than this (air, saturated bone) are mostly redrawn, as model.data does
# when it cuts training patches, so the set is about the anatomy, not about empty background.
_FLAT_REDRAWS = 20


def cut_scan_patches(image, count, seed, *, paired, size=ARCHITECTURE.input_size):
    """Cut ``count`` windows from one windowed image, half of them given a synthetic lesion.

    Parameters
    ----------
    image : float32 (H, W) in [0, 1], H and W >= size
    count : int
        Patches: count // 2 with a lesion (:func:`model.data.insert_lesion`, :data:`model.data.LESION_STYLE`,
        as test sets draw them), the rest without.
    seed : int
        Seed of the window positions and the lesions.
    paired : bool
        Every window twice, with and without a lesion (count even), as the training data are cut;
        test sets use independent windows (False).

    Returns
    -------
    model.data.PatchSet (source names "this scan")
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2 or min(image.shape) < size:
        raise ValueError(f"the image must be 2-D and at least {size} x {size} pixels, got shape {image.shape}")
    if count < 2 or (paired and count % 2):
        raise ValueError(f"need at least 2 patches (an even count when paired), got {count}")
    rng = np.random.default_rng(seed)
    backgrounds = count // 2 if paired else count
    positive = np.zeros(backgrounds, dtype=bool)
    positive[:count // 2] = True
    rng.shuffle(positive)
    patches = np.empty((count, size, size), dtype=np.float32)
    masks = np.zeros((count, size, size), dtype=bool)
    labels = np.zeros(count, dtype=np.int64)
    radii = np.zeros(count, dtype=np.float32)
    contrasts = np.zeros(count, dtype=np.float32)
    slot = 0
    for background_index in range(backgrounds):
        for _ in range(_FLAT_REDRAWS):
            top = rng.integers(0, image.shape[0] - size + 1)
            left = rng.integers(0, image.shape[1] - size + 1)
            window = image[top:top + size, left:left + size]
            if window.std() >= data._FLAT_STD or rng.random() < data._KEEP_FLAT_PROBABILITY:
                break
        for with_lesion in ((False, True) if paired else (bool(positive[background_index]),)):
            if with_lesion:
                patches[slot], lesion = data.insert_lesion(window, rng)
                masks[slot] = lesion.mask > 0.5
                labels[slot] = 1
                radii[slot], contrasts[slot] = lesion.radius, lesion.contrast
            else:
                patches[slot] = window
            slot += 1
    order = rng.permutation(count)
    return data.PatchSet(patches[order], labels[order], masks[order], ("this scan",) * count, radii[order],
                         contrasts[order])


SCAN_TRAINING_COUNT = 512  # paired: 256 windows, each with and without a lesion
SCAN_TEST_COUNT = 256  # independent windows with new lesions


class ScanPatches(NamedTuple):
    """One scan cut for "teach it your scan": training patches and test patches it never trains on."""

    image: np.ndarray
    training: TrainingPatches
    test: EvaluationPatches


def scan_patches(image, *, seed=0, training_count=SCAN_TRAINING_COUNT, test_count=SCAN_TEST_COUNT):
    """Training and test patches from one fitted, windowed image (:func:`fit_image`).

    The test windows are drawn independently of the training windows, with their own lesions: the
    same scan's anatomy (that is the point), but patches the network never trains on.
    """
    training = cut_scan_patches(image, training_count, seed, paired=True)
    test = cut_scan_patches(image, test_count, seed + 1_000_003, paired=False)
    return ScanPatches(np.asarray(image, dtype=np.float32), _training_patches(training),
                       EvaluationPatches(test.patches, test.labels))


# ---------------------------------------------------------------------------------------------------
# One step at a time


class WeightStep(NamedTuple):
    """One weight's numbers through one step.

    key, index : which weight ("conv1.weight", (0, 0, 2, 2))
    before : its value before the step
    gradient : d loss / d weight, from the backward pass (for the first layer: after removing the
        kernel's mean gradient, which keeps the kernel zero-sum)
    state_before, state_after : the optimiser's numbers for it (Adam: "m", "v"; SGD: "velocity")
    updated : its value after the optimiser's update
    after : its value after the layer's constraint (first layer: the kernel's weights shifted to sum
        to zero again; otherwise equal to ``updated``)
    """

    key: str
    index: tuple
    before: float
    gradient: float
    state_before: dict
    state_after: dict
    updated: float
    after: float


class Trainer:
    """Trains a Network one step at a time and keeps what a page draws.

    Parameters
    ----------
    network : Network
        Trained in place.
    training : TrainingPatches
    evaluation : EvaluationPatches
        Held-out patches: the ROC AUC is measured on them every ``evaluate_every`` steps and after
        the last step.
    settings : LiveSettings
        Optimiser, learning rate, batch size, steps, seed, localisation weight.
    evaluate_every : int, optional
        Default: 8 measurements over the run after the first (one every 25 steps of 200), at most one
        every 10 steps: each costs a forward pass over all the held-out patches (about as much as three
        training steps); 20 of them were a fifth of a 200-step run.
    """

    def __init__(self, network, training, evaluation, settings, *, evaluate_every=None):
        if len(training.labels) < settings.batch_size:
            raise ValueError(f"a batch of {settings.batch_size} needs at least as many training patches, "
                             f"got {len(training.labels)}")
        self.network = network
        self.classifier = Classifier(network)
        self.training = training
        self.evaluation = evaluation
        self.settings = settings
        self.evaluate_every = evaluate_every or max(10, settings.steps // 8)
        self.optimiser = make_optimiser(settings.optimiser, network.parameters(), settings.learning_rate)
        self.tracked = tracked_weights(network)
        self.weight_keys = tuple(self.tracked)
        self._rng = np.random.default_rng([settings.seed, 2])
        self._order = np.empty(0, dtype=np.intp)
        self._next = 0
        total = settings.steps
        self.losses = np.zeros(total, dtype=np.float64)  # answer + weighted localisation loss
        self.answer_losses = np.zeros(total, dtype=np.float64)
        self.accuracies = np.zeros(total, dtype=np.float64)  # of the step's batch, before its update
        self.gradient_rms = np.zeros((total, len(self.weight_keys)), dtype=np.float64)
        self.auc_steps = []
        self.auc_values = []
        self.weight_steps = {}
        self.steps_done = 0
        self.seconds = 0.0  # time spent in steps and measurements
        self.initial_parameters = {key: value.copy() for key, value in network.parameters().items()}
        self.initial_kernels = self.first_layer_kernels()
        self._measure()

    @property
    def finished(self):
        return self.steps_done >= self.settings.steps

    def first_layer_kernels(self):
        """A copy of the first layer's kernels, (K, k, k)."""
        return self.network.layer("conv1").params["weight"][:, 0].copy()

    def _batch(self):
        size = self.settings.batch_size
        if self._next + size > len(self._order):
            self._order = self._rng.permutation(len(self.training.labels))
            self._next = 0
        chosen = self._order[self._next:self._next + size]
        self._next += size
        return chosen

    def step(self):
        """One training step: forward, loss, backward, update; then the AUC when it is due.

        Returns
        -------
        float : the step's loss
        """
        if self.finished:
            raise RuntimeError(f"the run has done all its {self.settings.steps} steps")
        started = time.perf_counter()
        chosen = self._batch()
        labels = self.training.labels[chosen]
        logits, trace = self.network.forward(self.training.inputs[chosen], keep=True)
        answer_loss, d_logits = softmax_cross_entropy(logits, labels)
        loss, d_score_map = answer_loss, None
        if self.settings.localisation_weight > 0:
            where_loss, d_score_map = localisation_loss(self.network.score_map(trace), self.training.targets[chosen])
            loss += self.settings.localisation_weight * where_loss
            d_score_map *= self.settings.localisation_weight
        grads = self.network.backward(trace, d_logits, d_score_map)
        del trace  # the step's activations (tens of MB at batch 32) go before the update
        params = self.optimiser.params
        before = {key: (float(params[key][index]), self.optimiser.state_of(key, index))
                  for key, index in self.tracked.items()}
        self.optimiser.step(grads)
        updated = {key: float(params[key][index]) for key, index in self.tracked.items()}
        self.network.constrain()
        self.weight_steps = {
            key: WeightStep(key, index, before[key][0], float(grads[key][index]), before[key][1],
                            self.optimiser.state_of(key, index), updated[key], float(params[key][index]))
            for key, index in self.tracked.items()}
        step = self.steps_done
        self.losses[step] = loss
        self.answer_losses[step] = answer_loss
        self.accuracies[step] = float((logits.argmax(axis=1) == labels).mean())
        self.gradient_rms[step] = [float(np.sqrt(np.mean(np.square(grads[key], dtype=np.float64))))
                                   for key in self.weight_keys]
        self.steps_done += 1
        if self.steps_done % self.evaluate_every == 0 or self.finished:
            self._measure()
        self.seconds += time.perf_counter() - started
        return loss

    def predict(self, patches):
        """Lesion probabilities (N,) of the network as it is now."""
        return self.classifier.predict_proba(patches, batch_size=EVALUATION_BATCH)[:, 1]

    def _measure(self):
        auc = roc_auc(self.evaluation.labels, self.predict(self.evaluation.patches))
        self.auc_steps.append(self.steps_done)
        self.auc_values.append(auc)
        return auc


# ---------------------------------------------------------------------------------------------------
# Slots: how many runs train at once in this process


class TrainingSlots:
    """A server-wide cap on concurrent trainings, first come, first served.

    Parameters
    ----------
    capacity : int
        Runs that may train at once.
    """

    def __init__(self, capacity):
        if capacity < 1:
            raise ValueError(f"need at least one training slot, got {capacity}")
        self.capacity = int(capacity)
        self._condition = threading.Condition()
        self._busy = 0
        self._queue = []  # tickets of waiting runs, oldest first

    def acquire(self, ticket, give_up, *, poll_s=0.25):
        """Wait for a slot in turn; False if ``give_up()`` became true while waiting.

        Parameters
        ----------
        ticket : object
            Identifies the waiting run in the queue (see :meth:`position`).
        give_up : callable
            Checked while waiting (a pause or a stop).
        """
        with self._condition:
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or self._busy >= self.capacity:
                    if give_up():
                        return False
                    self._condition.wait(poll_s)
                self._busy += 1
                return True
            finally:
                self._queue.remove(ticket)
                self._condition.notify_all()

    def release(self):
        with self._condition:
            if self._busy == 0:
                raise RuntimeError("released a training slot that was not taken")
            self._busy -= 1
            self._condition.notify_all()

    def position(self, ticket):
        """How many runs wait ahead of ``ticket`` (None if it is not waiting)."""
        with self._condition:
            return self._queue.index(ticket) if ticket in self._queue else None

    @property
    def busy(self):
        """Slots in use now."""
        return self._busy


SLOTS = TrainingSlots(TRAINING_SLOTS)


# ---------------------------------------------------------------------------------------------------
# A run in a worker thread

# What a run is doing. "preparing": cutting patches (first use of the lesson's data: a few seconds);
# "waiting": for a free slot; "paused" by the person or because nobody watched (see pause_reason).
STATUSES = ("waiting", "preparing", "running", "paused", "finished", "stopped", "failed")
ACTIVE_STATUSES = ("waiting", "preparing", "running")


@dataclass(frozen=True)
class RunSnapshot:
    """What a page shows of a run at one moment: immutable, safe to read while the worker goes on.

    The history arrays are read-only views of the Trainer's (entries before ``steps_done`` are never
    written again).
    """

    status: str
    steps_done: int = 0
    total_steps: int = 0
    seconds: float = 0.0
    pause_reason: str | None = None  # "asked" or "unwatched"
    error: str | None = None
    queue_position: int | None = None  # runs waiting ahead of this one
    busy_slots: int = 0
    capacity: int = 1
    losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    answer_losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    accuracies: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gradient_rms: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    weight_keys: tuple = ()
    auc_steps: tuple = ()
    auc_values: tuple = ()
    initial_kernels: np.ndarray | None = None
    kernels: np.ndarray | None = None
    weight_steps: dict = field(default_factory=dict)
    optimiser: str = ""
    optimiser_constants: dict = field(default_factory=dict)
    initial_parameters: dict | None = None  # every weight at the start (read-only)
    parameters: dict | None = None  # a copy of every weight now, for the page's class activation maps
    results: dict = field(default_factory=dict)  # what the run's finish() computed

    @property
    def active(self):
        return self.status in ACTIVE_STATUSES

    @property
    def parameter_count(self):
        return sum(value.size for value in (self.parameters or {}).values())

    @property
    def fraction_done(self):
        return self.steps_done / self.total_steps if self.total_steps else 0.0

    def network(self, *, initial=False, architecture=ARCHITECTURE):
        """A Network with the weights of this moment, or of the start (None before the run has weights)."""
        params = self.initial_parameters if initial else self.parameters
        return None if params is None else Network(architecture, params)


class _Worker:
    """A run's state and thread. Holds no reference to its TrainingRun, so the run can be collected.

    Only the worker thread publishes snapshots; other threads set flags under the condition.
    """

    def __init__(self, prepare, finish, total_steps, slots, connected):
        self._prepare = prepare
        self._finish = finish
        self._slots = slots
        self._connected = connected
        self._condition = threading.Condition()
        self._pause_requested = False
        self._stop_requested = False
        self._pause_reason = None
        self.last_seen = time.monotonic()
        self.trainer = None
        self.snapshot = RunSnapshot("waiting", total_steps=total_steps, capacity=slots.capacity)
        self.thread = threading.Thread(target=self._run, name="convscope-training", daemon=True)

    # -- control (any thread)

    def pause(self, reason="asked"):
        with self._condition:
            if not self._pause_requested:
                self._pause_requested, self._pause_reason = True, reason
            self._condition.notify_all()

    def resume(self):
        with self._condition:
            self._pause_requested, self._pause_reason = False, None
            self.last_seen = time.monotonic()
            self._condition.notify_all()

    def stop(self):
        with self._condition:
            self._stop_requested = True
            self._condition.notify_all()

    # -- the worker thread

    def _watched(self):
        if self._connected is not None:
            return self._connected()
        return time.monotonic() - self.last_seen <= HEARTBEAT_TIMEOUT_S

    def _should_yield(self):
        """Leave the slot: stop or pause asked, or nobody is watching any more (then pause)."""
        if not self._watched():
            self.pause("unwatched")
        return self._pause_requested or self._stop_requested

    def _publish(self, status=None, **changes):
        trainer = self.trainer
        if trainer is not None:
            done = trainer.steps_done
            history = {"losses": trainer.losses[:done], "answer_losses": trainer.answer_losses[:done],
                       "accuracies": trainer.accuracies[:done], "gradient_rms": trainer.gradient_rms[:done]}
            for view in history.values():
                view.flags.writeable = False
            changes = {
                **history, "steps_done": done, "seconds": trainer.seconds, "weight_keys": trainer.weight_keys,
                "auc_steps": tuple(trainer.auc_steps), "auc_values": tuple(trainer.auc_values),
                "initial_kernels": trainer.initial_kernels, "kernels": trainer.first_layer_kernels(),
                "weight_steps": dict(trainer.weight_steps), "optimiser": trainer.settings.optimiser,
                "optimiser_constants": optimiser_constants(trainer.optimiser),
                "initial_parameters": trainer.initial_parameters,
                "parameters": {key: value.copy() for key, value in trainer.network.parameters().items()},
                **changes}
        if status is not None:
            changes["status"] = status
        paused = changes.get("status", self.snapshot.status) == "paused"
        changes["pause_reason"] = self._pause_reason if paused else None
        self.snapshot = dataclasses.replace(self.snapshot, **changes)

    def _wait_while_paused(self):
        """Block while paused; True once a stop is asked."""
        with self._condition:
            while self._pause_requested and not self._stop_requested:
                self._condition.wait(5.0)
            return self._stop_requested

    def _run(self):
        try:
            numba.set_num_threads(min(TRAINING_THREADS, numba.config.NUMBA_NUM_THREADS))
            if TRAINING_NICENESS:
                with contextlib.suppress(AttributeError, OSError):  # not Linux: the same priority as the rest
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), TRAINING_NICENESS)
            while not self._wait_while_paused():
                self._publish("waiting")
                if not self._slots.acquire(self, self._should_yield):
                    self._publish("paused")
                    continue
                try:
                    ended = self._train_in_slot()
                finally:
                    self._slots.release()
                if ended:
                    return
            self._publish("stopped")
        except Exception as error:  # reported on the page; the server and the other sessions go on
            self._publish("failed", error=f"{type(error).__name__}: {error}")
        finally:
            # What the run trained on (an upload's patches too) goes with the thread; the snapshot stays.
            self.trainer = self._prepare = self._finish = self._connected = None

    def _train_in_slot(self):
        """Train until done or asked to yield; True once the run has finished."""
        if self.trainer is None:
            self._publish("preparing")
            self.trainer, results = self._prepare()
            self._publish(results=results)
        self._publish("running")
        while not self.trainer.finished and not self._should_yield():
            self.trainer.step()
            self._publish()
        if not self.trainer.finished:
            self._publish("paused")
            return False
        results = dict(self.snapshot.results)
        if self._finish is not None:
            results.update(self._finish(self.trainer))
        self._publish("finished", results=results)
        return True


class TrainingRun:
    """One session's training, run by a worker thread.

    Parameters
    ----------
    prepare : callable () -> (Trainer, dict)
        Called in the worker once it holds a slot (cutting patches may take seconds); the dict is
        published at once as the snapshot's ``results`` (e.g. how the network did before training).
    finish : callable (Trainer) -> dict, optional
        Called in the worker after the last step; its dict is added to the ``results``.
    total_steps : int
        The run's steps (shown before the Trainer exists).
    slots : TrainingSlots
        Default: the server-wide :data:`SLOTS`.
    connected : callable () -> bool, optional
        Whether the browser session that owns the run is still connected (any thread may call it;
        it must not hold the session's state). While it says no, the run pauses itself. Without it,
        the run pauses when :meth:`snapshot` has not been called for :data:`HEARTBEAT_TIMEOUT_S`.

    Notes
    -----
    Keep the run in the session's state and nowhere else: when the session is dropped the run
    is collected and its worker stops (a weakref finalizer), freeing its slot and its memory.
    """

    def __init__(self, prepare, *, total_steps, finish=None, slots=None, connected=None):
        self._worker = _Worker(prepare, finish, int(total_steps), slots or SLOTS, connected)
        weakref.finalize(self, self._worker.stop)
        self._worker.thread.start()

    def snapshot(self):
        """The latest state (and a sign of life: a page that asks keeps the run from pausing itself)."""
        worker = self._worker
        worker.last_seen = time.monotonic()
        snapshot = worker.snapshot
        if snapshot.status == "waiting":
            return dataclasses.replace(snapshot, queue_position=worker._slots.position(worker),
                                       busy_slots=worker._slots.busy)
        return snapshot

    def pause(self):
        """Pause after the current step; the slot goes to the next run waiting."""
        self._worker.pause("asked")

    def resume(self):
        """Go on from where it paused (after waiting for a slot if none is free); the session counts as watching."""
        self._worker.resume()

    def stop(self):
        """End the run for good (its thread exits; the last snapshot stays readable)."""
        self._worker.stop()

    def wait_until(self, condition, timeout):
        """Poll the snapshot until ``condition(snapshot)`` holds or ``timeout`` seconds pass; the last snapshot."""
        deadline = time.monotonic() + timeout
        snapshot = self.snapshot()
        while not condition(snapshot) and time.monotonic() < deadline:
            time.sleep(0.02)
            snapshot = self.snapshot()
        return snapshot

    def join(self, timeout=None):
        """Wait for the worker thread to end (tests and benchmarks); True if it has."""
        self._worker.thread.join(timeout)
        return not self._worker.thread.is_alive()


# ---------------------------------------------------------------------------------------------------
# The two lessons' runs


def lesson_run(settings, *, connected=None):
    """A run of the lesson's training: the settings' start and optimiser on the shipped scans' patches.

    ``connected``: see :class:`TrainingRun`.
    """

    def prepare():
        lesson = lesson_data()
        network = initial_network(settings.start, settings.seed)
        return Trainer(network, lesson.training, lesson.evaluation, settings), {}

    return TrainingRun(prepare, total_steps=settings.steps, connected=connected)


class ScanReport(NamedTuple):
    """How a network does on one scan: its test patches' AUC and the probability map over the scan."""

    auc: float
    probabilities: np.ndarray  # (rows, cols) lesion probability of each window position
    tops: np.ndarray
    lefts: np.ndarray


MAP_STRIDE = 16


def scan_report(classifier, patches):
    """A ScanReport of ``classifier`` on ``patches`` (ScanPatches)."""
    probabilities = classifier.predict_proba(patches.test.patches, batch_size=EVALUATION_BATCH)[:, 1]
    probability_map, tops, lefts = classifier.probability_map(patches.image, stride=MAP_STRIDE)
    return ScanReport(roc_auc(patches.test.labels, probabilities), probability_map, tops, lefts)


def scan_run(image, settings, *, connected=None):
    """A run that fine-tunes a copy of the shipped weights on one scan's patches (:func:`scan_patches`).

    The snapshot's results: {"image": the image, "before": ScanReport} once prepared, and
    {"after": ScanReport} once finished. ``image`` is the fitted, windowed scan (:func:`fit_image`);
    an upload's pixels and patches stay in this run's memory only.
    """
    image = np.asarray(image, dtype=np.float32)
    cut = {}

    def prepare():
        cut["patches"] = patches = scan_patches(image, seed=settings.seed)
        network = initial_network("shipped", settings.seed)
        before = scan_report(Classifier(network), patches)
        return Trainer(network, patches.training, patches.test, settings), {"before": before, "image": image}

    def finish(trainer):
        return {"after": scan_report(trainer.classifier, cut.pop("patches"))}

    return TrainingRun(prepare, finish=finish, total_steps=settings.steps, connected=connected)
