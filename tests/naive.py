"""Slow, obviously correct NumPy references for convolution and pooling (float64, one window at a time).

Shared by the tests of kernels/ and model/.  Every function loops over output positions in Python
and computes each window with plain indexing, so it is easy to read and hard to get wrong; use
small inputs.  Shapes are batched: x (N, C, *spatial), w (K, C, *kernel), with 2 or 3 spatial axes.
"""

from __future__ import annotations

import itertools

import numpy as np


def relative_error(actual, expected) -> float:
    """Largest difference relative to the largest expected magnitude: ``max|actual - expected| / max|expected|``.

    The measure the engine's float32 results are held to against a reference (under 1e-5): every
    float32 sum rounds by a fraction of its terms' size, so the error scales with the output, not
    with each element (an element near 0 may come from large terms that cancel).
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = np.max(np.abs(expected)) if expected.size else 0.0
    return float(np.max(np.abs(actual - expected)) / scale) if scale > 0 else float(np.max(np.abs(actual)))


def source_index(position: int, length: int, mode: str) -> int | None:
    """Pixel of an axis of ``length`` that padded coordinate ``position`` shows (None = zero).

    ``position`` counts from the first real pixel (negative inside the leading padding).
    "reflect" mirrors without repeating the edge (PyTorch), "replicate" repeats the edge pixel.
    """
    if 0 <= position < length:
        return position
    if mode == "zeros":
        return None
    if mode == "replicate":
        return 0 if position < 0 else length - 1
    if mode == "reflect":
        return -position if position < 0 else 2 * (length - 1) - position
    raise ValueError(mode)


def pad(x: np.ndarray, pads, mode: str) -> np.ndarray:
    """Pad the trailing axes of ``x`` by ``pads`` = ((before, after), ...), one pixel at a time."""
    n_spatial = len(pads)
    spatial = x.shape[-n_spatial:]
    padded_shape = x.shape[:-n_spatial] + tuple(n + b + a for n, (b, a) in zip(spatial, pads))
    out = np.zeros(padded_shape, dtype=np.float64)
    for padded_pos in itertools.product(*(range(n) for n in padded_shape[-n_spatial:])):
        source = [source_index(p - b, n, mode) for p, (b, _), n in zip(padded_pos, pads, spatial)]
        if any(s is None for s in source):
            continue
        out[(Ellipsis,) + padded_pos] = x[(Ellipsis,) + tuple(source)]
    return out


def _window(starts, kernel_shape, dilations):
    return tuple(np.arange(k) * d + s for s, k, d in zip(starts, kernel_shape, dilations))


def conv_naive(x, w, b=None, stride=None, pads=None, dilation=None, mode="zeros"):
    """Cross-correlation of x (N, C, *S) with w (K, C, *k): returns float64 (N, K, *S').

    ``stride`` and ``dilation`` are tuples per spatial axis; ``pads`` ((before, after), ...).
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n_spatial = x.ndim - 2
    stride = stride or (1,) * n_spatial
    dilation = dilation or (1,) * n_spatial
    pads = pads or ((0, 0),) * n_spatial
    xp = pad(x, pads, mode)
    kernel_shape = w.shape[2:]
    out_shape = tuple(
        (n - d * (k - 1) - 1) // s + 1 for n, k, s, d in zip(xp.shape[2:], kernel_shape, stride, dilation)
    )
    out = np.zeros((x.shape[0], w.shape[0]) + out_shape)
    for n, k in itertools.product(range(x.shape[0]), range(w.shape[0])):
        for pos in itertools.product(*(range(o) for o in out_shape)):
            window = _window([p * s for p, s in zip(pos, stride)], kernel_shape, dilation)
            patch = xp[n][np.ix_(range(x.shape[1]), *window)]
            out[(n, k) + pos] = np.sum(patch * w[k]) + (0.0 if b is None else b[k])
    return out


def conv_backward_naive(x, w, d_out, stride=None, pads=None, dilation=None, mode="zeros"):
    """(d_x, d_w, d_b) of ``conv_naive`` for upstream gradient d_out, in float64.

    Each output gradient is added to the padded input window it read (times the kernel) and to
    the kernel (times the window); the padded gradient is then folded back onto the pixels the
    padding copied, with ``source_index``.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    d_out = np.asarray(d_out, dtype=np.float64)
    n_spatial = x.ndim - 2
    stride = stride or (1,) * n_spatial
    dilation = dilation or (1,) * n_spatial
    pads = pads or ((0, 0),) * n_spatial
    xp = pad(x, pads, mode)
    d_xp = np.zeros_like(xp)
    d_w = np.zeros_like(w)
    kernel_shape = w.shape[2:]
    for n, k in itertools.product(range(x.shape[0]), range(w.shape[0])):
        for pos in itertools.product(*(range(o) for o in d_out.shape[2:])):
            window = _window([p * s for p, s in zip(pos, stride)], kernel_shape, dilation)
            index = np.ix_(range(x.shape[1]), *window)
            grad = d_out[(n, k) + pos]
            d_w[k] += grad * xp[n][index]
            d_xp[n][index] += grad * w[k]
    d_x = np.zeros_like(x)
    spatial = x.shape[2:]
    for padded_pos in itertools.product(*(range(n) for n in xp.shape[2:])):
        source = [source_index(p - b, n, mode) for p, (b, _), n in zip(padded_pos, pads, spatial)]
        if any(s is None for s in source):
            continue
        d_x[(Ellipsis,) + tuple(source)] += d_xp[(Ellipsis,) + padded_pos]
    d_b = d_out.sum(axis=tuple(i for i in range(d_out.ndim) if i != 1))
    return d_x, d_w, d_b


def max_pool_naive(x, size, stride=None, padding=None):
    """Max pooling of x (N, C, *S) with -inf padding: (values float64, flat argmax indices).

    Ties go to the first pixel of the window in row-major order (``np.argmax``).
    """
    x = np.asarray(x, dtype=np.float64)
    n_spatial = len(size)
    stride = stride or size
    padding = padding or (0,) * n_spatial
    spatial = x.shape[2:]
    out_shape = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(spatial, size, stride, padding))
    values = np.zeros(x.shape[:2] + out_shape)
    indices = np.zeros(x.shape[:2] + out_shape, dtype=np.int64)
    for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        for pos in itertools.product(*(range(o) for o in out_shape)):
            best, best_index = -np.inf, -1
            for offset in itertools.product(*(range(k) for k in size)):
                source = tuple(o * s - p + t for o, s, p, t in zip(pos, stride, padding, offset))
                if all(0 <= i < m for i, m in zip(source, spatial)) and x[(n, c) + source] > best:
                    best = x[(n, c) + source]
                    best_index = int(np.ravel_multi_index(source, spatial))
            values[(n, c) + pos] = best
            indices[(n, c) + pos] = best_index
    return values, indices


def avg_pool_naive(x, size, stride=None, padding=None):
    """Average pooling of x (N, C, *S), zero padding counted in the mean (PyTorch default)."""
    x = np.asarray(x, dtype=np.float64)
    n_spatial = len(size)
    stride = stride or size
    padding = padding or (0,) * n_spatial
    xp = pad(x, tuple((p, p) for p in padding), "zeros")
    ones = np.ones((1, 1) + tuple(size))
    planes = xp.reshape((-1, 1) + xp.shape[2:])
    out = conv_naive(planes, ones, stride=stride) / np.prod(size)
    return out.reshape(x.shape[:2] + out.shape[2:])
