"""Drawing volumes: the three planes through a voxel, rows of titled panels, boxes across slices (uint8 RGB out).

Side views (coronal, sagittal) are stretched by the slice spacing so anatomy keeps its proportions, and
drawn with the last slice at the top: slices sorted by position along the body's long axis then read
feet to head, as a radiologist hangs a coronal view.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from viz.images import diverging_rgb, grey_rgb, magnitude_percentile
from viz.steps import (BACKGROUND, CHOSEN_COLOUR, GRID_COLOUR, WINDOW_COLOUR, outline_box, stamp_text, text_size,
                       wrap_text)

PANEL_GAP = 14
SIGNED_PERCENTILE = 99.5
TITLE_SIZE = 16
TITLE_WIDTH = 190  # pixels: the narrowest panel, so a two-line title fits above a small picture
CROSS_COLOUR = (0, 200, 255)  # the lines through the chosen voxel: cyan, apart from the orange boxes


class PanelLayout(NamedTuple):
    """Where each panel of a row of panels sits: ``boxes`` (top, left, height, width) in canvas pixels."""

    boxes: tuple
    size: tuple

    def panel_at(self, y, x):
        """(panel index, v, u) for canvas pixel (y, x), v and u in [0, 1) down and across the panel; None outside."""
        for index, (top, left, height, width) in enumerate(self.boxes):
            if top <= y < top + height and left <= x < left + width:
                return index, (y - top) / height, (x - left) / width
        return None


def stretch(rgb, height, width):
    """Nearest-neighbour resampling of an RGB picture to ``height`` x ``width`` pixels (cells stay sharp)."""
    rows = np.minimum((np.arange(height) * rgb.shape[0]) // height, rgb.shape[0] - 1)
    cols = np.minimum((np.arange(width) * rgb.shape[1]) // width, rgb.shape[1] - 1)
    return rgb[rows[:, None], cols[None, :]]


def panel_row(pictures, titles):
    """Pictures side by side, top-aligned, each under its title; returns (canvas, layout).

    A small picture's panel is as wide as its title (up to ``TITLE_WIDTH`` pixels, where a longer title
    wraps), so titles never run into each other; the picture is centred in its panel.
    """
    line_step = TITLE_SIZE + 8
    slots = [max(picture.shape[1], min(TITLE_WIDTH, text_size(title, TITLE_SIZE)[0] + 8))
             for picture, title in zip(pictures, titles)]
    title_lines = [wrap_text(title, TITLE_SIZE, slot) for slot, title in zip(slots, titles)]
    band = max(len(lines) for lines in title_lines) * line_step + 6
    height = band + max(picture.shape[0] for picture in pictures) + 2
    width = sum(slots) + PANEL_GAP * (len(pictures) - 1) + 2
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND
    boxes = []
    slot_left = 1
    for picture, lines, slot in zip(pictures, title_lines, slots):
        for number, line in enumerate(lines):
            stamp_text(canvas, line, band - 4 - (len(lines) - number - 0.5) * line_step, slot_left + slot / 2,
                       TITLE_SIZE)
        left = slot_left + (slot - picture.shape[1]) // 2
        canvas[band:band + picture.shape[0], left:left + picture.shape[1]] = picture
        outline_box(canvas, band - 1, left - 1, band + picture.shape[0] + 1, left + picture.shape[1] + 1, GRID_COLOUR, 1)
        boxes.append((band, left, picture.shape[0], picture.shape[1]))
        slot_left += slot + PANEL_GAP
    return canvas, PanelLayout(tuple(boxes), canvas.shape[:2])


def _side_view(plane, aspect, scale):
    """A (slices, n) plane stretched to scale, last slice on top."""
    return plane[::-1], (max(1, round(plane.shape[0] * aspect * scale)), max(1, round(plane.shape[1] * scale)))


def orthogonal_views(volume, voxel, *, aspect=1.0, height=300, low=0.0, high=1.0, box=None, signed=False):
    """The axial, coronal and sagittal planes through ``voxel`` with lines through it; returns (canvas, layout).

    Parameters
    ----------
    volume : float (D, H, W)
        Windowed to [low, high] (grey), or signed values when ``signed`` (blue-white-red, symmetric).
    voxel : (slice, row, column)
    aspect : float
        One slice step in in-plane pixels (slice spacing / pixel spacing).
    height : int
        Pixels of the axial panel's height.
    box : ((s0, s1), (r0, r1), (c0, c1)), optional
        A half-open block of voxels to outline in orange on every plane it crosses.
    signed : bool
        Full colour at the 99.5th percentile of the magnitudes.
    """
    depth, rows, cols = volume.shape
    slice_index, row, col = voxel
    scale = height / rows
    # Signed maps reach full colour at a high percentile, so a few extreme voxels do not wash out the rest.
    limit = (magnitude_percentile(volume, SIGNED_PERCENTILE) or 1.0) if signed else 1.0

    def colour(plane):
        return diverging_rgb(plane, limit) if signed else grey_rgb(plane, low, high)

    axial = stretch(colour(volume[slice_index]), height, max(1, round(cols * scale)))
    coronal_plane, coronal_size = _side_view(volume[:, row, :], aspect, scale)
    sagittal_plane, sagittal_size = _side_view(volume[:, :, col], aspect, scale)
    coronal = stretch(colour(coronal_plane), *coronal_size)
    sagittal = stretch(colour(sagittal_plane), *sagittal_size)
    # (picture, vertical axis: voxels and whether it runs upwards, horizontal axis: voxels)
    views = ((axial, (row, rows, False), (col, cols)), (coronal, (slice_index, depth, True), (col, cols)),
             (sagittal, (slice_index, depth, True), (row, rows)))
    pictures = []
    for picture, (down, down_size, upwards), (across, across_size) in views:
        picture = picture.copy()
        pixel_height, pixel_width = picture.shape[:2]
        y = _pixel_centre(down, down_size, pixel_height, upwards)
        x = _pixel_centre(across, across_size, pixel_width, False)
        picture[y, :] = CROSS_COLOUR
        picture[:, x] = CROSS_COLOUR
        pictures.append(picture)
    if box is not None:
        (s0, s1), (r0, r1), (c0, c1) = box
        for picture, down, across in ((pictures[0], (r0, r1, rows, False), (c0, c1, cols)),
                                      (pictures[1], (s0, s1, depth, True), (c0, c1, cols)),
                                      (pictures[2], (s0, s1, depth, True), (r0, r1, rows))):
            top, bottom = _pixel_span(*down, picture.shape[0])
            left, right = _pixel_span(*across, False, picture.shape[1])
            outline_box(picture, top, left, bottom, right, WINDOW_COLOUR, max(2, picture.shape[0] // 120))
    titles = (f"axial: slice {slice_index + 1} of {depth}", f"coronal: row {row + 1} of {rows}",
              f"sagittal: column {col + 1} of {cols}")
    return panel_row(pictures, titles)


def _pixel_centre(index, size, pixels, upwards):
    position = (size - 1 - index) if upwards else index
    return min(pixels - 1, int((position + 0.5) * pixels / size))


def _pixel_span(start, stop, size, upwards, pixels):
    if upwards:
        start, stop = size - stop, size - start
    return round(start * pixels / size), round(stop * pixels / size)


def voxel_from_click(layout, y, x, voxel, shape):
    """The voxel a click at canvas pixel (y, x) on :func:`orthogonal_views` chooses (``voxel`` if it hit no plane).

    A click on a plane sets the two coordinates that plane shows and keeps the third.
    """
    hit = layout.panel_at(y, x)
    if hit is None:
        return tuple(voxel)
    panel, down, across = hit
    depth, rows, cols = shape
    slice_index, row, col = voxel
    slice_clicked = depth - 1 - min(depth - 1, int(down * depth))  # side views: the last slice on top
    if panel == 0:
        return slice_index, min(rows - 1, int(down * rows)), min(cols - 1, int(across * cols))
    if panel == 1:
        return slice_clicked, row, min(cols - 1, int(across * cols))
    return slice_clicked, min(rows - 1, int(across * rows)), col


def map_panels(maps, titles, *, height=220, aspect=1.0, limit=None, signed=True, marks=()):
    """Planes of maps side by side at one height (side views stretched by ``aspect``), each under its title.

    ``maps``: 2-D arrays; pass ``aspect`` per map as a sequence to stretch some (side views) and not others,
    and ``height`` per map to draw them at their true relative sizes.
    ``limit``: the magnitude at full colour (one for all, or None: each map its own). ``signed``: one for
    all or one per map; grey maps (False) run from 0 to 1. ``marks``: (map index, row, col) cells ringed
    in green.
    Returns the canvas.
    """
    aspects = list(aspect) if isinstance(aspect, (list, tuple)) else [aspect] * len(maps)
    signs = list(signed) if isinstance(signed, (list, tuple)) else [signed] * len(maps)
    heights = list(height) if isinstance(height, (list, tuple)) else [height] * len(maps)
    pictures = []
    for plane, plane_aspect, plane_signed, height in zip(maps, aspects, signs, heights):
        plane = np.asarray(plane, dtype=np.float32)
        rgb = (diverging_rgb(plane, limit or float(np.max(np.abs(plane))) or 1.0) if plane_signed
               else grey_rgb(plane, 0.0, 1.0))
        scale = height / (plane.shape[0] * plane_aspect)
        pictures.append(stretch(rgb, height, max(1, round(plane.shape[1] * scale))))
    for index, row, col in marks:
        picture, plane = pictures[index], maps[index]
        cell_height, cell_width = picture.shape[0] / plane.shape[0], picture.shape[1] / plane.shape[1]
        radius = max(2.5 * max(cell_height, cell_width), 8)
        centre_y, centre_x = (row + 0.5) * cell_height, (col + 0.5) * cell_width
        outline_box(picture, centre_y - radius, centre_x - radius, centre_y + radius, centre_x + radius,
                    CHOSEN_COLOUR, 2)
    return panel_row(pictures, titles)[0]
