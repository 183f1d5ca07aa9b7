"""Tests of kernels.reference, the readable definitions: against PyTorch, and the engine's fast paths against it.

Random configurations (seeded) of shape, stride, padding, dilation and padding mode, small enough for
plain Python loops. The engine must agree with the reference within float32 rounding: relative error
(tests/naive.py's relative_error) under 1e-5 for outputs and every gradient.
"""

from __future__ import annotations

import numpy as np
import pytest

try:  # PyTorch is optional (bench/ only, never a requirement): without it its comparisons are skipped
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = F = None

import kernels
from kernels import reference
from tests.naive import relative_error

TOLERANCE = 1e-5
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (pip install torch==2.13.0)")
MODES = ("zeros", "reflect", "replicate")
TORCH_MODES = {"reflect": "reflect", "replicate": "replicate"}


def random_configuration(seed):
    """A small random conv2d: x (N, C, H, W), w (K, C, kh, kw), b (K,) and its options."""
    rng = np.random.default_rng(seed)
    n, c, k = (int(v) for v in rng.integers(1, 4, size=3))
    kh, kw = (int(v) for v in rng.integers(1, 5, size=2))
    stride = tuple(int(v) for v in rng.integers(1, 3, size=2))
    dilation = tuple(int(v) for v in rng.integers(1, 3, size=2))
    mode = MODES[seed % 3]
    if seed % 4 == 0 and stride == (1, 1):
        padding = "same"
    else:
        padding = tuple(int(v) for v in rng.integers(0, 3, size=2))
    h = int(rng.integers(dilation[0] * (kh - 1) + 3, 11))
    w = int(rng.integers(dilation[1] * (kw - 1) + 3, 11))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weights = rng.standard_normal((k, c, kh, kw)).astype(np.float32)
    bias = rng.standard_normal(k).astype(np.float32)
    return x, weights, bias, dict(stride=stride, padding=padding, dilation=dilation, padding_mode=mode)


def torch_conv2d(x, w, b, *, stride, padding, dilation, padding_mode):
    """PyTorch's conv2d on explicitly padded input (it pads "same" with reflect/replicate only this way)."""
    top, bottom, left, right = kernels.resolve_padding(x.shape[-2:], w.shape[-2:], padding, dilation)
    padded = F.pad(x, (left, right, top, bottom), mode=TORCH_MODES.get(padding_mode, "constant"))
    return F.conv2d(padded, w, b, stride=stride, dilation=dilation)


def as_torch(*arrays):
    return [torch.tensor(array, dtype=torch.float64, requires_grad=True) for array in arrays]


# ---------------------------------------------------------------------------------------------------
# The reference against PyTorch (an outside definition)


@pytest.mark.parametrize("seed", range(12))
@needs_torch
def test_reference_conv2d_and_its_gradients_equal_pytorch(seed):
    x, w, b, options = random_configuration(seed)
    out = reference.conv2d(x, w, b, **options)
    tx, tw, tb = as_torch(x, w, b)
    expected = torch_conv2d(tx, tw, tb, **options)
    assert out.dtype == np.float32 and out.shape == tuple(expected.shape)
    assert relative_error(out, expected.detach().numpy()) < TOLERANCE
    d_out = np.random.default_rng(100 + seed).standard_normal(out.shape).astype(np.float32)
    expected.backward(torch.tensor(d_out, dtype=torch.float64))
    d_x, d_w, d_b = reference.conv2d_backward(x, w, d_out, **options)
    for name, got, want in (("d_x", d_x, tx.grad), ("d_w", d_w, tw.grad), ("d_b", d_b, tb.grad)):
        assert got.shape == tuple(want.shape), name
        assert relative_error(got, want.numpy()) < TOLERANCE, name


def test_reference_single_image_is_the_one_channel_batch():
    x, w, _, options = random_configuration(5)
    single = reference.conv2d(x[0, 0], w[0, 0], 0.5, **options)
    batch = reference.conv2d(x[:1, :1], w[:1, :1], np.array([0.5], dtype=np.float32), **options)
    np.testing.assert_array_equal(single, batch[0, 0])
    d_out = np.ones_like(single)
    d_x, d_w, d_b = reference.conv2d_backward(x[0, 0], w[0, 0], d_out, **options)
    assert d_x.shape == x.shape[2:] and d_w.shape == w.shape[2:] and d_b == single.size


