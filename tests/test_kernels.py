"""Tests of the kernels/ engine against tests/naive.py and SciPy: forward, backward, pooling, activations.

Tests whose name contains "small" use tiny inputs only; tests/test_kernels_nojit.py reruns them
with NUMBA_DISABLE_JIT=1 so coverage (and a debugger) can see inside the jitted loops.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernels
from kernels import _jit, _simd, engine
from tests import naive

ROOT = Path(__file__).resolve().parents[1]

RNG = np.random.default_rng(20240611)
SCIPY_MODES = {"zeros": "constant", "reflect": "mirror", "replicate": "nearest"}
NUMPY_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge"}


def random(*shape, seed=None):
    rng = RNG if seed is None else np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(np.float32)


def symmetric_pads(padding, kernel_shape, dilation):
    """(before, after) per axis as the engine resolves them."""
    top, bottom, left, right = kernels.resolve_padding((99, 99), kernel_shape, padding, dilation)
    return ((top, bottom), (left, right))


# ---------------------------------------------------------------------------------------------
# conv2d forward
# ---------------------------------------------------------------------------------------------

EVERY_CONV2D_OPTION = [
    combination
    for combination in itertools.product(
        ["zeros", "reflect", "replicate"], [1, 2, (1, 3)], [1, 2, (2, 1)], [0, 1, (2, 1), "same", "valid"], [(3, 3), (2, 4), (1, 1)]
    )
    if not (combination[3] == "same" and combination[1] != 1)  # 'same' needs stride 1 (refusal tested below)
]


@pytest.mark.parametrize("padding_mode, stride, dilation, padding, kernel_shape", EVERY_CONV2D_OPTION)
def test_conv2d_batched_small_matches_naive_for_every_option(padding_mode, stride, dilation, padding, kernel_shape):
    x = random(2, 3, 7, 8)
    w = random(4, 3, *kernel_shape)
    b = random(4)
    strides = engine._per_axis(stride, "stride", 2, 1)
    dilations = engine._per_axis(dilation, "dilation", 2, 1)
    out = kernels.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode)
    expected = naive.conv_naive(x, w, b, strides, symmetric_pads(padding, kernel_shape, dilations), dilations, padding_mode)
    assert out.dtype == np.float32
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate"])
@pytest.mark.parametrize("size", [3, 5, 4])
def test_conv2d_same_matches_scipy_ndimage_correlate(padding_mode, size):
    x = random(37, 41)
    w = random(size, size)
    out = kernels.conv2d(x, w, padding="same", padding_mode=padding_mode)
    # ndimage centres an even kernel at k // 2; PyTorch's "same" (extra padding after) at (k - 1) // 2.
    origin = -1 if size % 2 == 0 else 0
    expected = scipy.ndimage.correlate(x.astype(np.float64), w.astype(np.float64), mode=SCIPY_MODES[padding_mode], origin=origin)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_shape", [(3, 3), (4, 2), (7, 5)])
def test_conv2d_valid_and_full_match_scipy_signal(kernel_shape):
    x = random(30, 25)
    w = random(*kernel_shape)
    np.testing.assert_allclose(kernels.conv2d(x, w), scipy.signal.correlate2d(x, w, mode="valid"), rtol=1e-5, atol=1e-5)
    full_pad = (kernel_shape[0] - 1, kernel_shape[1] - 1)
    np.testing.assert_allclose(kernels.conv2d(x, w, padding=full_pad), scipy.signal.correlate2d(x, w, mode="full"), rtol=1e-5, atol=1e-5)
    # flip=True is a true convolution.
    np.testing.assert_allclose(kernels.conv2d(x, w, flip=True), scipy.signal.convolve2d(x, w, mode="valid"), rtol=1e-5, atol=1e-5)


def test_conv2d_small_known_answer():
    x = np.arange(16.0).reshape(4, 4)
    out = kernels.conv2d(x, np.ones((2, 2)), 0.5)
    np.testing.assert_array_equal(out, [[10.5, 14.5, 18.5], [26.5, 30.5, 34.5], [42.5, 46.5, 50.5]])
    # A kernel with one 1 off-centre reads one pixel: cross-correlation shifts the other way from convolution.
    w = np.zeros((3, 3))
    w[0, 0] = 1.0
    np.testing.assert_array_equal(kernels.conv2d(x, w), x[:2, :2])
    np.testing.assert_array_equal(kernels.conv2d(x, w, flip=True), x[2:, 2:])


def test_conv2d_single_image_equals_batched_form():
    x, w = random(12, 13), random(3, 4)
    np.testing.assert_array_equal(
        kernels.conv2d(x, w, 0.25, padding=1, stride=2),
        kernels.conv2d(x[None, None], w[None, None], np.float32([0.25]), padding=1, stride=2)[0, 0],
    )


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate"])
@pytest.mark.parametrize("kernel_shape", [(1, 1), (3, 3), (2, 5), (7, 7), (3, 11)])
@pytest.mark.parametrize("stride, dilation, padding", [(1, 1, "same"), (1, 2, (2, 3)), (2, 1, 1), ((1, 3), (2, 1), 2)])
def test_single_image_loop_equals_batched_loop_bit_for_bit(padding_mode, kernel_shape, stride, dilation, padding):
    # (H, W) images take their own loop (_jit.correlate_image_rows); it must add the same products in
    # the same order as the batched loop, so the two agree exactly, not just to rounding.
    x, w = random(41, 67), random(*kernel_shape)
    options = dict(stride=stride, dilation=dilation, padding=padding, padding_mode=padding_mode, method="direct")
    np.testing.assert_array_equal(
        kernels.conv2d(x, w, -0.5, **options),
        kernels.conv2d(x[None, None], w[None, None], np.float32([-0.5]), **options)[0, 0],
    )


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate"])
@pytest.mark.parametrize("kernel_shape, dilation", [((5, 5), 1), ((4, 7), 1), ((9, 3), (1, 2)), ((3, 6), (1, 3))])
@pytest.mark.parametrize("width", [8, 13, 40, 41, 75, 106])
def test_single_image_in_place_loop_equals_batched_loop_bit_for_bit(padding_mode, kernel_shape, dilation, width):
    # Kernels of at least _jit.IN_PLACE_MIN_TAPS taps read the image in place, its edges from a
    # copy: every width splits a row differently into edge vectors (left, after the last whole
    # block, a last one moved back) and blocks of 32 or 64 columns; zero padding sends the top and
    # bottom rows through the ring of whole rows instead.  An odd height leaves a last row alone.
    assert kernel_shape[0] * kernel_shape[1] >= _jit.IN_PLACE_MIN_TAPS
    x, w = random(23, width), random(*kernel_shape)
    for padding in ("same", (0, kernel_shape[1] + 2)):
        options = dict(dilation=dilation, padding=padding, padding_mode=padding_mode, method="direct")
        try:
            single = kernels.conv2d(x, w, 0.25, **options)
        except ValueError:  # reflect padding wider than the image
            continue
        np.testing.assert_array_equal(
            single, kernels.conv2d(x[None, None], w[None, None], np.float32([0.25]), **options)[0, 0])


# Widths around the 3 x 3 loop's limits: an image of ``VECTOR_LANES + 2`` columns or more has a
# vector of inner columns (AVX2: 10, AVX-512: 18), the last vector moved back unless the inner
# columns are a whole number of vectors; narrower images take the ring.
THREE_BY_THREE_WIDTHS = [1, 2, 3, 9, 10, 11, 17, 18, 19, 26, 34, 41, 75]


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate"])
@pytest.mark.parametrize("padding", ["same", 0, 2, (0, 5), (3, 1), (1, 0)])
def test_single_image_3x3_loop_agrees_with_naive_and_the_batched_loop(padding_mode, padding):
    # 3 x 3 kernels at stride 1 have a loop of their own (_jit._correlate_rows_3x3): inner columns
    # in vectors, the columns whose windows reach into the padding one at a time through the column
    # map, rows in pairs (an odd height leaves a last row alone), zero-padded top and bottom rows
    # through the ring.  Heights from 1 (kernel taller than the image) to 24.
    rng = np.random.default_rng(316)
    for width in THREE_BY_THREE_WIDTHS:
        for height in (1, 2, 3, 4, 5, 23, 24):
            x = rng.standard_normal((height, width)).astype(np.float32) * 100
            w = rng.standard_normal((3, 3)).astype(np.float32)
            options = dict(padding=padding, padding_mode=padding_mode, method="direct")
            try:
                single = kernels.conv2d(x, w, 0.75, **options)
            except ValueError:  # the kernel does not fit, or reflect padding wider than the image
                continue
            np.testing.assert_array_equal(
                single, kernels.conv2d(x[None, None], w[None, None], np.float32([0.75]), **options)[0, 0])
            pads = symmetric_pads(padding, (3, 3), (1, 1))
            expected = naive.conv_naive(x[None, None], w[None, None], np.float32([0.75]), (1, 1), pads, (1, 1),
                                        padding_mode)[0, 0]
            assert naive.relative_error(single, expected) < 1e-5, (width, height)


def test_single_image_3x3_small_loop_matches_naive():
    # A small image through the 3 x 3 loop (rerun as plain Python by tests/test_kernels_nojit.py).
    x, w = random(7, 2 * _simd.VECTOR_LANES + 5), random(3, 3)
    for padding_mode in ("zeros", "reflect"):
        expected = naive.conv_naive(x[None, None], w[None, None], np.float32([0.5]), (1, 1), ((1, 1), (1, 1)), (1, 1),
                                    padding_mode)[0, 0]
        out = kernels.conv2d(x, w, 0.5, padding="same", padding_mode=padding_mode)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("side", ["left", "right"])
def test_single_image_3x3_loop_flags_an_overflow_in_an_edge_column_alone(side):
    # With reflect padding the first (last) output column reads image column 1 (W - 2) twice: with
    # these weights only that edge column's sum overflows, so only the edge columns' check sees it.
    x = np.zeros((12, 30), dtype=np.float32)
    x[:, 1 if side == "left" else -2] = 2e38
    w = np.zeros((3, 3), dtype=np.float32)
    w[1, 0] = w[1, 2] = 1.0
    with pytest.raises(ValueError, match="overflowed float32"):
        kernels.conv2d(x, w, padding="same", padding_mode="reflect")


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_single_image_loop_rows_split_between_threads_give_the_whole_result(kernel_size):
    # engine.py splits big images into blocks of rows, one per thread; each block starts its own
    # ring (top rows with zero padding) and in-place rows, an odd block ending on a row alone.
    x, w, pad = random(57, 90), random(kernel_size, kernel_size), kernel_size // 2
    for padding_mode in ("zeros", "reflect"):
        row_map = engine._index_map(57, pad, pad, padding_mode)
        col_map = engine._index_map(90, pad, pad, padding_mode)
        whole = np.empty((57, 90), dtype=np.float32)
        parts = np.empty_like(whole)
        assert not _jit.correlate_image_rows(x, w, 0.5, row_map, col_map, pad, 1, 1, 1, 1, 0, 57, whole)
        for first, stop in ((0, 1), (1, 4), (4, 29), (29, 56), (56, 57)):
            assert not _jit.correlate_image_rows(x, w, 0.5, row_map, col_map, pad, 1, 1, 1, 1, first, stop, parts)
        np.testing.assert_array_equal(parts, whole)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate"])
@pytest.mark.parametrize("shape, kernel, dilation", [((3, 4, 8, 8), (5, 4, 3, 3), 1), ((2, 1, 9, 14), (4, 1, 5, 2), 2),
                                                     ((4, 3, 5, 5), (8, 3, 1, 1), 1)])
def test_packed_small_maps_give_the_unpacked_results(monkeypatch, padding_mode, shape, kernel, dilation):
    # Small maps of a batch are packed into one row per channel (engine.PACKED_MAX_PLANE): the
    # forward sums and the input gradient must keep every bit; the weight gradient's dot products
    # are summed in another order, so it agrees to rounding.
    x, w, bias = random(*shape), random(*kernel) - np.float32(0.5), random(kernel[0])
    d_out = random(shape[0], kernel[0], shape[2], shape[3])
    options = dict(padding="same", dilation=dilation, padding_mode=padding_mode)
    results = {}
    for limit in (0, 10**6):
        monkeypatch.setattr(engine, "PACKED_MAX_PLANE", limit)
        results[limit] = (kernels.conv2d(x, w, bias, **options),) + kernels.conv2d_backward(x, w, d_out, **options)
    (out_a, dx_a, dw_a, db_a), (out_b, dx_b, dw_b, db_b) = results.values()
    np.testing.assert_array_equal(out_a, out_b)
    np.testing.assert_array_equal(dx_a, dx_b)
    np.testing.assert_allclose(dw_a, dw_b, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(db_a, db_b)
    top, bottom, left, right = kernels.resolve_padding(shape[2:], kernel[2:], "same", dilation)
    _, reference, _ = naive.conv_backward_naive(x, w, d_out, (1, 1), ((top, bottom), (left, right)),
                                                (dilation, dilation), padding_mode)
    np.testing.assert_allclose(dw_b, reference, rtol=1e-4, atol=1e-4)


def test_single_image_loop_reports_nonfinite_pixels_and_overflow():
    x = random(300, 300)
    x[250, 7] = np.nan
    with pytest.raises(ValueError, match=r"x contains 1 NaN and 0 infinite values \(first at index \(250, 7\)"):
        kernels.conv2d(x, np.ones((3, 3)), padding="same")
    huge = np.full((40, 40), 3e38, dtype=np.float32)
    with pytest.raises(ValueError, match="overflowed float32"):
        kernels.conv2d(huge, np.ones((3, 3)))
    np.testing.assert_array_equal(kernels.conv2d(huge, np.full((1, 1), 0.5)), huge * np.float32(0.5))


@pytest.mark.parametrize("kernel_shape", [(1, 1), (2, 2), (3, 3), (5, 5), (4, 7), (7, 9)])
@pytest.mark.parametrize("stride", [1, (1, 2)])
def test_single_image_loop_flags_nonfinite_sums_in_every_sweep_shape(kernel_shape, stride):
    # Each way the loop stores its sums must check them: the register blocks of two rows, the
    # vectors after the last block (the last one masked), an odd image's last row alone, and one
    # tap per sweep with strided columns; with 16 taps or more (5 x 5 and up) the in-place loop's
    # blocks and its edge vectors.  64 x 41 and 65 x 41 images: 41 columns are one block of 32
    # (AVX2), a vector and a masked vector; row 64 of 65 is the last row alone.
    for height, row, col in ((64, 0, 0), (64, 33, 17), (64, 63, 40), (65, 64, 3), (65, 64, 40)):
        x = random(height, 41)
        x[row, col] = np.nan
        with pytest.raises(ValueError, match=rf"x contains 1 NaN .*\({row}, {col}\)"):
            kernels.conv2d(x, np.ones(kernel_shape), padding=(kernel_shape[0] // 2, kernel_shape[1] // 2),
                           stride=stride)
    with pytest.raises(ValueError, match="overflowed float32"):
        kernels.conv2d(np.full((20, 30), 2e38, dtype=np.float32), np.ones(kernel_shape) * 2, stride=stride)


@pytest.mark.parametrize("shape", [(3, 2, 5, 9, 9), (2, 2, 4, 20, 21)])
def test_batched_register_blocks_small_flag_nonfinite_pixels_and_overflow(shape):
    # (N, C, K, H, W): 9 x 9 maps are packed (all images in one row per channel), 20 x 21 ones
    # are not; the blocks store straight into the output with masked stores, and each store
    # checks what it wrote, at the first and last pixel of a row, an image and the batch.
    n, c, k, h, w_ = shape
    weights = random(k, c, 3, 3, seed=31)
    for index in ((0, 0, 0, 0), (n - 1, c - 1, h - 1, w_ - 1), (n - 1, 0, h - 1, 0), (0, c - 1, 0, w_ - 1)):
        x = random(n, c, h, w_, seed=32)
        x[index] = np.nan
        with pytest.raises(ValueError, match=rf"x contains 1 NaN .*\({', '.join(map(str, index))}\)"):
            kernels.conv2d(x, weights, padding=1)
    with pytest.raises(ValueError, match="overflowed float32"):
        kernels.conv2d(np.full((n, c, h, w_), 2e38, dtype=np.float32), np.full((k, c, 3, 3), 2.0), padding=1)


@pytest.mark.parametrize("shape, padding_mode, stride", [((3, 2, 4, 9, 9), "zeros", 1), ((2, 2, 5, 20, 21), "reflect", 1),
                                                     ((2, 3, 2, 12, 11), "zeros", 2)])
def test_conv2d_backward_small_refuses_nonfinite_x_and_d_out(shape, padding_mode, stride):
    # The backward pass finds inf / NaN in x and d_out through its results (packed and wide rows, the
    # input gradient's loop, the strided scatter) and names the first one, as the forward pass does.
    n, c, k, h, w_ = shape
    weights = random(k, c, 3, 3, seed=41)
    out_shape = kernels.conv2d(random(n, c, h, w_), weights, padding=1, stride=stride,
                               padding_mode=padding_mode).shape
    for index in ((0, 0, 0, 0), (n - 1, c - 1, h - 1, w_ - 1)):
        for input_gradient in (True, False):
            x = random(n, c, h, w_, seed=42)
            x[index] = np.nan
            with pytest.raises(ValueError, match=rf"x contains 1 NaN .*\({', '.join(map(str, index))}\)"):
                kernels.conv2d_backward(x, weights, random(*out_shape, seed=43), padding=1, stride=stride,
                                        padding_mode=padding_mode, input_gradient=input_gradient)
    d_out = random(*out_shape, seed=43)
    d_out[n - 1, k - 1, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"d_out contains 0 NaN and 1 infinite"):
        kernels.conv2d_backward(random(n, c, h, w_), weights, d_out, padding=1, stride=stride, padding_mode=padding_mode)


def test_parallel_launchers_give_the_serial_loops_results(monkeypatch):
    # Small calls run the serial loops directly, big ones through the parallel launchers; with
    # the threshold at 0 every call takes the parallel route, which must change no bit.
    x, w = random(70, 90), random(5, 4)
    activation_input = random(3, 5, 40, 50) - np.float32(0.5)
    gradient = random(3, 5, 40, 50)
    serial = [kernels.conv2d(x, w, 0.5, padding="same", padding_mode="reflect"),
              kernels.conv2d(x, w, stride=(2, 3), dilation=2, padding=3),
              kernels.relu(activation_input), kernels.sigmoid_backward(activation_input, gradient),
              kernels.leaky_relu(activation_input, 0.1), kernels.tanh(activation_input)]
    monkeypatch.setattr(engine._config, "PARALLEL_MIN_WORK", 0)
    parallel = [kernels.conv2d(x, w, 0.5, padding="same", padding_mode="reflect"),
                kernels.conv2d(x, w, stride=(2, 3), dilation=2, padding=3),
                kernels.relu(activation_input), kernels.sigmoid_backward(activation_input, gradient),
                kernels.leaky_relu(activation_input, 0.1), kernels.tanh(activation_input)]
    for expected, result in zip(serial, parallel):
        np.testing.assert_array_equal(result, expected)
    x[60, 3] = np.inf
    with pytest.raises(ValueError, match=r"x contains 0 NaN and 1 infinite values \(first at index \(60, 3\)"):
        kernels.conv2d(x, w)
    activation_input[2, 4, 39, 49] = np.nan
    with pytest.raises(ValueError, match="x contains 1 NaN"):
        kernels.relu(activation_input)


def test_conv2d_converts_float64_and_integer_images_and_keeps_input_untouched():
    image = RNG.integers(0, 255, size=(10, 11)).astype(np.uint8)
    w = np.ones((3, 3))
    out = kernels.conv2d(image, w, padding=1)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, kernels.conv2d(image.astype(np.float32), w.astype(np.float32), padding=1))
    ct = RNG.integers(-1024, 3000, size=(9, 9)).astype(np.int32)
    np.testing.assert_array_equal(kernels.conv2d(ct, w), kernels.conv2d(ct.astype(np.float32), w))
    x64 = random(8, 8).astype(np.float64)
    copy = x64.copy()
    kernels.conv2d(x64, w, padding=1, padding_mode="reflect")
    np.testing.assert_array_equal(x64, copy)


def test_conv2d_accepts_read_only_and_non_contiguous_inputs():
    x = random(20, 30)
    w = kernels.KERNELS["sobel x"].weights  # read-only
    assert not w.flags.writeable
    view = x[::2, ::3]
    np.testing.assert_array_equal(kernels.conv2d(view, w), kernels.conv2d(np.ascontiguousarray(view), w.copy()))


def test_conv2d_stride_and_dilation_output_size_formula():
    for n, k, s, p, d in itertools.product([7, 8, 15], [1, 2, 3], [1, 2, 3], [0, 1, 2], [1, 2]):
        if d * (k - 1) + 1 > n + 2 * p:
            continue
        out = kernels.conv2d(np.ones((n, 5), np.float32), np.ones((k, 1), np.float32), stride=(s, 1), padding=(p, 0), dilation=(d, 1))
        assert out.shape[0] == kernels.output_size(n, k, stride=s, padding=p, dilation=d) == (n + 2 * p - d * (k - 1) - 1) // s + 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    k=st.integers(1, 3),
    mode=st.sampled_from(["zeros", "reflect", "replicate"]),
)
def test_conv2d_property_random_shapes_match_naive(data, n, c, k, mode):
    kh, kw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    sh, sw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    dh, dw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    h, w_ = data.draw(st.integers(dh * (kh - 1) + 1, 12)), data.draw(st.integers(dw * (kw - 1) + 1, 12))
    limit_h, limit_w = (h - 1, w_ - 1) if mode == "reflect" else (3, 3)
    ph, pw = data.draw(st.integers(0, min(3, limit_h))), data.draw(st.integers(0, min(3, limit_w)))
    seed = data.draw(st.integers(0, 2**31))
    x, w, b = random(n, c, h, w_, seed=seed), random(k, c, kh, kw, seed=seed + 1), random(k, seed=seed + 2)
    out = kernels.conv2d(x, w, b, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), padding_mode=mode)
    expected = naive.conv_naive(x, w, b, (sh, sw), ((ph, ph), (pw, pw)), (dh, dw), mode)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    d_out = random(*out.shape, seed=seed + 3)
    d_x, d_w, d_b = kernels.conv2d_backward(x, w, d_out, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), padding_mode=mode)
    ref_x, ref_w, ref_b = naive.conv_backward_naive(x, w, d_out, (sh, sw), ((ph, ph), (pw, pw)), (dh, dw), mode)
    np.testing.assert_allclose(d_x, ref_x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(d_w, ref_w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(d_b, ref_b, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# FFT path for large kernels
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate"])
@pytest.mark.parametrize("stride, dilation, padding", [(1, 1, "same"), (2, 1, 3), (1, 2, 5), (3, (2, 1), (4, 0))])
def test_fft_path_matches_direct(padding_mode, stride, dilation, padding):
    x = random(70, 61)
    w = random(21, 20) / 20
    direct = kernels.conv2d(x, w, 0.5, stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode, method="direct")
    fft = kernels.conv2d(x, w, 0.5, stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode, method="fft")
    auto = kernels.conv2d(x, w, 0.5, stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode)
    assert fft.dtype == np.float32 and fft.shape == direct.shape
    np.testing.assert_allclose(fft, direct, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(auto, fft)  # 21 x 20 = 420 taps >= FFT_MIN_KERNEL_AREA


def test_fft_path_batched_multichannel_when_forced():
    x, w, b = random(2, 3, 30, 31), random(4, 3, 6, 5), random(4)
    np.testing.assert_allclose(kernels.conv2d(x, w, b, padding=2, method="fft"), kernels.conv2d(x, w, b, padding=2), rtol=1e-5, atol=1e-5)


def test_auto_method_uses_direct_loop_below_the_threshold():
    x, w = random(40, 40), random(19, 21)  # 399 taps
    assert 19 * 21 < kernels.FFT_MIN_KERNEL_AREA
    np.testing.assert_array_equal(kernels.conv2d(x, w), kernels.conv2d(x, w, method="direct"))


@pytest.mark.parametrize("length", [1, 7, 97, 575, 1000, 2111])
def test_next_fast_length_is_smallest_7_smooth_size(length):
    def smooth(m):
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        return m == 1

    fast = engine._next_fast_length(length)
    assert fast >= length and smooth(fast)
    assert not any(smooth(m) for m in range(length, fast))


# ---------------------------------------------------------------------------------------------
# conv2d backward
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate"])
@pytest.mark.parametrize("stride, dilation, padding", [(1, 1, 1), (2, 1, 1), (1, 2, 2), ((2, 3), (1, 2), (1, 2)), (1, 1, "same")])
def test_conv2d_backward_small_matches_naive(padding_mode, stride, dilation, padding):
    x, w = random(2, 3, 8, 9), random(2, 3, 2, 3)
    strides = engine._per_axis(stride, "stride", 2, 1)
    dilations = engine._per_axis(dilation, "dilation", 2, 1)
    out = kernels.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode)
    d_out = random(*out.shape)
    d_x, d_w, d_b = kernels.conv2d_backward(x, w, d_out, stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode)
    pads = symmetric_pads(padding, w.shape[2:], dilations)
    ref_x, ref_w, ref_b = naive.conv_backward_naive(x, w, d_out, strides, pads, dilations, padding_mode)
    assert d_x.shape == x.shape and d_w.shape == w.shape and d_b.shape == (2,)
    np.testing.assert_allclose(d_x, ref_x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(d_w, ref_w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(d_b, ref_b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate"])
def test_conv2d_backward_small_matches_finite_differences(padding_mode):
    """Central differences of the float64 reference forward, for the loss sum(d_out * conv(x, w))."""
    x, w = random(1, 2, 5, 6).astype(np.float64), random(2, 2, 3, 2).astype(np.float64)
    options = dict(stride=(2, 1), pads=((1, 1), (2, 2)), dilation=(1, 2), mode=padding_mode)
    d_out = random(*naive.conv_naive(x, w, **options).shape).astype(np.float64)

    def loss(x_, w_):
        return float(np.sum(d_out * naive.conv_naive(x_, w_, **options)))

    step = 1e-6
    numeric_x = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        bump = np.zeros_like(x)
        bump[index] = step
        numeric_x[index] = (loss(x + bump, w) - loss(x - bump, w)) / (2 * step)
    numeric_w = np.zeros_like(w)
    for index in np.ndindex(w.shape):
        bump = np.zeros_like(w)
        bump[index] = step
        numeric_w[index] = (loss(x, w + bump) - loss(x, w - bump)) / (2 * step)
    d_x, d_w, d_b = kernels.conv2d_backward(x, w, d_out, stride=(2, 1), padding=(1, 2), dilation=(1, 2), padding_mode=padding_mode)
    np.testing.assert_allclose(d_x, numeric_x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(d_w, numeric_w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(d_b, d_out.sum(axis=(0, 2, 3)), rtol=1e-5)


def test_conv2d_backward_can_skip_the_input_gradient():
    x, w = random(2, 3, 9, 10), random(4, 3, 3, 3)
    d_out = random(2, 4, 9, 10)
    d_x, d_w, d_b = kernels.conv2d_backward(x, w, d_out, padding=1, input_gradient=False)
    full = kernels.conv2d_backward(x, w, d_out, padding=1)
    assert d_x is None
    np.testing.assert_array_equal(d_w, full[1])
    np.testing.assert_array_equal(d_b, full[2])
    assert kernels.conv3d_backward(x[:, :, None], w[:, :, None], d_out[:, :, None], padding=(0, 1, 1), input_gradient=False)[0] is None


def test_conv2d_backward_single_image_form():
    x, w = random(9, 10), random(3, 3)
    d_out = random(*kernels.conv2d(x, w, padding=1).shape)
    d_x, d_w, d_b = kernels.conv2d_backward(x, w, d_out, padding=1)
    ref_x, ref_w, ref_b = kernels.conv2d_backward(x[None, None], w[None, None], d_out[None, None], padding=1)
    np.testing.assert_array_equal(d_x, ref_x[0, 0])
    np.testing.assert_array_equal(d_w, ref_w[0, 0])
    assert isinstance(d_b, float) and d_b == pytest.approx(float(ref_b[0]))


def test_conv2d_backward_trains_a_tiny_layer():
    """Gradient descent with the engine's gradients recovers a known kernel."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 1, 12, 12)).astype(np.float32)
    true_w = kernels.make_kernel("sobel x")[None, None]
    target = kernels.conv2d(x, true_w, np.float32([0.3]), padding=1)
    w, b = np.zeros((1, 1, 3, 3), np.float32), np.zeros(1, np.float32)
    for _ in range(300):
        out = kernels.conv2d(x, w, b, padding=1)
        d_out = 2 * (out - target) / out.size
        _, d_w, d_b = kernels.conv2d_backward(x, w, d_out, padding=1)
        w -= 0.5 * d_w
        b -= 0.5 * d_b
    np.testing.assert_allclose(w, true_w, atol=1e-3)
    np.testing.assert_allclose(b, [0.3], atol=1e-3)


