"""Tests of the 3-D step trace (kernels.conv3d_trace) and the 3-D filter bank (kernels/filters3d.py).

The trace replays kernels.reference (pad3d, conv3d_voxel), so its output equals reference.conv3d
exactly; kernels.conv3d's fast path agrees with every step's value to float32 rounding.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import kernels
from kernels import reference
from tests.naive import relative_error

RNG = np.random.default_rng(19)

OPTIONS = [option for option in itertools.product(["zeros", "reflect", "replicate"], [1, 2, (1, 2, 1)],
                                                  [1, (2, 1, 1)], [0, 1, "same", (1, 0, 2)], [False, True])
           if not (option[3] == "same" and option[1] != 1)]


@pytest.mark.parametrize("padding_mode, stride, dilation, padding, flip", OPTIONS)
def test_every_step_of_the_3d_trace_equals_the_reference_and_conv3d(padding_mode, stride, dilation, padding, flip):
    volume = RNG.random((6, 7, 8)).astype(np.float32)
    kernel = RNG.standard_normal((3, 2, 3)).astype(np.float32)
    options = dict(stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode)
    trace = kernels.conv3d_trace(volume, kernel, 0.25, flip=flip, **options)
    applied = kernel[::-1, ::-1, ::-1] if flip else kernel
    np.testing.assert_array_equal(trace.kernel, applied)
    np.testing.assert_array_equal(trace.output, reference.conv3d(volume, applied, 0.25, **options))
    fast = kernels.conv3d(volume, kernel, 0.25, flip=flip, **options)
    assert relative_error(fast, trace.output) < 1e-5
    np.testing.assert_array_almost_equal(fast, trace.output, decimal=4)

    steps = trace.all_steps()
    assert trace.num_steps == trace.output.size == len(steps.values)
    np.testing.assert_array_equal(steps.values, trace.output.ravel())
    np.testing.assert_array_equal(steps.values, steps.totals + np.float32(0.25))
    # The slices' sums, added in order, are the total: the reference's order of additions.
    running = np.zeros(trace.num_steps, dtype=np.float32)
    for a in range(kernel.shape[0]):
        running = running + steps.slice_sums[:, a]
    np.testing.assert_array_equal(running, steps.totals)
    # Every product is a voxel of the padded volume under the kernel times its weight.
    i = trace.num_steps // 2
    window = trace.padded[np.ix_(steps.slices[i], steps.rows[i], steps.cols[i])]
    np.testing.assert_array_equal(steps.patches[i], window)
    np.testing.assert_array_equal(steps.products[i], window * applied)
    np.testing.assert_allclose(steps.products[i].sum(axis=(1, 2)), steps.slice_sums[i], rtol=1e-5, atol=1e-6)
    out = np.unravel_index(i, trace.output.shape)
    assert (steps.out_slices[i], steps.out_rows[i], steps.out_cols[i]) == out


def test_the_padded_volume_holds_the_volume_inside_its_border():
    volume = RNG.random((4, 5, 6)).astype(np.float32)
    trace = kernels.conv3d_trace(volume, np.ones((3, 3, 3)), padding=1, padding_mode="replicate")
    assert trace.pad == (1, 1, 1, 1, 1, 1)
    np.testing.assert_array_equal(trace.padded[1:-1, 1:-1, 1:-1], volume)
    np.testing.assert_array_equal(trace.padded[0, 1:-1, 1:-1], volume[0])  # replicated slice in front
    zeros = kernels.conv3d_trace(volume, np.ones((3, 3, 3)), padding=1)
    assert not zeros.padded[0].any() and not zeros.padded[:, 0].any()


def test_conv3d_trace_refuses_a_2d_image_with_a_message():
    with pytest.raises(ValueError, match=r"one volume \(D, H, W\) and one kernel"):
        kernels.conv3d_trace(np.zeros((5, 5)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="kernel"):
        kernels.conv3d_trace(np.zeros((2, 5, 5)), np.ones((3, 3, 3)))  # larger than the volume, no padding


# ------------------------------------------------------------------------------------- the 3-D bank


def test_every_3d_kernel_has_a_description_and_is_read_only():
    for name, kernel in kernels.KERNELS_3D.items():
        assert kernel.weights.ndim == 3 and kernel.weights.dtype == np.float32
        assert kernel.description.endswith(".")
        assert not kernel.weights.flags.writeable, name


def test_3d_sobel_kernels_answer_to_a_rise_along_their_own_axis_only():
    ramp = np.arange(7, dtype=np.float32)
    along = {"sobel z": ramp[:, None, None] * np.ones((7, 7, 7)), "sobel y": ramp[None, :, None] * np.ones((7, 7, 7)),
             "sobel x": ramp[None, None, :] * np.ones((7, 7, 7))}
    for name in along:
        for axis_name, volume in along.items():
            response = kernels.conv3d(volume, kernels.KERNELS_3D[name].weights)
            if axis_name == name:
                assert np.all(response > 0), name
            else:
                np.testing.assert_allclose(response, 0.0, atol=1e-5)


@pytest.mark.parametrize("depth, size", [(1, 3), (3, 3), (3, 5), (5, 5), (7, 7), (1, 7)])
def test_3d_laplacian_of_gaussian_sums_to_zero_and_answers_to_a_bright_blob(depth, size):
    kernel = kernels.make_kernel3d("laplacian of gaussian", depth, size)
    assert kernel.shape == (depth, size, size)
    assert abs(float(kernel.sum())) < 1e-6
    assert kernel[depth // 2, size // 2, size // 2] == kernel.max() > 0


def test_one_slice_deep_laplacian_of_gaussian_is_the_2d_banks():
    for size in (3, 5, 7):
        np.testing.assert_array_equal(kernels.make_kernel3d("laplacian of gaussian", 1, size)[0],
                                      kernels.make_kernel("laplacian of gaussian", size))


def test_blurs_keep_a_constant_volume_and_identity_copies():
    volume = RNG.random((6, 6, 6)).astype(np.float32)
    for name in ("box blur", "gaussian blur"):
        kernel = kernels.make_kernel3d(name, 3, 5)
        assert kernel.shape == (3, 5, 5)
        assert abs(float(kernel.sum()) - 1.0) < 1e-6
    identity = kernels.make_kernel3d("identity", 3, 3)
    np.testing.assert_array_equal(kernels.conv3d(volume, identity, padding="same"), volume)


def test_frame_difference_is_the_next_frame_minus_this_one():
    clip = RNG.random((4, 3, 3)).astype(np.float32)
    difference = kernels.conv3d(clip, kernels.KERNELS_3D["frame difference"].weights)
    np.testing.assert_allclose(difference, clip[1:] - clip[:-1], atol=1e-6)


def test_make_kernel3d_says_what_was_wrong():
    with pytest.raises(ValueError, match=r"depth of 'box blur' must be one of \(1, 3, 5, 7\); got 4"):
        kernels.make_kernel3d("box blur", 4, 3)
    with pytest.raises(ValueError, match="fixed 3 x 3 x 3"):
        kernels.make_kernel3d("sobel x", 3, 5)
    with pytest.raises(ValueError, match="unknown 3-D kernel 'blob'"):
        kernels.make_kernel3d("blob")
