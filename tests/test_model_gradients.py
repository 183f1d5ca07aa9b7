"""The classifier's backward passes: each layer and the whole network against finite differences,
and against PyTorch's autograd when it is installed."""

import numpy as np
import pytest

from model.layers import Conv2d, Dense, GlobalPool, MaxPool2d, ReLU, softmax, softmax_cross_entropy
from model.network import Architecture, Network

# The engine computes in float32: central differences with a step of 1e-2 on order-1 values keep
# rounding error near 1e-5 relative, far below the 2 % tolerance, while the curvature error of a
# smooth layer is O(step^2). Piecewise-linear layers (ReLU, max) are exact between their kinks;
# the inputs below keep every value well away from the kinks.
STEP = 1e-2
TOLERANCE = 2e-2


def numerical_gradient(function, array, step=STEP):
    """d function() / d array by central differences, perturbing ``array`` in place one entry at a time."""
    gradient = np.zeros(array.shape, dtype=np.float64)
    flat = array.reshape(-1)
    for index in range(flat.size):
        original = flat[index]
        flat[index] = original + step
        plus = function()
        flat[index] = original - step
        minus = function()
        flat[index] = original
        gradient.reshape(-1)[index] = (plus - minus) / (2 * step)
    return gradient


def assert_close(analytic, numeric):
    analytic = np.asarray(analytic, dtype=np.float64)
    scale = max(np.abs(numeric).max(), 1e-3)
    error = np.abs(analytic - numeric).max() / scale
    assert error < TOLERANCE, f"relative gradient error {error:.3g}"


def well_separated(shape, rng, spacing=0.05):
    """Random values whose pairwise gaps are at least ``spacing`` (so a step never reorders them)."""
    values = np.arange(np.prod(shape), dtype=np.float64) * spacing
    rng.shuffle(values)
    return (values - values.mean()).reshape(shape).astype(np.float32)


def layer_loss(layer, x, projection):
    """A scalar loss through one layer: sum(layer(x) * projection), in float64."""
    output, _ = layer.forward(x)
    return float((np.asarray(output, dtype=np.float64) * projection).sum())


@pytest.mark.parametrize("padding_mode,zero_mean", [("zeros", False), ("reflect", True), ("replicate", False)])
def test_conv2d_layer_gradients_match_finite_differences(padding_mode, zero_mean):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 2, 6, 7)).astype(np.float32)
    layer = Conv2d(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), padding_mode=padding_mode, zero_mean=zero_mean)
    projection = rng.normal(size=(2, 3, 6, 7))
    _, cache = layer.forward(x)
    d_x, grads = layer.backward(cache, projection.astype(np.float32))
    assert_close(d_x, numerical_gradient(lambda: layer_loss(layer, x, projection), x))
    assert_close(grads["bias"], numerical_gradient(lambda: layer_loss(layer, x, projection), layer.params["bias"]))
    numeric_weight = numerical_gradient(lambda: layer_loss(layer, x, projection), layer.params["weight"])
    if zero_mean:
        # Only changes that keep each kernel's sum at zero are allowed: compare the projected gradient.
        numeric_weight -= numeric_weight.mean(axis=(1, 2, 3), keepdims=True)
    assert_close(grads["weight"], numeric_weight)


def test_zero_mean_kernels_stay_zero_sum_after_constrain():
    rng = np.random.default_rng(2)
    layer = Conv2d(rng.normal(size=(4, 1, 5, 5)), np.zeros(4), zero_mean=True)
    layer.constrain()
    np.testing.assert_allclose(layer.params["weight"].sum(axis=(1, 2, 3)), 0.0, atol=1e-5)
    layer.params["weight"] += 0.3  # an update that breaks the constraint
    layer.constrain()
    np.testing.assert_allclose(layer.params["weight"].sum(axis=(1, 2, 3)), 0.0, atol=1e-5)


