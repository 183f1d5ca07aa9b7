"""The engine's operations in plain vectorised NumPy: what serves the first clicks while the Numba loops compile.

On a fresh install the jitted loops of kernels/_jit.py take about a minute to compile (2-core laptop);
``kernels.warm_up()`` then compiles them in a background process and, until they are loaded, the
dispatch (kernels/dispatch.py) sends forward convolutions, pooling, activations and finiteness checks
here.  Nothing here needs compiling: every loop runs over kernel taps or window positions, each step a
whole-array NumPy operation (a shifted slice of the padded input times a weight).

The numbers: a single image with one kernel is summed as the compiled loop sums it (taps row by row,
each added with one fused multiply-add from 0, bias last; ``kernels._simd.fused_multiply_add`` is that
rounding, exactly), so the lesson's numbers are the same bits either way up to ``EXACT_MAX_WORK``
multiply-adds.  Batches of several channels (the classifier) and bigger images add each tap's products
in float32 in the same order but without the fused rounding: they agree with the compiled loops to
float32 rounding (relative error ~1e-7), which no page shows.
"""

from __future__ import annotations

import numpy as np

from kernels import _simd
from kernels._jit import (LEAKY_RELU, LEAKY_RELU_BACKWARD, RELU, RELU_BACKWARD, SIGMOID, SIGMOID_BACKWARD, TANH,
                          TANH_BACKWARD)

# Up to this many multiply-adds a single-image convolution reproduces the compiled loop's fused
# rounding (an exact emulation that costs about 20 float64 passes per tap: 0.1 s for 512 x 512 with 5 x 5).
EXACT_MAX_WORK = 1 << 23

# Batches whose window matrix (N * OD * OH * OW rows of C * kd * kh * kw values) has at most this many
# values are one matrix product (64 MB of float32); bigger ones take one product per tap.
GEMM_MAX_VALUES = 1 << 24

_NUMPY_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge"}


def _window_slices(out_spatial, strides, offsets):
    """The slice of the padded input that tap ``offsets`` reads for every output position."""
    return tuple(slice(offset, offset + (count - 1) * stride + 1, stride)
                 for count, stride, offset in zip(out_spatial, strides, offsets))


def correlate(x5, w5, bias, pads, strides, dilations, padding_mode, out_spatial):
    """Cross-correlation of (N, C, D, H, W) with (K, C, kd, kh, kw): (N, K, OD, OH, OW) float32.

    ``out[n, k, z, r, q] = bias[k] + sum over (c, a, i, j) of w[k, c, a, i, j] *
    x_padded[n, c, z*sd + a*dd, r*sh + i*dh, q*sw + j*dw]``, one whole-array step per tap (a, i, j).
    """
    padded = np.pad(x5, ((0, 0), (0, 0)) + tuple(pads), mode=_NUMPY_PAD_MODES[padding_mode])
    n_batch, n_channels = x5.shape[:2]
    n_kernels = w5.shape[0]
    kernel_shape = w5.shape[2:]
    taps = np.ndindex(*kernel_shape)
    single = n_batch == n_channels == n_kernels == 1
    exact = single and int(np.prod(out_spatial)) * w5[0, 0].size <= EXACT_MAX_WORK
    if single:
        total = np.zeros(out_spatial, dtype=np.float32)
        weights = w5[0, 0]
        for tap in taps:
            window = padded[(0, 0) + _window_slices(out_spatial, strides, np.multiply(tap, dilations))]
            if exact:
                total = _simd.fused_multiply_add(weights[tap], window, total)
            else:
                total += weights[tap] * window
        return (total + bias[0])[None, None]
    spans = tuple((k - 1) * d + 1 for k, d in zip(kernel_shape, dilations))
    if n_batch * n_channels * int(np.prod(out_spatial)) * w5[0].size <= GEMM_MAX_VALUES:
        # Every window as one row of a matrix (a strided view, copied once by tensordot), times the
        # kernels: one matrix product for the whole batch (the classifier on a few patches: 15x faster
        # than a product per tap).
        windows = np.lib.stride_tricks.sliding_window_view(padded, spans, axis=(2, 3, 4))
        windows = windows[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)
                          + tuple(slice(None, None, d) for d in dilations)]
        windows = windows[:, :, :out_spatial[0], :out_spatial[1], :out_spatial[2]]
        total = np.tensordot(windows, w5, axes=([1, 5, 6, 7], [1, 2, 3, 4]))  # (N, OD, OH, OW, K)
        return np.ascontiguousarray(np.moveaxis(total, 4, 1)) + bias.reshape((1, n_kernels, 1, 1, 1))
    total = np.zeros((n_batch, n_kernels) + tuple(out_spatial), dtype=np.float32)
    for tap in taps:
        window = padded[(slice(None), slice(None)) + _window_slices(out_spatial, strides, np.multiply(tap, dilations))]
        # (K, C) x (N, C, ...) -> (N, K, ...): one matrix product per tap over the channels.
        weights = np.ascontiguousarray(w5[(slice(None), slice(None)) + tap])
        total += np.moveaxis(np.tensordot(weights, window, axes=([1], [1])), 0, 1)
    return total + bias.reshape((1, n_kernels) + (1,) * len(out_spatial))


