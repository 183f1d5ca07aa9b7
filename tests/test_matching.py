"""Template matching: kernels from boxes, normalised scores against a naive loop, and detection on real images."""

import numpy as np
import pytest
from scipy.signal import correlate2d

from lessons.matching import (
    Box,
    binary_kernel,
    classify_tiles,
    contrasting_boxes,
    cut_box,
    find_matches,
    response_map,
    shifted_copy,
    structured_boxes,
    window_sums,
    zero_mean_kernel,
)
from scans import apply_window, list_samples, read_sample


def _naive_normalised_scores(image, kernel):
    """Normalised cross-correlation, one window at a time in float64 (the slow obvious reference)."""
    image = image.astype(np.float64)
    kernel = kernel.astype(np.float64) - kernel.mean()
    kh, kw = kernel.shape
    out = np.zeros((image.shape[0] - kh + 1, image.shape[1] - kw + 1))
    for row in range(out.shape[0]):
        for col in range(out.shape[1]):
            window = image[row:row + kh, col:col + kw]
            window = window - window.mean()
            denominator = np.sqrt((window * window).sum() * (kernel * kernel).sum())
            out[row, col] = (window * kernel).sum() / denominator if denominator > 1e-9 else 0.0
    return out


def _sample_image(index):
    scan = read_sample(list_samples()[index])
    pixels = scan.slice(scan.pixels.shape[0] // 2) if scan.is_volume else scan.pixels
    return apply_window(pixels, *scan.default_window)


def test_zero_mean_kernel_sums_to_zero_with_unit_length():
    patch = np.random.default_rng(0).random((7, 5), dtype=np.float32)
    kernel = zero_mean_kernel(patch)
    assert kernel.dtype == np.float32 and kernel.shape == (7, 5)
    assert abs(float(kernel.sum())) < 1e-5
    assert float((kernel.astype(np.float64) ** 2).sum()) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="flat"):
        zero_mean_kernel(np.full((4, 4), 0.3))


def test_binary_kernel_is_a_threshold_mask_and_refuses_one_sided_thresholds():
    patch = np.array([[0.1, 0.6], [0.5, 0.9]], dtype=np.float32)
    np.testing.assert_array_equal(binary_kernel(patch, 0.5), [[0, 1], [1, 1]])
    with pytest.raises(ValueError, match="threshold 0.95 leaves every pixel of the box below"):
        binary_kernel(patch, 0.95)
    with pytest.raises(ValueError, match="between 0.1 and 0.9"):
        binary_kernel(patch, 0.0)


def test_cut_box_refuses_boxes_outside_the_image():
    image = np.arange(20, dtype=np.float32).reshape(4, 5)
    np.testing.assert_array_equal(cut_box(image, Box(1, 2, 2, 3)), image[1:3, 2:5])
    with pytest.raises(ValueError, match="reaches outside the 4 x 5 image"):
        cut_box(image, Box(3, 0, 2, 2))
    assert Box(-3, 4, 2, 3).clipped((4, 5)) == Box(0, 2, 2, 3)


def test_window_sums_equal_direct_sums():
    image = np.random.default_rng(1).random((13, 11), dtype=np.float32)
    sums, squares = window_sums(image, (4, 3))
    centred = image.astype(np.float64) - image.mean()
    assert sums.shape == (10, 9)
    assert sums[5, 7] == pytest.approx(centred[5:9, 7:10].sum())
    assert squares[2, 0] == pytest.approx((centred[2:6, 0:3] ** 2).sum())


@pytest.mark.parametrize("kernel_shape", [(3, 3), (6, 4), (21, 25)])
def test_normalised_scores_match_the_naive_loop(kernel_shape):
    # (21, 25) has over 400 taps, so the engine takes its FFT path for the numerator.
    rng = np.random.default_rng(2)
    image = rng.random((48, 52), dtype=np.float32)
    image[30:, :10] = 0.25  # a flat corner: undefined scores must come out 0
    kernel = rng.random(kernel_shape, dtype=np.float32)
    scores = response_map(image, kernel)
    assert scores.shape == (48 - kernel_shape[0] + 1, 52 - kernel_shape[1] + 1)
    np.testing.assert_allclose(scores, _naive_normalised_scores(image, kernel), atol=2e-5)
    assert float(np.abs(scores).max()) <= 1.0


def test_plain_scores_are_the_valid_correlation():
    rng = np.random.default_rng(3)
    image, kernel = rng.random((30, 40)), rng.random((5, 7))
    np.testing.assert_allclose(response_map(image, kernel, normalise=False),
                               correlate2d(image, kernel, mode="valid"), rtol=1e-5)


def test_normalised_score_ignores_brightness_and_contrast():
    rng = np.random.default_rng(4)
    image = rng.random((40, 40), dtype=np.float32)
    template = image[10:22, 15:24].copy()
    scores = response_map(0.3 + 0.5 * image, template)
    assert scores[10, 15] == pytest.approx(1.0, abs=1e-5)
    assert np.unravel_index(np.argmax(scores), scores.shape) == (10, 15)


@pytest.mark.parametrize("sample_index", [1, 2, 3])
def test_template_cut_from_a_scan_is_found_at_its_place_and_at_the_shifted_place(sample_index):
    image = _sample_image(sample_index)
    box = structured_boxes(image, (32, 32), count=1)[0]
    template = cut_box(image, box)
    best = find_matches(response_map(image, template), template.shape, count=1)[0]
    assert (best.row, best.col) == (box.row, box.col)
    assert best.score == pytest.approx(1.0, abs=1e-4)

    shift_rows, shift_cols = 37, -21
    shifted = shifted_copy(image, shift_rows, shift_cols)
    noisy = shifted + np.random.default_rng(5).normal(0, 0.02, shifted.shape).astype(np.float32)
    best_shifted = find_matches(response_map(noisy, template), template.shape, count=1)[0]
    assert (best_shifted.row, best_shifted.col) == (box.row + shift_rows, box.col + shift_cols)
    assert best_shifted.score > 0.9