def test_relu_and_max_pool_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    x = well_separated((2, 3, 4, 6), rng)
    projection = rng.normal(size=(2, 3, 2, 3))
    pool = MaxPool2d(2)
    _, cache = pool.forward(x)
    d_x, _ = pool.backward(cache, projection.astype(np.float32))
    assert_close(d_x, numerical_gradient(lambda: layer_loss(pool, x, projection), x))

    relu = ReLU()
    projection = rng.normal(size=x.shape)
    _, cache = relu.forward(x)
    d_x, _ = relu.backward(cache, projection.astype(np.float32))
    assert_close(d_x, numerical_gradient(lambda: layer_loss(relu, x, projection), x))


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_global_pool_gradients_match_finite_differences(mode):
    rng = np.random.default_rng(4)
    x = well_separated((2, 3, 4, 4), rng)
    projection = rng.normal(size=(2, 3))
    layer = GlobalPool(mode)
    output, cache = layer.forward(x)
    reference = x.max(axis=(2, 3)) if mode == "max" else x.mean(axis=(2, 3))
    np.testing.assert_allclose(output, reference, rtol=1e-6, atol=1e-6)
    d_x, _ = layer.backward(cache, projection.astype(np.float32))
    assert_close(d_x, numerical_gradient(lambda: layer_loss(layer, x, projection), x))


def test_dense_gradients_match_finite_differences():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    layer = Dense(rng.normal(size=(4, 2)), rng.normal(size=2))
    projection = rng.normal(size=(3, 2))
    _, cache = layer.forward(x)
    d_x, grads = layer.backward(cache, projection.astype(np.float32))
    assert_close(d_x, numerical_gradient(lambda: layer_loss(layer, x, projection), x))
    assert_close(grads["weight"], numerical_gradient(lambda: layer_loss(layer, x, projection), layer.params["weight"]))
    assert_close(grads["bias"], numerical_gradient(lambda: layer_loss(layer, x, projection), layer.params["bias"]))


