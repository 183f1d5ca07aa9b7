"""The lesion classifier: conv -> ReLU -> max-pool stages, global pooling, a dense layer and softmax.

``Network`` is the trainable stack (forward and backward over a batch); ``Classifier`` is what the
app uses (``predict_proba``, ``activations``, ``cam``), built on a trained Network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from kernels import avg_pool2d
from model.layers import Conv2d, Dense, GlobalPool, MaxPool2d, ReLU, softmax

CLASS_NAMES = ("no lesion", "lesion")
# Where the lesson's window opens (anatomy_window): grey values (0-1, after windowing) at or below
# EMPTY_LEVEL are air or outside the body; a window counts as tissue when at most 5 % of it is empty,
# and as busy when its standard deviation is at least half that of the busiest tissue window.
EMPTY_LEVEL = 0.05
MAX_EMPTY_SHARE = 0.05
BUSY_SHARE = 0.5


@dataclass(frozen=True)
class Architecture:
    """The shape of the network, stored in the weights file next to the numbers.

    Attributes
    ----------
    input_size : int
        Side of the square input patch in pixels.
    channels : tuple of int
        Number of kernels in each convolution stage.
    kernel_sizes : tuple of int
        Kernel side of each stage's convolution.
    pool_after : tuple of bool
        Whether a 2 x 2 max-pool follows each stage's ReLU.
    global_pool : str
        "max" or "avg" (see :class:`model.layers.GlobalPool`).
    """

    input_size: int = 64
    channels: tuple = (8, 16, 32)
    kernel_sizes: tuple = (5, 3, 3)
    pool_after: tuple = (True, True, False)
    global_pool: str = "max"

    def __post_init__(self):
        if not (len(self.channels) == len(self.kernel_sizes) == len(self.pool_after)) or not self.channels:
            raise ValueError(f"channels {self.channels}, kernel_sizes {self.kernel_sizes} and pool_after "
                             f"{self.pool_after} must be non-empty and of equal length (one per stage)")
        if self.input_size % (2 ** sum(self.pool_after)):
            raise ValueError(f"input_size {self.input_size} must be divisible by 2 ** (number of pools)")

    @property
    def feature_size(self):
        """Side of the last feature maps (before global pooling)."""
        return self.input_size // 2 ** sum(self.pool_after)

    @property
    def stride(self):
        """Input pixels per last-feature-map pixel."""
        return 2 ** sum(self.pool_after)


class Network:
    """A trainable stack of layers.

    Parameters
    ----------
    architecture : Architecture
    params : dict of str to array, optional
        Flat parameters as saved (``"conv1.weight"``, ...); default: fresh ones from
        :func:`initial_parameters` with ``seed``.
    seed : int
        Seed for fresh parameters.
    """

    def __init__(self, architecture, params=None, *, seed=0):
        self.architecture = architecture
        if params is None:
            params = initial_parameters(architecture, seed)
        self.layers = []  # (name, layer) in order
        in_channels = 1
        for stage, (channels, kernel_size, pool) in enumerate(
                zip(architecture.channels, architecture.kernel_sizes, architecture.pool_after), start=1):
            weight = params[f"conv{stage}.weight"]
            if weight.shape != (channels, in_channels, kernel_size, kernel_size):
                raise ValueError(f"conv{stage}.weight has shape {weight.shape}, the architecture needs "
                                 f"{(channels, in_channels, kernel_size, kernel_size)}")
            # Stage 1 sees the raw patch: zero-sum kernels with mirrored borders (see Conv2d).
            first = stage == 1
            self.layers.append((f"conv{stage}", Conv2d(weight, params[f"conv{stage}.bias"],
                                                       padding_mode="reflect" if first else "zeros",
                                                       zero_mean=first)))
            self.layers.append((f"relu{stage}", ReLU()))
            if pool:
                self.layers.append((f"pool{stage}", MaxPool2d(2)))
            in_channels = channels
        self.layers.append(("global_pool", GlobalPool(architecture.global_pool)))
        dense_weight = params["dense.weight"]
        if dense_weight.shape != (in_channels, len(CLASS_NAMES)):
            raise ValueError(f"dense.weight has shape {dense_weight.shape}, expected {(in_channels, len(CLASS_NAMES))}")
        self.layers.append(("dense", Dense(dense_weight, params["dense.bias"])))

    def layer(self, name):
        """The layer called ``name`` ("conv1", "dense", ...)."""
        for layer_name, layer in self.layers:
            if layer_name == name:
                return layer
        raise KeyError(f"no layer named {name!r}; layers: {[n for n, _ in self.layers]}")

    def parameters(self):
        """Flat dict "layer.param" -> array (the arrays themselves, updated in place by training)."""
        return {f"{name}.{key}": value for name, layer in self.layers for key, value in layer.params.items()}

    def forward(self, x, *, keep=False):
        """Logits for a batch.

        Parameters
        ----------
        x : array (N, 1, S, S) float32
        keep : bool
            Also return every layer's output and cache (for :meth:`backward` and the views).

        Returns
        -------
        logits : float32 (N, 2)
        trace : list of (name, output, cache), only with ``keep``
        """
        trace = []
        for name, layer in self.layers:
            x, cache = layer.forward(x)
            if keep:
                trace.append((name, x, cache))
        return (x, trace) if keep else x

    def score_map(self, trace):
        """The class activation map of each patch in a batch, at feature resolution.

        ``M[n, y, x] = sum_k (w[k, lesion] - w[k, no lesion]) * F[n, k, y, x]``, F the maps that go
        into global pooling (what :meth:`Classifier.cam_features` shows, without the bias).

        Parameters
        ----------
        trace : list from ``forward(..., keep=True)``

        Returns
        -------
        float32 (N, h, w)
        """
        return np.einsum("k,nkhw->nhw", self._lesion_evidence(), self._pooled_features(trace)).astype(np.float32)

    def _lesion_evidence(self):
        """(K,) how much each last-stage channel pushes towards "lesion": w[k, lesion] - w[k, no lesion]."""
        dense = self.layer("dense").params["weight"]
        return dense[:, 1] - dense[:, 0]

    def _pooled_features(self, trace):
        names = [name for name, _ in self.layers]
        return trace[names.index("global_pool") - 1][1]

    def backward(self, trace, d_logits, d_score_map=None):
        """Gradients of the loss with respect to every parameter.

        Parameters
        ----------
        trace : list from ``forward(..., keep=True)``
        d_logits : float32 (N, 2)
        d_score_map : float32 (N, h, w), optional
            Gradient of a loss on :meth:`score_map` (the localisation loss of training), added to
            the gradient that reaches the pooled feature maps and the dense weights.

        Returns
        -------
        dict "layer.param" -> gradient array (same keys and shapes as :meth:`parameters`)
        """
        grads = {}
        d_out = d_logits
        for (name, layer), (_, _, cache) in zip(reversed(self.layers), reversed(trace)):
            if name == "conv1":
                _, layer_grads = layer.backward(cache, d_out, input_gradient=False)  # the patch needs none
            else:
                d_out, layer_grads = layer.backward(cache, d_out)
            for key, value in layer_grads.items():
                grads[f"{name}.{key}"] = value
            if name == "global_pool" and d_score_map is not None:
                # M = sum_k e_k F_k with e = w[:, 1] - w[:, 0]: dF_k = e_k dM, de_k = sum dM F_k.
                d_score_map = np.asarray(d_score_map, dtype=np.float32)
                evidence = self._lesion_evidence()
                d_out = d_out + evidence[None, :, None, None] * d_score_map[:, None]
                d_evidence = np.einsum("nhw,nkhw->k", d_score_map, self._pooled_features(trace))
                grads["dense.weight"] = grads["dense.weight"] + np.stack([-d_evidence, d_evidence], axis=1)
                d_out = d_out.astype(np.float32)
        return grads

    def constrain(self):
        """Re-apply every layer's constraint (zero-sum first-layer kernels) after an update."""
        for _, layer in self.layers:
            layer.constrain()


