"""The charts: the signed sum-of-terms bars (sides, shared scale, the total's rule) and the value histogram."""

import numpy as np

from viz.charts import NEGATIVE_COLOUR, POSITIVE_COLOUR, histogram_chart, signed_sum_bars
from viz.steps import GRID_COLOUR


def _bar_extent(canvas, row_index, colour, bar_height=20):
    """Columns where row ``row_index``'s bar has ``colour`` (sampled through the bar's middle)."""
    middle = row_index * (bar_height + 8) + 4 + bar_height // 2
    return np.flatnonzero(np.all(canvas[middle] == colour, axis=-1))


def test_bars_sit_on_the_side_of_their_sign_on_one_scale():
    canvas = signed_sum_bars([("a", 2.0), ("b", -1.0), ("sum", 1.0)], width=400, bar_height=20)
    assert canvas.shape == (3 * 28, 400, 3) and canvas.dtype == np.uint8
    centre = int(np.flatnonzero(np.all(canvas[1] == GRID_COLOUR, axis=-1))[0])
    positive = _bar_extent(canvas, 0, POSITIVE_COLOUR)
    negative = _bar_extent(canvas, 1, NEGATIVE_COLOUR)
    total = _bar_extent(canvas, 2, POSITIVE_COLOUR)
    assert positive.min() >= centre and negative.max() < centre
    assert abs(len(positive) - 2 * len(negative)) <= 2  # 2.0 is drawn twice as long as -1.0
    assert abs(len(total) - len(negative)) <= 1
    rule_row = 2 * 28
    assert np.all(canvas[rule_row] == GRID_COLOUR)  # the line above the total


def test_histogram_shades_the_window_inside_the_bars_and_counts_on_a_square_root_scale():
    edges = np.linspace(-1000.0, 1000.0, 5)
    counts = np.array([10, 0, 400, 3])
    data, spec = histogram_chart(edges, counts, lower=-2000.0, upper=250.0, title="Value (HU)")
    assert data.to_dict("list") == {"from": [-1000.0, -500.0, 0.0, 500.0], "to": [-500.0, 0.0, 500.0, 1000.0],
                                    "pixels": [10, 0, 400, 3]}
    band, bars = spec["layer"]
    assert band["data"]["values"] == [{"lower": -1000.0, "upper": 250.0}]  # the window, cut to the bars' range
    assert bars["encoding"]["y"]["scale"]["type"] == "sqrt" and bars["encoding"]["x"]["title"] == "Value (HU)"
    data, spec = histogram_chart(edges, counts)
    assert len(spec["layer"]) == 1, "no window, no band"