def test_the_same_structure_is_found_on_neighbouring_slices_of_a_volume():
    scan = read_sample("Head MR volume")
    level, width = scan.default_window
    middle = scan.pixels.shape[0] // 2
    this_slice = apply_window(scan.slice(middle), level, width)
    box = structured_boxes(this_slice, (20, 20), count=1)[0]  # the corpus callosum's bright arc
    template = cut_box(this_slice, box)
    for other in (middle - 1, middle + 1):
        best = find_matches(response_map(apply_window(scan.slice(other), level, width), template),
                            template.shape, count=1)[0]
        # Neighbouring slices are 1.2 mm apart: the arc has moved at most a pixel.
        assert abs(best.row - box.row) <= 1 and abs(best.col - box.col) <= 1
        assert best.score > 0.85


def test_find_matches_returns_best_first_without_heavy_overlap():
    rng = np.random.default_rng(6)
    response = rng.random((60, 70))
    matches = find_matches(response, (9, 12), count=8, max_overlap=0.25)
    assert len(matches) == 8
    assert (matches[0].row, matches[0].col) == np.unravel_index(np.argmax(response), response.shape)
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    for i, first in enumerate(matches):
        for second in matches[i + 1:]:
            rows = max(0, 9 - abs(first.row - second.row))
            cols = max(0, 12 - abs(first.col - second.col))
            intersection = rows * cols
            assert intersection / (2 * 9 * 12 - intersection) <= 0.25
    # A tiny map runs out of positions instead of inventing matches.
    assert len(find_matches(np.ones((2, 2)), (3, 3), count=5)) == 1


def test_two_kernels_two_classes_on_two_textures():
    rng = np.random.default_rng(7)
    rows, cols = np.mgrid[0:96, 0:128]
    vertical_stripes = (np.sin(cols * 2 * np.pi / 6) > 0).astype(np.float32)
    horizontal_stripes = (np.sin(rows * 2 * np.pi / 6) > 0).astype(np.float32)
    image = np.where(cols < 64, vertical_stripes, horizontal_stripes) + rng.normal(0, 0.2, (96, 128))
    kernel_a = cut_box(image, Box(8, 8, 12, 12))    # from the left (class A) half
    kernel_b = cut_box(image, Box(8, 100, 12, 12))  # from the right (class B) half
    result = classify_tiles(image, [kernel_a, kernel_b], tile=32)
    assert result.scores.shape == (2, 3, 4) and result.labels.shape == (3, 4)
    np.testing.assert_array_equal(result.labels, np.repeat([[0, 0, 1, 1]], 3, axis=0))
    # Each kernel's best score anywhere is at its own box, whatever the tiling.
    np.testing.assert_allclose(result.image_scores, [1.0, 1.0], atol=1e-4)
    assert np.all(result.scores.max(axis=(1, 2)) <= result.image_scores + 1e-6)
    with pytest.raises(ValueError, match="larger than the 8-pixel tiles"):
        classify_tiles(image, [kernel_a, kernel_b], tile=8)
    with pytest.raises(ValueError, match="at least two kernels"):
        classify_tiles(image, [kernel_a], tile=32)


def test_contrasting_boxes_pick_two_different_tissues():
    image = np.full((120, 120), 0.5, dtype=np.float32)
    rng = np.random.default_rng(8)
    image[20:50, 20:50] = 0.8 + 0.1 * rng.random((30, 30))   # bright textured region
    image[70:100, 70:100] = 0.2 + 0.1 * rng.random((30, 30))  # dark textured region
    first, second = contrasting_boxes(image, (12, 12))
    means = sorted([float(cut_box(image, first).mean()), float(cut_box(image, second).mean())])
    assert means[0] < 0.45 and means[1] > 0.55


def test_structured_boxes_keep_away_from_the_border_and_clipped_regions():
    image = np.full((100, 100), 0.5, dtype=np.float32)
    image[:, :5] = 0.0  # a hard edge at the border: the most "structured" place, and a poor template
    image[60:70, 40:52] = 0.7
    box = structured_boxes(image, (16, 16), count=1)[0]
    assert box.col >= 10 and 60 - 16 < box.row < 70 and 40 - 16 < box.col < 52


def test_structured_boxes_find_the_object_on_a_flat_background():
    image = np.zeros((80, 90), dtype=np.float32)
    image[40:52, 20:30] = 1.0
    box = structured_boxes(image, (16, 16), count=1)[0]
    assert box.row <= 40 and box.row + 16 >= 52 - 8 and box.col <= 20 + 8 and box.col + 16 >= 30 - 8


def test_shifted_copy_moves_pixels_and_fills_the_gap():
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(shifted_copy(image, 1, -2, fill=-1),
                                  [[-1, -1, -1, -1], [2, 3, -1, -1], [6, 7, -1, -1]])
    assert np.all(shifted_copy(image, 3, 0) == 0)


def test_response_map_refuses_kernels_larger_than_the_image():
    with pytest.raises(ValueError, match="larger than the 10 x 10 image"):
        response_map(np.zeros((10, 10)), np.ones((12, 3)))
