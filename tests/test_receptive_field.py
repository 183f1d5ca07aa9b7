"""Receptive fields: the arithmetic against known networks, and against the experiment of perturbing pixels."""

import numpy as np
import pytest

from kernels import KERNELS, avg_pool2d, conv2d, max_pool2d, relu
from lessons.receptive_field import (
    Stage,
    channel_sum,
    conv_cell_for_output,
    conv_geometry,
    input_dependencies,
    input_region,
    layer_shapes,
    pool_geometry,
    receptive_field,
    receptive_fields,
    run_stack,
    stack_geometries,
    stage_weights,
)


def test_three_3x3_convolutions_see_7x7():
    layers = [conv_geometry(3, padding=1)] * 3
    assert [field.size for field in receptive_fields(layers)] == [(3, 3), (5, 5), (7, 7)]
    assert receptive_field(layers).jump == (1, 1)
    assert receptive_field(layers).start == (-3, -3)


def test_pooling_doubles_the_growth_of_later_layers():
    layers = [conv_geometry(3), pool_geometry(2), conv_geometry(3), pool_geometry(2)]
    fields = receptive_fields(layers)
    assert [field.size[0] for field in fields] == [3, 4, 8, 10]
    assert [field.jump[0] for field in fields] == [1, 2, 2, 4]


def test_vgg16_receptive_field_is_212_pixels():
    # VGG-16: 2+2+3+3+3 convolutions 3x3 (padding 1), a 2x2 max pool after each block. Its pool5
    # field, 212 pixels with a jump of 32, is the figure quoted throughout the literature.
    layers = []
    for convolutions in (2, 2, 3, 3, 3):
        layers += [conv_geometry(3, padding=1)] * convolutions + [pool_geometry(2)]
    field = receptive_field(layers)
    assert field.size == (212, 212)
    assert field.jump == (32, 32)
    assert layer_shapes(layers, (224, 224))[-1] == (7, 7)


def test_dilation_and_non_square_kernels():
    field = receptive_field([conv_geometry((3, 5), dilation=(2, 1), padding="same")])
    assert field.size == (5, 5)
    assert field.start == (-2, -2)
    assert receptive_field([]).size == (1, 1)


def test_same_padding_puts_the_extra_at_the_bottom_right():
    assert conv_geometry(4, padding="same").padding == (1, 2, 1, 2)
    assert conv_geometry(3, dilation=2, padding="same").padding == (2, 2, 2, 2)


def test_input_region_is_the_field_away_from_borders_and_clipped_at_them():
    layers = [conv_geometry(3, padding=1), pool_geometry(2), conv_geometry(3, padding=1), pool_geometry(2)]
    field = receptive_field(layers)
    assert input_region(layers, (64, 64), 5, 6) == field.region(5, 6)
    assert input_region(layers, (64, 64), 0, 0) == (0, field.region(0, 0)[1], 0, field.region(0, 0)[3])


def test_rows_dropped_by_a_stride_are_not_dependencies():
    # 5 rows, 2x2 pooling keeps rows 0..3; the next convolution's bottom padding is not row 4.
    layers = [pool_geometry(2), conv_geometry(3, padding=1)]
    rows, _ = input_dependencies(layers, (5, 5), 1, 1)
    assert rows.tolist() == [0, 1, 2, 3]


def test_bad_arguments_are_refused_with_the_value():
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        conv_geometry(0)
    with pytest.raises(ValueError, match="outside the 3 x 3 output map"):
        input_region([conv_geometry(3)], (5, 5), 3, 0)
    with pytest.raises(ValueError, match="does not fit"):
        layer_shapes([conv_geometry(7)], (5, 5))
    with pytest.raises(ValueError, match="'valid' or 'same'; got 'full'"):
        conv_geometry(3, padding="full")