def max_pool(planes, sizes, strides, pads, out_spatial):
    """Max pooling of (P, D, H, W) with -inf padding: the maxima and the flat index of each in its volume.

    Ties go to the first pixel of the window in row-major order, as in the compiled loop.
    """
    n_planes, depth, height, width = planes.shape
    padded = np.pad(planes, ((0, 0),) + tuple((p, p) for p in pads), constant_values=-np.inf)
    best = np.full((n_planes,) + tuple(out_spatial), -np.inf, dtype=np.float32)
    where = np.full(best.shape, -1, dtype=np.int64)
    positions = [np.arange(count) * stride - pad for count, stride, pad in zip(out_spatial, strides, pads)]
    for tap in np.ndindex(*sizes):
        window = padded[(slice(None),) + _window_slices(out_spatial, strides, tap)]
        better = window > best
        best = np.where(better, window, best)
        z, r, q = (position + offset for position, offset in zip(positions, tap))
        index = (z[:, None, None] * height + r[None, :, None]) * width + q[None, None, :]
        where = np.where(better, index[None], where)
    return best, where


def scatter_add(values, indices, size):
    """(P, M) values added into (P, size) at ``indices`` (max pooling backward); repeats add up."""
    n_planes = values.shape[0]
    flat = (indices + np.arange(n_planes)[:, None] * size).ravel()
    return np.bincount(flat, weights=values.ravel(), minlength=n_planes * size).astype(np.float32).reshape(n_planes, size)


def elementwise(x, d_out, operation, slope):
    """An activation (or its backward, ``d_out`` given) element by element; float32 like x."""
    one = np.float32(1.0)
    if operation == RELU:
        return np.maximum(x, np.float32(0.0))
    if operation == RELU_BACKWARD:
        return np.where(x > 0, d_out, np.float32(0.0))
    if operation == LEAKY_RELU:
        return np.where(x > 0, x, np.float32(slope) * x)
    if operation == LEAKY_RELU_BACKWARD:
        return np.where(x > 0, d_out, np.float32(slope) * d_out)
    if operation in (SIGMOID, SIGMOID_BACKWARD):
        e = np.exp(-np.abs(x))
        s = np.where(x >= 0, one / (one + e), e / (one + e))
        return s if operation == SIGMOID else d_out * s * (one - s)
    th = np.tanh(x)
    return th if operation == TANH else d_out * (one - th * th)


def any_nonfinite(array):
    """True if the array holds an inf or NaN."""
    return not np.isfinite(array).all()
