"""Frames for the "Deeper layers see larger things" lesson: a stack's maps at true relative size, and fields.

Pure drawing: arrays in, RGB uint8 arrays out. Feature maps use the signed blue-white-red map, each
map with its own colour scale (full colour at its 99th percentile of magnitude), because maps of different
stages differ in range by orders of magnitude and only their pattern is being compared.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from viz.charts import signed_sum_bars
from viz.images import diverging_rgb, grey_rgb, magnitude_percentile
from viz.steps import BACKGROUND, WINDOW_COLOUR, outline_box, stamp_text, stamp_text_left, text_size

MAP_GAP = 8  # pixels between two maps of a stage
# One colour per stage for receptive-field boxes (colour-blind-safe Okabe-Ito hues), stage 1 first.
STAGE_COLOURS = ((0, 158, 115), (86, 180, 233), (204, 121, 167), (230, 159, 0))
LABEL_SIZE = 18


class StripLayout(NamedTuple):
    """Where each cell of each map lies in a strip drawn by :func:`maps_strip`.

    ``count`` maps of ``map_shape`` (h, w) cells, ``scale`` pixels per cell, ``gap`` pixels between maps,
    all below a title band of ``top`` pixels.
    """

    count: int
    map_shape: tuple
    scale: int
    gap: int
    top: int

    @property
    def size(self):
        """(height, width) of the whole strip in pixels."""
        rows, cols = self.map_shape
        return self.top + rows * self.scale, self.count * cols * self.scale + (self.count - 1) * self.gap

    def cell_at(self, y, x):
        """(map_index, row, col) under pixel (y, x) of the strip, or None between maps or outside them."""
        rows, cols = self.map_shape
        y, x = int(np.floor(y)), int(np.floor(x))
        if y < self.top or x < 0:
            return None
        map_index, offset = divmod(x, cols * self.scale + self.gap)
        if map_index >= self.count or offset >= cols * self.scale:
            return None
        row, col = (y - self.top) // self.scale, offset // self.scale
        if row >= rows:
            return None
        return int(map_index), int(row), int(col)

    def cell_box(self, map_index, row, col):
        """Pixel bounds (top, left, bottom, right) of a cell, bottom/right exclusive."""
        left = map_index * (self.map_shape[1] * self.scale + self.gap) + col * self.scale
        top = self.top + row * self.scale
        return top, left, top + self.scale, left + self.scale


def _map_rgb(feature_map):
    # Full colour at the 99th percentile of |value|, not the maximum: a few strong edge cells (often at
    # the image border, where zero padding meets bright tissue) would otherwise leave the rest pale.
    limit = magnitude_percentile(feature_map, 99)
    return diverging_rgb(feature_map, limit if limit > 0 else None)


def maps_strip(maps, *, scale, titles=None, highlight=None):
    """A stage's feature maps side by side, each cell ``scale`` x ``scale`` pixels.

    Parameters
    ----------
    maps : ndarray, shape (K, h, w)
    scale : int
        Pixels per cell (>= 1): equal scales for two stages show their true relative size.
    titles : sequence of str, optional
        One per map, written above it.
    highlight : (map_index, row, col), optional
        A cell outlined in orange (the chosen cell).

    Returns
    -------
    rgb : ndarray, shape StripLayout.size + (3,), uint8
    layout : StripLayout
        To turn a click position back into a cell.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape (K, h, w), got {maps.shape}")
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be a whole number >= 1, got {scale}")
    count, rows, cols = maps.shape
    title_size = 15
    top = (text_size("Ag", title_size)[1] + 10) if titles else 0
    layout = StripLayout(count, (rows, cols), scale, MAP_GAP, top)
    canvas = np.full(layout.size + (3,), BACKGROUND, dtype=np.uint8)
    for index in range(count):
        left = index * (cols * scale + MAP_GAP)
        rgb = np.repeat(np.repeat(_map_rgb(maps[index]), scale, axis=0), scale, axis=1)
        canvas[top:top + rows * scale, left:left + cols * scale] = rgb
        if titles:
            title = _fit_text(titles[index], title_size, cols * scale)
            stamp_text(canvas, title, top / 2, left + cols * scale / 2, title_size)
    if highlight is not None:
        cell_top, cell_left, cell_bottom, cell_right = layout.cell_box(*highlight)
        # Draw around the cell (never over it), thick enough to find on a projector.
        thickness = max(2, min(4, scale // 3))
        outline_box(canvas, cell_top - thickness, cell_left - thickness, cell_bottom + thickness,
                    cell_right + thickness, WINDOW_COLOUR, thickness)
    return canvas, layout


def _fit_text(text, size, width):
    if text_size(text, size)[0] <= width:
        return text
    while len(text) > 1 and text_size(text + "...", size)[0] > width:
        text = text[:-1]
    return text + "..."


def stack_overview(image, stage_maps, labels, *, scale=1):
    """The input and every stage's maps, one row each, all at ``scale`` pixels per cell: the shrinking.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        The input in [0, 1].
    stage_maps : sequence of ndarray, each (K_s, h_s, w_s)
        Each stage's output maps.
    labels : sequence of str
        len(stage_maps) + 1 captions: the input's first, then one per stage.
    scale : int
        Pixels per input pixel and per map cell.

    Returns
    -------
    ndarray, shape (H_frame, W_frame, 3), uint8
    """
    if len(labels) != len(stage_maps) + 1:
        raise ValueError(f"need {len(stage_maps) + 1} labels (input + one per stage), got {len(labels)}")
    scale = int(scale)
    label_height = text_size("Ag", LABEL_SIZE)[1] + 14
    blocks = [np.repeat(np.repeat(grey_rgb(image), scale, axis=0), scale, axis=1)]
    blocks += [maps_strip(maps, scale=scale)[0] for maps in stage_maps]
    row_gap = 12
    width = max(max(block.shape[1] for block in blocks), max(text_size(label, LABEL_SIZE)[0] for label in labels))
    height = sum(block.shape[0] + label_height + row_gap for block in blocks) - row_gap
    canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    top = 0
    for block, label in zip(blocks, labels):
        stamp_text_left(canvas, label, top + 4, 0, LABEL_SIZE)
        top += label_height
        canvas[top:top + block.shape[0], :block.shape[1]] = block
        top += block.shape[0] + row_gap
    return canvas


def field_overlay(image, regions, *, scale, marker=None):
    """The input with receptive-field boxes drawn on it.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        In [0, 1].
    regions : sequence of ((row_start, row_stop, col_start, col_stop), colour, thickness)
        Half-open boxes in input pixels, drawn in order (later ones on top), each just outside its
        pixels so the line never hides them.
    scale : int
        Pixels per input pixel.
    marker : (row, col), optional
        An input pixel marked with a small cross (the centre of the chosen cell's field).

    Returns
    -------
    ndarray, shape (H * scale, W * scale, 3), uint8
    """
    scale = int(scale)
    canvas = np.repeat(np.repeat(grey_rgb(image), scale, axis=0), scale, axis=1)
    for (row_start, row_stop, col_start, col_stop), colour, thickness in regions:
        if row_stop <= row_start or col_stop <= col_start:
            continue
        outline_box(canvas, row_start * scale - thickness, col_start * scale - thickness,
                    row_stop * scale + thickness, col_stop * scale + thickness, colour, thickness)
    if marker is not None:
        centre_y, centre_x = (int(marker[0] * scale + scale // 2), int(marker[1] * scale + scale // 2))
        arm = max(4, 2 * scale)
        canvas[max(centre_y - arm, 0):centre_y + arm + 1, max(centre_x - 1, 0):centre_x + 2] = WINDOW_COLOUR
        canvas[max(centre_y - 1, 0):centre_y + 2, max(centre_x - arm, 0):centre_x + arm + 1] = WINDOW_COLOUR
    return canvas


def sum_bars(totals, value, *, labels, width=520, bar_height=34):
    """Per-channel sums as signed horizontal bars, and their total: how one output adds up.

    Parameters
    ----------
    totals : ndarray, shape (C,)
        Each input channel's sum of products.
    value : float
        The convolution output (the sum of ``totals``).
    labels : sequence of str
        One per channel.

    Returns
    -------
    ndarray, shape ((C + 1) * (bar_height + 8), width, 3), uint8
    """
    entries = list(zip(labels, np.asarray(totals, dtype=np.float64))) + [("sum", float(value))]
    return signed_sum_bars(entries, width=width, bar_height=bar_height, text_px=16, decimals=4)
