"""The readable definitions: convolution, pooling and activations as short plain loops a student can read.

This module says what the engine computes; ``kernels.conv2d`` and the other fast paths must agree
with it (tests/test_kernels_reference.py), the step trace (kernels/trace.py) replays its loop bodies
(``conv2d_pixel``, ``max_pool2d_pixel``, ``avg_pool2d_pixel``), and the convolution lesson shows
their source beside the numbers they produced. Nothing here is fast: use small inputs.

Conventions, the same as PyTorch's and the engine's:

* Convolution is cross-correlation (the kernel is not flipped), computed in float32: each product is
  rounded to float32 and added to a running float32 sum, row by row, from 0; the bias comes last.
* Output size along an axis: ``floor((n + pad_before + pad_after - dilation * (k - 1) - 1) / stride) + 1``
  (``kernels.output_size``); ``padding`` is an int, (rows, cols), "valid" or "same"
  (``kernels.resolve_padding``).
* ``padding_mode``: "zeros"; "reflect" mirrors without repeating the edge pixel (``d c b | a b c d``);
  "replicate" repeats the edge pixel (``a a a | a b c d``).
* Max pooling pads with -inf (padding never wins); average pooling pads with 0 and divides by the
  whole window's area.
"""

from __future__ import annotations

import numpy as np

from kernels.engine import output_size, resolve_padding

__all__ = [
    "avg_pool2d",
    "avg_pool2d_backward",
    "avg_pool2d_pixel",
    "conv2d",
    "conv2d_backward",
    "conv2d_pixel",
    "conv3d",
    "conv3d_voxel",
    "leaky_relu",
    "leaky_relu_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool2d_pixel",
    "pad2d",
    "pad3d",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "source_pixel",
    "tanh",
    "tanh_backward",
]


def _pair(value):
    """(rows, cols) from an int or a pair."""
    return (int(value), int(value)) if np.ndim(value) == 0 else (int(value[0]), int(value[1]))


def _triple(value):
    """(depth, rows, cols) from an int or three."""
    return (int(value),) * 3 if np.ndim(value) == 0 else tuple(int(v) for v in value)


# ---------------------------------------------------------------------------------------------------
# Padding


def source_pixel(position, length, padding_mode="zeros"):
    """The pixel of an axis of ``length`` pixels that padded ``position`` shows, or None for a constant.

    ``position`` counts from the first real pixel: -1 is the padding just before it.
    """
    if 0 <= position < length:
        return position
    if padding_mode == "zeros":
        return None
    if padding_mode == "replicate":
        return 0 if position < 0 else length - 1
    if padding_mode == "reflect":
        return -position if position < 0 else 2 * (length - 1) - position
    raise ValueError(f"padding_mode must be 'zeros', 'reflect' or 'replicate'; got {padding_mode!r}")


def pad2d(image, pads, padding_mode="zeros", fill=0.0):
    """The image with a border: (H, W) -> (top + H + bottom, left + W + right), float32.

    ``pads`` is (top, bottom, left, right); with "zeros" the border holds ``fill`` (0, or -inf for
    max pooling).
    """
    image = np.asarray(image, dtype=np.float32)
    top, bottom, left, right = pads
    height, width = image.shape
    padded = np.full((top + height + bottom, left + width + right), fill, dtype=np.float32)
    # A padded pixel copies the image pixel its row and its column come from, when both come from one.
    # Rows and columns are looked up once each, not once per pixel: a whole 256 x 256 map pads in
    # about a millisecond instead of a tenth of a second.
    rows = [(row, source_pixel(row - top, height, padding_mode)) for row in range(padded.shape[0])]
    cols = [(col, source_pixel(col - left, width, padding_mode)) for col in range(padded.shape[1])]
    rows = [(row, source) for row, source in rows if source is not None]
    cols = [(col, source) for col, source in cols if source is not None]
    if rows and cols:
        (padded_rows, source_rows), (padded_cols, source_cols) = zip(*rows), zip(*cols)
        padded[np.ix_(padded_rows, padded_cols)] = image[np.ix_(source_rows, source_cols)]
    return padded


