"""Every Numba-jitted loop of the engine: private workhorses on plain contiguous arrays and ints.

Nothing here validates its input; the public wrappers in kernels/engine.py do, and they always
pass C-contiguous, writeable float32 arrays (int64 for index maps and argmax indices) so that each
function is compiled exactly once and loaded from the on-disk cache afterwards.

The loops are written for 3-D volumes; a 2-D image is a volume of depth 1 (and a single image is
a batch of one with one channel), so six functions serve every public operation:

=======================  ======================================================================
correlate_forward        conv2d / conv3d forward, avg pooling (with a ones kernel)
correlate_weight_grad    d_loss/d_w of a convolution
correlate_input_grad     d_loss/d_x of a convolution, avg pooling backward
max_pool_forward         max pooling with argmax indices
scatter_add              max pooling backward (sends each gradient to its argmax)
elementwise              relu / leaky_relu / sigmoid / tanh, forward and backward
=======================  ======================================================================

Padding is never materialised.  Each spatial axis gets an *index map*: ``index_map[p]`` is the
source index in the unpadded input of padded position ``p``, or -1 where the padded value is zero.
Zero, reflect and replicate padding differ only in their maps.  Along a row, the output columns
whose whole window lies inside the image form one contiguous "interior" range that reads the input
row directly (and so vectorises); only the few border columns look the map up.

Loop order: the innermost loop always runs along an output row (contiguous memory), each output
element keeping its own running sum, so LLVM vectorises it without reassociating any sum.  The sum
for one output element is accumulated in the fixed order (channel, depth tap, row tap, column tap)
starting from 0, with the bias added last; kernels/trace.py relies on that order.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels._config import JIT_HELPER_OPTIONS, JIT_OPTIONS

# Operation codes of ``elementwise`` (kept as plain ints so the kernel has one signature).
RELU, RELU_BACKWARD = 0, 1
LEAKY_RELU, LEAKY_RELU_BACKWARD = 2, 3
SIGMOID, SIGMOID_BACKWARD = 4, 5
TANH, TANH_BACKWARD = 6, 7

# Elements per parallel task in ``elementwise``: large enough to amortise scheduling, small
# enough to split a (32, 16, 64, 64) tensor over both cores.
_ELEMENTWISE_BLOCK = 16384


@njit(**JIT_HELPER_OPTIONS)
def _interior_range(offset, stride, width, out_width):
    """Return [lo, hi) of output columns q with 0 <= q*stride + offset < width."""
    if offset >= 0:
        lo = 0
    else:
        lo = (-offset + stride - 1) // stride
    last = width - 1 - offset
    if last < 0:
        hi = 0
    else:
        hi = last // stride + 1
    if hi > out_width:
        hi = out_width
    if lo > hi:
        lo = hi
    return lo, hi


@njit(**JIT_HELPER_OPTIONS)
def _strided_slice(row, lo, hi, stride, offset):
    """View of ``row`` at columns ``q * stride + offset`` for q in [lo, hi) (hi > lo).

    Why the kernels loop over views with an index from 0 instead of indexing ``row[q * stride +
    offset]`` directly: Numba then knows the index is non-negative and drops its negative-index
    wraparound check, which otherwise stops LLVM from vectorising the loop (measured 35x slower).
    Stride 1 takes a plain ``row[a:b]`` view instead (a contiguous array type: 40x faster than a
    strided view with step 1).
    """
    start = lo * stride + offset
    return row[start:(hi - 1) * stride + offset + 1:stride]


@njit(**JIT_OPTIONS)
def correlate_forward(x, w, bias, depth_map, row_map, col_map, pad_left,
                      stride_d, stride_h, stride_w, dilation_d, dilation_h, dilation_w, out):
    """Strided, dilated cross-correlation of a padded batch with a bank of kernels.

    Parameters
    ----------
    x : float32 (N, C, D, H, W)
        Unpadded input.
    w : float32 (K, C, kd, kh, kw)
        Kernels.
    bias : float32 (K,)
    depth_map, row_map, col_map : int64 (Dp,), (Hp,), (Wp,)
        Padded position -> source index, or -1 for a zero.
    pad_left : int
        Number of padded columns before column 0 (for the interior range).
    stride_*, dilation_* : int
    out : float32 (N, K, OD, OH, OW)
        Written in place: ``out[n, k, z, r, q] = bias[k] + sum_{c,a,i,j} w[k, c, a, i, j] *
        x_padded[n, c, z*sd + a*dd, r*sh + i*dh, q*sw + j*dw]``.
    """
    n_batch, n_in, _, _, width = x.shape
    n_out, _, k_depth, k_rows, k_cols = w.shape
    out_depth, out_rows, out_width = out.shape[2], out.shape[3], out.shape[4]
    for task in prange(n_batch * n_out * out_depth * out_rows):
        r = task % out_rows
        rest = task // out_rows
        z = rest % out_depth
        rest //= out_depth
        k = rest % n_out
        n = rest // n_out
        out_row = out[n, k, z, r]
        out_row[:] = 0.0
        for c in range(n_in):
            for a in range(k_depth):
                source_depth = depth_map[z * stride_d + a * dilation_d]
                if source_depth < 0:
                    continue
                for i in range(k_rows):
                    source_row = row_map[r * stride_h + i * dilation_h]
                    if source_row < 0:
                        continue
                    x_row = x[n, c, source_depth, source_row]
                    for j in range(k_cols):
                        weight = w[k, c, a, i, j]
                        offset = j * dilation_w - pad_left
                        lo, hi = _interior_range(offset, stride_w, width, out_width)
                        for q in range(lo):
                            source_col = col_map[q * stride_w + j * dilation_w]
                            if source_col >= 0:
                                out_row[q] += weight * x_row[source_col]
                        if hi > lo and stride_w == 1:
                            target = out_row[lo:hi]
                            source = x_row[lo + offset:hi + offset]
                            for t in range(hi - lo):
                                target[t] += weight * source[t]
                        elif hi > lo:
                            target = out_row[lo:hi]
                            source = _strided_slice(x_row, lo, hi, stride_w, offset)
                            for t in range(hi - lo):
                                target[t] += weight * source[t]
                        for q in range(hi, out_width):
                            source_col = col_map[q * stride_w + j * dilation_w]
                            if source_col >= 0:
                                out_row[q] += weight * x_row[source_col]
        bias_k = bias[k]
        for t in range(out_width):
            out_row[t] += bias_k


@njit(**JIT_OPTIONS)
def correlate_weight_grad(x, d_out, depth_map, row_map, col_map, pad_left,
                          stride_d, stride_h, stride_w, dilation_d, dilation_h, dilation_w, d_w):
    """Gradient of a correlation's loss with respect to its kernels.

    ``d_w[k, c, a, i, j] = sum_{n,z,r,q} d_out[n, k, z, r, q] *
    x_padded[n, c, z*sd + a*dd, r*sh + i*dh, q*sw + j*dw]``

    Parameters
    ----------
    x : float32 (N, C, D, H, W)
    d_out : float32 (N, K, OD, OH, OW)
    depth_map, row_map, col_map, pad_left, stride_*, dilation_* :
        As in ``correlate_forward``.
    d_w : float32 (K, C, kd, kh, kw)
        Written in place.
    """
    n_batch, n_in, _, _, width = x.shape
    n_out, _, k_depth, k_rows, k_cols = d_w.shape
    out_depth, out_rows, out_width = d_out.shape[2], d_out.shape[3], d_out.shape[4]
    n_taps = k_depth * k_rows * k_cols
    for task in prange(n_out * n_in):
        c = task % n_in
        k = task // n_in
        # One running sum per (tap, output column): the inner loop stays element-wise along the
        # row (vectorised, no reassociation needed); the row sums are reduced once at the end.
        partial = np.zeros((n_taps, out_width), dtype=np.float32)
        for n in range(n_batch):
            for z in range(out_depth):
                for r in range(out_rows):
                    grad_row = d_out[n, k, z, r]
                    for a in range(k_depth):
                        source_depth = depth_map[z * stride_d + a * dilation_d]
                        if source_depth < 0:
                            continue
                        for i in range(k_rows):
                            source_row = row_map[r * stride_h + i * dilation_h]
                            if source_row < 0:
                                continue
                            x_row = x[n, c, source_depth, source_row]
                            for j in range(k_cols):
                                acc = partial[(a * k_rows + i) * k_cols + j]
                                offset = j * dilation_w - pad_left
                                lo, hi = _interior_range(offset, stride_w, width, out_width)
                                for q in range(lo):
                                    source_col = col_map[q * stride_w + j * dilation_w]
                                    if source_col >= 0:
                                        acc[q] += grad_row[q] * x_row[source_col]
                                if hi > lo and stride_w == 1:
                                    target = acc[lo:hi]
                                    grad = grad_row[lo:hi]
                                    source = x_row[lo + offset:hi + offset]
                                    for t in range(hi - lo):
                                        target[t] += grad[t] * source[t]
                                elif hi > lo:
                                    target = acc[lo:hi]
                                    grad = grad_row[lo:hi]
                                    source = _strided_slice(x_row, lo, hi, stride_w, offset)
                                    for t in range(hi - lo):
                                        target[t] += grad[t] * source[t]
                                for q in range(hi, out_width):
                                    source_col = col_map[q * stride_w + j * dilation_w]
                                    if source_col >= 0:
                                        acc[q] += grad_row[q] * x_row[source_col]
        for a in range(k_depth):
            for i in range(k_rows):
                for j in range(k_cols):
                    acc = partial[(a * k_rows + i) * k_cols + j]
                    total = 0.0
                    for q in range(out_width):
                        total += acc[q]
                    d_w[k, c, a, i, j] = total


@njit(**JIT_OPTIONS)
def correlate_input_grad(d_out, w, depth_map, row_map, col_map, pad_left,
                         stride_d, stride_h, stride_w, dilation_d, dilation_h, dilation_w, d_x):
    """Gradient of a correlation's loss with respect to its (unpadded) input.

    Each output gradient is sent back along the kernel taps to the padded positions it read, and
    from there through the index maps to the source pixel, so reflect/replicate padding fold their
    gradients back onto the edge pixels they copied.

    Parameters
    ----------
    d_out : float32 (N, K, OD, OH, OW)
    w : float32 (K, C, kd, kh, kw)
    depth_map, row_map, col_map, pad_left, stride_*, dilation_* :
        As in ``correlate_forward``.
    d_x : float32 (N, C, D, H, W)
        Overwritten with the gradient.
    """
    n_batch, n_in, _, _, width = d_x.shape
    n_out, _, k_depth, k_rows, k_cols = w.shape
    out_depth, out_rows, out_width = d_out.shape[2], d_out.shape[3], d_out.shape[4]
    # One task per (n, c) plane: a plane is only ever written by its own task, so the scatter
    # (and the folding of reflected rows onto the same source row) needs no atomics.
    for task in prange(n_batch * n_in):
        c = task % n_in
        n = task // n_in
        plane = d_x[n, c]
        plane[:] = 0.0
        for k in range(n_out):
            for z in range(out_depth):
                for a in range(k_depth):
                    source_depth = depth_map[z * stride_d + a * dilation_d]
                    if source_depth < 0:
                        continue
                    for r in range(out_rows):
                        grad_row = d_out[n, k, z, r]
                        for i in range(k_rows):
                            source_row = row_map[r * stride_h + i * dilation_h]
                            if source_row < 0:
                                continue
                            dx_row = plane[source_depth, source_row]
                            for j in range(k_cols):
                                weight = w[k, c, a, i, j]
                                offset = j * dilation_w - pad_left
                                lo, hi = _interior_range(offset, stride_w, width, out_width)
                                for q in range(lo):
                                    source_col = col_map[q * stride_w + j * dilation_w]
                                    if source_col >= 0:
                                        dx_row[source_col] += weight * grad_row[q]
                                if hi > lo and stride_w == 1:
                                    target = dx_row[lo + offset:hi + offset]
                                    grad = grad_row[lo:hi]
                                    for t in range(hi - lo):
                                        target[t] += weight * grad[t]
                                elif hi > lo:
                                    target = _strided_slice(dx_row, lo, hi, stride_w, offset)
                                    grad = grad_row[lo:hi]
                                    for t in range(hi - lo):
                                        target[t] += weight * grad[t]
                                for q in range(hi, out_width):
                                    source_col = col_map[q * stride_w + j * dilation_w]
                                    if source_col >= 0:
                                        dx_row[source_col] += weight * grad_row[q]


@njit(**JIT_OPTIONS)
def max_pool_forward(x, size_d, size_h, size_w, stride_d, stride_h, stride_w,
                     pad_front, pad_top, pad_left, out, indices):
    """Max pooling of independent volumes, with the position of each maximum.

    Padding counts as -inf (as in PyTorch), so a maximum is always a real pixel; ties go to the
    first pixel of the window in row-major order.

    Parameters
    ----------
    x : float32 (P, D, H, W)
        P independent volumes (N*C planes; D = 1 for images).
    size_*, stride_*, pad_* : int
    out : float32 (P, OD, OH, OW)
        Written in place with the window maxima.
    indices : int64 (P, OD, OH, OW)
        Written in place with the flat index ``(d*H + h)*W + w`` of each maximum in its volume.
    """
    n_planes, depth, height, width = x.shape
    out_depth, out_rows, out_width = out.shape[1], out.shape[2], out.shape[3]
    for task in prange(n_planes * out_depth * out_rows):
        r = task % out_rows
        rest = task // out_rows
        z = rest % out_depth
        p = rest // out_depth
        out_row = out[p, z, r]
        index_row = indices[p, z, r]
        out_row[:] = -np.inf
        index_row[:] = -1
        for a in range(size_d):
            source_depth = z * stride_d - pad_front + a
            if source_depth < 0 or source_depth >= depth:
                continue
            for i in range(size_h):
                source_row = r * stride_h - pad_top + i
                if source_row < 0 or source_row >= height:
                    continue
                x_row = x[p, source_depth, source_row]
                row_start = (source_depth * height + source_row) * width
                for j in range(size_w):
                    offset = j - pad_left
                    lo, hi = _interior_range(offset, stride_w, width, out_width)
                    if hi > lo:
                        best = out_row[lo:hi]
                        best_index = index_row[lo:hi]
                        source = _strided_slice(x_row, lo, hi, stride_w, offset)
                        first_column = row_start + lo * stride_w + offset
                        for t in range(hi - lo):
                            value = source[t]
                            if value > best[t]:
                                best[t] = value
                                best_index[t] = first_column + t * stride_w


@njit(**JIT_OPTIONS)
def scatter_add(values, indices, out):
    """Add ``values[p, m]`` into ``out[p, indices[p, m]]`` (max pooling backward).

    Parameters
    ----------
    values : float32 (P, M)
    indices : int64 (P, M)
        Flat positions in each row of ``out``; repeats add up (overlapping windows).
    out : float32 (P, S)
        Overwritten.
    """
    n_planes, count = values.shape
    for p in prange(n_planes):
        target = out[p]
        target[:] = 0.0
        for m in range(count):
            target[indices[p, m]] += values[p, m]


@njit(**JIT_OPTIONS)
def elementwise(x, d_out, operation, slope, out):
    """Apply an activation (or its backward) element by element.

    Parameters
    ----------
    x : float32 (M,)
        The activation's input (backward passes take the forward input too).
    d_out : float32 (M,)
        Upstream gradient for backward operations; ignored (pass ``x``) for forward ones.
    operation : int
        One of RELU, RELU_BACKWARD, LEAKY_RELU, ... defined in this module.
    slope : float
        Negative-side slope of leaky ReLU.
    out : float32 (M,)
        Written in place.
    """
    size = x.shape[0]
    n_blocks = (size + _ELEMENTWISE_BLOCK - 1) // _ELEMENTWISE_BLOCK
    slope32 = np.float32(slope)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for block in prange(n_blocks):
        start = block * _ELEMENTWISE_BLOCK
        stop = min(start + _ELEMENTWISE_BLOCK, size)
        xs = x[start:stop]
        ds = d_out[start:stop]
        target = out[start:stop]
        # One loop per operation so each loop body is branch-free and vectorises; loops over
        # slices from 0 so Numba can drop its negative-index checks (which block vectorising).
        if operation == RELU:
            for m in range(stop - start):
                target[m] = xs[m] if xs[m] > zero else zero
        elif operation == RELU_BACKWARD:
            for m in range(stop - start):
                target[m] = ds[m] if xs[m] > zero else zero
        elif operation == LEAKY_RELU:
            for m in range(stop - start):
                target[m] = xs[m] if xs[m] > zero else slope32 * xs[m]
        elif operation == LEAKY_RELU_BACKWARD:
            for m in range(stop - start):
                target[m] = ds[m] if xs[m] > zero else slope32 * ds[m]
        elif operation == SIGMOID:
            for m in range(stop - start):
                # exp of a non-positive number only: no overflow for large |x|.
                e = np.exp(-abs(xs[m]))
                target[m] = one / (one + e) if xs[m] >= zero else e / (one + e)
        elif operation == SIGMOID_BACKWARD:
            for m in range(stop - start):
                e = np.exp(-abs(xs[m]))
                sig = one / (one + e) if xs[m] >= zero else e / (one + e)
                target[m] = ds[m] * sig * (one - sig)
        elif operation == TANH:
            for m in range(stop - start):
                target[m] = np.tanh(xs[m])
        elif operation == TANH_BACKWARD:
            for m in range(stop - start):
                th = np.tanh(xs[m])
                target[m] = ds[m] * (one - th * th)
