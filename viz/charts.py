"""A written sum drawn as signed horizontal bars: how several terms add up to one total."""

import numpy as np

from viz.steps import BACKGROUND, GRID_COLOUR, stamp_text_left, text_size

POSITIVE_COLOUR = (178, 24, 43)   # red, as positive values in the diverging maps
NEGATIVE_COLOUR = (33, 102, 172)  # blue, as negative values


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