# ---------------------------------------------------------------------------------------------------
# The experiment: put a 1 on one pixel of an all-zero image and see which output cells change.
# Kernels with only positive weights and zero bias make every dependency show (no cancellation, and
# max pooling and ReLU pass any increase on), so "changed" means exactly "depends on".


def _random_layer(rng):
    if rng.random() < 0.6:
        kernel = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        effective = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
        padding = (int(rng.integers(0, effective[0] // 2 + 1)), int(rng.integers(0, effective[1] // 2 + 1)))
        return conv_geometry(kernel, stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                             padding=padding, dilation=dilation), rng.uniform(0.5, 1.5, kernel)
    size = int(rng.integers(1, 4))
    return pool_geometry(size, stride=int(rng.integers(1, size + 1)),
                         padding=int(rng.integers(0, size // 2 + 1))), ("max" if rng.random() < 0.5 else "avg")


def _run_layers(batch, layers):
    """Apply the layers with the engine to a batch (N, 1, H, W)."""
    out = batch
    for geometry, extra in layers:
        top, _, left, _ = geometry.padding
        if geometry.kind == "conv":
            out = relu(conv2d(out, extra[None, None], stride=geometry.stride, padding=(top, left),
                              dilation=geometry.dilation))
        elif extra == "max":
            out = max_pool2d(out, geometry.kernel, stride=geometry.stride, padding=(top, left))
        else:
            out = avg_pool2d(out, geometry.kernel, stride=geometry.stride, padding=(top, left))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_computed_field_equals_the_perturbation_experiment_for_random_stacks(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(14, 30)), int(rng.integers(14, 30)))
    layers = []
    while len(layers) < 2 + seed % 4:
        candidate = _random_layer(rng)
        try:
            layer_shapes([g for g, _ in layers + [candidate]], shape)
        except ValueError:
            continue
        layers.append(candidate)
    geometries = [g for g, _ in layers]

    pixel_count = shape[0] * shape[1]
    one_hot = np.eye(pixel_count, dtype=np.float32).reshape(pixel_count, 1, *shape)
    changed = _run_layers(one_hot, layers)[:, 0] != 0  # (pixels, out_rows, out_cols)
    out_rows, out_cols = changed.shape[1:]
    assert (out_rows, out_cols) == layer_shapes(geometries, shape)[-1]

    field = receptive_field(geometries)
    for row in range(out_rows):
        for col in range(out_cols):
            measured = changed[:, row, col].reshape(shape)
            rows, cols = input_dependencies(geometries, shape, row, col)
            predicted = np.zeros(shape, dtype=bool)
            predicted[np.ix_(rows, cols)] = True
            np.testing.assert_array_equal(measured, predicted, err_msg=f"cell ({row}, {col}), layers {geometries}")
            # The textbook field contains the clipped region, and equals it where no border interferes.
            row_start, row_stop, col_start, col_stop = field.region(row, col)
            region = input_region(geometries, shape, row, col)
            if region[0] == region[1]:
                assert not measured.any()  # a cell that reads only padding depends on no pixel
                continue
            assert row_start <= region[0] and region[1] <= row_stop
            assert col_start <= region[2] and region[3] <= col_stop
            if row_start >= 0 and col_start >= 0 and row_stop <= shape[0] and col_stop <= shape[1]:
                assert region == (row_start, row_stop, col_start, col_stop)


def _positive_stage(rng, kernel_size, **options):
    bank = rng.uniform(0.5, 1.5, (int(rng.integers(1, 4)), kernel_size, kernel_size)).astype(np.float32)
    return Stage(bank, **options)


def test_run_stack_cells_depend_on_exactly_their_computed_region():
    rng = np.random.default_rng(100)
    stages = [
        _positive_stage(rng, 3, pool="max", pool_size=2),
        _positive_stage(rng, 3, dilation=2, pool="avg", pool_size=2),
        _positive_stage(rng, 3, stride=2, pool="none"),
    ]
    shape = (18, 17)
    layers, stage_ends = stack_geometries(stages)
    base = run_stack(np.zeros(shape, np.float32), stages)
    for stage_index, end in enumerate(stage_ends):
        assert base[stage_index].outputs.shape[1:] == layer_shapes(layers[:end], shape)[-1]
    last = base[-1].outputs.shape[1:]
    cells = [(0, 0), (last[0] // 2, last[1] // 2), (last[0] - 1, last[1] - 1)]
    measured = {cell: np.zeros(shape, dtype=bool) for cell in cells}
    for pixel in range(shape[0] * shape[1]):
        image = np.zeros(shape, np.float32)
        image.flat[pixel] = 1.0
        output = run_stack(image, stages)[-1].outputs
        for cell in cells:
            measured[cell].flat[pixel] = bool(np.any(output[:, cell[0], cell[1]] != 0))
    for cell, dependent in measured.items():
        rows, cols = np.nonzero(dependent)
        assert input_region(layers, shape, *cell) == (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1)


def test_stage_weights_place_bank_kernels_cyclically_over_channels():
    bank = np.stack([KERNELS[name].weights for name in ("sobel x", "sobel y", "laplacian")])
    weights = stage_weights(bank, 2)
    assert weights.shape == (3, 2, 3, 3)
    for k in range(3):
        for c in range(2):
            np.testing.assert_allclose(weights[k, c], bank[(k + c) % 3] / 2)
    np.testing.assert_array_equal(stage_weights(bank, 1)[:, 0], bank)


def test_run_stack_shapes_multiply_adds_and_channel_sums():
    rng = np.random.default_rng(7)
    image = rng.random((40, 36), dtype=np.float32)
    bank1 = np.stack([KERNELS[name].weights for name in ("sobel x", "sobel y", "laplacian")])
    bank2 = np.stack([KERNELS[name].weights for name in ("gaussian blur", "sharpen")])
    stages = [Stage(bank1, pool="max"), Stage(bank2, activation="leaky ReLU", pool="avg", pool_size=3)]
    first, second = run_stack(image, stages)
    assert first.outputs.shape == (3, 20, 18)
    assert second.inputs.shape == (3, 20, 18) and second.outputs.shape == (2, 6, 6)
    assert first.multiply_adds == 40 * 36 * 3 * 1 * 9
    assert second.multiply_adds == 20 * 18 * 2 * 3 * 9
    # Each stage's convolution is the engine's, with the weights stage_weights documents.
    np.testing.assert_array_equal(second.conv, conv2d(second.inputs[None], stage_weights(bank2, 3), padding=1)[0])

    for stage_result in (first, second):
        kernel_index = stage_result.conv.shape[0] - 1
        conv_row, conv_col = conv_cell_for_output(stage_result, kernel_index, 2, 3)
        breakdown = channel_sum(stage_result, kernel_index, conv_row, conv_col)
        assert len(breakdown.steps) == stage_result.inputs.shape[0]
        assert breakdown.totals.sum() == pytest.approx(breakdown.value, abs=1e-5)
        for channel, step in enumerate(breakdown.steps):
            np.testing.assert_allclose(step.products, step.patch * stage_result.weights[kernel_index, channel])
    # Max pooling: the chosen conv cell holds the pooled maximum.
    row, col = conv_cell_for_output(first, 1, 4, 5)
    assert first.activated[1, row, col] == first.outputs[1, 4, 5]
    assert 8 <= row < 10 and 10 <= col < 12


def test_stage_refuses_bad_settings():
    with pytest.raises(ValueError, match="activation must be one of"):
        Stage(np.ones((1, 3, 3)), activation="softmax")
    with pytest.raises(ValueError, match=r"\(K, kh, kw\)"):
        Stage(np.ones((3, 3)))
    with pytest.raises(ValueError, match="does not fit"):
        run_stack(np.zeros((6, 6)), [Stage(np.ones((1, 3, 3)), pool_size=4)] * 3)