# ---------------------------------------------------------------------------------------------
# conv3d
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate"])
@pytest.mark.parametrize("stride, dilation, padding", [(1, 1, 1), ((2, 1, 2), 1, (1, 0, 1)), (1, (2, 1, 1), "same")])
def test_conv3d_small_forward_and_backward_match_naive(padding_mode, stride, dilation, padding):
    x, w, b = random(2, 2, 5, 6, 5), random(3, 2, 2, 3, 2), random(3)
    strides = engine._per_axis(stride, "stride", 3, 1)
    dilations = engine._per_axis(dilation, "dilation", 3, 1)
    pads = engine._resolve_padding_nd(w.shape[2:], padding, dilations)
    out = kernels.conv3d(x, w, b, stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode)
    np.testing.assert_allclose(out, naive.conv_naive(x, w, b, strides, pads, dilations, padding_mode), rtol=1e-5, atol=1e-5)
    d_out = random(*out.shape)
    grads = kernels.conv3d_backward(x, w, d_out, stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode)
    for got, want in zip(grads, naive.conv_backward_naive(x, w, d_out, strides, pads, dilations, padding_mode)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conv3d_single_volume_and_depth_one_equals_conv2d():
    volume, w = random(4, 9, 8), random(3, 3, 3)
    np.testing.assert_array_equal(kernels.conv3d(volume, w, 1.0, padding=1), kernels.conv3d(volume[None, None], w[None, None], np.float32([1.0]), padding=1)[0, 0])
    image, w2 = random(1, 2, 1, 9, 8), random(3, 2, 1, 3, 3)
    np.testing.assert_allclose(kernels.conv3d(image, w2, padding=(0, 1, 1))[:, :, 0], kernels.conv2d(image[:, :, 0], w2[:, :, 0], padding=1), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size, stride, padding", [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 0)), (2, 1, 1), (1, 1, 0)])
def test_max_pool2d_small_values_and_argmax_match_naive(size, stride, padding):
    x = random(2, 3, 7, 9)
    sizes = engine._per_axis(size, "size", 2, 1)
    strides = sizes if stride is None else engine._per_axis(stride, "stride", 2, 1)
    pads = engine._per_axis(padding, "padding", 2, 0)
    values, indices = kernels.max_pool2d(x, size, stride=stride, padding=padding, return_indices=True)
    ref_values, ref_indices = naive.max_pool_naive(x, sizes, strides, pads)
    np.testing.assert_array_equal(values, ref_values.astype(np.float32))
    np.testing.assert_array_equal(indices, ref_indices)
    assert indices.dtype == np.int64
    # Every index points at its value in the (unpadded) plane.
    np.testing.assert_array_equal(np.take_along_axis(x.reshape(2, 3, -1), indices.reshape(2, 3, -1), axis=2).reshape(values.shape), values)
    np.testing.assert_array_equal(kernels.max_pool2d(x, size, stride=stride, padding=padding), values)


def test_max_pool2d_ties_go_to_first_pixel_in_row_major_order():
    x = np.array([[1, 5, 5, 0], [5, 2, 0, 0], [3, 3, 7, 7], [3, 3, 7, 7]], dtype=np.float32)
    values, indices = kernels.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(values, [[5, 5], [3, 7]])
    np.testing.assert_array_equal(indices, [[1, 2], [8, 10]])


def test_max_pool2d_backward_small_routes_gradient_to_argmax_and_adds_overlaps():
    x = random(2, 2, 6, 7)
    values, indices = kernels.max_pool2d(x, 3, stride=1, padding=1, return_indices=True)
    d_out = random(*values.shape)
    d_x = kernels.max_pool2d_backward(d_out, indices, x.shape)
    expected = np.zeros((4, 42))
    for plane, (grads, where) in enumerate(zip(d_out.reshape(4, -1), indices.reshape(4, -1))):
        for g, i in zip(grads, where):
            expected[plane, i] += g
    np.testing.assert_allclose(d_x, expected.reshape(x.shape), rtol=1e-6, atol=1e-6)
    single = kernels.max_pool2d_backward(d_out[0, 0], indices[0, 0], x.shape[2:])
    np.testing.assert_array_equal(single, d_x[0, 0])


@pytest.mark.parametrize("size, stride, padding", [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 1))])
def test_avg_pool2d_small_forward_and_backward(size, stride, padding):
    x = random(2, 3, 7, 9)
    sizes = engine._per_axis(size, "size", 2, 1)
    strides = sizes if stride is None else engine._per_axis(stride, "stride", 2, 1)
    pads = engine._per_axis(padding, "padding", 2, 0)
    out = kernels.avg_pool2d(x, size, stride=stride, padding=padding)
    np.testing.assert_allclose(out, naive.avg_pool_naive(x, sizes, strides, pads), rtol=1e-5, atol=1e-6)
    d_out = random(*out.shape)
    d_x = kernels.avg_pool2d_backward(d_out, x.shape, size, stride=stride, padding=padding)
    ones = np.full((1, 1) + sizes, 1.0 / np.prod(sizes))
    ref_x, _, _ = naive.conv_backward_naive(x.reshape(6, 1, 7, 9), ones, d_out.reshape((6, 1) + out.shape[2:]), strides, tuple((p, p) for p in pads))
    np.testing.assert_allclose(d_x, ref_x.reshape(x.shape), rtol=1e-5, atol=1e-6)