def initial_parameters(architecture, seed):
    """Fresh parameters: He-normal convolutions, the first stage started as centre-surround detectors.

    The first stage's kernels begin as Laplacian-of-Gaussian blob detectors at a few widths, half
    tuned to bright spots and half to dark ones (training then reshapes them); deeper kernels are
    random with the He scale sqrt(2 / fan_in) so activations keep their size through the ReLUs.

    Returns
    -------
    dict "conv1.weight" (K1, 1, k, k), "conv1.bias" (K1,), ..., "dense.weight" (C_last, 2), "dense.bias" (2,)
    """
    rng = np.random.default_rng(seed)
    params = {}
    in_channels = 1
    for stage, (channels, size) in enumerate(zip(architecture.channels, architecture.kernel_sizes), start=1):
        fan_in = in_channels * size * size
        weight = rng.normal(0.0, np.sqrt(2.0 / fan_in), (channels, in_channels, size, size))
        if stage == 1:
            weight = centre_surround_kernels(channels, size) + 0.1 * weight
        weight = weight.astype(np.float32)
        if stage == 1:  # zero-sum kernels (see Conv2d's zero_mean), projected as training will keep them
            weight -= weight.mean(axis=(1, 2, 3), keepdims=True)
        params[f"conv{stage}.weight"] = weight
        params[f"conv{stage}.bias"] = np.zeros(channels, np.float32)
        in_channels = channels
    params["dense.weight"] = rng.normal(0.0, np.sqrt(1.0 / in_channels), (in_channels, len(CLASS_NAMES))).astype(np.float32)
    params["dense.bias"] = np.zeros(len(CLASS_NAMES), np.float32)
    return params