def test_reference_output_sizes_follow_the_equation():
    x = np.zeros((1, 1, 13, 11), dtype=np.float32)
    w = np.zeros((2, 1, 4, 3), dtype=np.float32)
    out = reference.conv2d(x, w, stride=(2, 3), padding=(1, 2), dilation=(2, 1))
    # floor((13 + 2 - 2 * (4 - 1) - 1) / 2) + 1 = 5 and floor((11 + 4 - 1 * (3 - 1) - 1) / 3) + 1 = 5
    assert out.shape == (1, 2, 5, 5)
    assert out.shape[2:] == (kernels.output_size(13, 4, stride=2, padding=1, dilation=2),
                             kernels.output_size(11, 3, stride=3, padding=2, dilation=1))


@pytest.mark.parametrize("mode", MODES)
def test_pad2d_shows_the_pixels_numpy_pads_with(mode):
    image = np.arange(20, dtype=np.float32).reshape(4, 5)
    numpy_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge"}[mode]
    np.testing.assert_array_equal(reference.pad2d(image, (2, 1, 3, 2), mode),
                                  np.pad(image, ((2, 1), (3, 2)), mode=numpy_mode))
    assert reference.pad2d(image, (1, 1, 1, 1), fill=-np.inf)[0, 0] == -np.inf


@pytest.mark.parametrize("mode", MODES)
@needs_torch
def test_reference_conv3d_equals_pytorch(mode):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 5, 6, 7)).astype(np.float32)
    w = rng.standard_normal((3, 2, 2, 3, 2)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    out = reference.conv3d(x, w, b, stride=(1, 2, 1), padding=(1, 1, 0), dilation=(2, 1, 1), padding_mode=mode)
    padded = F.pad(torch.tensor(x, dtype=torch.float64), (0, 0, 1, 1, 1, 1), mode=TORCH_MODES.get(mode, "constant"))
    expected = F.conv3d(padded, torch.tensor(w, dtype=torch.float64), torch.tensor(b, dtype=torch.float64),
                        stride=(1, 2, 1), dilation=(2, 1, 1)).numpy()
    assert out.shape == expected.shape
    assert relative_error(out, expected) < TOLERANCE
    single = reference.conv3d(x[0, 0], w[0, 0], 0.25, padding="same", padding_mode=mode)
    assert single.shape == x.shape[2:]


@pytest.mark.parametrize("size, stride, padding", [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1)), (4, 1, 2)])
@needs_torch
def test_reference_pooling_and_its_gradients_equal_pytorch(size, stride, padding):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 9, 10)).astype(np.float32)
    x[0, 0, 2, 2] = x[0, 0, 2, 3] = 5.0  # a tie: PyTorch and the reference both keep the first
    tx, = as_torch(x)
    expected, expected_indices = F.max_pool2d(tx, size, stride=stride, padding=padding, return_indices=True)
    values, indices = reference.max_pool2d(x, size, stride=stride, padding=padding, return_indices=True)
    np.testing.assert_array_equal(values, expected.detach().numpy().astype(np.float32))
    np.testing.assert_array_equal(indices, expected_indices.numpy())
    d_out = rng.standard_normal(values.shape).astype(np.float32)
    expected.backward(torch.tensor(d_out, dtype=torch.float64))
    assert relative_error(reference.max_pool2d_backward(d_out, indices, x.shape), tx.grad.numpy()) < TOLERANCE

    tx, = as_torch(x)
    expected = F.avg_pool2d(tx, size, stride=stride, padding=padding, count_include_pad=True)
    assert relative_error(reference.avg_pool2d(x, size, stride=stride, padding=padding),
                          expected.detach().numpy()) < TOLERANCE
    expected.backward(torch.tensor(d_out, dtype=torch.float64))
    assert relative_error(reference.avg_pool2d_backward(d_out, x.shape, size, stride=stride, padding=padding),
                          tx.grad.numpy()) < TOLERANCE