def test_max_and_avg_pool2d_match_reshape_equivalents():
    x = random(3, 4, 16, 12)
    blocks = x.reshape(3, 4, 8, 2, 6, 2)
    np.testing.assert_array_equal(kernels.max_pool2d(x), blocks.max(axis=(3, 5)))
    np.testing.assert_allclose(kernels.avg_pool2d(x), blocks.mean(axis=(3, 5)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size, stride, padding", [(2, None, 0), (3, 2, 1), ((1, 2, 3), (1, 2, 2), (0, 1, 1))])
def test_pool3d_small_matches_naive(size, stride, padding):
    x = random(2, 2, 5, 6, 7)
    sizes = engine._per_axis(size, "size", 3, 1)
    strides = sizes if stride is None else engine._per_axis(stride, "stride", 3, 1)
    pads = engine._per_axis(padding, "padding", 3, 0)
    values, indices = kernels.max_pool3d(x, size, stride=stride, padding=padding, return_indices=True)
    ref_values, ref_indices = naive.max_pool_naive(x, sizes, strides, pads)
    np.testing.assert_array_equal(values, ref_values.astype(np.float32))
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_allclose(kernels.avg_pool3d(x, size, stride=stride, padding=padding), naive.avg_pool_naive(x, sizes, strides, pads), rtol=1e-5, atol=1e-6)
    d_out = random(*values.shape)
    d_x = kernels.max_pool3d_backward(d_out, indices, x.shape)
    assert d_x.shape == x.shape
    np.testing.assert_allclose(d_x.sum(), d_out.sum(), rtol=1e-5)
    d_avg = kernels.avg_pool3d_backward(d_out, x.shape, size, stride=stride, padding=padding)
    ones = np.full((1, 1) + sizes, 1.0 / np.prod(sizes))
    ref, _, _ = naive.conv_backward_naive(x.reshape((4, 1) + x.shape[2:]), ones, d_out.reshape((4, 1) + d_out.shape[2:]), strides, tuple((p, p) for p in pads))
    np.testing.assert_allclose(d_avg, ref.reshape(x.shape), rtol=1e-5, atol=1e-6)
    single_values, single_indices = kernels.max_pool3d(x[1, 1], size, stride=stride, padding=padding, return_indices=True)
    np.testing.assert_array_equal(single_indices, indices[1, 1])


# ---------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------

ACTIVATIONS = {
    "relu": (kernels.relu, kernels.relu_backward, lambda x: np.maximum(x, 0)),
    "leaky_relu": (kernels.leaky_relu, kernels.leaky_relu_backward, lambda x: np.where(x > 0, x, 0.01 * x)),
    "sigmoid": (kernels.sigmoid, kernels.sigmoid_backward, lambda x: 1 / (1 + np.exp(-x))),
    "tanh": (kernels.tanh, kernels.tanh_backward, np.tanh),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_small_forward_and_finite_difference_backward(name):
    forward, backward, reference = ACTIVATIONS[name]
    x = random(2, 3, 5, 7) * 3
    x[np.abs(x) < 1e-2] = 0.5  # keep away from the ReLU kink
    np.testing.assert_allclose(forward(x), reference(x.astype(np.float64)), rtol=1e-6, atol=1e-6)
    d_out = random(*x.shape)
    step = 1e-6
    x64 = x.astype(np.float64)
    numeric = d_out * (reference(x64 + step) - reference(x64 - step)) / (2 * step)
    np.testing.assert_allclose(backward(x, d_out), numeric, rtol=1e-4, atol=1e-5)


def test_activations_on_large_tensor_and_extremes():
    x = random(32, 16, 64, 64) * 50  # many elements: every parallel block
    np.testing.assert_array_equal(kernels.relu(x), np.maximum(x, 0))
    extremes = np.float32([-1e30, -100, -20, 0, 20, 100, 1e30])
    s = kernels.sigmoid(extremes)
    assert np.all(np.isfinite(s)) and s[0] == 0 and s[-1] == 1
    np.testing.assert_array_equal(kernels.tanh(extremes), np.tanh(extremes))
    np.testing.assert_allclose(kernels.leaky_relu(np.float32([-2, 3]), slope=0.2), [-0.4, 3])
    np.testing.assert_allclose(kernels.leaky_relu_backward(np.float32([-2, 3]), np.float32([1, 1]), slope=0.2), [0.2, 1])
    np.testing.assert_array_equal(kernels.relu_backward(np.float32([-1, 0, 2]), np.float32([5, 5, 5])), [0, 0, 5])


# ---------------------------------------------------------------------------------------------
# output_size, resolve_padding
# ---------------------------------------------------------------------------------------------

def test_output_size_and_resolve_padding():
    assert kernels.output_size(64, 3, padding=1) == 64
    assert kernels.output_size(64, 3, stride=2) == 31
    assert kernels.output_size(10, 3, dilation=2, padding=(1, 2)) == 9
    assert kernels.output_size(5, 5) == 1
    assert kernels.resolve_padding((64, 64), (3, 3), "same", 1) == (1, 1, 1, 1)
    assert kernels.resolve_padding((64, 64), (4, 4), "same", 1) == (1, 2, 1, 2)
    assert kernels.resolve_padding((64, 64), (3, 5), "same", 2) == (2, 2, 4, 4)
    assert kernels.resolve_padding((64, 64), (2, 2), "same", (1, 2)) == (0, 1, 1, 1)
    assert kernels.resolve_padding((64, 64), (3, 3), "valid") == (0, 0, 0, 0)
    assert kernels.resolve_padding((64, 64), (3, 3), (2, 1)) == (2, 2, 1, 1)
    for size in range(1, 10):
        assert kernels.conv2d(np.ones((11, 13)), np.ones((size, size)), padding="same").shape == (11, 13)


# ---------------------------------------------------------------------------------------------
# Errors: each names the bad value and the fix
# ---------------------------------------------------------------------------------------------

ERROR_CASES = [
    (lambda: kernels.conv2d(np.ones((2, 5, 5)), np.ones((3, 3))), ValueError, r"x must be a single input \(H, W\) or a batch \(N, C, H, W\); got 3-D shape \(2, 5, 5\).*x\[None\]"),
    (lambda: kernels.conv2d(np.ones((5, 5)), np.ones((1, 1, 3, 3))), ValueError, r"w must be \(kh, kw\); got w with shape \(1, 1, 3, 3\)"),
    (lambda: kernels.conv2d(np.ones((1, 2, 5, 5)), np.ones((3, 3))), ValueError, r"w must be \(K, C, kh, kw\); got w with shape \(3, 3\)"),
    (lambda: kernels.conv2d(np.ones((1, 2, 5, 5)), np.ones((4, 3, 3, 3))), ValueError, r"channel mismatch: x has 2 channels .* w expects 3 .*C = 2"),
    (lambda: kernels.conv2d(np.ones((1, 2, 5, 5)), np.ones((4, 2, 3, 3)), np.ones(3)), ValueError, r"b must have shape \(K,\) = \(4,\).*got \(3,\)"),
    (lambda: kernels.conv2d(np.ones((5, 5)), np.ones((3, 3)), np.ones(2)), ValueError, r"b must be a number"),
    (lambda: kernels.conv2d(np.ones((5, 5)), np.ones((3, 3)), dilation=3), ValueError, r"kernel spans 7 rows \(size 3, dilation 3\) but the padded input has only 5 \(5 \+ padding 0 \+ 0\)"),
    (lambda: kernels.conv2d(np.ones((5, 4)), np.ones((3, 6))), ValueError, r"kernel spans 6 columns .* only 4"),
    (lambda: kernels.conv2d(np.ones((5, 5)), np.ones((3, 3)), stride=0), ValueError, r"stride must be at least 1, got 0"),
    (lambda: kernels.conv2d(np.ones((5, 5)), np.ones((3, 3)), dilation=(1, 0)), ValueError, r"dilation must be at least 1, got \(1, 0\)"),
    (lambda: kernels.conv2d(np.ones((5, 5)), np.ones((3, 3)), stride=(1, 2, 3)), ValueError, r"stride must be an int or 2 ints"),
    (lambda: kernels.conv2d(np.ones((5, 5)), np.ones((3, 3)), padding=-1), ValueError, r"padding must be at least 0, got -1"),
    (lambda: kernels.conv2d(np.ones((5, 5)), np.ones((3, 3)), padding="full"), ValueError, r"padding must be an int, 2 ints, 'valid' or 'same'; got 'full'"),
    (lambda: kernels.conv2d(np.ones((5, 5)), np.ones((3, 3)), padding="same", stride=2), ValueError, r"padding='same' needs stride 1"),
    (lambda: kernels.conv2d(np.ones((5, 5)), np.ones((3, 3)), padding_mode="circular"), ValueError, r"padding_mode must be one of 'zeros', 'reflect', 'replicate'; got 'circular'"),
    (lambda: kernels.conv2d(np.ones((5, 5)), np.ones((3, 3)), padding=5, padding_mode="reflect"), ValueError, r"reflect padding of 5 .* the input has 5; use padding_mode='replicate'"),
    (lambda: kernels.conv2d(np.ones((5, 5)), np.ones((3, 3)), stride=1.5), TypeError, r"stride must be an int, got 1.5"),
    (lambda: kernels.conv2d(np.ones((5, 5)), np.ones((3, 3)), stride=True), TypeError, r"stride must be an int, got the bool True"),
    (lambda: kernels.conv2d(np.ones((5, 5)), np.ones((3, 3)), method="winograd"), ValueError, r"method must be 'auto', 'direct' or 'fft'; got 'winograd'"),
    (lambda: kernels.conv2d(np.array([[1.0, np.nan], [np.inf, 2.0]]), np.ones((1, 1))), ValueError, r"x contains 1 NaN and 1 infinite values \(first at index \(0, 1\), value nan\).*np.nan_to_num"),
    (lambda: kernels.conv2d(np.ones((5, 5)), np.full((3, 3), -np.inf)), ValueError, r"w contains 0 NaN and 9 infinite values"),
    (lambda: kernels.conv2d(np.full((4, 4), 2**31 - 1, dtype=np.int64), np.ones((3, 3))), ValueError, r"x holds integers up to 2147483647, more than 2\*\*24 = 16777216.*pass a float array"),
    (lambda: kernels.conv2d(np.ones((5, 5), dtype=complex), np.ones((3, 3))), TypeError, r"x has dtype complex128; pass a real-valued float or integer array"),
    (lambda: kernels.conv2d(np.ones((0, 5)), np.ones((1, 1))), ValueError, r"must not be empty"),
    (lambda: kernels.conv2d_backward(np.ones((5, 5)), np.ones((3, 3)), np.ones((4, 4))), ValueError, r"d_out must have the forward output's shape \(3, 3\); got \(4, 4\)"),
    (lambda: kernels.conv3d(np.ones((5, 5)), np.ones((3, 3))), ValueError, r"x must be a single input \(D, H, W\) or a batch \(N, C, D, H, W\)"),
    (lambda: kernels.max_pool2d(np.ones((5,)), 2), ValueError, r"x must be \(H, W\) or \(N, C, H, W\); got 1-D shape \(5,\)"),
    (lambda: kernels.max_pool2d(np.ones((5, 5)), 2, padding=2), ValueError, r"padding 2 is more than half the pool size 2; use padding <= size // 2"),
    (lambda: kernels.max_pool2d(np.ones((5, 5)), 7), ValueError, r"kernel spans 7 rows .* only 5"),
    (lambda: kernels.avg_pool2d(np.ones((5, 5)), 2, stride=0), ValueError, r"stride must be at least 1, got 0"),
    (lambda: kernels.max_pool2d_backward(np.ones((2, 2)), np.zeros((2, 3), dtype=np.int64), (4, 4)), ValueError, r"d_out \(2, 2\) and indices \(2, 3\) must have the same shape"),
    (lambda: kernels.max_pool2d_backward(np.ones((2, 2)), np.full((2, 2), 16), (4, 4)), ValueError, r"indices must lie in \[0, 16\) for input_shape \(4, 4\); got values from 16 to 16"),
    (lambda: kernels.max_pool2d_backward(np.ones((2, 2)), np.ones((2, 2)), (4, 4)), TypeError, r"indices must be the integer array returned with return_indices=True"),
    (lambda: kernels.max_pool2d_backward(np.ones((2, 2)), np.ones((2, 2), dtype=int), (1, 1, 4)), ValueError, r"input_shape must be \(H, W\) or \(N, C, H, W\) with positive sizes; got \(1, 1, 4\)"),
    (lambda: kernels.avg_pool2d_backward(np.ones((3, 3)), (4, 4), 2), ValueError, r"d_out must have the pooled output's shape \(2, 2\) for input_shape \(4, 4\); got \(3, 3\)"),
    (lambda: kernels.relu_backward(np.ones((2, 2)), np.ones((2, 3))), ValueError, r"d_out \(2, 3\) must have the shape of x \(2, 2\)"),
    (lambda: kernels.leaky_relu(np.ones(3), slope=np.inf), ValueError, r"slope must be a finite number, got inf"),
    (lambda: kernels.sigmoid(np.array([np.nan])), ValueError, r"x contains 1 NaN"),
    (lambda: kernels.output_size(5, 7), ValueError, r"kernel spans 7 length .* only 5"),
    (lambda: kernels.output_size(0, 3), ValueError, r"n must be at least 1, got 0"),
    (lambda: kernels.resolve_padding((5, 5), (3, 3), "full"), ValueError, r"padding must be an int, 2 ints, 'valid' or 'same'"),
]


@pytest.mark.parametrize("call, error, message", ERROR_CASES, ids=[f"error{i}" for i in range(len(ERROR_CASES))])
def test_errors_name_the_value_and_the_fix(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_remembered_geometry_still_refuses_what_compares_equal_to_a_good_argument():
    # conv2d remembers the checked geometry of plain int / str / tuple arguments (engine._convolution_geometry);
    # True == 1 and (True, 1) == (1, 1), so a bool given after a good call must still be refused, and a good
    # call after a refused one must still succeed.
    x, w = np.ones((5, 5)), np.ones((3, 3))
    for name, good, bad in (("stride", 1, True), ("dilation", (1, 1), (True, 1)), ("padding", (1, 1), (True, 1))):
        for _ in range(2):
            kernels.conv2d(x, w, **{name: good})
            with pytest.raises(TypeError, match=rf"{name} must be an int, got the bool True"):
                kernels.conv2d(x, w, **{name: bad})
    np.testing.assert_array_equal(kernels.conv2d(x, w, stride=np.int64(2), padding=[1, 1]),
                                  kernels.conv2d(x, w, stride=2, padding=(1, 1)))


def test_integer_images_beyond_float32_precision_are_refused_but_in_range_ones_converted():
    fine = np.array([[2**24, -(2**24)]], dtype=np.int64)
    assert kernels.conv2d(fine, np.ones((1, 1))).tolist() == [[2**24, -(2**24)]]
    assert kernels.relu(np.array([True, False])).tolist() == [1.0, 0.0]


def test_concurrent_calls_from_threads_give_the_serial_results():
    """Streamlit runs each browser session as a thread: parallel kernels called concurrently."""
    from concurrent.futures import ThreadPoolExecutor

    images = [random(3, 2, 40, 37, seed=s) for s in range(8)]
    w, b = random(4, 2, 3, 3, seed=99), random(4, seed=98)
    expected = [kernels.conv2d(x, w, b, padding=1) for x in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda x: kernels.conv2d(x, w, b, padding=1), images))
        pooled = list(pool.map(lambda x: kernels.max_pool2d(kernels.relu(x)), images))
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)
    for got, x in zip(pooled, images):
        np.testing.assert_array_equal(got, kernels.max_pool2d(kernels.relu(x)))


def test_warm_up_loads_every_jitted_loop():
    # kernels.warm_up() runs when the app starts so that no click waits for a compile: in a fresh
    # process it must compile (or load from the cache) every loop engine.py calls, i.e. every
    # jitted function of _jit without a leading underscore (the private ones are only called from
    # inside the others and come with them).  A new loop, or a call that moves to another loop,
    # must be added to kernels/_warm.py.
    code = (
        "import kernels, numba\n"
        "from kernels import _jit\n"
        "kernels.warm_up()\n"
        "print(sorted(name for name, value in vars(_jit).items()\n"
        "             if isinstance(value, numba.core.registry.CPUDispatcher)\n"
        "             and not name.startswith('_') and not value.signatures))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]", f"not compiled by kernels.warm_up(): {result.stdout.strip()}"


# --- Fused multiply-add: the engine's rounding, and the NumPy replay of it -----------------------

def _double_rounding_cases():
    """float32 (a, b, c) whose a * b + c lies just below a float32 midpoint, closer than float64 resolves.

    c = 1 and a * b = 3 * 2**-24 minus less than half a float64 step: rounding the exact value to
    float64 lands on the midpoint 1 + 3 * 2**-24, which then rounds (to even) up to 1 + 2**-22,
    while the single correct rounding gives 1 + 2**-23.
    """
    target = 3 << 46
    m_a = np.arange(2**23 + 1, 2**24, 2, dtype=np.int64)[::97]  # odd 24-bit mantissas
    m_b = target // m_a
    deficit = target - m_a * m_b
    keep = (deficit > 0) & (deficit < 2**17) & (m_b >= 2**23) & (m_b < 2**24)
    a = (m_a[keep] * 2.0**-23).astype(np.float32)
    b = (m_b[keep] * 2.0**-47).astype(np.float32)
    return a, b, np.ones_like(a)


@pytest.fixture(scope="module")
def compiled_fma():
    from numba import njit

    @njit
    def loop(a, b, c, out):
        for i in range(a.size):
            out[i] = _simd.fused_multiply_add(a[i], b[i], c[i])
        return out

    return lambda a, b, c: loop(a, b, c, np.empty_like(a))


def test_fused_multiply_add_replay_equals_the_cpu_instruction_bit_for_bit(compiled_fma):
    a, b, c = _double_rounding_cases()
    assert a.size > 20
    naive_double = (a.astype(np.float64) * b + c).astype(np.float32)
    exact = compiled_fma(a, b, c)
    # The cases are real: rounding through float64 gets them wrong, the hardware does not.
    assert np.all(naive_double == np.float32(1 + 2**-22)) and np.all(exact == np.float32(1 + 2**-23))
    np.testing.assert_array_equal(_simd.fused_multiply_add(a, b, c), exact)
    rng = np.random.default_rng(5)
    x, y = random(200_000, seed=6), random(200_000, seed=7)
    for z in (random(200_000, seed=8), -(x * y) * np.float32(1 + 2**-20),
              random(200_000, seed=9) * np.float32(2.0) ** rng.integers(-40, 40, 200_000).astype(np.float32)):
        got = _simd.fused_multiply_add(x, y, z)
        np.testing.assert_array_equal(got.view(np.int32), compiled_fma(x, y, z).view(np.int32))


def test_conv2d_small_adds_each_product_unrounded():
    # (1 + 2**-12)**2 = 1 + 2**-11 + 2**-24 has a bit below float32's precision.  Added to the
    # running sum -(1 + 2**-11) with one rounding (fused multiply-add) it leaves 2**-24; a separate
    # multiply would round it to 1 + 2**-11 first and leave 0.
    x = np.float32([[1.0, 1 + 2**-12]])
    w = np.float32([[-(1 + 2**-11), 1 + 2**-12]])
    assert x[0, 1] * w[0, 1] + w[0, 0] == 0
    assert kernels.conv2d(x, w)[0, 0] == np.float32(2**-24)


def _fused_reference(x, w, b, padding, padding_mode="zeros"):
    """conv2d of a batch replayed in NumPy: taps in (c, i, j) order from 0, one fused multiply-add each, bias last."""
    n_kernels, n_channels, kh, kw = w.shape
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), mode=NUMPY_PAD_MODES[padding_mode])
    out_rows, out_cols = padded.shape[2] - kh + 1, padded.shape[3] - kw + 1
    total = np.zeros((x.shape[0], n_kernels, out_rows, out_cols), dtype=np.float32)
    for c, i, j in itertools.product(range(n_channels), range(kh), range(kw)):
        window = padded[:, None, c, i:i + out_rows, j:j + out_cols]
        total = _simd.fused_multiply_add(w[None, :, c, i, j, None, None], window, total)
    return (total + b[None, :, None, None]).astype(np.float32)


@pytest.mark.parametrize("shape", [(2, 3, 5, 7, 6), (3, 2, 8, 9, 9), (1, 4, 4, 20, 3)])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_batched_conv2d_small_is_the_fused_sum_in_tap_order(shape, padding_mode):
    # (N, C, K, H, W): K of 5 and 8 take the register-blocked loop (four kernels at a time, padded
    # with zero kernels), K of 4 with a 20 x 3 map as well; every output must be exactly the
    # sequential fused sum, as the step trace assumes for single images.
    n, c, k, h, w_ = shape
    x, w, b = random(n, c, h, w_, seed=11), random(k, c, 3, 3, seed=12), random(k, seed=13)
    np.testing.assert_array_equal(kernels.conv2d(x, w, b, padding=1, padding_mode=padding_mode),
                                  _fused_reference(x, w, b, 1, padding_mode))


def test_batched_conv2d_of_classifier_sizes_is_the_fused_sum_in_tap_order():
    # The sizes the classifier trains on: 64 x 64 maps (wide rows, several register blocks per
    # row) and 8 x 8 maps (a whole batch packed into one row per channel).
    for n, c, k, size in ((8, 8, 16, 64), (32, 32, 32, 8), (4, 1, 8, 64)):
        x, w, b = random(n, c, size, size, seed=14), random(k, c, 3, 3, seed=15), random(k, seed=16)
        np.testing.assert_array_equal(kernels.conv2d(x, w, b, padding=1), _fused_reference(x, w, b, 1))


def test_keep_freed_memory_sets_glibc_malloc_options():
    import platform

    from kernels._config import keep_freed_memory

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert keep_freed_memory() is True
    # Allocating and freeing after it still works and gives correct arrays.
    for _ in range(3):
        big = np.ones((1024, 1024), dtype=np.float32)
        assert float(big.sum()) == 1024 * 1024
        del big


def test_machine_to_ourselves_spreads_small_calls_without_changing_a_bit():
    from kernels import _config

    x, w = random(6, 8, 40, 40, seed=21), random(16, 8, 3, 3, seed=22)

    def step():
        out = kernels.conv2d(x, w, padding=1)
        pooled, indices = kernels.max_pool2d(kernels.relu(out), 2, return_indices=True)
        d_relu = kernels.max_pool2d_backward(pooled, indices, out.shape)
        return [out, pooled, *kernels.conv2d_backward(x, w, kernels.relu_backward(out, d_relu), padding=1)]

    default_threshold = _config.PARALLEL_MIN_WORK
    serial = step()
    with _config.machine_to_ourselves(min_work=1):
        assert _config.PARALLEL_MIN_WORK == 1
        spread = step()
    assert _config.PARALLEL_MIN_WORK == default_threshold
    for expected, result in zip(serial, spread):
        np.testing.assert_array_equal(result, expected)


def test_cached_kernels_are_dropped_when_the_modules_compiled_along_change(tmp_path):
    # Numba stamps a cached kernel with _jit.py's time and size only: a change to _simd.py or
    # _config.py alone must not keep loading the old machine code.
    from kernels import _jit

    for name in ("_jit.correlate_forward-129.py311.nbi", "_jit.correlate_forward-129.py311.1.nbc", "other.nbi"):
        (tmp_path / name).write_bytes(b"x")
    assert _jit.drop_stale_cache(tmp_path, "digest-a") is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_jit.compiled-along.sha256", "other.nbi"]
    (tmp_path / "_jit.relu-1.py311.nbi").write_bytes(b"x")
    assert _jit.drop_stale_cache(tmp_path, "digest-a") is False  # same sources: the cache stays
    assert (tmp_path / "_jit.relu-1.py311.nbi").exists()
    assert _jit.drop_stale_cache(tmp_path, "digest-b") is True
    assert not (tmp_path / "_jit.relu-1.py311.nbi").exists()
    # The real cache directory carries the stamp of the current sources.
    cache_dir = _jit._CACHE_PATH
    if cache_dir is not None:
        from pathlib import Path

        assert (Path(cache_dir) / _jit._CACHE_STAMP).read_text() == _jit._source_digest()


# --- While a fresh install compiles: the NumPy paths (kernels/_uncompiled.py) ----------------------

@pytest.fixture
def loops_still_compiling():
    """The engine as kernels.warm_up(wait=False) leaves it on a fresh install, until the loops are loaded."""
    from kernels import dispatch

    dispatch.serve_uncompiled_meanwhile()
    try:
        yield
    finally:
        dispatch.serve_compiled()


def test_small_numpy_paths_while_compiling_agree_with_the_compiled_loops(loops_still_compiling):
    from kernels import dispatch

    cases = [(random(3, 5, 20, 23, seed=1), random(6, 5, 3, 3, seed=2) - 0.5, random(6, seed=3), dict(padding=1)),
             (random(2, 2, 17, 19, seed=4), random(3, 2, 2, 4, seed=5) - 0.5, None,
              dict(padding=2, dilation=(2, 1), padding_mode="reflect")),
             (random(2, 3, 15, 16, seed=6), random(4, 3, 3, 3, seed=7) - 0.5, None, dict(stride=2, padding=1)),
             (random(50, 61, seed=8), random(5, 4, seed=9) - 0.5, 0.5, dict(padding="same", padding_mode="reflect")),
             (random(40, 33, seed=10), random(3, 3, seed=11) - 0.5, None,
              dict(stride=(2, 3), padding=2, padding_mode="replicate"))]
    x = random(2, 3, 12, 14, seed=12) - np.float32(0.5)
    d_out = random(2, 3, 12, 14, seed=13)

    def everything():
        return ([kernels.conv2d(a, w, b, **options) for a, w, b, options in cases]
                + list(kernels.max_pool2d(x, 3, stride=2, padding=1, return_indices=True))
                + [kernels.avg_pool2d(x, 2), kernels.relu(x), kernels.leaky_relu_backward(x, d_out, 0.1),
                   kernels.sigmoid(x), kernels.tanh_backward(x, d_out)])

    assert not dispatch.compiled_loops_ready()
    uncompiled = everything()
    dispatch.serve_compiled()
    compiled = everything()
    for index, (got, want) in enumerate(zip(uncompiled, compiled)):
        assert got.shape == want.shape and got.dtype == want.dtype
        if index in (3, 4, 5, 6):  # single images (the lessons' numbers, the trace's) and argmax positions: same bits
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    indices = kernels.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)[1]
    dispatch.serve_uncompiled_meanwhile()
    np.testing.assert_array_equal(kernels.max_pool2d_backward(d_out[:, :, :6, :7], indices, x.shape),
                                  kernels.max_pool2d_backward(d_out[:, :, :6, :7], indices, x.shape))