def _fold_border(d_padded, pads, shape, padding_mode):
    """The gradient of a padded image (Hp, Wp) moved back onto the pixels the border copied: (H, W)."""
    top, _, left, _ = pads
    height, width = shape
    d_image = np.zeros(shape, dtype=np.float64)
    for row in range(d_padded.shape[0]):
        for col in range(d_padded.shape[1]):
            source_row = source_pixel(row - top, height, padding_mode)
            source_col = source_pixel(col - left, width, padding_mode)
            if source_row is not None and source_col is not None:
                d_image[source_row, source_col] += d_padded[row, col]
    return d_image


# ---------------------------------------------------------------------------------------------------
# Convolution


def conv2d_pixel(padded, kernel, bias, out_row, out_col,
                 stride=(1, 1), dilation=(1, 1)):
    """One output pixel: the kernel laid on the padded image at
    (out_row, out_col), multiplied cell by cell, summed, plus the bias.

    out[out_row, out_col] = bias + sum over i, j of kernel[i, j] *
        padded[out_row * stride + i * dilation,
               out_col * stride + j * dilation]
    with padded (Hp, Wp) and kernel (kh, kw).

    The sum is float32, built from 0 one product at a time, row by
    row; the bias comes last. out_row and out_col may also be arrays
    of positions: all of them are then computed at once, alike.
    """
    kernel_rows, kernel_cols = kernel.shape
    total = np.float32(0.0)
    for i in range(kernel_rows):
        for j in range(kernel_cols):
            row = out_row * stride[0] + i * dilation[0]
            col = out_col * stride[1] + j * dilation[1]
            total = total + padded[row, col] * kernel[i, j]
    return total + np.float32(bias)


def conv2d(x, w, b=None, *, stride=1, padding=0, dilation=1, padding_mode="zeros"):
    """2-D convolution (cross-correlation), one output pixel at a time.

    Shapes: x (H, W) with w (kh, kw) and a number b gives (H', W'); x (N, C, H, W) with w (K, C, kh, kw)
    and b (K,) gives (N, K, H', W'), where ``H' = floor((H + top + bottom - dilation * (kh - 1) - 1) / stride) + 1``
    and ``W'`` likewise. Each output map of a batch is the sum, over the input channels, of one
    single-channel convolution each, plus its bias.
    """
    x, w = np.asarray(x, dtype=np.float32), np.asarray(w, dtype=np.float32)
    strides, dilations = _pair(stride), _pair(dilation)
    pads = resolve_padding(x.shape[-2:], w.shape[-2:], padding, dilations)
    if x.ndim == 2:
        return _one_channel(x, w, 0.0 if b is None else b, pads, strides, dilations, padding_mode)
    return _layer(x, w, b, pads, strides, dilations, padding_mode)


def _output_shape(image_shape, kernel_shape, pads, strides, dilations):
    """(H', W') of a convolution, by kernels.output_size."""
    top, bottom, left, right = pads
    return (output_size(image_shape[0], kernel_shape[0], stride=strides[0], padding=(top, bottom),
                        dilation=dilations[0]),
            output_size(image_shape[1], kernel_shape[1], stride=strides[1], padding=(left, right),
                        dilation=dilations[1]))


def _one_channel(image, kernel, bias, pads, strides, dilations, padding_mode):
    """(H, W) and (kh, kw) -> (H', W'): ``conv2d_pixel`` at every output position, row by row."""
    out_rows, out_cols = _output_shape(image.shape, kernel.shape, pads, strides, dilations)
    padded = pad2d(image, pads, padding_mode)
    out = np.zeros((out_rows, out_cols), dtype=np.float32)
    for out_row in range(out_rows):
        for out_col in range(out_cols):
            out[out_row, out_col] = conv2d_pixel(padded, kernel, bias, out_row, out_col, strides, dilations)
    return out


