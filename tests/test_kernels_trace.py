"""Tests of the step traces (kernels/trace.py) and the filter bank (kernels/filters.py).

A trace replays kernels.reference, so its numbers equal the reference's exactly; the engine's fast
paths agree with them to float32 rounding: relative error under 1e-5, and on lesson-like images (grey
values in [0, 1]) the same to the 4 decimals the lesson's equation shows.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import kernels
from kernels import filters, reference
from tests.naive import relative_error

RNG = np.random.default_rng(7)


def image(h=11, w=13):
    return RNG.standard_normal((h, w)).astype(np.float32)


def assert_engine_agrees(values, engine_values, *, lesson_scale=True):
    """The engine's numbers against the trace's: relative error under 1e-5; with lesson_scale, equal to 4 decimals."""
    assert relative_error(engine_values, values) < 1e-5
    if lesson_scale:
        np.testing.assert_array_almost_equal(engine_values, values, decimal=4)


TRACE_OPTIONS = list(
    itertools.product(["zeros", "reflect", "replicate"], [1, 2, (2, 1)], [1, 2], [0, 1, "same", (2, 0)], [False, True])
)


@pytest.mark.parametrize("padding_mode, stride, dilation, padding, flip", [o for o in TRACE_OPTIONS if not (o[3] == "same" and o[1] != 1)])
def test_conv2d_trace_small_every_step_equals_the_reference_and_conv2d(padding_mode, stride, dilation, padding, flip):
    x, w = image(), RNG.standard_normal((3, 2)).astype(np.float32)
    options = dict(stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode)
    trace = kernels.conv2d_trace(x, w, 0.37, flip=flip, **options)
    defined = reference.conv2d(x, w[::-1, ::-1] if flip else w, 0.37, **options)
    np.testing.assert_array_equal(trace.output, defined)  # exact: the trace replays the reference
    assert_engine_agrees(trace.output, kernels.conv2d(x, w, 0.37, flip=flip, **options))
    assert trace.num_steps == defined.size
    top, bottom, left, right = trace.pad
    assert trace.padded.shape == (x.shape[0] + top + bottom, x.shape[1] + left + right)
    np.testing.assert_array_equal(trace.padded[top:top + x.shape[0], left:left + x.shape[1]], x)
    np.testing.assert_array_equal(trace.kernel, w[::-1, ::-1] if flip else w)
    for i in range(trace.num_steps):
        step = trace.step(i)
        assert (step.out_row, step.out_col) == divmod(i, defined.shape[1])
        np.testing.assert_array_equal(step.patch, trace.padded[np.ix_(step.rows, step.cols)])
        np.testing.assert_array_equal(step.products, step.patch * trace.kernel)
        assert step.value == defined[step.out_row, step.out_col]  # exact, not approximate
        # The sum is the products added one after another in float32, as shown.
        running = np.float32(0.0)
        for product in step.products.reshape(-1):
            running = np.float32(running + product)
        assert step.total == running
        assert np.float32(step.total + step.bias) == np.float32(step.value)


def _assert_conv_steps_equal_each_step(trace):
    """all_steps() row by row against step(i), bit for bit (float32 compared as bits, not approximately)."""
    every = trace.all_steps()
    assert every.patches.dtype == every.products.dtype == every.totals.dtype == every.values.dtype == np.float32
    assert every.values.shape == (trace.num_steps,)
    for i in range(trace.num_steps):
        step = trace.step(i)
        assert (every.out_rows[i], every.out_cols[i]) == (step.out_row, step.out_col)
        np.testing.assert_array_equal(every.rows[i], step.rows)
        np.testing.assert_array_equal(every.cols[i], step.cols)
        np.testing.assert_array_equal(every.patches[i], step.patch)
        assert every.products[i].tobytes() == step.products.astype(np.float32).tobytes()
        assert every.totals[i].tobytes() == np.float32(step.total).tobytes()
        assert every.values[i].tobytes() == np.float32(step.value).tobytes()
    return every


@pytest.mark.parametrize("padding_mode, stride, dilation, padding, flip",
                         [o for o in TRACE_OPTIONS if not (o[3] == "same" and o[1] != 1)][::3])
def test_conv2d_all_steps_equal_every_step_the_reference_and_conv2d(padding_mode, stride, dilation, padding, flip):
    x, w = image(), RNG.standard_normal((3, 2)).astype(np.float32)
    options = dict(stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode)
    trace = kernels.conv2d_trace(x, w, -0.61, flip=flip, **options)
    every = _assert_conv_steps_equal_each_step(trace)
    np.testing.assert_array_equal(every.values, reference.conv2d(x, w[::-1, ::-1] if flip else w, -0.61,
                                                                 **options).ravel())
    assert_engine_agrees(every.values, kernels.conv2d(x, w, -0.61, flip=flip, **options).ravel())


@pytest.mark.parametrize("size", [1, 4, 9])
def test_conv2d_all_steps_on_a_lesson_sized_region(size):
    # The lesson's largest region and kernel: windowed grey values in [0, 1], and HU-like magnitudes,
    # where float32 rounding matters most (there the engine agrees relatively, not to 4 decimals).
    w = RNG.standard_normal((size, size)).astype(np.float32)
    for x, lesson_scale in ((RNG.random((32, 32)).astype(np.float32), True),
                            ((RNG.random((32, 32)) * 3000 - 1000).astype(np.float32), False)):
        trace = kernels.conv2d_trace(x, w, 0.25, padding="same", padding_mode="zeros")
        every = _assert_conv_steps_equal_each_step(trace)
        np.testing.assert_array_equal(every.values, reference.conv2d(x, w, 0.25, padding="same").ravel())
        assert_engine_agrees(every.values, kernels.conv2d(x, w, 0.25, padding="same").ravel(),
                             lesson_scale=lesson_scale)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("size, stride, padding", [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1)), (4, 1, 2)])
def test_pool2d_all_steps_equal_every_step_and_pooling(mode, size, stride, padding):
    x = image(9, 10)
    x[2, 2] = x[2, 3] = 5.0  # a tie: the first maximum wins, in both
    trace = kernels.pool2d_trace(x, size, stride=stride, padding=padding, mode=mode)
    every = trace.all_steps()
    defined = (reference.max_pool2d if mode == "max" else reference.avg_pool2d)(x, size, stride=stride,
                                                                               padding=padding)
    np.testing.assert_array_equal(every.values, defined.ravel())
    pooled = (kernels.max_pool2d if mode == "max" else kernels.avg_pool2d)(x, size, stride=stride, padding=padding)
    assert_engine_agrees(every.values, pooled.ravel())
    assert (every.argmax is None) == (mode == "avg") and (every.totals is None) == (mode == "max")
    for i in range(trace.num_steps):
        step = trace.step(i)
        assert (every.out_rows[i], every.out_cols[i]) == (step.out_row, step.out_col)
        np.testing.assert_array_equal(every.rows[i], step.rows)
        np.testing.assert_array_equal(every.cols[i], step.cols)
        np.testing.assert_array_equal(every.patches[i], step.patch)
        assert every.values[i].tobytes() == np.float32(step.value).tobytes()
        if mode == "max":
            assert tuple(every.argmax[i]) == step.argmax and step.total is None
        else:
            assert every.totals[i].tobytes() == np.float32(step.total).tobytes()
            assert np.float32(step.total) / np.float32(step.patch.size) == np.float32(step.value)


@pytest.mark.parametrize("name", sorted(kernels.KERNELS))
def test_trace_matches_the_reference_and_conv2d_for_every_bank_kernel_on_a_real_size_image(name):
    x = (RNG.random((40, 48)) * 3000 - 1000).astype(np.float32)  # HU-like magnitudes
    weights = kernels.KERNELS[name].weights
    trace = kernels.conv2d_trace(x, weights, padding="same", padding_mode="reflect")
    values = np.array([trace.step(i).value for i in range(trace.num_steps)], dtype=np.float32)
    np.testing.assert_array_equal(values, reference.conv2d(x, weights, padding="same", padding_mode="reflect").ravel())
    engine_values = kernels.conv2d(x, weights, padding="same", padding_mode="reflect").ravel()
    assert_engine_agrees(values, engine_values, lesson_scale=False)
    assert_engine_agrees(values / 3000, engine_values / 3000)  # on the lesson's scale, to 4 decimals


def test_conv2d_trace_padding_rows_and_cols_and_negative_index():
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    trace = kernels.conv2d_trace(x, np.ones((3, 3)), stride=2, padding=1, padding_mode="replicate")
    assert trace.pad == (1, 1, 1, 1)
    last = trace.step(-1)
    assert last.index == trace.num_steps - 1 == 5
    np.testing.assert_array_equal(last.rows, [2, 3, 4])
    np.testing.assert_array_equal(last.cols, [4, 5, 6])
    assert trace.padded[0, 0] == x[0, 0]  # replicate
    with pytest.raises(IndexError, match=r"step 6 is out of range: this trace has 6 steps \(0 to 5\)"):
        trace.step(6)
    with pytest.raises(ValueError, match=r"conv2d_trace works on one image \(H, W\) and one kernel \(kh, kw\)"):
        kernels.conv2d_trace(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)))


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("size, stride, padding", [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1)), (3, 1, 0)])
def test_pool2d_trace_small_every_step_equals_pooling(mode, size, stride, padding):
    x = image(9, 10)
    x[2, 2] = x[2, 3] = 5.0  # a tie
    trace = kernels.pool2d_trace(x, size, stride=stride, padding=padding, mode=mode)
    pooled = (kernels.max_pool2d if mode == "max" else kernels.avg_pool2d)(x, size, stride=stride, padding=padding)
    assert_engine_agrees(trace.output, pooled)
    if mode == "max":
        _, indices = kernels.max_pool2d(x, size, stride=stride, padding=padding, return_indices=True)
    top, _, left, _ = trace.pad
    for i in range(trace.num_steps):
        step = trace.step(i)
        assert np.float32(step.value) == trace.output[step.out_row, step.out_col]
        if mode == "max":
            row, col = step.argmax
            assert trace.padded[row, col] == step.value
            # The trace's argmax (padded coordinates) is the engine's index (unpadded plane).
            assert (row - top) * x.shape[1] + (col - left) == indices[step.out_row, step.out_col]
        else:
            assert step.argmax is None


def test_pool2d_trace_pads_max_with_minus_infinity_and_avg_with_zero():
    x = image(4, 4)
    assert np.isneginf(kernels.pool2d_trace(x, 3, stride=1, padding=1).padded[0, 0])
    assert kernels.pool2d_trace(x, 3, stride=1, padding=1, mode="avg").padded[0, 0] == 0
    with pytest.raises(ValueError, match=r"mode must be 'max' or 'avg'; got 'median'"):
        kernels.pool2d_trace(x, mode="median")


# ---------------------------------------------------------------------------------------------
# Filter bank
# ---------------------------------------------------------------------------------------------

EXPECTED_NAMES = {
    "identity", "box blur", "gaussian blur", "sharpen", "sobel x", "sobel y", "prewitt x", "prewitt y",
    "laplacian", "emboss", "outline", "laplacian of gaussian",
}


def test_bank_has_the_documented_kernels_with_descriptions():
    assert set(kernels.KERNELS) == EXPECTED_NAMES
    for name, kernel in kernels.KERNELS.items():
        assert kernel.name == name
        assert kernel.weights.dtype == np.float32 and kernel.weights.ndim == 2
        assert kernel.description and "\n" not in kernel.description
        assert not kernel.weights.flags.writeable
        np.testing.assert_array_equal(kernels.make_kernel(name), kernel.weights)
    resizable = {name for name, kernel in kernels.KERNELS.items() if kernel.resizable}
    assert resizable == {"identity", "box blur", "gaussian blur", "laplacian of gaussian"}


@pytest.mark.parametrize("size", range(1, kernels.MAX_KERNEL_SIZE + 1))
def test_resizable_kernels_at_every_size(size):
    x = image(20, 21)
    identity = kernels.make_kernel("identity", size)
    np.testing.assert_array_equal(kernels.conv2d(x, identity, padding="same"), x)  # even sizes too
    for name in ("box blur", "gaussian blur"):
        weights = kernels.make_kernel(name, size)
        assert weights.shape == (size, size)
        assert weights.sum() == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(kernels.conv2d(np.full((12, 12), 3.0), weights), 3.0, rtol=1e-6)  # flat stays flat
        np.testing.assert_array_equal(weights, weights[::-1, ::-1])
    log = kernels.make_kernel("laplacian of gaussian", size)
    assert log.shape == (size, size)
    assert log.sum() == pytest.approx(0.0, abs=1e-6)


def test_kernel_values_and_orientation():
    np.testing.assert_array_equal(kernels.make_kernel("gaussian blur", 5)[2] * 256, [6, 24, 36, 24, 6])
    np.testing.assert_array_equal(kernels.make_kernel("sobel x"), [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_array_equal(kernels.make_kernel("sobel y"), kernels.make_kernel("sobel x").T)
    np.testing.assert_array_equal(kernels.make_kernel("laplacian of gaussian", 3), -kernels.make_kernel("laplacian"))
    ramp_right = np.tile(np.arange(8, dtype=np.float32), (8, 1))
    assert np.all(kernels.conv2d(ramp_right, kernels.make_kernel("sobel x")) > 0)
    assert np.all(kernels.conv2d(ramp_right, kernels.make_kernel("sobel y")) == 0)
    assert np.all(kernels.conv2d(ramp_right.T, kernels.make_kernel("prewitt y")) > 0)
    for name in ("sharpen", "emboss"):
        assert kernels.make_kernel(name).sum() == 1
    for name in ("laplacian", "outline", "sobel x", "prewitt x"):
        assert kernels.make_kernel(name).sum() == 0


def test_laplacian_of_gaussian_peaks_on_a_bright_spot_of_its_size():
    x = np.zeros((31, 31), dtype=np.float32)
    x[14:17, 14:17] = 1.0  # a 3x3 bright blob centred at (15, 15)
    response = kernels.conv2d(x, kernels.make_kernel("laplacian of gaussian", 7), padding="same")
    assert np.unravel_index(np.argmax(response), response.shape) == (15, 15)
    assert response.max() > 0


def test_make_kernel_errors():
    with pytest.raises(ValueError, match=r"'sobel x' is a fixed 3x3 kernel; its size must be 3 \(or None\), got 5"):
        kernels.make_kernel("sobel x", 5)
    with pytest.raises(ValueError, match=r"size of 'box blur' must be an int from 1 to 9; got 10"):
        kernels.make_kernel("box blur", 10)
    with pytest.raises(ValueError, match=r"size of 'box blur' must be an int from 1 to 9; got 0"):
        kernels.make_kernel("box blur", 0)
    with pytest.raises(ValueError, match=r"unknown kernel 'sobol'; choose one of: box blur, emboss"):
        kernels.make_kernel("sobol")
    assert filters.make_kernel("sharpen", 3).shape == (3, 3)