ACTIVATIONS = {  # PyTorch's functions named lazily: it may not be installed
    "relu": (reference.relu, reference.relu_backward, lambda t: F.relu(t)),
    "leaky_relu": (reference.leaky_relu, reference.leaky_relu_backward, lambda t: F.leaky_relu(t, 0.01)),
    "sigmoid": (reference.sigmoid, reference.sigmoid_backward, lambda t: torch.sigmoid(t)),
    "tanh": (reference.tanh, reference.tanh_backward, lambda t: torch.tanh(t)),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@needs_torch
def test_reference_activations_and_derivatives_equal_pytorch(name):
    forward, backward, torch_forward = ACTIVATIONS[name]
    x = np.random.default_rng(2).standard_normal(500).astype(np.float32) * 8
    x[:3] = (-200.0, 0.0, 200.0)  # far out: exp must not overflow
    d_out = np.random.default_rng(3).standard_normal(x.shape).astype(np.float32)
    tx, = as_torch(x)
    expected = torch_forward(tx)
    expected.backward(torch.tensor(d_out, dtype=torch.float64))
    np.testing.assert_allclose(forward(x), expected.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(backward(x, d_out), tx.grad.numpy(), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------------
# The engine's fast paths against the reference


@pytest.mark.parametrize("seed", range(12, 30))
def test_engine_conv2d_and_backward_agree_with_the_reference(seed):
    x, w, b, options = random_configuration(seed)
    assert relative_error(kernels.conv2d(x, w, b, **options), reference.conv2d(x, w, b, **options)) < TOLERANCE
    d_out = np.random.default_rng(seed).standard_normal(reference.conv2d(x, w, **options).shape).astype(np.float32)
    fast = kernels.conv2d_backward(x, w, d_out, **options)
    defined = reference.conv2d_backward(x, w, d_out, **options)
    for name, got, want in zip(("d_x", "d_w", "d_b"), fast, defined):
        assert relative_error(got, want) < TOLERANCE, name


@pytest.mark.parametrize("seed", range(4))
def test_engine_single_image_conv2d_agrees_with_the_reference(seed):
    x, w, _, options = random_configuration(seed)
    image, kernel = x[0, 0] * 3000 - 1000, w[0, 0]  # HU-like magnitudes
    assert relative_error(kernels.conv2d(image, kernel, 0.3, **options),
                          reference.conv2d(image, kernel, 0.3, **options)) < TOLERANCE


@pytest.mark.parametrize("mode", MODES)
def test_engine_conv3d_agrees_with_the_reference(mode):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 2, 5, 6, 6)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 2, 3)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    options = dict(stride=(2, 1, 1), padding=1, dilation=(1, 2, 1), padding_mode=mode)
    assert relative_error(kernels.conv3d(x, w, b, **options), reference.conv3d(x, w, b, **options)) < TOLERANCE


@pytest.mark.parametrize("size, stride, padding", [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1))])
def test_engine_pooling_agrees_with_the_reference(size, stride, padding):
    x = np.random.default_rng(4).standard_normal((2, 2, 9, 11)).astype(np.float32)
    options = dict(stride=stride, padding=padding)
    values, indices = kernels.max_pool2d(x, size, return_indices=True, **options)
    defined_values, defined_indices = reference.max_pool2d(x, size, return_indices=True, **options)
    np.testing.assert_array_equal(values, defined_values)  # a maximum is one of the inputs: exact
    np.testing.assert_array_equal(indices, defined_indices)
    d_out = np.random.default_rng(5).standard_normal(values.shape).astype(np.float32)
    assert relative_error(kernels.max_pool2d_backward(d_out, indices, x.shape),
                          reference.max_pool2d_backward(d_out, defined_indices, x.shape)) < TOLERANCE
    assert relative_error(kernels.avg_pool2d(x, size, **options), reference.avg_pool2d(x, size, **options)) < TOLERANCE
    assert relative_error(kernels.avg_pool2d_backward(d_out, x.shape, size, **options),
                          reference.avg_pool2d_backward(d_out, x.shape, size, **options)) < TOLERANCE


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_engine_activations_agree_with_the_reference(name):
    x = np.random.default_rng(6).standard_normal((3, 50)).astype(np.float32) * 6
    d_out = np.random.default_rng(7).standard_normal(x.shape).astype(np.float32)
    assert relative_error(getattr(kernels, name)(x), getattr(reference, name)(x)) < TOLERANCE
    assert relative_error(getattr(kernels, f"{name}_backward")(x, d_out),
                          getattr(reference, f"{name}_backward")(x, d_out)) < TOLERANCE