def test_small_numpy_paths_while_compiling_refuse_nonfinite_input(loops_still_compiling):
    x = random(30, 30)
    x[4, 5] = np.nan
    with pytest.raises(ValueError, match=r"x contains 1 NaN and 0 infinite values \(first at index \(4, 5\)"):
        kernels.conv2d(x, np.ones((3, 3)), padding=1)
    with pytest.raises(ValueError, match=r"x contains 1 NaN"):
        kernels.relu(x)


@pytest.mark.slow
def test_a_fresh_install_serves_at_once_compiles_in_the_background_then_loads_from_the_cache(tmp_path):
    # The app's start (warm_up(wait=False)) with an empty Numba cache: the first convolution is computed
    # before any loop is compiled; a background process compiles them; the engine then switches over,
    # and the next start loads them before returning.
    code = (
        "import time, numpy as np, kernels\n"
        "from kernels import dispatch\n"
        "start = time.perf_counter()\n"
        "kernels.warm_up(wait=False)\n"
        "ready = dispatch.compiled_loops_ready()\n"
        "out = kernels.conv2d(np.ones((64, 64), np.float32), np.ones((3, 3), np.float32), padding=1)\n"
        "first = time.perf_counter() - start\n"
        "assert dispatch.wait_for_compiled_loops(900)\n"
        "assert (kernels.conv2d(np.ones((64, 64), np.float32), np.ones((3, 3), np.float32), padding=1) == out).all()\n"
        "print(ready, round(first, 2), float(out[5, 5]))\n"
    )
    environment = dict(__import__("os").environ, NUMBA_CACHE_DIR=str(tmp_path))
    cold = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=1200)
    assert cold.returncode == 0, cold.stderr[-3000:]
    compiled_at_start, first_seconds, value = cold.stdout.split()
    assert compiled_at_start == "False" and float(first_seconds) < 5 and value == "9.0"
    warm = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=600)
    assert warm.returncode == 0, warm.stderr[-3000:]
    assert warm.stdout.split()[0] == "True"
