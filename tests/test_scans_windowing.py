"""Windowing and preprocessing: presets, the level/width formula, auto window, crop, resize, normalise."""

import numpy as np
import pytest
from skimage.transform import resize as skimage_resize

from scans import WINDOW_PRESETS, apply_window, auto_window, window_bounds
from scans.preprocess import centre_square, crop, normalise, resize, run_pipeline, value_histogram


def naive_window(values, level, width):
    """The lesson's formula, one value at a time."""
    lower, upper = level - width / 2, level + width / 2
    out = []
    for value in np.ravel(values):
        if value <= lower:
            out.append(0.0)
        elif value >= upper:
            out.append(1.0)
        else:
            out.append((value - lower) / width)
    return np.array(out).reshape(np.shape(values))


@pytest.mark.parametrize("name", list(WINDOW_PRESETS))
def test_every_preset_maps_its_bounds_to_black_and_white(name):
    level, width = WINDOW_PRESETS[name]
    assert width > 0
    lower, upper = window_bounds(level, width)
    assert lower == level - width / 2 and upper == level + width / 2
    values = np.array([lower - 1000, lower, level, upper, upper + 1000], dtype=np.float32)
    assert apply_window(values, level, width).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_preset_values_match_the_cited_table():
    assert WINDOW_PRESETS["Brain"] == (40.0, 80.0)
    assert WINDOW_PRESETS["Lung"] == (-600.0, 1500.0)
    assert WINDOW_PRESETS["Mediastinum"] == (50.0, 350.0)
    assert WINDOW_PRESETS["Bone"] == (400.0, 1800.0)
    # Lung window: -1350 HU and below black, 150 HU and above white.
    assert window_bounds(*WINDOW_PRESETS["Lung"]) == (-1350.0, 150.0)


def test_apply_window_matches_the_naive_formula_on_random_values():
    rng = np.random.default_rng(7)
    values = rng.uniform(-1200, 2000, size=(3, 17, 19)).astype(np.float32)
    for level, width in [(40, 80), (-600, 1500), (0.5, 1e-3), (1000, 3000)]:
        result = apply_window(values, level, width)
        assert result.dtype == np.float32 and result.shape == values.shape
        np.testing.assert_allclose(result, naive_window(values.astype(np.float64), level, width), atol=2e-6)


@pytest.mark.parametrize("width", [0, -5, float("nan"), float("inf")])
def test_bad_window_width_is_refused_with_the_value(width):
    with pytest.raises(ValueError, match="width"):
        apply_window(np.zeros(3), 0, width)


def test_auto_window_spans_the_central_percentiles():
    rng = np.random.default_rng(3)
    values = rng.normal(100.0, 10.0, size=(200, 200)).astype(np.float32)
    values[0, 0] = 1e6  # one hot pixel must not stretch the window
    level, width = auto_window(values)
    lower, upper = np.percentile(values, [0.5, 99.5])
    assert level == pytest.approx((lower + upper) / 2, rel=1e-4)
    assert width == pytest.approx(upper - lower, rel=1e-4)
    flat_level, flat_width = auto_window(np.full((4, 4), 7.0))
    assert flat_width > 0 and flat_level == pytest.approx(7.0, abs=1.0)


def test_crop_returns_a_copy_of_the_region_and_refuses_outside_regions():
    image = np.arange(100, dtype=np.float32).reshape(10, 10)
    region = crop(image, 2, 3, 4, 5)
    np.testing.assert_array_equal(region, image[2:6, 3:8])
    region[0, 0] = -1
    assert image[2, 3] == 23
    with pytest.raises(ValueError, match="outside the 10 x 10 image"):
        crop(image, 8, 8, 4, 4)
    assert centre_square((10, 20), 6) == (2, 7, 6, 6)


def test_resize_matches_scikit_image_and_anti_aliasing_removes_a_fine_pattern():
    rng = np.random.default_rng(5)
    image = rng.uniform(0, 1, size=(64, 48)).astype(np.float32)
    expected = skimage_resize(image, (32, 24), order=1, anti_aliasing=True, preserve_range=True, mode="reflect")
    np.testing.assert_allclose(resize(image, (32, 24)), expected, atol=1e-6)
    # Thin stripes every 3rd column shrunk to 30 x 30: too fine to survive, so the honest result is
    # flat grey (anti-aliased); without the blur, sampling turns them into false coarse stripes.
    stripes = np.tile((np.arange(128) % 3 == 0).astype(np.float32), (128, 1))
    assert np.std(resize(stripes, (30, 30), anti_aliasing=True)) < 0.02
    assert np.std(resize(stripes, (30, 30), anti_aliasing=False)) > 0.3
    with pytest.raises(ValueError, match="at least"):
        resize(image, (0, 5))


def test_normalisations():
    values = np.array([[-1000.0, 0.0], [40.0, 2000.0]], dtype=np.float32)
    np.testing.assert_allclose(normalise(values, "window", level=40, width=80), [[0, 0], [0.5, 1]])
    np.testing.assert_allclose(normalise(values, "min-max"), (values + 1000) / 3000, rtol=1e-6)
    z = normalise(values, "z-score")
    assert z.mean() == pytest.approx(0, abs=1e-6) and z.std() == pytest.approx(1, abs=1e-6)
    assert not normalise(np.full((3, 3), 5.0), "z-score").any()
    with pytest.raises(ValueError, match="needs level and width"):
        normalise(values, "window")
    with pytest.raises(ValueError, match="unknown normalisation 'max'"):
        normalise(values, "max")


def test_pipeline_keeps_every_step_in_order():
    image = np.linspace(-1000, 1000, 100 * 80, dtype=np.float32).reshape(100, 80)
    steps = run_pipeline(image, roi=(10, 20, 50, 50), output_shape=(25, 25), method="min-max")
    assert [step.label for step in steps] == ["Slice", "Region of interest", "Resize", "Network input"]
    assert steps[1].values.shape == (50, 50) and steps[2].values.shape == (25, 25)
    final = steps[-1].values
    assert final.dtype == np.float32 and final.min() == 0 and final.max() == pytest.approx(1)
    plain = run_pipeline(image, method="window", level=0, width=2000)
    assert [step.label for step in plain] == ["Slice", "Network input"]
    np.testing.assert_allclose(plain[-1].values, apply_window(image, 0, 2000))


def test_value_histogram_counts_every_value():
    values = np.array([0, 0, 1, 2, 3, 3, 3, np.nan], dtype=np.float32)
    edges, counts = value_histogram(values, bins=3)
    assert counts.sum() == 7 and len(edges) == 4
    assert counts.tolist() == [2, 1, 4]