def _layer(x, w, b, pads, strides, dilations, padding_mode):
    """(N, C, H, W) and (K, C, kh, kw) -> (N, K, H', W'): for each image and kernel, the channels' sum."""
    out_shape = _output_shape(x.shape[2:], w.shape[2:], pads, strides, dilations)
    out = np.zeros((x.shape[0], w.shape[0]) + out_shape, dtype=np.float32)
    for n in range(x.shape[0]):
        for k in range(w.shape[0]):
            total = np.zeros(out_shape, dtype=np.float32)
            for c in range(x.shape[1]):
                total = total + _one_channel(x[n, c], w[k, c], 0.0, pads, strides, dilations, padding_mode)
            out[n, k] = total + np.float32(0.0 if b is None else b[k])
    return out


def conv2d_backward(x, w, d_out, *, stride=1, padding=0, dilation=1, padding_mode="zeros"):
    """Gradients of a loss through ``conv2d``: (d_x, d_w, d_b), shaped like x, w and b.

    Shapes: x (H, W), w (kh, kw), d_out (H', W') give d_x (H, W), d_w (kh, kw) and a number d_b;
    x (N, C, H, W), w (K, C, kh, kw), d_out (N, K, H', W') give d_x (N, C, H, W), d_w (K, C, kh, kw)
    and d_b (K,).

    Each output pixel read one window of the padded input, so its gradient flows back to that window
    (times the kernel: d_x) and to the kernel (times the window: d_w); the bias was added to every
    output pixel (d_b = the sum of d_out). The padded input's gradient then goes back to the pixels its
    border copied. Sums in float64, returned as float32.
    """
    x, w, d_out = (np.asarray(a, dtype=np.float32) for a in (x, w, d_out))
    if x.ndim == 2:
        d_x, d_w, d_b = conv2d_backward(x[None, None], w[None, None], d_out[None, None], stride=stride,
                                        padding=padding, dilation=dilation, padding_mode=padding_mode)
        return d_x[0, 0], d_w[0, 0], float(d_b[0])
    strides, dilations = _pair(stride), _pair(dilation)
    pads = resolve_padding(x.shape[-2:], w.shape[-2:], padding, dilations)
    kernel_rows, kernel_cols = w.shape[-2:]
    d_x = np.zeros(x.shape, dtype=np.float64)
    d_w = np.zeros(w.shape, dtype=np.float64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            padded = pad2d(x[n, c], pads, padding_mode)
            d_padded = np.zeros(padded.shape, dtype=np.float64)
            for k in range(w.shape[0]):
                for out_row in range(d_out.shape[2]):
                    for out_col in range(d_out.shape[3]):
                        gradient = float(d_out[n, k, out_row, out_col])
                        for i in range(kernel_rows):
                            for j in range(kernel_cols):
                                row = out_row * strides[0] + i * dilations[0]
                                col = out_col * strides[1] + j * dilations[1]
                                d_w[k, c, i, j] += gradient * float(padded[row, col])
                                d_padded[row, col] += gradient * float(w[k, c, i, j])
            d_x[n, c] = _fold_border(d_padded, pads, x.shape[2:], padding_mode)
    d_b = d_out.astype(np.float64).sum(axis=(0, 2, 3))
    return d_x.astype(np.float32), d_w.astype(np.float32), d_b.astype(np.float32)


def conv3d(x, w, b=None, *, stride=1, padding=0, dilation=1, padding_mode="zeros"):
    """3-D convolution: a sum of 2-D convolutions, one per depth tap of the kernel.

    Shapes: x (D, H, W) with w (kd, kh, kw) gives (D', H', W'); x (N, C, D, H, W) with
    w (K, C, kd, kh, kw) and b (K,) gives (N, K, D', H', W'); each output size follows conv2d's
    equation, ``D' = floor((D + front + back - dilation * (kd - 1) - 1) / stride) + 1``.
    Output slice d is ``sum over a of conv2d(padded slice d * stride + a * dilation, w[..., a, :, :])``.
    """
    x, w = np.asarray(x, dtype=np.float32), np.asarray(w, dtype=np.float32)
    if x.ndim == 3:
        return conv3d(x[None, None], w[None, None], None if b is None else [b], stride=stride, padding=padding,
                      dilation=dilation, padding_mode=padding_mode)[0, 0]
    strides, dilations = _triple(stride), _triple(dilation)
    # The padding rule takes two axes at a time: (depth, rows), then (rows, columns).
    depth_and_rows = padding if isinstance(padding, str) else _triple(padding)[:2]
    rows_and_cols = padding if isinstance(padding, str) else _triple(padding)[1:]
    front, back, _, _ = resolve_padding(x.shape[2:4], w.shape[2:4], depth_and_rows, dilations[:2])
    pads = resolve_padding(x.shape[3:], w.shape[3:], rows_and_cols, dilations[1:])
    depth = x.shape[2]
    out_depth = output_size(depth, w.shape[2], stride=strides[0], padding=(front, back), dilation=dilations[0])
    slices = []
    for out_slice in range(out_depth):
        total = 0.0
        for a in range(w.shape[2]):
            source = source_pixel(out_slice * strides[0] + a * dilations[0] - front, depth, padding_mode)
            # A tap on zero padding reads a slice of zeros.
            image = x[:, :, source] if source is not None else np.zeros_like(x[:, :, 0])
            total = total + _layer(image, w[:, :, a], None, pads, strides[1:], dilations[1:], padding_mode)
        slices.append(total)
    out = np.stack(slices, axis=2).astype(np.float32)
    if b is not None:
        out += np.asarray(b, dtype=np.float32)[None, :, None, None, None]
    return out


def pad3d(volume, pads, padding_mode="zeros"):
    """The volume with a border on all six sides: (D, H, W) -> (front + D + back, H + ..., W + ...), float32.

    ``pads`` is (front, back, top, bottom, left, right). Each slice gets ``pad2d``'s border; the slices
    added in front and behind are what ``conv3d`` reads there: zeros, or the slice ``source_pixel`` names.
    """
    volume = np.asarray(volume, dtype=np.float32)
    front, back = pads[:2]
    depth = volume.shape[0]
    slices = []
    for position in range(-front, depth + back):
        source = source_pixel(position, depth, padding_mode)
        image = volume[source] if source is not None else np.zeros_like(volume[0])
        slices.append(pad2d(image, pads[2:], padding_mode))
    return np.stack(slices)


def conv3d_voxel(padded, kernel, bias, out_slice, out_row, out_col,
                 stride=(1, 1, 1), dilation=(1, 1, 1)):
    """One output voxel: the kernel laid on the padded volume at
    (out_slice, out_row, out_col), one kernel slice at a time.

    out[d, r, c] = bias + sum over a of (sum over i, j of
        kernel[a, i, j] * padded[d * stride + a * dilation,
                                 r * stride + i * dilation,
                                 c * stride + j * dilation])
    with padded (Dp, Hp, Wp) and kernel (kd, kh, kw).

    The inner sum is conv2d_pixel's, row by row in float32, on the
    slice under kernel slice a; the slices' sums are added in order,
    then the bias: the order conv3d adds them in. The positions may
    also be arrays: all of them are then computed at once, alike.
    """
    kernel_slices, kernel_rows, kernel_cols = kernel.shape
    total = np.float32(0.0)
    for a in range(kernel_slices):
        slice_sum = np.float32(0.0)
        for i in range(kernel_rows):
            for j in range(kernel_cols):
                depth = out_slice * stride[0] + a * dilation[0]
                row = out_row * stride[1] + i * dilation[1]
                col = out_col * stride[2] + j * dilation[2]
                slice_sum = slice_sum + padded[depth, row, col] * kernel[a, i, j]
        total = total + slice_sum
    return total + np.float32(bias)


# ---------------------------------------------------------------------------------------------------
# Pooling


def max_pool2d_pixel(padded, size, stride, out_row, out_col):
    """One output pixel of max pooling: the largest value in the window and its (row, col) in ``padded``.

    The window is ``padded[out_row * stride + i, out_col * stride + j]`` for i < size[0], j < size[1];
    of equal values the first one in reading order stays. ``out_row`` and ``out_col`` may be arrays of
    positions: ``np.where(better, new, old)`` then decides each position on its own.
    """
    best_value, best_row, best_col = np.float32(-np.inf), -1, -1
    for i in range(size[0]):
        for j in range(size[1]):
            row = out_row * stride[0] + i
            col = out_col * stride[1] + j
            better = padded[row, col] > best_value
            best_value = np.where(better, padded[row, col], best_value)
            best_row = np.where(better, row, best_row)
            best_col = np.where(better, col, best_col)
    return best_value, best_row, best_col


def avg_pool2d_pixel(padded, size, stride, out_row, out_col):
    """One output pixel of average pooling: (the window's mean, its sum).

    The sum is float32, added up one value at a time in reading order, and divided by the window's area
    (padding counts as 0 in the mean). ``out_row`` and ``out_col`` may be arrays of positions.
    """
    total = np.float32(0.0)
    for i in range(size[0]):
        for j in range(size[1]):
            total = total + padded[out_row * stride[0] + i, out_col * stride[1] + j]
    return total / np.float32(size[0] * size[1]), total


def _pool_shape(x, size, stride, padding):
    sizes = _pair(size)
    strides = sizes if stride is None else _pair(stride)
    pads = _pair(padding)
    out_rows = output_size(x.shape[-2], sizes[0], stride=strides[0], padding=pads[0])
    out_cols = output_size(x.shape[-1], sizes[1], stride=strides[1], padding=pads[1])
    return sizes, strides, pads, (out_rows, out_cols)


def max_pool2d(x, size=2, *, stride=None, padding=0, return_indices=False):
    """Max pooling: the largest value of each window.

    Shapes: x (H, W) or (N, C, H, W) gives (H', W') or (N, C, H', W') with
    ``H' = floor((H + 2 * padding - size) / stride) + 1``; stride defaults to size. ``indices`` (same
    shape) holds where each maximum came from, ``row * W + col`` in its (H, W) plane.
    """
    x = np.asarray(x, dtype=np.float32)
    sizes, strides, pads, out_shape = _pool_shape(x, size, stride, padding)
    planes = x.reshape((-1,) + x.shape[-2:])
    out = np.zeros((len(planes),) + out_shape, dtype=np.float32)
    indices = np.zeros(out.shape, dtype=np.int64)
    for plane, image in enumerate(planes):
        padded = pad2d(image, (pads[0], pads[0], pads[1], pads[1]), fill=-np.inf)
        for out_row in range(out_shape[0]):
            for out_col in range(out_shape[1]):
                value, row, col = max_pool2d_pixel(padded, sizes, strides, out_row, out_col)
                out[plane, out_row, out_col] = value
                indices[plane, out_row, out_col] = (row - pads[0]) * image.shape[1] + (col - pads[1])
    out, indices = out.reshape(x.shape[:-2] + out_shape), indices.reshape(x.shape[:-2] + out_shape)
    return (out, indices) if return_indices else out


def max_pool2d_backward(d_out, indices, input_shape):
    """Gradient through ``max_pool2d``: each output's gradient goes to the pixel that won its window.

    Shapes: d_out and indices (H', W') or (N, C, H', W'); returns d_x of ``input_shape`` (a pixel that
    won several windows gets the sum).
    """
    d_out = np.asarray(d_out, dtype=np.float32)
    planes_out = d_out.reshape((-1,) + d_out.shape[-2:])
    planes_index = np.asarray(indices).reshape(planes_out.shape)
    d_x = np.zeros((len(planes_out), input_shape[-2] * input_shape[-1]), dtype=np.float64)
    for plane in range(len(planes_out)):
        for out_row in range(planes_out.shape[1]):
            for out_col in range(planes_out.shape[2]):
                d_x[plane, planes_index[plane, out_row, out_col]] += planes_out[plane, out_row, out_col]
    return d_x.reshape(tuple(input_shape)).astype(np.float32)


def avg_pool2d(x, size=2, *, stride=None, padding=0):
    """Average pooling: the mean of each window, zero padding counted.

    Shapes: x (H, W) or (N, C, H, W) gives (H', W') or (N, C, H', W') with
    ``H' = floor((H + 2 * padding - size) / stride) + 1``; stride defaults to size.
    """
    x = np.asarray(x, dtype=np.float32)
    sizes, strides, pads, out_shape = _pool_shape(x, size, stride, padding)
    planes = x.reshape((-1,) + x.shape[-2:])
    out = np.zeros((len(planes),) + out_shape, dtype=np.float32)
    for plane, image in enumerate(planes):
        padded = pad2d(image, (pads[0], pads[0], pads[1], pads[1]))
        for out_row in range(out_shape[0]):
            for out_col in range(out_shape[1]):
                out[plane, out_row, out_col], _ = avg_pool2d_pixel(padded, sizes, strides, out_row, out_col)
    return out.reshape(x.shape[:-2] + out_shape)


def avg_pool2d_backward(d_out, input_shape, size=2, *, stride=None, padding=0):
    """Gradient through ``avg_pool2d``: each output's gradient is shared equally by its window's pixels.

    Shapes: d_out (H', W') or (N, C, H', W'); returns d_x of ``input_shape``.
    """
    d_out = np.asarray(d_out, dtype=np.float32)
    sizes, strides, pads, _ = _pool_shape(np.empty(input_shape[-2:]), size, stride, padding)
    planes_out = d_out.reshape((-1,) + d_out.shape[-2:])
    d_x = np.zeros((len(planes_out),) + tuple(input_shape[-2:]), dtype=np.float64)
    area = sizes[0] * sizes[1]
    for plane in range(len(planes_out)):
        d_padded = np.zeros((input_shape[-2] + 2 * pads[0], input_shape[-1] + 2 * pads[1]))
        for out_row in range(planes_out.shape[1]):
            for out_col in range(planes_out.shape[2]):
                for i in range(sizes[0]):
                    for j in range(sizes[1]):
                        d_padded[out_row * strides[0] + i, out_col * strides[1] + j] += \
                            planes_out[plane, out_row, out_col] / area
        d_x[plane] = d_padded[pads[0]:pads[0] + input_shape[-2], pads[1]:pads[1] + input_shape[-1]]
    return d_x.reshape(tuple(input_shape)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# Activations: each forward beside its backward, which takes the forward's input x and the gradient d_out


def relu(x):
    """``max(x, 0)``, element by element (any shape)."""
    return np.maximum(np.asarray(x, dtype=np.float32), np.float32(0.0))


def relu_backward(x, d_out):
    """d_loss/d_x through relu: d_out where x > 0, else 0."""
    return np.where(np.asarray(x) > 0, d_out, 0.0).astype(np.float32)


def leaky_relu(x, slope=0.01):
    """x where x > 0, else ``slope * x``."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x > 0, x, np.float32(slope) * x).astype(np.float32)


def leaky_relu_backward(x, d_out, slope=0.01):
    """d_loss/d_x through leaky_relu: d_out where x > 0, else ``slope * d_out``."""
    d_out = np.asarray(d_out, dtype=np.float32)
    return np.where(np.asarray(x) > 0, d_out, np.float32(slope) * d_out).astype(np.float32)


def sigmoid(x):
    """``1 / (1 + exp(-x))``, written so that exp never overflows: with ``z = exp(-|x|)``, 1 / (1 + z)
    for x >= 0 and z / (1 + z) for x < 0."""
    x = np.asarray(x, dtype=np.float64)
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z)).astype(np.float32)


def sigmoid_backward(x, d_out):
    """d_loss/d_x through sigmoid: ``d_out * s * (1 - s)`` with ``s = sigmoid(x)``."""
    s = sigmoid(x).astype(np.float64)
    return (np.asarray(d_out, dtype=np.float64) * s * (1.0 - s)).astype(np.float32)


def tanh(x):
    """``(exp(x) - exp(-x)) / (exp(x) + exp(-x))``, element by element."""
    return np.tanh(np.asarray(x, dtype=np.float64)).astype(np.float32)


def tanh_backward(x, d_out):
    """d_loss/d_x through tanh: ``d_out * (1 - tanh(x) ** 2)``."""
    t = np.tanh(np.asarray(x, dtype=np.float64))
    return (np.asarray(d_out, dtype=np.float64) * (1.0 - t * t)).astype(np.float32)
