"""Every Numba-jitted loop of the engine: private workhorses on plain contiguous arrays and ints.

Nothing here validates its input; the public wrappers in kernels/engine.py do, and they always
pass C-contiguous, writeable float32 arrays (int64 for index maps and argmax indices) so that each
function is compiled exactly once and loaded from the on-disk cache afterwards.

The loops are written for 3-D volumes; a 2-D image is a volume of depth 1 (and a single image is
a batch of one with one channel), so six functions serve every public operation, plus three loop
orders made for common cases: the lessons' single (H, W) image with one (kh, kw) kernel (serial:
engine.py runs blocks of rows of a big image on several threads, which saves compiling a parallel
launcher), and the forward pass and weight gradient of a 2-D batch in the wide-row layout (the
classifier's, register-blocked with the explicit vectors of kernels/_simd.py):

=========================== ==================================================================
correlate_image_rows        conv2d of one (H, W) image with one (kh, kw) kernel (same sums as
                            correlate_forward, bit for bit; faster loop order for one big image)
correlate_forward           the general forward loop: volumes, strided windows, one to three
                            kernels, avg pooling (a ones kernel); kernels/dispatch.py chooses
correlate_image_blocks      the same sums for 2-D batches with at least four kernels and stride 1,
                            in wide rows: four kernels times ``WIDE_BLOCK_COLUMNS`` positions at
                            a time in registers (sized to the CPU's), each task copying the rows
                            it reads into wide rows of its own (the classifier's layers)
correlate_weight_grad       d_loss/d_w of a convolution
correlate_weight_grad_wide  d_loss/d_w of a 2-D batch in the wide-row layout (dot products
                            along each row, four kernels per sweep)
correlate_input_grad        d_loss/d_x of a strided convolution, avg pooling backward
max_pool_forward            max pooling with argmax indices
scatter_add                 max pooling backward (sends each gradient to its argmax)
elementwise                 relu / leaky_relu / sigmoid / tanh, forward and backward
copy_planes_into_rows       the copy into the wide-row layout (zero padding), in parallel
any_nonfinite               the inf / NaN check of big arrays, in parallel
=========================== ==================================================================

Padding: each spatial axis gets an *index map*: ``index_map[p]`` is the source index in the
unpadded input of padded position ``p``, or -1 where the padded value is zero, so zero, reflect and
replicate padding differ only in their maps and small kernels never copy the image.  Along a row,
the output columns whose whole window lies inside the image form one contiguous "interior" range
that reads the input directly (and vectorises); only the few border columns look the map up.
(engine.py copies the padded image instead where that is cheaper: wide kernels, narrow maps.)

Loop order: the innermost loop always runs along an output row (contiguous memory), each output
element keeping its own running sum, so LLVM vectorises it without reassociating any sum.  In the
forward loop the sum for one output element is accumulated in the fixed order of the tap table
(channel, depth tap, row tap, column tap), starting from 0, bias last, each product added to the
running sum with one fused multiply-add (``kernels._simd.fused_multiply_add``: one rounding per tap, and one
instruction, 15 % faster than a multiply and an add); kernels/trace.py replays that order and that
rounding in NumPy and gets the same float32 bits.

Inner loops index with unsigned integers (``np.uint64``): with a signed index Numba inserts a
negative-index wraparound check that stops LLVM from vectorising (measured 35x slower).  Array
views are not passed between jitted functions in the hot loops: that costs reference-count
updates on a cache line shared by all threads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from numba import njit, prange

from kernels._config import JIT_HELPER_OPTIONS, JIT_OPTIONS, JIT_REDUCTION_OPTIONS
from kernels._simd import (float32_bits, fused_multiply_add, vector_add_scalar, vector_fma, vector_lanes_finite,
                           vector_load, vector_mark_nonfinite, vector_scalar_fma, vector_store_lanes, vector_sum,
                           vector_zeros, VECTOR_LANES)


# Operation codes of ``elementwise`` (kept as plain ints so the kernel has one signature).
RELU, RELU_BACKWARD = 0, 1
LEAKY_RELU, LEAKY_RELU_BACKWARD = 2, 3
SIGMOID, SIGMOID_BACKWARD = 4, 5
TANH, TANH_BACKWARD = 6, 7

# Elements per parallel task in ``elementwise``: large enough to amortise scheduling, small
# enough to split a (32, 16, 64, 64) tensor over both cores.
ELEMENTWISE_BLOCK = 16384


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


# Taps of the forward loop applied in one sweep along the output row: the running sums stay in
# registers across the group, so the output row is loaded and stored once per 4 taps instead of
# once per tap (1.5x faster inner loop, measured).
_TAP_GROUP = 4
# Bits of a float32 that are all set for +-inf and NaN (the exponent field).
_FLOAT32_EXPONENT_MASK = 0x7F800000


@njit(inline="always", **JIT_HELPER_OPTIONS)
def _exponent_gap(bits):
    """``~bits & 0x7F800000`` in int32: 0 iff the float32 with these bits is inf or NaN.

    The kernels take the minimum of it over a row to detect a non-finite value.  The explicit
    int32 casts matter: Numba widens int32 arithmetic to int64, which halves the vector width of
    that min-reduction (measured 2x slower).
    """
    return np.int32(np.int32(~bits) & np.int32(_FLOAT32_EXPONENT_MASK))


@njit(**JIT_OPTIONS)
def correlate_forward(x, tap_channel, tap_depth, tap_row, tap_col, weights, bias,
                      depth_map, row_map, col_map, pad_left, stride_d, stride_h, stride_w, out, nonfinite_rows):
    """Strided, dilated cross-correlation of a padded batch with a bank of kernels.

    The kernels come as a *tap table*: tap t reads channel ``tap_channel[t]`` at offsets
    (``tap_depth[t]``, ``tap_row[t]``, ``tap_col[t]``) from the window's corner in the padded
    input, times ``weights[k, t]``.  For a (K, C, kd, kh, kw) kernel bank with dilation
    (dd, dh, dw) the taps run over (c, a, i, j) in that order with offsets (a*dd, i*dh, j*dw).
    The same loop also serves the engine's "wide row" layout, where a whole padded image plane is
    one long row and a tap's column offset is ``i*dh*Wp + j*dw`` (see engine.py).

    Taps are applied four at a time in one sweep along the output row, so the running sums stay
    in registers across four taps (each element still receives its taps in table order).  A tap
    that falls on a zero-padded row or plane gets weight 0 and reads row 0 instead: adding
    ``0 * x`` leaves every sum's value unchanged.

    Parameters
    ----------
    x : float32 (N, C, D, H, W)
        Unpadded input.
    tap_channel, tap_depth, tap_row, tap_col : int64 (T,)
    weights : float32 (K, T)
    bias : float32 (K,)
    depth_map, row_map, col_map : int64 (Dp,), (Hp,), (Wp,)
        Padded position -> source index, or -1 for a zero.
    pad_left : int
        Number of padded columns before column 0 (for the interior range).
    stride_d, stride_h, stride_w : int
    out : float32 (N, K, OD, OH, OW)
        Written in place: ``out[n, k, z, r, q] = bias[k] + sum_t weights[k, t] *
        x_padded[n, tap_channel[t], z*sd + tap_depth[t], r*sh + tap_row[t], q*sw + tap_col[t]]``,
        summed over t in table order starting from 0 (one fused multiply-add per tap), bias last.
    nonfinite_rows : uint8 (N * K * OD * OH,)
        Set to 1 for each output row holding an inf or NaN.  A non-finite input pixel that any
        window reads makes that output non-finite (0 * inf is NaN), so this replaces a separate
        pass over the whole input to check it.
    """
    n_batch, _, _, _, width = x.shape
    n_out, n_taps = weights.shape
    out_depth, out_rows, out_width = out.shape[2], out.shape[3], out.shape[4]
    zero = np.float32(0.0)
    unsigned_stride = np.uint64(stride_w)
    # Inner loops index with unsigned integers: Numba then skips its negative-index wraparound
    # check, which otherwise stops LLVM from vectorising them (measured 35x slower).
    for task in prange(n_batch * n_out * out_depth * out_rows):
        r = task % out_rows
        rest = task // out_rows
        z = rest % out_depth
        rest //= out_depth
        k = rest % n_out
        n = rest // n_out
        for q in range(out_width):
            out[n, k, z, r, q] = 0.0
        for first in range(0, n_taps, _TAP_GROUP):
            count = min(_TAP_GROUP, n_taps - first)
            # Up to four taps: channel, source plane, source row, padded column offset, weight.
            ch0, ch1, ch2, ch3 = 0, 0, 0, 0
            d0, d1, d2, d3 = 0, 0, 0, 0
            r0, r1, r2, r3 = 0, 0, 0, 0
            c0, c1, c2, c3 = 0, 0, 0, 0
            w0, w1, w2, w3 = zero, zero, zero, zero
            t = first
            d0 = depth_map[z * stride_d + tap_depth[t]]
            r0 = row_map[r * stride_h + tap_row[t]]
            ch0, c0, w0 = tap_channel[t], tap_col[t], weights[k, t]
            if d0 < 0 or r0 < 0:
                d0, r0, w0 = 0, 0, zero
            if count > 1:
                t = first + 1
                d1 = depth_map[z * stride_d + tap_depth[t]]
                r1 = row_map[r * stride_h + tap_row[t]]
                ch1, c1, w1 = tap_channel[t], tap_col[t], weights[k, t]
                if d1 < 0 or r1 < 0:
                    d1, r1, w1 = 0, 0, zero
            else:
                c1 = c0
            if count > 2:
                t = first + 2
                d2 = depth_map[z * stride_d + tap_depth[t]]
                r2 = row_map[r * stride_h + tap_row[t]]
                ch2, c2, w2 = tap_channel[t], tap_col[t], weights[k, t]
                if d2 < 0 or r2 < 0:
                    d2, r2, w2 = 0, 0, zero
            else:
                c2 = c0
            if count > 3:
                t = first + 3
                d3 = depth_map[z * stride_d + tap_depth[t]]
                r3 = row_map[r * stride_h + tap_row[t]]
                ch3, c3, w3 = tap_channel[t], tap_col[t], weights[k, t]
                if d3 < 0 or r3 < 0:
                    d3, r3, w3 = 0, 0, zero
            else:
                c3 = c0
            # Output columns whose reads are inside the row for every tap of the group.
            lo, hi = _interior_range(c0 - pad_left, stride_w, width, out_width)
            lo1, hi1 = _interior_range(c1 - pad_left, stride_w, width, out_width)
            lo2, hi2 = _interior_range(c2 - pad_left, stride_w, width, out_width)
            lo3, hi3 = _interior_range(c3 - pad_left, stride_w, width, out_width)
            lo = max(max(lo, lo1), max(lo2, lo3))
            hi = min(min(hi, hi1), min(hi2, hi3))
            if lo >= hi:
                lo = out_width
                hi = out_width
            # Border columns (and all columns of a group with no interior): through the map.
            for q in range(out_width - (hi - lo)):
                if q >= lo:
                    q += hi - lo  # skip the interior
                total = out[n, k, z, r, q]
                source_col = col_map[q * stride_w + c0]
                if source_col >= 0:
                    total = fused_multiply_add(w0, x[n, ch0, d0, r0, source_col], total)
                if count > 1:
                    source_col = col_map[q * stride_w + c1]
                    if source_col >= 0:
                        total = fused_multiply_add(w1, x[n, ch1, d1, r1, source_col], total)
                if count > 2:
                    source_col = col_map[q * stride_w + c2]
                    if source_col >= 0:
                        total = fused_multiply_add(w2, x[n, ch2, d2, r2, source_col], total)
                if count > 3:
                    source_col = col_map[q * stride_w + c3]
                    if source_col >= 0:
                        total = fused_multiply_add(w3, x[n, ch3, d3, r3, source_col], total)
                out[n, k, z, r, q] = total
            if lo >= hi:
                continue
            span = np.uint64(hi - lo)
            target = np.uint64(lo)
            a0 = np.uint64(lo * stride_w + c0 - pad_left)
            a1 = np.uint64(lo * stride_w + c1 - pad_left)
            a2 = np.uint64(lo * stride_w + c2 - pad_left)
            a3 = np.uint64(lo * stride_w + c3 - pad_left)
            if stride_w == 1 and count == 4:
                for u in range(span):
                    out[n, k, z, r, target + u] = _four_taps(
                        out[n, k, z, r, target + u], w0, w1, w2, w3, x[n, ch0, d0, r0, a0 + u],
                        x[n, ch1, d1, r1, a1 + u], x[n, ch2, d2, r2, a2 + u], x[n, ch3, d3, r3, a3 + u])
            elif stride_w == 1 and count == 3:
                for u in range(span):
                    total = fused_multiply_add(w0, x[n, ch0, d0, r0, a0 + u], out[n, k, z, r, target + u])
                    total = fused_multiply_add(w1, x[n, ch1, d1, r1, a1 + u], total)
                    out[n, k, z, r, target + u] = fused_multiply_add(w2, x[n, ch2, d2, r2, a2 + u], total)
            elif stride_w == 1 and count == 2:
                for u in range(span):
                    total = fused_multiply_add(w0, x[n, ch0, d0, r0, a0 + u], out[n, k, z, r, target + u])
                    out[n, k, z, r, target + u] = fused_multiply_add(w1, x[n, ch1, d1, r1, a1 + u], total)
            elif stride_w == 1:
                for u in range(span):
                    out[n, k, z, r, target + u] = fused_multiply_add(w0, x[n, ch0, d0, r0, a0 + u],
                                                                     out[n, k, z, r, target + u])
            else:  # strided columns: one sweep per tap, taps still in order for each element
                for u in range(span):
                    out[n, k, z, r, target + u] = fused_multiply_add(
                        w0, x[n, ch0, d0, r0, a0 + u * unsigned_stride], out[n, k, z, r, target + u])
                if count > 1:
                    for u in range(span):
                        out[n, k, z, r, target + u] = fused_multiply_add(
                            w1, x[n, ch1, d1, r1, a1 + u * unsigned_stride], out[n, k, z, r, target + u])
                if count > 2:
                    for u in range(span):
                        out[n, k, z, r, target + u] = fused_multiply_add(
                            w2, x[n, ch2, d2, r2, a2 + u * unsigned_stride], out[n, k, z, r, target + u])
                if count > 3:
                    for u in range(span):
                        out[n, k, z, r, target + u] = fused_multiply_add(
                            w3, x[n, ch3, d3, r3, a3 + u * unsigned_stride], out[n, k, z, r, target + u])
        bias_k = bias[k]
        for q in range(out_width):
            out[n, k, z, r, q] += bias_k
        # Integer min-reduction (vectorises): 0 iff some element has every exponent bit set.
        bits = out[n, k, z, r].view(np.int32)
        smallest = np.int32(_FLOAT32_EXPONENT_MASK)
        for q in range(out_width):
            smallest = min(smallest, _exponent_gap(bits[q]))
        nonfinite_rows[task] = 1 if smallest == 0 else 0


# Output columns of one register block of the wide-row loops: four kernels times
# ``WIDE_BLOCK_VECTORS`` vectors of running sums, as many as the CPU's vector registers hold.
# AVX-512 (32 zmm): six vectors per kernel, 24 sums (4 % faster than four on the classifier's 64 x 64
# layer, fewer loads per multiply-add).  AVX2 (16 ymm): three, 12 sums plus the four weights; with
# six the loop spilled its sums to memory (1 thread, 64 x 64 layer forward: 12.9 ms with six vectors
# of 8 lanes, 20.7 ms with six of 16).
WIDE_BLOCK_VECTORS = 6 if VECTOR_LANES == 16 else 3
WIDE_BLOCK_COLUMNS = WIDE_BLOCK_VECTORS * VECTOR_LANES

if WIDE_BLOCK_VECTORS == 6:
    @njit(inline="always", **JIT_HELPER_OPTIONS)
    def _wide_block_sums(x_flat, base, tap_offset, weights, k0):
        """The running sums of one register block: four kernels from ``k0`` times six vectors of positions.

        Position p of the block (0 <= p < ``WIDE_BLOCK_COLUMNS``) sums ``weights[t, k] * x_flat[base +
        tap_offset[t] + p]`` over the taps t in table order from 0, one fused multiply-add each.

        Returns 24 vectors, kernel-major.
        """
        s00, s01, s02, s03, s04, s05 = vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros()
        s10, s11, s12, s13, s14, s15 = vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros()
        s20, s21, s22, s23, s24, s25 = vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros()
        s30, s31, s32, s33, s34, s35 = vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros()
        for t in range(tap_offset.shape[0]):
            start = base + tap_offset[t]
            x0 = vector_load(x_flat, start)
            x1 = vector_load(x_flat, start + 1 * VECTOR_LANES)
            x2 = vector_load(x_flat, start + 2 * VECTOR_LANES)
            x3 = vector_load(x_flat, start + 3 * VECTOR_LANES)
            x4 = vector_load(x_flat, start + 4 * VECTOR_LANES)
            x5 = vector_load(x_flat, start + 5 * VECTOR_LANES)
            w0, w1, w2, w3 = weights[t, k0], weights[t, k0 + 1], weights[t, k0 + 2], weights[t, k0 + 3]
            s00 = vector_scalar_fma(w0, x0, s00); s01 = vector_scalar_fma(w0, x1, s01); s02 = vector_scalar_fma(w0, x2, s02)
            s03 = vector_scalar_fma(w0, x3, s03); s04 = vector_scalar_fma(w0, x4, s04); s05 = vector_scalar_fma(w0, x5, s05)
            s10 = vector_scalar_fma(w1, x0, s10); s11 = vector_scalar_fma(w1, x1, s11); s12 = vector_scalar_fma(w1, x2, s12)
            s13 = vector_scalar_fma(w1, x3, s13); s14 = vector_scalar_fma(w1, x4, s14); s15 = vector_scalar_fma(w1, x5, s15)
            s20 = vector_scalar_fma(w2, x0, s20); s21 = vector_scalar_fma(w2, x1, s21); s22 = vector_scalar_fma(w2, x2, s22)
            s23 = vector_scalar_fma(w2, x3, s23); s24 = vector_scalar_fma(w2, x4, s24); s25 = vector_scalar_fma(w2, x5, s25)
            s30 = vector_scalar_fma(w3, x0, s30); s31 = vector_scalar_fma(w3, x1, s31); s32 = vector_scalar_fma(w3, x2, s32)
            s33 = vector_scalar_fma(w3, x3, s33); s34 = vector_scalar_fma(w3, x4, s34); s35 = vector_scalar_fma(w3, x5, s35)
        return (s00, s01, s02, s03, s04, s05, s10, s11, s12, s13, s14, s15, s20, s21, s22, s23, s24, s25, s30, s31, s32, s33, s34, s35)

    @njit(inline="always", **JIT_HELPER_OPTIONS)
    def _stage_block_sums(staging, start, sums, bias, k0):
        """Write a block's 24 sums plus each kernel's bias to ``staging[start:]``, kernel after kernel."""
        # Written out: a loop indexing the tuple measured 6 % slower.
        for k in range(4):
            at = start + k * WIDE_BLOCK_COLUMNS
            b = bias[k0 + k]
            if k == 0:
                v0, v1, v2, v3, v4, v5 = sums[0], sums[1], sums[2], sums[3], sums[4], sums[5]
            elif k == 1:
                v0, v1, v2, v3, v4, v5 = sums[6], sums[7], sums[8], sums[9], sums[10], sums[11]
            elif k == 2:
                v0, v1, v2, v3, v4, v5 = sums[12], sums[13], sums[14], sums[15], sums[16], sums[17]
            else:
                v0, v1, v2, v3, v4, v5 = sums[18], sums[19], sums[20], sums[21], sums[22], sums[23]
            vector_store_lanes(staging, at, vector_add_scalar(v0, b), 0, VECTOR_LANES)
            vector_store_lanes(staging, at + VECTOR_LANES, vector_add_scalar(v1, b), 0, VECTOR_LANES)
            vector_store_lanes(staging, at + 2 * VECTOR_LANES, vector_add_scalar(v2, b), 0, VECTOR_LANES)
            vector_store_lanes(staging, at + 3 * VECTOR_LANES, vector_add_scalar(v3, b), 0, VECTOR_LANES)
            vector_store_lanes(staging, at + 4 * VECTOR_LANES, vector_add_scalar(v4, b), 0, VECTOR_LANES)
            vector_store_lanes(staging, at + 5 * VECTOR_LANES, vector_add_scalar(v5, b), 0, VECTOR_LANES)
else:
    @njit(inline="always", **JIT_HELPER_OPTIONS)
    def _wide_block_sums(x_flat, base, tap_offset, weights, k0):
        """The running sums of one register block: four kernels from ``k0`` times three vectors of positions.

        As the six-vector version above, for CPUs with 16 vector registers.  Returns 12 vectors, kernel-major.
        """
        s00, s01, s02 = vector_zeros(), vector_zeros(), vector_zeros()
        s10, s11, s12 = vector_zeros(), vector_zeros(), vector_zeros()
        s20, s21, s22 = vector_zeros(), vector_zeros(), vector_zeros()
        s30, s31, s32 = vector_zeros(), vector_zeros(), vector_zeros()
        for t in range(tap_offset.shape[0]):
            start = base + tap_offset[t]
            x0 = vector_load(x_flat, start)
            x1 = vector_load(x_flat, start + 1 * VECTOR_LANES)
            x2 = vector_load(x_flat, start + 2 * VECTOR_LANES)
            w0, w1, w2, w3 = weights[t, k0], weights[t, k0 + 1], weights[t, k0 + 2], weights[t, k0 + 3]
            s00 = vector_scalar_fma(w0, x0, s00); s01 = vector_scalar_fma(w0, x1, s01); s02 = vector_scalar_fma(w0, x2, s02)
            s10 = vector_scalar_fma(w1, x0, s10); s11 = vector_scalar_fma(w1, x1, s11); s12 = vector_scalar_fma(w1, x2, s12)
            s20 = vector_scalar_fma(w2, x0, s20); s21 = vector_scalar_fma(w2, x1, s21); s22 = vector_scalar_fma(w2, x2, s22)
            s30 = vector_scalar_fma(w3, x0, s30); s31 = vector_scalar_fma(w3, x1, s31); s32 = vector_scalar_fma(w3, x2, s32)
        return (s00, s01, s02, s10, s11, s12, s20, s21, s22, s30, s31, s32)

    @njit(inline="always", **JIT_HELPER_OPTIONS)
    def _stage_block_sums(staging, start, sums, bias, k0):
        """Write a block's 12 sums plus each kernel's bias to ``staging[start:]``, kernel after kernel."""
        for k in range(4):
            at = start + k * WIDE_BLOCK_COLUMNS
            b = bias[k0 + k]
            if k == 0:
                v0, v1, v2 = sums[0], sums[1], sums[2]
            elif k == 1:
                v0, v1, v2 = sums[3], sums[4], sums[5]
            elif k == 2:
                v0, v1, v2 = sums[6], sums[7], sums[8]
            else:
                v0, v1, v2 = sums[9], sums[10], sums[11]
            vector_store_lanes(staging, at, vector_add_scalar(v0, b), 0, VECTOR_LANES)
            vector_store_lanes(staging, at + VECTOR_LANES, vector_add_scalar(v1, b), 0, VECTOR_LANES)
            vector_store_lanes(staging, at + 2 * VECTOR_LANES, vector_add_scalar(v2, b), 0, VECTOR_LANES)


@njit(inline="always", **JIT_HELPER_OPTIONS)
def _store_kernel_lanes(flat, start, map_size, kernels_left, sum0, sum1, sum2, sum3, first, last):
    """``flat[start + l] = sum_k[l]`` for lanes ``first <= l < last``, kernel k's plane ``k * map_size`` further.

    ``kernels_left`` of the four kernels are real.  Returns True if every stored value is finite.
    """
    finite = True
    vector_store_lanes(flat, start, sum0, first, last)
    finite &= vector_lanes_finite(sum0, first, last)
    if kernels_left > 1:
        vector_store_lanes(flat, start + map_size, sum1, first, last)
        finite &= vector_lanes_finite(sum1, first, last)
    if kernels_left > 2:
        vector_store_lanes(flat, start + 2 * map_size, sum2, first, last)
        finite &= vector_lanes_finite(sum2, first, last)
    if kernels_left > 3:
        vector_store_lanes(flat, start + 3 * map_size, sum3, first, last)
        finite &= vector_lanes_finite(sum3, first, last)
    return finite


@njit(inline="always", **JIT_HELPER_OPTIONS)
def _store_wide_vector(flat, map_size, out_cols, origin, kernels_left, position, sum0, sum1, sum2, sum3, span,
                       row_step, walk, row, col):
    """Store four kernels' sums at wide positions ``position``..``position + VECTOR_LANES - 1`` into ``flat``, a (N, K, OH, OW) output.

    Wide position p is (row, col) = divmod(p, Wp = ``row_step``); a valid one (col < OW, p < span)
    goes to ``flat[origin + row * OW + col]`` for the first kernel and ``map_size`` further for
    each next one (``kernels_left`` of the four are real), one store per stretch of a row; the
    wrap-around columns are skipped.  (``walk``, row, col) is where the previous vector left off,
    so that no vector divides.

    A vector that lies whole inside one output row (most of them) is stored by plain stores, the
    stretches at a row's end by masked ones: on AMD's Zen 3 a masked store of 8 lanes takes about
    18 cycles against 1 (measured: 6 ns against 0.7 ns a store), and with masked stores only the
    classifier's 64 x 64 layer spent a fifth of its forward pass storing (one thread: 6.8 -> 5.7 ms).

    Returns (all stored values finite, walk, row, col).
    """
    finite = True
    stop = min(position + VECTOR_LANES, span)
    while walk < stop:
        if col >= out_cols:  # the wrap-around columns
            walk += row_step - col
            row += 1
            col = 0
        else:
            first = walk - position
            last = min(VECTOR_LANES, first + out_cols - col)
            # Lane l goes to flat[start + l] (``start`` may precede the array: the masked store
            # touches lanes first..last-1 only).
            start = origin + row * out_cols + col - first
            if first == 0 and last == VECTOR_LANES:  # constant lanes: LLVM makes these plain stores
                finite &= _store_kernel_lanes(flat, start, map_size, kernels_left, sum0, sum1, sum2, sum3,
                                              0, VECTOR_LANES)
            else:
                finite &= _store_kernel_lanes(flat, start, map_size, kernels_left, sum0, sum1, sum2, sum3, first, last)
            walk += last - first
            col += last - first
    return finite, walk, row, col


@njit(inline="always", **JIT_HELPER_OPTIONS)
def _store_wide_block(flat, map_size, out_cols, origin, kernels_left, column, sums, bias, k0, span, row_step,
                      staging, staging_start):
    """Store a block's sums (``_wide_block_sums``), bias added last, from wide position ``column``; True if all finite.

    The sums go through ``staging[staging_start:]`` (4 x ``WIDE_BLOCK_COLUMNS`` values, in the
    core's cache) so that one loop walks the column vectors: with the walk written out six
    times the loop took 7.3 s to compile instead of 4.2 s, at the same speed.
    """
    _stage_block_sums(staging, staging_start, sums, bias, k0)
    row = column // row_step
    col = column - row * row_step
    walk = column
    finite = True
    for vector in range(WIDE_BLOCK_VECTORS):
        at = staging_start + vector * VECTOR_LANES
        ok, walk, row, col = _store_wide_vector(
            flat, map_size, out_cols, origin, kernels_left, column + vector * VECTOR_LANES,
            vector_load(staging, at), vector_load(staging, at + WIDE_BLOCK_COLUMNS),
            vector_load(staging, at + 2 * WIDE_BLOCK_COLUMNS), vector_load(staging, at + 3 * WIDE_BLOCK_COLUMNS),
            span, row_step, walk, row, col)
        finite &= ok
    return finite


@njit(**JIT_OPTIONS)
def correlate_image_blocks(x, tap_offset, weights, bias, row_map, col_map, left, rows_per_task, extent_rows,
                           buffer_row_length, out):
    """Forward correlation of a 2-D batch in wide rows, 24 running sums in registers.

    Each task copies the padded rows that ``rows_per_task`` output rows of one image read into
    wide rows of its own (one per channel, ``buffer_row_length`` long, padding included, then room
    to stage a block's sums; a few tens of kB that stay in the core's cache), then computes their
    blocks for every kernel: four kernels
    times ``WIDE_BLOCK_COLUMNS`` wide positions, held in 24 vector variables (registers) while all
    the taps are applied, then stored, bias added last, straight into the (N, K, OH, OW) output
    with masked stores (the wrap-around columns left out).  Per tap: six vector loads of the
    input and four weights feed 24 vector fused multiply-adds (``correlate_forward`` loads and
    stores its running sums in memory every four taps).  Copying per task instead of the whole
    batch beforehand saved a pass through memory (classifier's first layer, 2 threads: forward
    1.54 -> 1.4 ms).  Every output element gets the same sum as in ``correlate_forward`` (taps in
    table order from 0, one fused multiply-add each, bias last), bit for bit.

    Parameters
    ----------
    x : float32 (N, C, H, W)
    tap_offset : int64 (T,)
        channel * buffer_row_length + row tap * dilation * Wp + column tap * dilation.
    weights : float32 (T, K4)
        Tap-major, so that a tap's weights for four kernels are adjacent; K4 a multiple of 4, the
        kernels past K zero.
    bias : float32 (K4,)
    row_map, col_map : int64 (Hp,), (Wp,)
        Source row / column of each padded one, -1 for a zero (see the module docstring).
    left : int
        Padding columns left of the image (col_map is the identity in between).
    rows_per_task, extent_rows : int
        Output rows per task, and the padded rows a window spans beyond its first: (kh - 1) * dh.
    buffer_row_length : int
        At least the task's blocks of positions plus the largest column offset of a tap.
    out : float32 (N, K, OH, OW)
        Written in place.

    Returns
    -------
    int
        How many tasks stored an inf or NaN (0 if none).
    """
    n_batch, n_channels, rows, cols = x.shape
    n_groups = weights.shape[1] // 4
    n_kernels, out_rows, out_cols = out.shape[1], out.shape[2], out.shape[3]
    out_flat = out.reshape(-1)
    row_step = col_map.shape[0]
    chunks = (out_rows + rows_per_task - 1) // rows_per_task
    u_cols, u_left = np.uint64(cols), np.uint64(left)
    zero = np.float32(0.0)
    nonfinite_tasks = 0
    for task in prange(n_batch * chunks):
        n = task // chunks
        first_row = (task % chunks) * rows_per_task
        task_rows = min(rows_per_task, out_rows - first_row)
        span = task_rows * row_step
        # The task's wide rows, then room to stage a block's sums.
        buffer = np.empty(n_channels * buffer_row_length + 4 * WIDE_BLOCK_COLUMNS, dtype=np.float32)
        # Zeros only where no pixel goes (measured 4 % faster than zeroing the whole buffer first).
        filled = np.uint64((task_rows + extent_rows) * row_step)
        for c in range(n_channels):
            row_start = np.uint64(c * buffer_row_length)
            for e in range(filled, np.uint64(buffer_row_length)):
                buffer[row_start + e] = zero
            for q in range(task_rows + extent_rows):
                source_row = row_map[first_row + q]
                target = row_start + np.uint64(q * row_step)
                if source_row < 0:
                    for e in range(np.uint64(row_step)):
                        buffer[target + e] = zero
                    continue
                for e in range(u_cols):
                    buffer[target + u_left + e] = x[n, c, source_row, e]
                # The padding columns: reflected / replicated pixels, or zeros.
                for p in range(left):
                    buffer[target + np.uint64(p)] = x[n, c, source_row, col_map[p]] if col_map[p] >= 0 else zero
                for p in range(left + cols, row_step):
                    buffer[target + np.uint64(p)] = x[n, c, source_row, col_map[p]] if col_map[p] >= 0 else zero
        finite = True
        n_blocks = (span + WIDE_BLOCK_COLUMNS - 1) // WIDE_BLOCK_COLUMNS
        for block in range(n_blocks):
            column = block * WIDE_BLOCK_COLUMNS
            for group in range(n_groups):
                k0 = group * 4
                origin = ((n * n_kernels + k0) * out_rows + first_row) * out_cols
                sums = _wide_block_sums(buffer, column, tap_offset, weights, k0)
                finite &= _store_wide_block(out_flat, out_rows * out_cols, out_cols, origin, n_kernels - k0, column,
                                            sums, bias, k0, span, row_step, buffer, n_channels * buffer_row_length)
        nonfinite_tasks += 0 if finite else 1
    return nonfinite_tasks


@njit(**JIT_HELPER_OPTIONS)
def _ring_slot(base_slot, distance, window_rows):
    """Slot (base_slot + distance) % window_rows, for 0 <= base_slot, distance < window_rows, without a division."""
    slot = base_slot + distance
    return slot - window_rows if slot >= window_rows else slot


# The register block of ``correlate_image_rows``: two output rows times four vectors of columns, eight
# running sums held in registers across all the taps of the kernel.  Eight independent sums keep both
# FMA units busy through the 4-cycle latency of each multiply-add.  In the in-place loop the two rows
# also share their loads (``_row_pair_block``): a vector of padded row r + d is read once and multiplied
# into row r by kernel row d and into row r + 1 by kernel row d - 1, so a block reads kh + 1 rows
# instead of 2 kh.  Measured on the 2-core AMD EPYC (Zen 3, AVX2), one thread, the loop alone, against
# the ring of whole rows with one tap at a time: 512 x 512 9x9 1.15-1.2x, 15x15 1.2-1.3x as fast,
# 2048 x 2048 9x9 1.2-1.4x, 15x15 1.3-1.4x (a busy machine: load 4-6).
IMAGE_BLOCK_ROWS = 2
IMAGE_BLOCK_VECTORS = 4
# Kernels with fewer taps keep the ring of whole padded rows (3 x 3 has a loop of its own,
# ``_correlate_rows_3x3``): per pair of rows, the in-place loop's fixed work (copying the edges, one
# block of edge vectors) then outweighs the loads it saves (512 x 512, one thread, the loop alone:
# 3x3 in place 0.87-0.91x the ring's speed, 5x5 1.0x, 7x7 1.1-1.2x, 9x9 1.15-1.2x; 2048 x 2048:
# 3x3 0.95x, 5x5 1.2x, 9x9 1.3x).
IN_PLACE_MIN_TAPS = 16


@njit(inline="always", **JIT_HELPER_OPTIONS)
def _store_image_vector(out_flat, at, sums, bias, count):
    """``out_flat[at:at + count] = sums + bias`` (``count <= VECTOR_LANES``); False if a stored value is inf or NaN."""
    values = vector_add_scalar(sums, bias)
    vector_store_lanes(out_flat, at, values, 0, count)
    return vector_lanes_finite(values, 0, count)


@njit(inline="always", **JIT_HELPER_OPTIONS)
def _row_pair_block(source, step_offset, q0, q1, q2, q3, weight, k_cols, n_taps):
    """Running sums of two output rows at four vectors of columns (from q0, q1, q2, q3), loads shared.

    ``step_offset[s]`` is where, in ``source``, padded row ``s // k_cols`` (counted from the pair's
    first row) is read by column tap ``s % k_cols`` of output column 0, for s < n_taps + k_cols.
    Step s multiplies its vectors into row 0 by ``weight[s]`` (if s < n_taps) and into row 1 by
    ``weight[s - k_cols]`` (if s >= k_cols), so each row receives its taps in row-major order.
    The four vectors are usually side by side; the edges of a row take any four (repeats allowed).
    """
    s00, s01, s02, s03 = vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros()
    s10, s11, s12, s13 = vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros()
    u_cols, u_taps = np.uint64(k_cols), np.uint64(n_taps)
    for s in range(u_cols):  # the first padded row: row 0's kernel row 0 only
        w0 = weight[s]
        a = step_offset[s]
        s00 = vector_scalar_fma(w0, vector_load(source, a + q0), s00)
        s01 = vector_scalar_fma(w0, vector_load(source, a + q1), s01)
        s02 = vector_scalar_fma(w0, vector_load(source, a + q2), s02)
        s03 = vector_scalar_fma(w0, vector_load(source, a + q3), s03)
    for s in range(u_cols, u_taps):  # rows read by both output rows
        w0 = weight[s]
        w1 = weight[s - u_cols]
        a = step_offset[s]
        v = vector_load(source, a + q0)
        s00 = vector_scalar_fma(w0, v, s00)
        s10 = vector_scalar_fma(w1, v, s10)
        v = vector_load(source, a + q1)
        s01 = vector_scalar_fma(w0, v, s01)
        s11 = vector_scalar_fma(w1, v, s11)
        v = vector_load(source, a + q2)
        s02 = vector_scalar_fma(w0, v, s02)
        s12 = vector_scalar_fma(w1, v, s12)
        v = vector_load(source, a + q3)
        s03 = vector_scalar_fma(w0, v, s03)
        s13 = vector_scalar_fma(w1, v, s13)
    for s in range(u_taps, u_taps + u_cols):  # the last padded row: row 1's last kernel row only
        w1 = weight[s - u_cols]
        a = step_offset[s]
        s10 = vector_scalar_fma(w1, vector_load(source, a + q0), s10)
        s11 = vector_scalar_fma(w1, vector_load(source, a + q1), s11)
        s12 = vector_scalar_fma(w1, vector_load(source, a + q2), s12)
        s13 = vector_scalar_fma(w1, vector_load(source, a + q3), s13)
    return s00, s01, s02, s03, s10, s11, s12, s13


@njit(inline="always", **JIT_HELPER_OPTIONS)
def _store_row_pair_block(out_flat, out0, out1, q0, q1, q2, q3, sums, bias):
    """Store ``_row_pair_block``'s sums, bias added; True if every value stored is finite.

    Row 1 first: for the last row of an odd count both rows are that row, and row 0's sums are right.
    """
    lanes = VECTOR_LANES
    s00, s01, s02, s03, s10, s11, s12, s13 = sums
    stored = _store_image_vector(out_flat, out1 + q0, s10, bias, lanes)
    stored &= _store_image_vector(out_flat, out1 + q1, s11, bias, lanes)
    stored &= _store_image_vector(out_flat, out1 + q2, s12, bias, lanes)
    stored &= _store_image_vector(out_flat, out1 + q3, s13, bias, lanes)
    stored &= _store_image_vector(out_flat, out0 + q0, s00, bias, lanes)
    stored &= _store_image_vector(out_flat, out0 + q1, s01, bias, lanes)
    stored &= _store_image_vector(out_flat, out0 + q2, s02, bias, lanes)
    return stored & _store_image_vector(out_flat, out0 + q3, s03, bias, lanes)


@njit(inline="always", **JIT_HELPER_OPTIONS)
def _copy_floats(target, at, source, start, count):
    """``target[at:at + count] = source[start:start + count]``: whole vectors (the last moved back to end at
    ``count``) when there is at least one, else one value at a time."""
    lanes = VECTOR_LANES
    if count < lanes:
        for i in range(count):
            target[at + i] = source[start + i]
        return
    for i in range(0, count - lanes, lanes):
        vector_store_lanes(target, at + i, vector_load(source, start + i), 0, lanes)
    vector_store_lanes(target, at + count - lanes, vector_load(source, start + count - lanes), 0, lanes)


@njit(inline="always", **JIT_HELPER_OPTIONS)
def _fill_edge_part(edges, at, x_flat, source, col_map, pad_left, width, first, stop):
    """``edges[at:at + stop - first]`` = padded columns [first, stop) of the image row starting at ``x_flat[source]``."""
    zero = np.float32(0.0)
    inner_first = min(max(first, pad_left), stop)  # the columns inside the image: one copy
    inner_stop = max(min(stop, pad_left + width), inner_first)
    for c in range(first, inner_first):
        edges[at + c - first] = x_flat[source + col_map[c]] if col_map[c] >= 0 else zero
    _copy_floats(edges, at + inner_first - first, x_flat, source + inner_first - pad_left, inner_stop - inner_first)
    for c in range(inner_stop, stop):
        edges[at + c - first] = x_flat[source + col_map[c]] if col_map[c] >= 0 else zero


@njit(**JIT_HELPER_OPTIONS)
def _correlate_rows_through_ring(x, w, bias, row_map, col_map, pad_left, stride_h, stride_w, dilation_h,
                                  dilation_w, first_row, stop_row, out):
    """``correlate_image_rows`` for any stride and dilation: each padded row copied whole into a ring.

    Each padded source row is copied once into a small ring of row buffers (padding included, so no
    tap reads through the index maps); then, for two output rows at a time, blocks of
    ``IMAGE_BLOCK_VECTORS`` vectors of columns keep their running sums in registers while every tap
    is applied, one tap at a time to each row, and are stored once, bias added.  The columns left
    over after the last whole block go one vector at a time, the last one with a masked store.
    Strided columns (small lesson images) take a plain sweep along the output row per tap.
    Arguments and result as ``correlate_image_rows``.
    """
    width = x.shape[1]
    k_rows, k_cols = w.shape
    n_taps = k_rows * k_cols
    padded_width = col_map.shape[0]
    out_width = out.shape[1]
    lanes = VECTOR_LANES
    block_columns = IMAGE_BLOCK_VECTORS * lanes
    # Padded rows read by one block of output rows: padded row p lives in slot p % ring_rows, so
    # the rows of one block never collide and, with stride 1, each row is copied once per call.
    ring_rows = (k_rows - 1) * dilation_h + 1 + (IMAGE_BLOCK_ROWS - 1) * stride_h
    bias32 = np.float32(bias)
    zero = np.float32(0.0)
    # One vector of slack after the last row: the masked last vector of a row reads (and drops)
    # up to ``lanes - 1`` values past the row's end.
    ring = np.zeros(ring_rows * padded_width + lanes, dtype=np.float32)
    ring_holds = np.full(ring_rows, -1, dtype=np.int64)
    tap_row = np.empty(n_taps, dtype=np.int64)
    tap_col = np.empty(n_taps, dtype=np.int64)
    tap_weight = np.empty(n_taps, dtype=np.float32)
    for t in range(n_taps):
        tap_row[t] = (t // k_cols) * dilation_h
        tap_col[t] = (t % k_cols) * dilation_w
        tap_weight[t] = w[t // k_cols, t % k_cols]
    # Where tap t of the block's first (second) output row starts reading in the ring.
    offset0 = np.empty(n_taps, dtype=np.int64)
    offset1 = np.empty(n_taps, dtype=np.int64)
    out_flat = out.reshape(-1)
    u_stride = np.uint64(stride_w)
    finite = True
    for r in range(first_row, stop_row, IMAGE_BLOCK_ROWS):
        pair = r + 1 < stop_row  # else the last row of an odd count: the second row repeats it
        row_base = r * stride_h
        # Ring slot of the block's first padded row; a row at distance d has ``_ring_slot(base_slot, d)``.
        # One integer modulo per block: a 64-bit division costs some 40 cycles, one per tap per row
        # was a third of a 512 x 512 3x3 call.
        base_slot = row_base % ring_rows
        for d in range(ring_rows if pair else ring_rows - stride_h):
            padded_index = row_base + d
            slot = _ring_slot(base_slot, d, ring_rows)
            if ring_holds[slot] == padded_index:
                continue
            ring_holds[slot] = padded_index
            # Unsigned indices: with signed ones Numba's negative-index checks keep LLVM from
            # vectorising the copies (measured: the copy then took as long as the 3x3 sums).
            start = np.uint64(slot * padded_width)
            source_row = row_map[padded_index]
            if source_row < 0:
                for p in range(np.uint64(padded_width)):
                    ring[start + p] = zero
                continue
            u_source = np.uint64(source_row)
            for p in range(np.uint64(width)):
                ring[start + np.uint64(pad_left) + p] = x[u_source, p]
            for p in range(pad_left):
                ring[start + np.uint64(p)] = x[u_source, col_map[p]] if col_map[p] >= 0 else zero
            for p in range(pad_left + width, padded_width):
                ring[start + np.uint64(p)] = x[u_source, col_map[p]] if col_map[p] >= 0 else zero
        for t in range(n_taps):
            offset0[t] = _ring_slot(base_slot, tap_row[t], ring_rows) * padded_width + tap_col[t]
            offset1[t] = (_ring_slot(base_slot, tap_row[t] + stride_h, ring_rows) * padded_width + tap_col[t]
                          if pair else offset0[t])
        out0 = r * out_width
        out1 = out0 + out_width if pair else out0
        if stride_w != 1:  # strided columns: one sweep along each output row per tap
            for o, offset in ((out0, offset0), (out1, offset1)):
                u_out = np.uint64(o)
                for q in range(np.uint64(out_width)):
                    out_flat[u_out + q] = zero
                for t in range(n_taps):
                    w0, a0 = tap_weight[t], np.uint64(offset[t])
                    for q in range(np.uint64(out_width)):
                        out_flat[u_out + q] = fused_multiply_add(w0, ring[a0 + q * u_stride], out_flat[u_out + q])
                smallest = np.int32(_FLOAT32_EXPONENT_MASK)
                for q in range(np.uint64(out_width)):
                    value = out_flat[u_out + q] + bias32
                    out_flat[u_out + q] = value
                    smallest = min(smallest, _exponent_gap(float32_bits(value)))
                finite &= smallest != 0
            continue
        q = 0
        while q + block_columns <= out_width:
            s00, s01, s02, s03 = vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros()
            s10, s11, s12, s13 = vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros()
            for t in range(n_taps):
                weight = tap_weight[t]
                a = offset0[t] + q
                b = offset1[t] + q
                s00 = vector_scalar_fma(weight, vector_load(ring, a), s00)
                s01 = vector_scalar_fma(weight, vector_load(ring, a + lanes), s01)
                s02 = vector_scalar_fma(weight, vector_load(ring, a + 2 * lanes), s02)
                s03 = vector_scalar_fma(weight, vector_load(ring, a + 3 * lanes), s03)
                s10 = vector_scalar_fma(weight, vector_load(ring, b), s10)
                s11 = vector_scalar_fma(weight, vector_load(ring, b + lanes), s11)
                s12 = vector_scalar_fma(weight, vector_load(ring, b + 2 * lanes), s12)
                s13 = vector_scalar_fma(weight, vector_load(ring, b + 3 * lanes), s13)
            # The second row first: for the last row of an odd count both rows are that row.
            stored = _store_image_vector(out_flat, out1 + q, s10, bias32, lanes)
            stored &= _store_image_vector(out_flat, out1 + q + lanes, s11, bias32, lanes)
            stored &= _store_image_vector(out_flat, out1 + q + 2 * lanes, s12, bias32, lanes)
            stored &= _store_image_vector(out_flat, out1 + q + 3 * lanes, s13, bias32, lanes)
            stored &= _store_image_vector(out_flat, out0 + q, s00, bias32, lanes)
            stored &= _store_image_vector(out_flat, out0 + q + lanes, s01, bias32, lanes)
            stored &= _store_image_vector(out_flat, out0 + q + 2 * lanes, s02, bias32, lanes)
            stored &= _store_image_vector(out_flat, out0 + q + 3 * lanes, s03, bias32, lanes)
            finite &= stored
            q += block_columns
        while q < out_width:  # the columns after the last whole block, one vector at a time
            count = min(lanes, out_width - q)
            s00, s10 = vector_zeros(), vector_zeros()
            for t in range(n_taps):
                weight = tap_weight[t]
                s00 = vector_scalar_fma(weight, vector_load(ring, offset0[t] + q), s00)
                s10 = vector_scalar_fma(weight, vector_load(ring, offset1[t] + q), s10)
            stored = _store_image_vector(out_flat, out1 + q, s10, bias32, count)
            finite &= stored & _store_image_vector(out_flat, out0 + q, s00, bias32, count)
            q += lanes
    return not finite


@njit(**JIT_HELPER_OPTIONS)
def _correlate_rows_in_place(x, w, bias, row_map, col_map, pad_left, dilation_w, first_row, stop_row, out):
    """``correlate_image_rows`` for stride 1, no dilation along the rows, every padded row read an image row.

    Two output rows at a time share their loads (``_row_pair_block``).  Whole blocks of columns
    whose windows lie inside the image are read from the image in place, from the first multiple of
    the vector width after the left padding.  The vectors left over at both ends (the left edge and,
    after the last whole block, the rest up to the right edge, the last vector moved back to end at
    the row's end) are read from ``edges``: a copy of just the padded columns they read, for every
    padded row, made once, and computed four vectors at a time like a block.  (Copying every padded
    row whole into a ring of row buffers took a quarter of a 512 x 512 3x3 call.)  Needs an output
    row of at least one vector.  Arguments and result as ``correlate_image_rows``.
    """
    width = x.shape[1]
    k_rows, k_cols = w.shape
    n_taps = k_rows * k_cols
    padded_width = col_map.shape[0]
    out_width = out.shape[1]
    lanes = VECTOR_LANES
    block_columns = IMAGE_BLOCK_VECTORS * lanes
    span = (k_cols - 1) * dilation_w
    inner_stop = width - span + pad_left  # output columns [pad_left, inner_stop) read inside the image
    left_stop = min(-(-pad_left // lanes) * lanes, out_width // lanes * lanes)
    blocks = max(inner_stop - left_stop, 0) // block_columns if left_stop >= pad_left else 0
    middle_stop = left_stop + blocks * block_columns
    right_first = min(middle_stop, out_width - lanes)
    # The edge vectors, padded with repeats to a multiple of four: output column, and column in ``edges``.
    left_width = left_stop + span
    left_vectors = left_stop // lanes
    edge_vectors = left_vectors + -(-(out_width - middle_stop) // lanes)
    edge_out = np.empty(-(-edge_vectors // 4) * 4, dtype=np.int64)
    edge_in = np.empty_like(edge_out)
    for e in range(edge_out.shape[0]):
        v = min(e, edge_vectors - 1)
        edge_out[e] = v * lanes if v < left_vectors else min(middle_stop + (v - left_vectors) * lanes, out_width - lanes)
        edge_in[e] = edge_out[e] if v < left_vectors else left_width + edge_out[e] - right_first
    # ``edges``: padded columns [0, left_width) then [right_first, Wp) of padded rows first_row .. stop_row + kh - 2.
    edge_width = left_width + padded_width - right_first
    edge_rows = stop_row - first_row + k_rows - 1
    edges = np.empty(edge_rows * edge_width, dtype=np.float32)
    edge_rows_filled = 0
    x_flat = x.reshape(-1)
    # Where each step of ``_row_pair_block`` reads, in the image and in ``edges``.
    image_step = np.empty(n_taps + k_cols, dtype=np.int64)
    edge_step = np.empty(n_taps + k_cols, dtype=np.int64)
    weight = w.reshape(-1)
    out_flat = out.reshape(-1)
    bias32 = np.float32(bias)
    finite = True
    for r in range(first_row, stop_row, IMAGE_BLOCK_ROWS):
        pair = r + 1 < stop_row  # else the last row of an odd count: the second row repeats the first
        # The edges of the padded rows this pair reads first, just before they are read: the image
        # rows' ends come into the cache once, for the copy and the blocks (copying all of them
        # first, in a pass of their own, cost twice as long: each end missed the cache twice).
        while edge_rows_filled < min(r - first_row + k_rows + 1, edge_rows):
            source = row_map[first_row + edge_rows_filled] * width
            into = edge_rows_filled * edge_width
            _fill_edge_part(edges, into, x_flat, source, col_map, pad_left, width, 0, left_width)
            _fill_edge_part(edges, into + left_width, x_flat, source, col_map, pad_left, width, right_first,
                            padded_width)
            edge_rows_filled += 1
        s = 0
        for d in range(k_rows + 1):
            read = d if pair or d < k_rows else k_rows - 1
            image_row = row_map[r + read] * width - pad_left
            edge_row = (r - first_row + read) * edge_width
            for column in range(0, k_cols * dilation_w, dilation_w):
                image_step[s] = image_row + column
                edge_step[s] = edge_row + column
                s += 1
        out0 = r * out_width
        out1 = out0 + out_width if pair else out0
        for q in range(left_stop, middle_stop, block_columns):
            q1, q2, q3 = q + lanes, q + 2 * lanes, q + 3 * lanes
            sums = _row_pair_block(x_flat, image_step, q, q1, q2, q3, weight, k_cols, n_taps)
            finite &= _store_row_pair_block(out_flat, out0, out1, q, q1, q2, q3, sums, bias32)
        for e in range(0, edge_out.shape[0], 4):
            sums = _row_pair_block(edges, edge_step, edge_in[e], edge_in[e + 1], edge_in[e + 2], edge_in[e + 3],
                                   weight, k_cols, n_taps)
            finite &= _store_row_pair_block(out_flat, out0, out1, edge_out[e], edge_out[e + 1], edge_out[e + 2],
                                            edge_out[e + 3], sums, bias32)
    return not finite


@njit(inline="always", **JIT_HELPER_OPTIONS)
def _row_pair_3x3(source, row0, row1, row2, row3, taps):
    """Running sums of two output rows at one vector of columns, for a 3 x 3 kernel: (row 0's, row 1's).

    ``row0`` .. ``row3`` are where, in ``source``, the four padded rows the pair reads start under
    the vector's first column.  The nine weights ``taps`` stay in registers and the twelve loads and
    eighteen multiply-adds are written out, row 1 reusing the loads of rows 1 and 2 as
    ``_row_pair_block`` does.
    """
    w00, w01, w02, w10, w11, w12, w20, w21, w22 = taps
    s0 = vector_scalar_fma(w00, vector_load(source, row0), vector_zeros())
    s0 = vector_scalar_fma(w01, vector_load(source, row0 + 1), s0)
    s0 = vector_scalar_fma(w02, vector_load(source, row0 + 2), s0)
    v = vector_load(source, row1)
    s0 = vector_scalar_fma(w10, v, s0)
    s1 = vector_scalar_fma(w00, v, vector_zeros())
    v = vector_load(source, row1 + 1)
    s0 = vector_scalar_fma(w11, v, s0)
    s1 = vector_scalar_fma(w01, v, s1)
    v = vector_load(source, row1 + 2)
    s0 = vector_scalar_fma(w12, v, s0)
    s1 = vector_scalar_fma(w02, v, s1)
    v = vector_load(source, row2)
    s0 = vector_scalar_fma(w20, v, s0)
    s1 = vector_scalar_fma(w10, v, s1)
    v = vector_load(source, row2 + 1)
    s0 = vector_scalar_fma(w21, v, s0)
    s1 = vector_scalar_fma(w11, v, s1)
    v = vector_load(source, row2 + 2)
    s0 = vector_scalar_fma(w22, v, s0)
    s1 = vector_scalar_fma(w12, v, s1)
    s1 = vector_scalar_fma(w20, vector_load(source, row3), s1)
    s1 = vector_scalar_fma(w21, vector_load(source, row3 + 1), s1)
    s1 = vector_scalar_fma(w22, vector_load(source, row3 + 2), s1)
    return s0, s1


@njit(inline="always", **JIT_HELPER_OPTIONS)
def _store_row_pair_3x3(x_flat, out_flat, start0, start1, start2, start3, q, out0, out1, taps, bias, mark):
    """``_row_pair_3x3`` at output column q of a pair (padded rows starting at ``start0`` .. ``start3`` in the
    image, counted from padded column 0), stored with the bias; returns ``mark`` with both folded in
    (``vector_mark_nonfinite``)."""
    s0, s1 = _row_pair_3x3(x_flat, start0 + q, start1 + q, start2 + q, start3 + q, taps)
    s1 = vector_add_scalar(s1, bias)
    vector_store_lanes(out_flat, out1 + q, s1, 0, VECTOR_LANES)  # row 1 first, as in the blocks
    s0 = vector_add_scalar(s0, bias)
    vector_store_lanes(out_flat, out0 + q, s0, 0, VECTOR_LANES)
    return vector_mark_nonfinite(vector_mark_nonfinite(mark, s1), s0)


@njit(**JIT_HELPER_OPTIONS)
def _correlate_rows_3x3(x, w, bias, row_map, col_map, pad_left, first_row, stop_row, out):
    """``correlate_image_rows`` for a 3 x 3 kernel, stride 1, no dilation, every padded row read an image row.

    Two output rows at a time, one vector of columns at a time (``_row_pair_3x3``).  The columns
    whose windows lie inside the image are read in place, the last vector moved back to end at the
    last of them; the few whose windows reach into the padding (as many on each side as it is wide)
    are summed one at a time through the column map.  (``_correlate_rows_in_place``'s copy of every
    row's edges into a buffer took a quarter of a 512 x 512 call at 3 x 3.)  Needs at least one
    vector of inner columns: ``x.shape[1] - 2 >= VECTOR_LANES``.  Arguments and result as
    ``correlate_image_rows``.

    The hot loop holds the nine weights, the bias, two accumulators and the non-finite mark in
    registers, nearly all sixteen of AVX2's: the edge columns therefore read the weights from ``w``,
    not from ``taps`` (scalar copies kept alive across the loop made LLVM spill it: 0.14 instead of
    0.10 ms at 512 x 512).
    """
    width = x.shape[1]
    out_width = out.shape[1]
    inner_stop = width - 2 + pad_left  # output columns [pad_left, inner_stop) read inside the image
    last_vector = inner_stop - VECTOR_LANES
    x_flat = x.reshape(-1)
    out_flat = out.reshape(-1)
    weight = w.reshape(-1)
    taps = (weight[0], weight[1], weight[2], weight[3], weight[4], weight[5], weight[6], weight[7], weight[8])
    bias32 = np.float32(bias)
    zero = np.float32(0.0)
    smallest = np.int32(_FLOAT32_EXPONENT_MASK)  # of the edge columns' ``_exponent_gap``: 0 if one is inf or NaN
    finite = True
    for r in range(first_row, stop_row, IMAGE_BLOCK_ROWS):
        pair = r + 1 < stop_row  # else the last row of an odd count: the second row repeats the first
        # Where padded rows r .. r + 3 start in the image, as local values (read from ``row_map``
        # inside the loop, they would be reloaded after every store).
        start0 = row_map[r] * width - pad_left
        start1 = row_map[r + 1] * width - pad_left
        start2 = row_map[r + 2] * width - pad_left
        start3 = row_map[r + 3] * width - pad_left if pair else start2
        out0 = r * out_width
        out1 = out0 + out_width if pair else out0
        mark = vector_zeros()
        for q in range(pad_left, last_vector, VECTOR_LANES):
            mark = _store_row_pair_3x3(x_flat, out_flat, start0, start1, start2, start3, q, out0, out1, taps, bias32,
                                       mark)
        mark = _store_row_pair_3x3(x_flat, out_flat, start0, start1, start2, start3, last_vector, out0, out1, taps,
                                   bias32, mark)
        finite &= vector_lanes_finite(mark, 0, VECTOR_LANES)
        for first, stop in ((0, pad_left), (inner_stop, out_width)):  # the edge columns
            for q in range(first, stop):
                s0 = s1 = zero
                for i in range(3):
                    above = start0 if i == 0 else (start1 if i == 1 else start2)
                    below = start1 if i == 0 else (start2 if i == 1 else start3)
                    for j in range(3):
                        source = col_map[q + j]
                        tap = weight[3 * i + j]
                        s0 = fused_multiply_add(tap, x_flat[above + pad_left + source] if source >= 0 else zero, s0)
                        s1 = fused_multiply_add(tap, x_flat[below + pad_left + source] if source >= 0 else zero, s1)
                s0 += bias32
                s1 += bias32
                out_flat[out1 + q] = s1  # row 1 first, as above
                out_flat[out0 + q] = s0
                smallest = min(smallest, _exponent_gap(float32_bits(s0)), _exponent_gap(float32_bits(s1)))
    return not finite or smallest == 0


@njit(**JIT_HELPER_OPTIONS)
def correlate_image_rows(x, w, bias, row_map, col_map, pad_left, stride_h, stride_w, dilation_h, dilation_w,
                         first_row, stop_row, out):
    """Output rows [first_row, stop_row) of one single-channel image correlated with one kernel.

    Same arithmetic as ``correlate_forward`` for N = C = K = 1: every output element is
    ``fma(w[0,1], x, fma(w[0,0], x, 0)) ...`` over the taps in row-major order, bias last, so the
    result is the same bit for bit whichever of the loops below computes a row.  With stride 1 and
    no dilation along the rows (the lessons' and the benchmarks' case), the rows whose padded rows
    are all image rows (every row with reflect or replicate padding; away from the top and bottom
    with zero padding) are read in place: by ``_correlate_rows_3x3`` for an undilated 3 x 3 kernel,
    by ``_correlate_rows_in_place`` for kernels of ``IN_PLACE_MIN_TAPS`` taps or more; the others,
    and every row of strided or row-dilated convolutions and of outputs narrower than a vector, go
    through a ring of padded rows (``_correlate_rows_through_ring``).  Separate functions rather
    than one: in one, the in-place blocks ran 35 % slower (fewer registers left for their pointers).

    Parameters
    ----------
    x : float32 (H, W)
    w : float32 (kh, kw)
    bias : float
    row_map, col_map : int64 (Hp,), (Wp,)
        Padded position -> source index, or -1 for a zero (see ``correlate_forward``).
    pad_left : int
        Padded columns before column 0.
    stride_h, stride_w, dilation_h, dilation_w : int
    first_row, stop_row : int
    out : float32 (OH, OW), C-contiguous
        Rows [first_row, stop_row) are written in place.

    Returns
    -------
    bool
        True if one of the rows written holds an inf or NaN (a non-finite pixel read by a window,
        or a sum that overflowed float32).
    """
    k_rows, k_cols = w.shape
    in_place_first = in_place_stop = stop_row
    in_place = stride_h == 1 and stride_w == 1 and dilation_h == 1 and out.shape[1] >= VECTOR_LANES
    three_by_three = (in_place and k_rows == 3 and k_cols == 3 and dilation_w == 1
                      and x.shape[1] - 2 >= VECTOR_LANES)
    if three_by_three or (in_place and k_rows * k_cols >= IN_PLACE_MIN_TAPS):
        # Padded rows that are image rows form one range [top, bottom); output row r reads r .. r + kh - 1.
        top = 0
        while row_map[top] < 0:
            top += 1
        bottom = top
        while bottom < row_map.shape[0] and row_map[bottom] >= 0:
            bottom += 1
        in_place_first = min(max(first_row, top), stop_row)
        in_place_stop = max(min(stop_row, bottom - k_rows + 1), in_place_first)
    nonfinite = False
    if in_place_first > first_row:
        nonfinite |= _correlate_rows_through_ring(x, w, bias, row_map, col_map, pad_left, stride_h, stride_w,
                                                  dilation_h, dilation_w, first_row, in_place_first, out)
    if in_place_stop > in_place_first and three_by_three:
        nonfinite |= _correlate_rows_3x3(x, w, bias, row_map, col_map, pad_left, in_place_first, in_place_stop, out)
    elif in_place_stop > in_place_first:
        nonfinite |= _correlate_rows_in_place(x, w, bias, row_map, col_map, pad_left, dilation_w,
                                              in_place_first, in_place_stop, out)
    if stop_row > in_place_stop:
        nonfinite |= _correlate_rows_through_ring(x, w, bias, row_map, col_map, pad_left, stride_h, stride_w,
                                                  dilation_h, dilation_w, in_place_stop, stop_row, out)
    return nonfinite


@njit(inline="always", **JIT_HELPER_OPTIONS)
def _four_taps(total, w0, w1, w2, w3, x0, x1, x2, x3):
    """``total`` plus four products, added in order, each with one fused multiply-add."""
    total = fused_multiply_add(w0, x0, total)
    total = fused_multiply_add(w1, x1, total)
    total = fused_multiply_add(w2, x2, total)
    return fused_multiply_add(w3, x3, total)


@njit(**JIT_HELPER_OPTIONS)
def _tap_source(first, g, count, z, r, tap_depth, tap_row, tap_col, depth_map, row_map, stride_d, stride_h):
    """(source plane, source row, padded column offset, valid) of tap ``first + g`` for output row (z, r).

    A tap past the group's ``count`` or inside zero padding is not valid; it then points at plane 0,
    row 0 (and the first tap's column offset) so that reading it is harmless.
    """
    if g >= count:
        return 0, 0, tap_col[first], False
    t = first + g
    source_depth = depth_map[z * stride_d + tap_depth[t]]
    source_row = row_map[r * stride_h + tap_row[t]]
    if source_depth < 0 or source_row < 0:
        return 0, 0, tap_col[t], False
    return source_depth, source_row, tap_col[t], True


@njit(**JIT_REDUCTION_OPTIONS)
def correlate_weight_grad(x, d_out, tap_channel, tap_depth, tap_row, tap_col,
                          depth_map, row_map, col_map, pad_left, stride_d, stride_h, stride_w, d_weights):
    """Gradient of a correlation's loss with respect to its tap weights.

    ``d_weights[k, t] = sum_{n,z,r,q} d_out[n, k, z, r, q] *
    x_padded[n, tap_channel[t], z*sd + tap_depth[t], r*sh + tap_row[t], q*sw + tap_col[t]]``

    Taps must be grouped by channel, each channel owning ``T // C`` consecutive taps (the
    order ``correlate_forward`` uses).  Compiled with reassociation allowed (these sums are not
    replayed by the trace), so each dot product along a row vectorises.

    Parameters
    ----------
    x : float32 (N, C, D, H, W)
    d_out : float32 (N, K, OD, OH, OW)
    tap_channel, tap_depth, tap_row, tap_col, depth_map, row_map, col_map, pad_left, stride_* :
        As in ``correlate_forward``.
    d_weights : float32 (K, T)
        Written in place.
    """
    n_batch, n_in, _, _, width = x.shape
    n_out, n_taps = d_weights.shape
    taps_per_channel = n_taps // n_in
    out_depth, out_rows, out_width = d_out.shape[2], d_out.shape[3], d_out.shape[4]
    # One task per (k, c): for each image it re-reads the same gradient plane and input plane for
    # all of the channel's taps, while they are still in cache.  Taps go four per sweep along the
    # row, sharing each load of the gradient (1.6x fewer loads than one tap per sweep).
    zero = np.float32(0.0)
    unsigned_stride = np.uint64(stride_w)
    for task in prange(n_out * n_in):
        c = task % n_in
        k = task // n_in
        first_tap = c * taps_per_channel
        sums = np.zeros(taps_per_channel, dtype=np.float64)
        for n in range(n_batch):
            for z in range(out_depth):
                for r in range(out_rows):
                    for first in range(first_tap, first_tap + taps_per_channel, _TAP_GROUP):
                        count = min(_TAP_GROUP, first_tap + taps_per_channel - first)
                        # Taps beyond count or inside zero padding read row 0 and are discarded.
                        d0, r0, c0, valid0 = _tap_source(first, 0, count, z, r, tap_depth, tap_row, tap_col,
                                                         depth_map, row_map, stride_d, stride_h)
                        d1, r1, c1, valid1 = _tap_source(first, 1, count, z, r, tap_depth, tap_row, tap_col,
                                                         depth_map, row_map, stride_d, stride_h)
                        d2, r2, c2, valid2 = _tap_source(first, 2, count, z, r, tap_depth, tap_row, tap_col,
                                                         depth_map, row_map, stride_d, stride_h)
                        d3, r3, c3, valid3 = _tap_source(first, 3, count, z, r, tap_depth, tap_row, tap_col,
                                                         depth_map, row_map, stride_d, stride_h)
                        lo, hi = _interior_range(c0 - pad_left, stride_w, width, out_width)
                        lo1, hi1 = _interior_range(c1 - pad_left, stride_w, width, out_width)
                        lo2, hi2 = _interior_range(c2 - pad_left, stride_w, width, out_width)
                        lo3, hi3 = _interior_range(c3 - pad_left, stride_w, width, out_width)
                        lo = max(max(lo, lo1), max(lo2, lo3))
                        hi = min(min(hi, hi1), min(hi2, hi3))
                        if lo >= hi:
                            lo = out_width
                            hi = out_width
                        s0, s1, s2, s3 = zero, zero, zero, zero
                        for q in range(out_width - (hi - lo)):
                            if q >= lo:
                                q += hi - lo  # skip the interior
                            grad = d_out[n, k, z, r, q]
                            source_col = col_map[q * stride_w + c0]
                            if source_col >= 0:
                                s0 += grad * x[n, c, d0, r0, source_col]
                            source_col = col_map[q * stride_w + c1]
                            if source_col >= 0:
                                s1 += grad * x[n, c, d1, r1, source_col]
                            source_col = col_map[q * stride_w + c2]
                            if source_col >= 0:
                                s2 += grad * x[n, c, d2, r2, source_col]
                            source_col = col_map[q * stride_w + c3]
                            if source_col >= 0:
                                s3 += grad * x[n, c, d3, r3, source_col]
                        if hi > lo:
                            span = np.uint64(hi - lo)
                            base = np.uint64(lo)
                            step = np.uint64(1) if stride_w == 1 else unsigned_stride
                            a0 = np.uint64(lo * stride_w + c0 - pad_left)
                            a1 = np.uint64(lo * stride_w + c1 - pad_left)
                            a2 = np.uint64(lo * stride_w + c2 - pad_left)
                            a3 = np.uint64(lo * stride_w + c3 - pad_left)
                            if stride_w == 1:
                                for u in range(span):
                                    grad = d_out[n, k, z, r, base + u]
                                    s0 += grad * x[n, c, d0, r0, a0 + u]
                                    s1 += grad * x[n, c, d1, r1, a1 + u]
                                    s2 += grad * x[n, c, d2, r2, a2 + u]
                                    s3 += grad * x[n, c, d3, r3, a3 + u]
                            else:
                                for u in range(span):
                                    grad = d_out[n, k, z, r, base + u]
                                    s0 += grad * x[n, c, d0, r0, a0 + u * step]
                                    s1 += grad * x[n, c, d1, r1, a1 + u * step]
                                    s2 += grad * x[n, c, d2, r2, a2 + u * step]
                                    s3 += grad * x[n, c, d3, r3, a3 + u * step]
                        m = first - first_tap
                        if valid0:
                            sums[m] += s0
                        if valid1:
                            sums[m + 1] += s1
                        if valid2:
                            sums[m + 2] += s2
                        if valid3:
                            sums[m + 3] += s3
        for m in range(taps_per_channel):
            d_weights[k, first_tap + m] = sums[m]


# Taps per sweep of ``correlate_weight_grad_wide``: four kernels times this many taps of running sums,
# plus the taps' input vectors and one gradient vector, must fit the CPU's vector registers.  AVX-512
# (32 zmm): 4 x 4 sums + 5.  With 8 lanes (AVX2's 16 ymm; NEON's 32 registers of 4 lanes, two each) 4 x 4
# sums + 5 = 21 spilled; 4 x 3 + 4 = 16 fit, and a 3 x 3 kernel's nine taps per channel take three sweeps
# (with two taps per sweep: five, each streaming the four kernels' gradient rows again; AMD EPYC, one
# thread: the 64 x 64 layer's weight gradient loop 5.7 -> 4.3 ms, 16 x 16 maps 1.5 -> 1.1 ms, same bits).
WEIGHT_GRAD_TAPS = 4 if VECTOR_LANES == 16 else 3


@njit(**JIT_OPTIONS)
def correlate_weight_grad_wide(x, d_out, tap_col, d_weights):
    """``correlate_weight_grad`` for 2-D batches in the wide-row layouts: dot products along the row.

    In a wide row (see engine.py) every output position a tap pairs with a real output lies
    inside the row, and ``d_out`` is 0 at the thrown-away positions, so each weight's gradient is
    a plain dot product along the row: no index maps and no border columns.  Four kernels and
    ``WEIGHT_GRAD_TAPS`` taps share each sweep, their running sums held in vector variables
    (registers): with four taps, eight vector loads feed sixteen vector fused multiply-adds.  A
    channel's taps beyond a multiple of the block (the ninth of a 3x3 kernel, four taps a sweep) get sweeps of one tap
    for four kernels, so no work is wasted on padding taps.  Each image's sums go to its own slice of a float64 buffer,
    added up at the end: no two tasks write the same place.

    Parameters
    ----------
    x : float32 (N, C, L)
        The wide (or packed) padded input, readable up to ``max(tap_col) + M``.
    d_out : float32 (N, K, M), K a multiple of 4, M a multiple of ``VECTOR_LANES``
        The gradient in the same layout, zero at thrown-away positions.
    tap_col : int64 (T,)
        Column offset of each tap in the row, taps grouped by channel (``T // C`` each).
    d_weights : float32 (K, T)
        Written in place.
    """
    n_batch, n_in, row_length = x.shape
    n_out, n_taps = d_weights.shape
    taps_per_channel = n_taps // n_in
    width = d_out.shape[2]
    n_groups = n_out // 4
    x_flat = x.reshape(-1)
    d_flat = d_out.reshape(-1)
    # One task per (image, group of four kernels, channel), images outermost: the tasks a thread
    # runs one after another share an image, whose input and gradient rows stay in L2 cache.
    partial = np.zeros((n_batch, n_out, n_taps), dtype=np.float64)
    for task in prange(n_batch * n_groups * n_in):
        c = task % n_in
        k0 = ((task // n_in) % n_groups) * 4
        n = task // (n_in * n_groups)
        x_row = (n * n_in + c) * row_length
        d_row = (n * n_out + k0) * width  # d_out[n, k0]; the next kernels follow every ``width``
        sums = partial[n]
        first = c * taps_per_channel
        last = first + taps_per_channel
        while WEIGHT_GRAD_TAPS == 4 and first + 4 <= last:
            a0, a1, a2, a3 = x_row + tap_col[first], x_row + tap_col[first + 1], x_row + tap_col[first + 2], x_row + tap_col[first + 3]
            s00, s01, s02, s03 = vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros()
            s10, s11, s12, s13 = vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros()
            s20, s21, s22, s23 = vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros()
            s30, s31, s32, s33 = vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros()
            for u in range(0, width, VECTOR_LANES):
                x0, x1 = vector_load(x_flat, a0 + u), vector_load(x_flat, a1 + u)
                x2, x3 = vector_load(x_flat, a2 + u), vector_load(x_flat, a3 + u)
                g = vector_load(d_flat, d_row + u)
                s00, s01 = vector_fma(g, x0, s00), vector_fma(g, x1, s01)
                s02, s03 = vector_fma(g, x2, s02), vector_fma(g, x3, s03)
                g = vector_load(d_flat, d_row + width + u)
                s10, s11 = vector_fma(g, x0, s10), vector_fma(g, x1, s11)
                s12, s13 = vector_fma(g, x2, s12), vector_fma(g, x3, s13)
                g = vector_load(d_flat, d_row + 2 * width + u)
                s20, s21 = vector_fma(g, x0, s20), vector_fma(g, x1, s21)
                s22, s23 = vector_fma(g, x2, s22), vector_fma(g, x3, s23)
                g = vector_load(d_flat, d_row + 3 * width + u)
                s30, s31 = vector_fma(g, x0, s30), vector_fma(g, x1, s31)
                s32, s33 = vector_fma(g, x2, s32), vector_fma(g, x3, s33)
            sums[k0, first], sums[k0, first + 1] = vector_sum(s00), vector_sum(s01)
            sums[k0, first + 2], sums[k0, first + 3] = vector_sum(s02), vector_sum(s03)
            sums[k0 + 1, first], sums[k0 + 1, first + 1] = vector_sum(s10), vector_sum(s11)
            sums[k0 + 1, first + 2], sums[k0 + 1, first + 3] = vector_sum(s12), vector_sum(s13)
            sums[k0 + 2, first], sums[k0 + 2, first + 1] = vector_sum(s20), vector_sum(s21)
            sums[k0 + 2, first + 2], sums[k0 + 2, first + 3] = vector_sum(s22), vector_sum(s23)
            sums[k0 + 3, first], sums[k0 + 3, first + 1] = vector_sum(s30), vector_sum(s31)
            sums[k0 + 3, first + 2], sums[k0 + 3, first + 3] = vector_sum(s32), vector_sum(s33)
            first += 4
        while WEIGHT_GRAD_TAPS == 3 and first + 3 <= last:
            a0, a1, a2 = x_row + tap_col[first], x_row + tap_col[first + 1], x_row + tap_col[first + 2]
            s00, s01, s02 = vector_zeros(), vector_zeros(), vector_zeros()
            s10, s11, s12 = vector_zeros(), vector_zeros(), vector_zeros()
            s20, s21, s22 = vector_zeros(), vector_zeros(), vector_zeros()
            s30, s31, s32 = vector_zeros(), vector_zeros(), vector_zeros()
            for u in range(0, width, VECTOR_LANES):
                x0, x1, x2 = vector_load(x_flat, a0 + u), vector_load(x_flat, a1 + u), vector_load(x_flat, a2 + u)
                g = vector_load(d_flat, d_row + u)
                s00, s01, s02 = vector_fma(g, x0, s00), vector_fma(g, x1, s01), vector_fma(g, x2, s02)
                g = vector_load(d_flat, d_row + width + u)
                s10, s11, s12 = vector_fma(g, x0, s10), vector_fma(g, x1, s11), vector_fma(g, x2, s12)
                g = vector_load(d_flat, d_row + 2 * width + u)
                s20, s21, s22 = vector_fma(g, x0, s20), vector_fma(g, x1, s21), vector_fma(g, x2, s22)
                g = vector_load(d_flat, d_row + 3 * width + u)
                s30, s31, s32 = vector_fma(g, x0, s30), vector_fma(g, x1, s31), vector_fma(g, x2, s32)
            sums[k0, first], sums[k0, first + 1], sums[k0, first + 2] = vector_sum(s00), vector_sum(s01), vector_sum(s02)
            sums[k0 + 1, first], sums[k0 + 1, first + 1], sums[k0 + 1, first + 2] = vector_sum(s10), vector_sum(s11), vector_sum(s12)
            sums[k0 + 2, first], sums[k0 + 2, first + 1], sums[k0 + 2, first + 2] = vector_sum(s20), vector_sum(s21), vector_sum(s22)
            sums[k0 + 3, first], sums[k0 + 3, first + 1], sums[k0 + 3, first + 2] = vector_sum(s30), vector_sum(s31), vector_sum(s32)
            first += 3
        while first < last:  # the remaining taps, one per sweep
            a0 = x_row + tap_col[first]
            s00, s10, s20, s30 = vector_zeros(), vector_zeros(), vector_zeros(), vector_zeros()
            for u in range(0, width, VECTOR_LANES):
                x0 = vector_load(x_flat, a0 + u)
                s00 = vector_fma(vector_load(d_flat, d_row + u), x0, s00)
                s10 = vector_fma(vector_load(d_flat, d_row + width + u), x0, s10)
                s20 = vector_fma(vector_load(d_flat, d_row + 2 * width + u), x0, s20)
                s30 = vector_fma(vector_load(d_flat, d_row + 3 * width + u), x0, s30)
            sums[k0, first], sums[k0 + 1, first] = vector_sum(s00), vector_sum(s10)
            sums[k0 + 2, first], sums[k0 + 3, first] = vector_sum(s20), vector_sum(s30)
            first += 1
    for k in prange(n_out):
        for t in range(n_taps):
            total = 0.0
            for n in range(n_batch):
                total += partial[n, k, t]
            d_weights[k, t] = total


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
                                        dx_row[source_col] = fused_multiply_add(weight, grad_row[q], dx_row[source_col])
                                if hi > lo and stride_w == 1:
                                    target = dx_row[lo + offset:hi + offset]
                                    grad = grad_row[lo:hi]
                                    for t in range(hi - lo):
                                        target[t] = fused_multiply_add(weight, grad[t], target[t])
                                elif hi > lo:
                                    target = _strided_slice(dx_row, lo, hi, stride_w, offset)
                                    grad = grad_row[lo:hi]
                                    for t in range(hi - lo):
                                        target[t] = fused_multiply_add(weight, grad[t], target[t])
                                for q in range(hi, out_width):
                                    source_col = col_map[q * stride_w + j * dilation_w]
                                    if source_col >= 0:
                                        dx_row[source_col] = fused_multiply_add(weight, grad_row[q], dx_row[source_col])


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
    unsigned_stride = np.uint64(stride_w)
    minus_inf = np.float32(-np.inf)
    planar = size_d == 1 and stride_d == 1 and pad_front == 0
    two_by_two = (planar and size_h == 2 and size_w == 2 and stride_h == 2 and stride_w == 2 and pad_top == 0
                  and pad_left == 0)
    whole_plane = (planar and size_h == height and size_w == width and pad_top == 0 and pad_left == 0
                   and out_rows == 1 and out_width == 1)
    for task in prange(n_planes * out_depth * out_rows):
        r = task % out_rows
        rest = task // out_rows
        z = rest % out_depth
        p = rest // out_depth
        # Unsigned indices, no array views in the loops, and a literal stride for the usual
        # stride of 2: with a stride known only at run time LLVM did not vectorise the loop (2x2
        # pooling of (32, 8, 64, 64) on one thread: 4.3 ms before, 0.5 ms in the loop now).
        up, uz, ur = np.uint64(p), np.uint64(z), np.uint64(r)
        if two_by_two:
            # The classifier's 2 x 2 windows, stride 2, no padding: the four values of each window in one
            # pass along the row (the general loop below makes four passes, each with its own set-up:
            # (32, 8, 64, 64) on one thread 1.4 -> 0.6 ms).  Strictly greater keeps the first maximum.
            top_row, bottom_row = ur * np.uint64(2), ur * np.uint64(2) + np.uint64(1)
            top_start = (z * height + r * 2) * width
            for q in range(np.uint64(out_width)):
                c = q * np.uint64(2)
                best, where = x[up, uz, top_row, c], top_start + np.int64(q) * 2
                value = x[up, uz, top_row, c + np.uint64(1)]
                better = value > best
                best, where = (value, where + 1) if better else (best, where)
                value = x[up, uz, bottom_row, c]
                better = value > best
                best, where = (value, top_start + width + np.int64(q) * 2) if better else (best, where)
                value = x[up, uz, bottom_row, c + np.uint64(1)]
                better = value > best
                best, where = (value, top_start + width + np.int64(q) * 2 + 1) if better else (best, where)
                out[up, uz, ur, q] = best
                indices[up, uz, ur, q] = where
            continue
        if whole_plane:
            # Global pooling (one window covering every pixel of a plane): one scan, no per-row set-up.
            best, where = minus_inf, np.int64(-1)
            for i in range(height):
                for j in range(width):
                    value = x[up, uz, np.uint64(i), np.uint64(j)]
                    if value > best:
                        best, where = value, np.int64((z * height + i) * width + j)
            out[up, uz, ur, 0] = best
            indices[up, uz, ur, 0] = where
            continue
        for q in range(np.uint64(out_width)):
            out[up, uz, ur, q] = minus_inf
            indices[up, uz, ur, q] = -1
        for a in range(size_d):
            source_depth = z * stride_d - pad_front + a
            if source_depth < 0 or source_depth >= depth:
                continue
            for i in range(size_h):
                source_row = r * stride_h - pad_top + i
                if source_row < 0 or source_row >= height:
                    continue
                ud, us = np.uint64(source_depth), np.uint64(source_row)
                row_start = (source_depth * height + source_row) * width
                for j in range(size_w):
                    offset = j - pad_left
                    lo, hi = _interior_range(offset, stride_w, width, out_width)
                    if hi <= lo:
                        continue
                    u_lo = np.uint64(lo)
                    first_column = lo * stride_w + offset
                    u_first = np.uint64(first_column)
                    first_index = row_start + first_column
                    if stride_w == 2:  # the usual 2x2 pooling: a constant stride LLVM vectorises
                        for t in range(np.uint64(hi - lo)):
                            value = x[up, ud, us, u_first + t * np.uint64(2)]
                            q = u_lo + t
                            # Branch-free; strictly greater keeps the first maximum.
                            better = value > out[up, uz, ur, q]
                            out[up, uz, ur, q] = value if better else out[up, uz, ur, q]
                            indices[up, uz, ur, q] = (first_index + np.int64(t) * 2 if better
                                                      else indices[up, uz, ur, q])
                        continue
                    for t in range(np.uint64(hi - lo)):
                        value = x[up, ud, us, u_first + t * unsigned_stride]
                        q = u_lo + t
                        better = value > out[up, uz, ur, q]
                        out[up, uz, ur, q] = value if better else out[up, uz, ur, q]
                        indices[up, uz, ur, q] = (first_index + np.int64(t) * stride_w if better
                                                  else indices[up, uz, ur, q])


@njit(**JIT_OPTIONS)
def copy_planes_into_rows(source, target, plane_starts, zero_lengths, top, left, row_stride):
    """Write (H, W) planes into a flat buffer of wide rows, with zeros around them, one plane per task.

    Plane p's region ``target[plane_starts[p]:plane_starts[p] + zero_lengths[p]]`` is zeroed, then
    its pixel (r, c) goes to ``plane_starts[p] + (top + r) * row_stride + left + c``: zero padding,
    the wrap-around columns and the slack after the data stay 0.  (NumPy took three single-threaded
    passes for the same: zeros, a padded copy, a reshape.)

    Parameters
    ----------
    source : float32 (P, H, W)
    target : float32 (T,)
    plane_starts, zero_lengths : int64 (P,)
    top, left, row_stride : int
    """
    n_planes, rows, cols = source.shape
    zero = np.float32(0.0)
    u_cols = np.uint64(cols)
    for p in prange(n_planes):
        start = np.uint64(plane_starts[p])
        for e in range(np.uint64(zero_lengths[p])):
            target[start + e] = zero
        for r in range(rows):
            row = start + np.uint64((top + r) * row_stride + left)
            for c in range(u_cols):
                target[row + c] = source[p, r, c]


@njit(**JIT_OPTIONS)
def any_nonfinite(flat):
    """True if the 1-D float32 array holds an inf or NaN: an integer min-reduction, blocks in parallel."""
    bits = flat.view(np.int32)
    n_blocks = (bits.shape[0] + ELEMENTWISE_BLOCK - 1) // ELEMENTWISE_BLOCK
    found = np.zeros(n_blocks, dtype=np.uint8)
    for block in prange(n_blocks):
        smallest = np.int32(_FLOAT32_EXPONENT_MASK)
        for m in range(np.uint64(block * ELEMENTWISE_BLOCK), np.uint64(min((block + 1) * ELEMENTWISE_BLOCK, bits.shape[0]))):
            smallest = min(smallest, _exponent_gap(bits[m]))
        found[block] = 1 if smallest == 0 else 0
    return found.any()


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
def elementwise(x, d_out, operation, slope, out, nonfinite_blocks):
    """Apply an activation (or its backward) element by element, blocks of elements in parallel.

    Each block of ``ELEMENTWISE_BLOCK`` elements is done by ``elementwise_range`` (which the
    wrapper also calls directly, without a parallel launch, for calls too small to share).

    Parameters
    ----------
    x, d_out, operation, slope, out :
        As in ``elementwise_range``.
    nonfinite_blocks : uint8 (ceil(M / 16384),)
        Set to 1 for each block of x (or d_out) holding an inf or NaN.
    """
    size = x.shape[0]
    n_blocks = (size + ELEMENTWISE_BLOCK - 1) // ELEMENTWISE_BLOCK
    for block in prange(n_blocks):
        start = block * ELEMENTWISE_BLOCK
        stop = min(start + ELEMENTWISE_BLOCK, size)
        nonfinite_blocks[block] = elementwise_range(x[start:stop], d_out[start:stop], operation, slope, out[start:stop])


@njit(**JIT_HELPER_OPTIONS)
def elementwise_range(x, d_out, operation, slope, out):
    """Apply an activation (or its backward) element by element, one block after another.

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

    Returns
    -------
    int
        1 if x (or d_out) holds an inf or NaN, else 0: checked block by block while each block
        is in cache, instead of in a separate pass.
    """
    size = x.shape[0]
    n_blocks = (size + ELEMENTWISE_BLOCK - 1) // ELEMENTWISE_BLOCK
    slope32 = np.float32(slope)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    nonfinite = 0
    for block in range(n_blocks):
        start = block * ELEMENTWISE_BLOCK
        stop = min(start + ELEMENTWISE_BLOCK, size)
        xs = x[start:stop]
        ds = d_out[start:stop]
        target = out[start:stop]
        smallest = np.int32(_FLOAT32_EXPONENT_MASK)
        x_bits = xs.view(np.int32)
        if operation == RELU:  # the commonest call: check while computing, one pass over x
            for m in range(stop - start):
                target[m] = xs[m] if xs[m] > zero else zero
                smallest = min(smallest, _exponent_gap(x_bits[m]))
            nonfinite |= 1 if smallest == 0 else 0
            continue
        if operation == RELU_BACKWARD:  # the training's commonest: one pass over x and d_out (was three)
            d_bits = ds.view(np.int32)
            for m in range(stop - start):
                target[m] = ds[m] if xs[m] > zero else zero
                smallest = min(smallest, min(_exponent_gap(x_bits[m]), _exponent_gap(d_bits[m])))
            nonfinite |= 1 if smallest == 0 else 0
            continue
        for m in range(stop - start):
            smallest = min(smallest, _exponent_gap(x_bits[m]))
        if operation % 2 == 1:  # backward operations read d_out too
            d_bits = ds.view(np.int32)
            for m in range(stop - start):
                smallest = min(smallest, _exponent_gap(d_bits[m]))
        nonfinite |= 1 if smallest == 0 else 0
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
    return nonfinite


# --- the on-disk cache ----------------------------------------------------------------------

# Modules whose code is compiled into these kernels besides this one: the vector intrinsics, and
# the jit flags.  Numba stamps a cached kernel with its own source file's time and size only, so
# a change to one of these alone would keep loading the old machine code.
_COMPILED_ALONG = ("_simd.py", "_config.py")
_CACHE_STAMP = "_jit.compiled-along.sha256"


def _source_digest() -> str:
    """SHA-256 of the modules in ``_COMPILED_ALONG``."""
    digest = hashlib.sha256()
    for name in _COMPILED_ALONG:
        digest.update(Path(__file__).with_name(name).read_bytes())
    return digest.hexdigest()


def drop_stale_cache(cache_dir: Path, digest: str) -> bool:
    """Delete this module's cached kernels in ``cache_dir`` unless they were compiled from ``digest``.

    Returns True if it deleted (or found nothing to keep).  A cache directory it cannot write
    is left alone: Numba then compiles in memory or uses its own fallback.
    """
    stamp = cache_dir / _CACHE_STAMP
    try:
        if stamp.read_text() == digest:
            return False
    except OSError:
        pass
    try:
        for cached in cache_dir.glob("_jit.*.nb[ic]"):
            cached.unlink(missing_ok=True)
        cache_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(digest)
    except OSError:
        pass
    return True


# (No cache path when NUMBA_DISABLE_JIT=1 leaves plain functions, or caching is off.)
_CACHE_PATH = getattr(getattr(correlate_forward, "_cache", None), "_cache_path", None)
if _CACHE_PATH is not None:
    drop_stale_cache(Path(_CACHE_PATH), _source_digest())
