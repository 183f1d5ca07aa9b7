"""The classifier's layers, each forward pass beside its backward pass, with the arithmetic in kernels/.

Every layer is stateless during a pass: ``forward(x)`` returns the output and a ``cache`` (what the
backward pass needs), ``backward(cache, d_out)`` returns ``d_loss_d_x`` and a dict of parameter
gradients. Nothing is stored on the layer, so one trained network can serve many Streamlit sessions
(threads) at once. Parameters live in ``layer.params`` (a dict of float32 arrays) that the optimiser
updates in place.

Shapes: images are (N, C, H, W) batches; dense inputs are (N, F).
"""

from __future__ import annotations

import numpy as np

from kernels import (
    avg_pool2d,
    avg_pool2d_backward,
    conv2d,
    conv2d_backward,
    max_pool2d,
    max_pool2d_backward,
    relu,
    relu_backward,
)


class Conv2d:
    """Convolution layer: K kernels of C x kh x kw, stride 1, "same" padding.

    ``y[n, k] = b[k] + sum_c w[k, c] (*) x[n, c]`` (cross-correlation), y (N, K, H, W).

    Parameters
    ----------
    weight : array (K, C, kh, kw)
    bias : array (K,)
    padding_mode : {"zeros", "reflect", "replicate"}
        How the border is padded. The first layer uses "reflect" so that the patch's edge is not
        mistaken for an edge in the anatomy.
    zero_mean : bool
        Keep every kernel's weights summing to zero (see :meth:`constrain`): the layer then
        responds to differences between neighbouring pixels, not to overall brightness, which
        changes from scanner to scanner and with the display window.
    """

    kind = "conv"

    def __init__(self, weight, bias, *, padding_mode="zeros", zero_mean=False):
        weight = np.ascontiguousarray(weight, dtype=np.float32)
        bias = np.ascontiguousarray(bias, dtype=np.float32)
        if weight.ndim != 4 or bias.shape != (weight.shape[0],):
            raise ValueError(f"Conv2d needs weight (K, C, kh, kw) and bias (K,); got {weight.shape} and {bias.shape}")
        self.params = {"weight": weight, "bias": bias}
        self.padding_mode = padding_mode
        # The weights are used as given (saved weights load bit for bit); fresh ones are projected
        # by whoever makes them (model.network.initial_parameters), and training calls constrain().
        self.zero_mean = bool(zero_mean)

    @property
    def out_channels(self):
        return self.params["weight"].shape[0]

    def forward(self, x):
        """x (N, C, H, W) -> y (N, K, H, W); cache = x."""
        y = conv2d(x, self.params["weight"], self.params["bias"], padding="same", padding_mode=self.padding_mode)
        return y, x

    def backward(self, cache, d_out, *, input_gradient=True):
        """d_out (N, K, H, W) -> d_x (N, C, H, W), {"weight": (K, C, kh, kw), "bias": (K,)}.

        With ``input_gradient=False`` d_x is None (a first layer's input needs none, and it costs as
        much as the forward pass); the weight gradients are the same bits either way.
        """
        d_x, d_w, d_b = conv2d_backward(cache, self.params["weight"], d_out, padding="same",
                                        padding_mode=self.padding_mode, input_gradient=input_gradient)
        if self.zero_mean:
            # The gradient along the allowed directions only (those that keep the sum at zero).
            d_w = d_w - d_w.mean(axis=(1, 2, 3), keepdims=True)
        return d_x, {"weight": d_w, "bias": np.asarray(d_b, dtype=np.float32)}

    def constrain(self):
        """Project the weights back onto the allowed set (zero-sum kernels) after an update."""
        if self.zero_mean:
            weight = self.params["weight"]
            weight -= weight.mean(axis=(1, 2, 3), keepdims=True)


class ReLU:
    """Rectified linear unit: y = max(x, 0), any shape."""

    kind = "relu"
    params: dict = {}

    def forward(self, x):
        """x -> y, cache = x (the backward pass needs the input's sign)."""
        return relu(x), x

    def backward(self, cache, d_out):
        """d_out -> d_x = d_out where x > 0, else 0."""
        return relu_backward(cache, d_out), {}

    def constrain(self):
        pass