def test_softmax_cross_entropy_value_and_gradient():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(5, 2)) * 3
    labels = np.array([0, 1, 1, 0, 1])
    loss, d_logits = softmax_cross_entropy(logits, labels)
    expected = -np.mean(np.log(softmax(logits)[np.arange(5), labels]))
    assert loss == pytest.approx(expected, rel=1e-9)
    numeric = numerical_gradient(lambda: softmax_cross_entropy(logits, labels)[0], logits, step=1e-5)
    np.testing.assert_allclose(d_logits, numeric, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(softmax(logits).sum(axis=1), 1.0)


def tiny_network(global_pool, seed=7):
    architecture = Architecture(input_size=8, channels=(2, 3), kernel_sizes=(3, 3), pool_after=(True, False),
                                global_pool=global_pool)
    return Network(architecture, seed=seed)


def assert_network_gradients_match(network, grads, loss):
    """Every parameter's analytic gradient against finite differences of ``loss()``."""
    for key, param in network.parameters().items():
        numeric = numerical_gradient(loss, param, step=1e-3)
        if key == "conv1.weight":  # zero-sum kernels: only the gradient within their plane counts
            numeric -= numeric.mean(axis=(1, 2, 3), keepdims=True)
        scale = max(np.abs(numeric).max(), 1e-4)
        error = np.abs(grads[key] - numeric).max() / scale
        # A step may cross a ReLU kink or swap a pooling winner on random data; allow a little
        # more than the per-layer tests, which avoid kinks by construction.
        assert error < 5e-2, f"{key}: relative gradient error {error:.3g}"


@pytest.mark.parametrize("global_pool", ["max", "avg"])
def test_whole_network_gradients_match_finite_differences(global_pool):
    rng = np.random.default_rng(8)
    network = tiny_network(global_pool)
    x = rng.random((3, 1, 8, 8)).astype(np.float32)
    labels = np.array([0, 1, 1])

    def loss():
        return softmax_cross_entropy(network.forward(x), labels)[0]

    logits, trace = network.forward(x, keep=True)
    grads = network.backward(trace, softmax_cross_entropy(logits, labels)[1])
    assert_network_gradients_match(network, grads, loss)


def test_whole_network_gradients_match_pytorch_autograd():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(9)
    network = tiny_network("max")
    x = rng.random((4, 1, 8, 8)).astype(np.float32)
    labels = np.array([0, 1, 0, 1])
    logits, trace = network.forward(x, keep=True)
    loss, d_logits = softmax_cross_entropy(logits, labels)
    grads = network.backward(trace, d_logits)

    params = {key: torch.tensor(value.astype(np.float64), requires_grad=True)
              for key, value in network.parameters().items()}
    h = functional.pad(torch.tensor(x, dtype=torch.float64), (1, 1, 1, 1), mode="reflect")
    h = functional.max_pool2d(functional.relu(functional.conv2d(h, params["conv1.weight"], params["conv1.bias"])), 2)
    h = functional.relu(functional.conv2d(h, params["conv2.weight"], params["conv2.bias"], padding=1))
    h = h.amax(dim=(2, 3))
    torch_logits = h @ params["dense.weight"] + params["dense.bias"]
    torch_loss = functional.cross_entropy(torch_logits, torch.tensor(labels))
    torch_loss.backward()
    np.testing.assert_allclose(logits, torch_logits.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert loss == pytest.approx(torch_loss.item(), rel=1e-5)
    for key, param in params.items():
        expected = param.grad.numpy()
        if key == "conv1.weight":
            expected = expected - expected.mean(axis=(1, 2, 3), keepdims=True)
        np.testing.assert_allclose(grads[key], expected, rtol=1e-3, atol=1e-5, err_msg=key)


def test_localisation_loss_gradients_through_the_network_match_finite_differences():
    from model.train import lesion_cells, localisation_loss

    rng = np.random.default_rng(10)
    network = tiny_network("max")
    x = rng.random((3, 1, 8, 8)).astype(np.float32)
    labels = np.array([1, 0, 1])
    masks = np.zeros((3, 8, 8), dtype=bool)
    masks[0, 1:4, 1:3] = True
    masks[2, 5:8, 4:8] = True
    targets = lesion_cells(masks, network.architecture.stride)
    assert targets.shape == (3, 4, 4) and not targets[1].any() and targets[0].any() and targets[2].any()
    weight = 0.7

    def loss():
        logits, trace = network.forward(x, keep=True)
        return softmax_cross_entropy(logits, labels)[0] + weight * localisation_loss(network.score_map(trace), targets)[0]

    logits, trace = network.forward(x, keep=True)
    where_loss, d_score_map = localisation_loss(network.score_map(trace), targets)
    grads = network.backward(trace, softmax_cross_entropy(logits, labels)[1], weight * d_score_map)
    assert_network_gradients_match(network, grads, loss)


def test_localisation_loss_is_the_cross_entropy_of_where_the_lesion_is():
    from model.train import localisation_loss

    score_map = np.array([[[0.0, 1.0], [2.0, 3.0]], [[5.0, 0.0], [0.0, 0.0]]], dtype=np.float32)
    targets = np.array([[[False, False], [True, True]], [[False, False], [False, False]]])
    loss, d_score_map = localisation_loss(score_map, targets)
    exponentials = np.exp([0.0, 1.0, 2.0, 3.0])
    # Two patches in the batch, one with a lesion: its -log(share of softmax on the lesion) / 2.
    assert loss == pytest.approx(-np.log(exponentials[2:].sum() / exponentials.sum()) / 2, rel=1e-6)
    assert not d_score_map[1].any()  # a patch without a lesion gives no gradient
    # Adding a constant to a map changes nothing: the gradient of each map sums to zero.
    assert float(d_score_map[0].sum()) == pytest.approx(0.0, abs=1e-7)
    numeric = numerical_gradient(lambda: localisation_loss(score_map, targets)[0], score_map, step=1e-3)
    np.testing.assert_allclose(d_score_map, numeric, rtol=1e-3, atol=1e-6)
