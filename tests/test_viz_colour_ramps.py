"""The colour ramps (viz.images): a table lookup within one level of interpolating the stops exactly."""

import numpy as np
import pytest

from viz import images
from viz.images import COLOUR_SCHEMES, diverging_rgb, magnitude_percentile


def _interpolated_exactly(unit_values, stops):
    positions = np.clip(unit_values, 0.0, 1.0) * (len(stops) - 1)
    lower = np.minimum(np.floor(positions).astype(np.intp), len(stops) - 2)
    fraction = (positions - lower)[..., None]
    return np.rint(stops[lower] * (1.0 - fraction) + stops[lower + 1] * fraction).astype(np.uint8)


@pytest.mark.parametrize("stops", [images._DIVERGING_STOPS, images._HEAT_STOPS], ids=["diverging", "heat"])
def test_ramp_is_within_one_level_of_exact_interpolation(stops):
    values = np.random.default_rng(3).uniform(-0.3, 1.3, (97, 131)).astype(np.float32)
    coloured = images._interpolate_stops(values, stops)
    assert coloured.shape == (97, 131, 3) and coloured.dtype == np.uint8
    assert np.abs(coloured.astype(int) - _interpolated_exactly(values, stops).astype(int)).max() <= 1
    ends = images._interpolate_stops(np.array([0.0, 1.0], dtype=np.float32), stops)
    np.testing.assert_array_equal(ends, stops[[0, -1]].astype(np.uint8))


def test_diverging_map_colours_signs_and_blank_values():
    coloured = images.diverging_rgb(np.array([[-2.0, 0.0, 2.0, np.nan]], dtype=np.float32), limit=2.0)
    np.testing.assert_array_equal(coloured[0, 0], images._DIVERGING_STOPS[0])  # full blue
    np.testing.assert_array_equal(coloured[0, 1], images._DIVERGING_STOPS[2])  # white
    np.testing.assert_array_equal(coloured[0, 2], images._DIVERGING_STOPS[-1])  # full red
    np.testing.assert_array_equal(coloured[0, 3], images._DIVERGING_STOPS[0])  # NaN: the ramp's first colour


@pytest.mark.parametrize("size", [1, 2, 7, 1000, 386_000])
@pytest.mark.parametrize("percent", [0, 50, 99, 99.5, 100])
def test_magnitude_percentile_is_numpys_percentile_of_the_magnitudes(size, percent):
    values = np.random.default_rng(size).standard_normal(size).astype(np.float32) * 3.0
    assert magnitude_percentile(values, percent) == pytest.approx(float(np.percentile(np.abs(values), percent)),
                                                                  rel=1e-6)
    assert magnitude_percentile(np.zeros((0, 4), np.float32), 99.5) == 0.0


def test_the_ramp_lookup_gives_each_value_its_interpolated_colour():
    values = np.linspace(-2.0, 2.0, 101, dtype=np.float32).reshape(1, 101)
    stops = COLOUR_SCHEMES["standard"].diverging_stops
    fractions = np.clip(0.5 + 0.5 * values[0] / 2.0, 0.0, 1.0) * (len(stops) - 1)
    lower = np.minimum(np.floor(fractions).astype(int), len(stops) - 2)
    exact = stops[lower] * (1 - (fractions - lower))[:, None] + stops[lower + 1] * (fractions - lower)[:, None]
    drawn = diverging_rgb(values, 2.0)
    assert drawn.shape == (1, 101, 3) and drawn.dtype == np.uint8 and drawn.flags["C_CONTIGUOUS"]
    assert np.abs(drawn[0].astype(float) - exact).max() <= 1.0


@pytest.mark.parametrize(("rows", "cols", "factor"), [(1, 1, 1), (10, 10, 54), (7, 3, 2), (256, 200, 2), (33, 65, 5)])
def test_nearest_enlargement_repeats_each_pixel_into_a_square(rows, cols, factor):
    rgb = np.random.default_rng(rows * cols + factor).integers(0, 256, (rows, cols, 3), dtype=np.uint8)
    enlarged = images.upscale_nearest(rgb, factor)
    assert np.array_equal(enlarged, np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1))
    assert enlarged.flags.writeable, "callers draw their overlays on it"