class MaxPool2d:
    """Max pooling over non-overlapping size x size windows: (N, C, H, W) -> (N, C, H // size, W // size)."""

    kind = "maxpool"
    params: dict = {}

    def __init__(self, size=2):
        self.size = int(size)

    def forward(self, x):
        """x (N, C, H, W) -> y (N, C, H', W'); cache = (argmax indices, input shape)."""
        y, indices = max_pool2d(x, self.size, return_indices=True)
        return y, (indices, x.shape)

    def backward(self, cache, d_out):
        """Each output's gradient goes back to the pixel that won its window."""
        indices, input_shape = cache
        return max_pool2d_backward(d_out, indices, input_shape), {}

    def constrain(self):
        pass


class GlobalPool:
    """Global pooling: one number per channel, (N, C, H, W) -> (N, C).

    Parameters
    ----------
    mode : {"max", "avg"}
        "avg": the channel's mean, so every position contributes (a class activation map then adds
        up exactly to the class score). "max": the channel's largest value, so one strong local
        response (a small lesion) is not diluted by the rest of the patch.
    """

    kind = "globalpool"
    params: dict = {}

    def __init__(self, mode="max"):
        if mode not in ("max", "avg"):
            raise ValueError(f"global pooling mode must be 'max' or 'avg', got {mode!r}")
        self.mode = mode

    def forward(self, x):
        """x (N, C, H, W) -> y (N, C); cache = (argmax indices or None, input shape)."""
        window = x.shape[2:]
        if self.mode == "max":
            y, indices = max_pool2d(x, window, return_indices=True)
            return y[:, :, 0, 0], (indices, x.shape)
        return avg_pool2d(x, window)[:, :, 0, 0], (None, x.shape)

    def backward(self, cache, d_out):
        """d_out (N, C) -> d_x (N, C, H, W)."""
        indices, input_shape = cache
        d_out = np.ascontiguousarray(d_out[:, :, None, None], dtype=np.float32)
        if self.mode == "max":
            return max_pool2d_backward(d_out, indices, input_shape), {}
        return avg_pool2d_backward(d_out, input_shape, input_shape[2:]), {}

    def constrain(self):
        pass


class Dense:
    """Fully connected layer: y = x @ W + b, x (N, F), W (F, M), b (M,) -> y (N, M)."""

    kind = "dense"

    def __init__(self, weight, bias):
        weight = np.ascontiguousarray(weight, dtype=np.float32)
        bias = np.ascontiguousarray(bias, dtype=np.float32)
        if weight.ndim != 2 or bias.shape != (weight.shape[1],):
            raise ValueError(f"Dense needs weight (F, M) and bias (M,); got {weight.shape} and {bias.shape}")
        self.params = {"weight": weight, "bias": bias}

    def forward(self, x):
        """x (N, F) -> y (N, M); cache = x."""
        return (x @ self.params["weight"] + self.params["bias"]).astype(np.float32), x

    def backward(self, cache, d_out):
        """d_out (N, M) -> d_x (N, F), {"weight": x^T d_out (F, M), "bias": sum over N (M,)}."""
        d_x = (d_out @ self.params["weight"].T).astype(np.float32)
        return d_x, {"weight": (cache.T @ d_out).astype(np.float32),
                     "bias": d_out.sum(axis=0).astype(np.float32)}

    def constrain(self):
        pass


def softmax(logits):
    """Softmax over the last axis: exp(z_i) / sum_j exp(z_j), computed stably; (N, M) -> (N, M)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    Parameters
    ----------
    logits : array (N, M)
    labels : int array (N,), values in 0..M-1

    Returns
    -------
    loss : float
        -mean_n log softmax(logits)[n, labels[n]].
    d_loss_d_logits : float32 (N, M)
        (softmax(logits) - one_hot(labels)) / N.
    """
    labels = np.asarray(labels)
    probabilities = softmax(logits)
    count = len(labels)
    picked = probabilities[np.arange(count), labels]
    loss = float(-np.log(np.maximum(picked, 1e-12)).mean())
    d_logits = probabilities.copy()
    d_logits[np.arange(count), labels] -= 1.0
    return loss, (d_logits / count).astype(np.float32)
