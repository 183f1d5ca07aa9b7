"""Charts: a written sum drawn as signed horizontal bars, a value histogram, the learning page's curves."""

import numpy as np
import pandas as pd

from viz.steps import BACKGROUND, GRID_COLOUR, stamp_text_left, text_size

POSITIVE_COLOUR = (178, 24, 43)   # red, as positive values in the diverging maps
NEGATIVE_COLOUR = (33, 102, 172)  # blue, as negative values
LOSS_COLOURS = ("#c8c8c8", "#b2182b")
AUC_COLOUR = "#2166ac"
GRADIENT_COLOUR = "#6a3d9a"


def signed_sum_bars(entries, *, width=560, bar_height=30, text_px=16, decimals=4):
    """Draw labelled terms and their total as bars left (negative) or right (positive) of a centre line.

    Parameters
    ----------
    entries : sequence of (str, float)
        The terms, then the total last; the total gets a rule above it, as in a sum written by hand.
    width, bar_height : int
        Canvas width and the height of one bar, in pixels.
    text_px : int
        Text height of the labels and numbers.
    decimals : int
        Decimal places of the printed values (always signed).

    Returns
    -------
    ndarray, shape (len(entries) * (bar_height + 8), width, 3), uint8
        Bars share one scale: the largest magnitude among the entries fills half the free width.
    """
    entries = [(label, float(value)) for label, value in entries]
    limit = max(max(abs(value) for _, value in entries), 1e-12)
    label_width = max(text_size(label, text_px)[0] for label, _ in entries) + 16
    number_width = max(text_size(f"{value:+.{decimals}f}", text_px)[0] for _, value in entries) + 16
    half = (width - label_width - number_width) // 2
    centre = label_width + half
    row_height = bar_height + 8
    canvas = np.full((len(entries) * row_height, width, 3), BACKGROUND, dtype=np.uint8)
    for index, (label, value) in enumerate(entries):
        top = index * row_height + 4
        length = int(round(abs(value) / limit * (half - 4)))
        if index == len(entries) - 1:
            canvas[top - 4, :] = GRID_COLOUR
        left, right = (centre, centre + length) if value >= 0 else (centre - length, centre)
        canvas[top:top + bar_height, left:right] = POSITIVE_COLOUR if value >= 0 else NEGATIVE_COLOUR
        text_top = top + bar_height // 2 - text_px // 2
        stamp_text_left(canvas, label, text_top, 4, text_px)
        stamp_text_left(canvas, f"{value:+.{decimals}f}", text_top, width - number_width + 8, text_px)
    canvas[:, centre] = GRID_COLOUR
    return canvas


def loss_chart(losses, smoothing):
    """The loss of every step and its running mean over ``smoothing`` steps, as (long-form data, Vega-Lite spec)."""
    steps = np.arange(1, len(losses) + 1)
    smoothed = pd.Series(losses).rolling(smoothing, min_periods=1).mean().to_numpy()
    names = ("this batch", f"mean of the last {smoothing}")
    frame = pd.DataFrame({"step": np.concatenate([steps, steps]), "loss": np.concatenate([losses, smoothed]),
                          "curve": np.repeat(names, len(steps))})
    spec = {"mark": {"type": "line", "strokeWidth": 2},
            "encoding": {"x": {"field": "step", "type": "quantitative", "title": "step"},
                         "y": {"field": "loss", "type": "quantitative", "title": "loss"},
                         "color": {"field": "curve", "type": "nominal", "title": None,
                                   "scale": {"domain": list(names), "range": list(LOSS_COLOURS)},
                                   "legend": {"orient": "bottom"}}}}
    return frame, spec


def auc_chart(steps, values):
    """The held-out ROC AUC at each measurement, with the 0.5 of guessing drawn as a dashed line."""
    frame = pd.DataFrame({"step": steps, "ROC AUC": values})
    spec = {"layer": [
        {"mark": {"type": "line", "point": True, "color": AUC_COLOUR, "strokeWidth": 2},
         "encoding": {"x": {"field": "step", "type": "quantitative", "title": "step"},
                      "y": {"field": "ROC AUC", "type": "quantitative", "title": "ROC AUC",
                            "scale": {"domain": [min(0.4, float(np.min(values)) - 0.02), 1.0]}}}},
        {"mark": {"type": "rule", "strokeDash": [4, 4], "color": "#888888"}, "encoding": {"y": {"datum": 0.5}}},
    ]}
    return frame, spec


def gradient_chart(names, sizes):
    """Each layer's gradient size as a bar on a logarithmic scale, its value written beside it."""
    sizes = np.maximum(np.asarray(sizes, dtype=np.float64), 1e-12)
    # A bar on a log scale needs a baseline other than zero: a third of the smallest value.
    low, high = float(sizes.min()) / 3.0, float(sizes.max()) * 3.0
    frame = pd.DataFrame({"layer": names, "size": sizes, "label": [f"{size:.2g}" for size in sizes]})
    y = {"field": "layer", "type": "nominal", "sort": None, "title": None, "axis": {"labelOverlap": False}}
    x = {"field": "size", "type": "quantitative", "scale": {"type": "log", "domain": [low, high]},
         "title": "gradient size (log scale)"}
    spec = {"layer": [{"mark": {"type": "bar", "color": GRADIENT_COLOUR},
                       "encoding": {"x": x, "x2": {"datum": low}, "y": y}},
                      {"mark": {"type": "text", "align": "left", "dx": 4},
                       "encoding": {"x": x, "y": y, "text": {"field": "label"}}}]}
    return frame, spec


def histogram_chart(edges, counts, lower=None, upper=None, title="Value"):
    """Bars of a histogram (``edges`` (B + 1,), ``counts`` (B,)), the window [lower, upper] shaded.

    Returns (data, Vega-Lite spec), as the learning page's charts: a spec written out directly, because
    building it through Altair (its schema validation) took about half of a click on the input page.
    """
    bars = pd.DataFrame({"from": edges[:-1], "to": edges[1:], "pixels": counts})
    # Square-root counts: the huge peak of air or background must not flatten every other bar.
    layers = [{"mark": {"type": "rect", "color": "#4c6a92"},
               "encoding": {"x": {"field": "from", "type": "quantitative", "title": title},
                            "x2": {"field": "to"},
                            "y": {"field": "pixels", "type": "quantitative", "title": "pixels",
                                  "scale": {"type": "sqrt", "zero": True}},
                            "y2": {"datum": 0},
                            "tooltip": [{"field": name, "type": "quantitative"} for name in ("from", "to", "pixels")]}}]
    if lower is not None:
        band = {"lower": max(float(lower), float(edges[0])), "upper": min(float(upper), float(edges[-1]))}
        layers.insert(0, {"data": {"values": [band]}, "mark": {"type": "rect", "opacity": 0.18, "color": "#f2b134"},
                          "encoding": {"x": {"field": "lower", "type": "quantitative"}, "x2": {"field": "upper"}}})
    # Room around the axes: without it the last tick label ("1.0") and the y title were cut at the edges.
    return bars, {"layer": layers, "height": 220, "padding": {"left": 5, "top": 5, "right": 14, "bottom": 5}}