# Gain of the initial centre-surround kernels (their L2 norm). Lesion contrasts are 0.08-0.4 in
# windowed units; a larger gain brings the first responses to order 1, where the He-scaled deeper
# layers expect them, so training starts moving at once instead of idling at chance.
_CENTRE_SURROUND_NORM = 4.0


def centre_surround_kernels(count, size):
    """``count`` negated Laplacian-of-Gaussian kernels (size, size), zero-sum, alternating sign.

    Kernel i has width sigma = size * (0.12, 0.18, 0.24, 0.32)[i % 4]; kernels with (i // 4) even
    respond to bright spots (positive centre), the others to dark ones.

    Returns
    -------
    float32 (count, 1, size, size)
    """
    offsets = np.arange(size) - (size - 1) / 2.0
    radius_squared = offsets[:, None] ** 2 + offsets[None, :] ** 2
    kernels = []
    for index in range(count):
        sigma = size * (0.12, 0.18, 0.24, 0.32)[index % 4]
        gaussian = np.exp(-radius_squared / (2 * sigma * sigma))
        mexican_hat = (2 * sigma * sigma - radius_squared) * gaussian  # positive centre, negative ring
        mexican_hat -= mexican_hat.mean()
        mexican_hat *= _CENTRE_SURROUND_NORM / np.sqrt((mexican_hat ** 2).sum())
        kernels.append(mexican_hat if (index // 4) % 2 == 0 else -mexican_hat)
    return np.array(kernels, dtype=np.float32)[:, None]


SYMMETRY_VIEWS = 16


def symmetry_views(patches):
    """The views of patches (N, S, S) a lesion is a lesion in: the eight symmetries of the square (quarter
    turns 0-3, each as it is and mirrored left to right), then the same eight with the grey levels
    inverted (1 - x: a brighter lesion becomes a darker one, as T1 and T2 show tissues the other way
    round). The first view is the patches themselves."""
    views = []
    for turns in range(4):
        turned = np.rot90(patches, turns, axes=(1, 2))
        views.extend((np.ascontiguousarray(turned), np.ascontiguousarray(turned[:, :, ::-1])))
    return views + [1.0 - view for view in views]


class LayerOutput(NamedTuple):
    """One layer's output for one patch, for the lesson page.

    name : str  ("input", "conv1", "relu1", "pool1", ..., "global_pool", "dense", "softmax")
    kind : str  ("input", "conv", "relu", "maxpool", "globalpool", "dense", "softmax")
    values : float32 array, (C, H, W) for maps, (F,) for vectors
    """

    name: str
    kind: str
    values: np.ndarray


class Classifier:
    """The trained lesion classifier, as the app and the tests use it.

    Thread-safe: its passes keep nothing on the object, so one instance serves every session.

    Parameters
    ----------
    network : Network
    metadata : dict of str to str, optional
        Facts about how it was trained (seed, data, metrics), shown on the page.
    views : int
        How many of the :data:`SYMMETRY_VIEWS` :meth:`predict_proba` averages over, 1 or all 16: the
        app's classifier (:func:`model.load`) answers a patch from all 16; a network being trained, and
        every probability map, are watched through one, at a sixteenth of the cost.
    """

    def __init__(self, network, metadata=None, *, views=1):
        self.network = network
        self.architecture = network.architecture
        self.metadata = dict(metadata or {})
        self.views = int(views)
        if self.views not in (1, SYMMETRY_VIEWS):
            raise ValueError(f"a classifier answers from 1 or {SYMMETRY_VIEWS} views, got views={self.views}")

    @property
    def input_size(self):
        """Side of the square patch the network reads (64)."""
        return self.architecture.input_size

    @property
    def class_names(self):
        return CLASS_NAMES

    def _batch(self, patches):
        patches = np.asarray(patches, dtype=np.float32)
        if patches.ndim == 2:
            patches = patches[None]
        size = self.input_size
        if patches.ndim != 3 or patches.shape[1:] != (size, size):
            raise ValueError(f"patches must be (N, {size}, {size}) or ({size}, {size}) windowed to [0, 1]; "
                             f"got shape {patches.shape}. Cut a {size} x {size} window from the image first.")
        if not np.all(np.isfinite(patches)):
            raise ValueError("patches contain NaN or infinite values; window the image to [0, 1] first")
        return np.ascontiguousarray(patches[:, None])

    def logits(self, patches, *, batch_size=256):
        """Raw class scores (N, 2) before softmax, for patches (N, S, S) in [0, 1]."""
        batch = self._batch(patches)
        return np.concatenate([self.network.forward(batch[start:start + batch_size])
                               for start in range(0, len(batch), batch_size)], axis=0)

    def predict_proba(self, patches, *, batch_size=256, views=None):
        """Class probabilities [no lesion, lesion], averaged over the patch's :func:`symmetry_views`.

        A lesion is a lesion whichever way up the window is, and brighter or darker, but a trained
        network answers each of the eight symmetries of the square (four quarter turns, each also
        mirrored) and their inverted grey levels a little differently; the mean of their probabilities
        is steadier (measured: held-out brain MR ROC AUC, see the README).

        Parameters
        ----------
        patches : array (N, S, S) or (S, S), float, windowed to [0, 1]; S = ``input_size``
        views : int, optional
            1 (the patch as it is) or 16 (:data:`SYMMETRY_VIEWS`); default this classifier's ``views``.

        Returns
        -------
        float32 (N, 2), rows sum to 1
        """
        views = self.views if views is None else int(views)
        if views == 1:
            return softmax(self.logits(patches, batch_size=batch_size)).astype(np.float32)
        if views != SYMMETRY_VIEWS:
            raise ValueError(f"views must be 1 or {SYMMETRY_VIEWS}, got {views}")
        batch = self._batch(patches)[:, 0]
        # Every view of a few patches in one forward pass: one patch's 16 views as 16 separate passes cost a
        # parallel launch each, which a busy server pays dearly (the classroom bench, README).
        per_pass = max(1, batch_size // SYMMETRY_VIEWS)
        answers = []
        for start in range(0, len(batch), per_pass):
            chunk = batch[start:start + per_pass]
            views = np.concatenate(symmetry_views(chunk))
            probabilities = softmax(self.logits(views, batch_size=batch_size)).astype(np.float64)
            answers.append(probabilities.reshape(SYMMETRY_VIEWS, len(chunk), len(CLASS_NAMES)).mean(axis=0))
        return np.concatenate(answers).astype(np.float32)

    def activations(self, patch):
        """Every layer's output for one patch, in order, starting with the input itself.

        Parameters
        ----------
        patch : array (S, S) in [0, 1]

        Returns
        -------
        list of LayerOutput: "input" (1, S, S); each conv / relu / pool output (C, H, W);
        "global_pool" (C,) (the dense layer's inputs); "dense" (2,) logits; "softmax" (2,).
        """
        batch = self._batch(patch)
        if len(batch) != 1:
            raise ValueError(f"activations takes one patch (S, S), got {len(batch)} patches")
        logits, trace = self.network.forward(batch, keep=True)
        outputs = [LayerOutput("input", "input", batch[0])]
        for (name, layer), (_, output, _) in zip(self.network.layers, trace):
            outputs.append(LayerOutput(name, layer.kind, np.asarray(output[0], dtype=np.float32)))
        outputs.append(LayerOutput("softmax", "softmax", softmax(logits)[0].astype(np.float32)))
        return outputs

    def cam_features(self, patch):
        """The class activation map at feature resolution, and what it adds up to.

        ``M(y, x) = sum_k (w[k, lesion] - w[k, no lesion]) * F_k(y, x)``, F the last ReLU's maps.
        With global average pooling the mean of M plus the bias difference IS the logit difference
        (exact); with global max pooling the logit difference is the sum of each channel's term at
        its own winning position, so M is exact there and shows where else the channels respond.

        Returns
        -------
        map : float32 (h, w)
        logit_difference : float  (lesion score minus no-lesion score)
        """
        batch = self._batch(patch)
        logits, trace = self.network.forward(batch, keep=True)
        return self.network.score_map(trace)[0], float(logits[0, 1] - logits[0, 0])

    def cam(self, patch):
        """Where the evidence for "lesion" lies, at input resolution.

        Parameters
        ----------
        patch : array (S, S) in [0, 1]

        Returns
        -------
        float32 (S, S): :meth:`cam_features` upsampled bilinearly (pixel centres aligned); positive
        where the patch pushes towards "lesion", negative where it pushes towards "no lesion".
        """
        cam, _ = self.cam_features(patch)
        return upsample_bilinear(cam, self.architecture.stride)

    def probability_map(self, image, *, stride=16):
        """Slide the input window over a whole image and map the lesion probability.

        Parameters
        ----------
        image : array (H, W) in [0, 1], H and W >= ``input_size``
        stride : int
            Pixels between window positions (the last window is pushed against the far edge, so
            every pixel is covered).

        Returns
        -------
        probabilities : float32 (rows, cols)
            Lesion probability of the window at each position, from the window as it is (one view,
            whatever ``views`` the classifier answers a single patch from).
        tops, lefts : int arrays (rows,), (cols,)
            Each window's top row and left column.
        """
        image = np.asarray(image, dtype=np.float32)
        size = self.input_size
        if image.ndim != 2 or min(image.shape) < size:
            raise ValueError(f"the image must be 2-D and at least {size} x {size} pixels, got shape {image.shape}")
        if stride < 1:
            raise ValueError(f"stride must be at least 1 pixel, got {stride}")
        tops = _window_starts(image.shape[0], size, stride)
        lefts = _window_starts(image.shape[1], size, stride)
        windows = np.lib.stride_tricks.sliding_window_view(image, (size, size))[tops][:, lefts]
        # One view per window: hundreds of windows, sixteen views each, would take seconds a map.
        probabilities = self.predict_proba(windows.reshape(-1, size, size), views=1)[:, 1]
        return probabilities.reshape(len(tops), len(lefts)), tops, lefts

    def first_layer_kernels(self):
        """The learned first-layer kernels, float32 (K, k, k)."""
        return self.network.layer("conv1").params["weight"][:, 0].copy()

    def save(self, path):
        """Write the parameters, the architecture and the metadata to an .npz file."""
        arrays = {key: np.asarray(value, dtype=np.float32) for key, value in self.network.parameters().items()}
        for key, value in asdict(self.architecture).items():
            arrays[f"architecture.{key}"] = np.asarray(value)
        for key, value in self.metadata.items():
            arrays[f"metadata.{key}"] = np.asarray(str(value))
        np.savez_compressed(path, **arrays)

    @classmethod
    def from_file(cls, path, *, views=1):
        """Read a Classifier written by :meth:`save`, answering from ``views`` views (1 or 16)."""
        with np.load(path, allow_pickle=False) as stored:
            architecture = Architecture(
                input_size=int(stored["architecture.input_size"]),
                channels=tuple(int(v) for v in stored["architecture.channels"]),
                kernel_sizes=tuple(int(v) for v in stored["architecture.kernel_sizes"]),
                pool_after=tuple(bool(v) for v in stored["architecture.pool_after"]),
                global_pool=str(stored["architecture.global_pool"]),
            )
            params = {key: stored[key].astype(np.float32) for key in stored.files
                      if not key.startswith(("architecture.", "metadata."))}
            metadata = {key.removeprefix("metadata."): str(stored[key]) for key in stored.files
                        if key.startswith("metadata.")}
        return cls(Network(architecture, params), metadata, views=views)


def upsample_bilinear(values, factor):
    """Enlarge a map (h, w) by an integer factor with bilinear interpolation, pixel centres aligned.

    Feature pixel i covers input pixels factor*i .. factor*i + factor - 1, so its centre sits at
    factor*i + (factor - 1)/2; beyond the outermost centres the edge value is kept.

    Returns
    -------
    float32 (h * factor, w * factor)
    """
    values = np.asarray(values, dtype=np.float32)
    height, width = values.shape
    centres_rows = factor * np.arange(height) + (factor - 1) / 2.0
    centres_cols = factor * np.arange(width) + (factor - 1) / 2.0
    rows = np.arange(height * factor)
    cols = np.arange(width * factor)
    along_cols = np.array([np.interp(cols, centres_cols, row) for row in values])  # (h, W)
    return np.array([np.interp(rows, centres_rows, column) for column in along_cols.T]).T.astype(np.float32)


def anatomy_window(image, size, *, stride=8):
    """(top, left) of a ``size`` x ``size`` window on visible anatomy near the middle of the body.

    The centre of an image is often flat (the mediastinum of a chest radiograph: standard deviation
    0.011 on the 0-1 scale) or empty (the gap inside a phantom). This looks at every window on a
    ``stride`` grid: it keeps the windows that are tissue (at most MAX_EMPTY_SHARE of their pixels at or
    below EMPTY_LEVEL; if none is, the fullest ones), of those the busy ones (standard deviation at least
    BUSY_SHARE of the busiest), and returns the one whose centre is nearest the centre of the tissue: a
    window with structure to see, inside the body rather than on its outline. Window means come from the
    engine's average pooling.

    Parameters
    ----------
    image : array (H, W), grey values in [0, 1], H and W >= ``size``
    size : int
        Side of the window.
    stride : int
        Pixels between the window positions looked at.

    Returns
    -------
    (top, left) : tuple of int
        Multiples of ``stride``; the window lies inside the image.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2 or min(image.shape) < size:
        raise ValueError(f"the image must be 2-D and at least {size} x {size} pixels, got shape {image.shape}")
    if size < 1 or stride < 1:
        raise ValueError(f"size and stride must be at least 1 pixel, got size {size}, stride {stride}")
    means = _window_means(image, size, stride)
    spreads = np.sqrt(np.maximum(_window_means(image * image, size, stride) - means * means, 0.0))
    empty = image <= EMPTY_LEVEL
    empty_shares = _window_means(empty.astype(np.float32), size, stride)
    tissue = empty_shares <= max(MAX_EMPTY_SHARE, float(empty_shares.min()))
    busy = tissue & (spreads >= BUSY_SHARE * float(spreads[tissue].max()))
    rows, cols = np.nonzero(~empty)
    centre = (rows.mean(), cols.mean()) if rows.size else ((image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2)
    tops = np.arange(means.shape[0]) * stride
    lefts = np.arange(means.shape[1]) * stride
    distances = np.hypot(tops[:, None] + (size - 1) / 2 - centre[0], lefts[None, :] + (size - 1) / 2 - centre[1])
    row, col = np.unravel_index(np.argmin(np.where(busy, distances, np.inf)), distances.shape)
    return int(tops[row]), int(lefts[col])


def _window_means(values, size, stride):
    """Mean of every ``size`` x ``size`` window of ``values`` (H, W) at multiples of ``stride``."""
    if size % stride == 0:
        # Means of stride x stride blocks, then of size/stride x size/stride blocks of those: the same
        # windows with (size/stride)**2 times fewer additions (a 640 x 603 image, 64 and 8: 15 ms, not 150).
        return avg_pool2d(avg_pool2d(values, stride), size // stride, stride=1)
    return avg_pool2d(values, size, stride=stride)


def _window_starts(length, size, stride):
    """Start positions 0, stride, 2 stride, ... of windows of ``size`` along ``length``, ending flush."""
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return np.array(starts, dtype=np.intp)


def probability_picture(probabilities, tops, lefts, image_shape, size):
    """Spread window probabilities over the image: each pixel gets the value of the window whose
    centre is nearest to it (rows and columns separately), so the map reads like the image.

    Returns
    -------
    float32 (H, W)
    """
    centres_rows = np.asarray(tops) + (size - 1) / 2.0
    centres_cols = np.asarray(lefts) + (size - 1) / 2.0
    nearest_rows = np.abs(np.arange(image_shape[0])[:, None] - centres_rows[None, :]).argmin(axis=1)
    nearest_cols = np.abs(np.arange(image_shape[1])[:, None] - centres_cols[None, :]).argmin(axis=1)
    return np.asarray(probabilities, dtype=np.float32)[nearest_rows][:, nearest_cols]
