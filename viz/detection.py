"""Frames for the "Where is it?" lesson: the kernel cut from a box, its response as heat, the boxes it finds.

Pure drawing: arrays in, RGB uint8 arrays out. Positions follow lessons.matching: a response value
at (r, c) scores the window whose top-left pixel is (r, c).
"""

from __future__ import annotations

import numpy as np

from viz.images import blend, diverging_rgb, grey_rgb, heat_rgb
from viz.steps import WINDOW_COLOUR, fit_into, outline_box, stamp_text_left, text_size

TEMPLATE_COLOUR = WINDOW_COLOUR  # the box the kernel was cut from: orange, as the kernel window elsewhere
BEST_COLOUR = (0, 200, 90)  # the best match: green
MATCH_COLOUR = (80, 200, 255)  # the other listed matches: light blue
# Class A and class B of the two-kernel demonstration (Okabe-Ito orange and blue: colour-blind safe).
CLASS_COLOURS = ((230, 159, 0), (0, 114, 178))


def response_on_image(response, kernel_shape, image_shape, fill=0.0):
    """Place a response map on the image grid, each score at the centre of the window it scores.

    Parameters
    ----------
    response : ndarray, shape (H - kh + 1, W - kw + 1)
    kernel_shape : (int, int)
    image_shape : (int, int)
        (H, W).
    fill : float
        Value of the border where no window is centred.

    Returns
    -------
    ndarray, shape (H, W), float32
    """
    response = np.asarray(response, dtype=np.float32)
    kernel_rows, kernel_cols = kernel_shape
    rows, cols = image_shape
    if response.shape != (rows - kernel_rows + 1, cols - kernel_cols + 1):
        raise ValueError(f"a {kernel_rows} x {kernel_cols} kernel on a {rows} x {cols} image gives a "
                         f"{rows - kernel_rows + 1} x {cols - kernel_cols + 1} map, got {response.shape}")
    placed = np.full((rows, cols), fill, dtype=np.float32)
    top, left = (kernel_rows - 1) // 2, (kernel_cols - 1) // 2
    placed[top:top + response.shape[0], left:left + response.shape[1]] = response
    return placed


def heat_overlay(image, values, *, low, high, max_opacity=0.75):
    """The grey image with ``values`` laid over it as heat: opaque where high, clear where low.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        In [0, 1].
    values : ndarray, shape (H, W)
        E.g. from :func:`response_on_image`.
    low, high : float
        Values drawn fully transparent and at ``max_opacity``.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    values = np.asarray(values, dtype=np.float32)
    span = (high - low) or 1.0
    strength = np.clip((values - low) / span, 0.0, 1.0)
    return blend(grey_rgb(image), heat_rgb(strength, 0.0, 1.0), strength * max_opacity)


def enlarge(rgb, factor):
    """Nearest-neighbour enlargement by a whole ``factor`` (boxes drawn afterwards stay thin and crisp)."""
    factor = int(factor)
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1) if factor > 1 else np.array(rgb)


def boxes_overlay(rgb, boxes, *, scale=1, thickness=3):
    """A copy of ``rgb`` with labelled boxes drawn just outside their pixels.

    Parameters
    ----------
    rgb : ndarray, shape (h, w, 3)
        The image, already enlarged by ``scale``.
    boxes : sequence of (box, colour, label)
        ``box`` is (row, col, height, width) in image pixels; ``label`` text drawn at its top-left
        corner (or "" for none).
    scale : int
        Display pixels per image pixel.

    Returns
    -------
    ndarray, shape (h, w, 3), uint8
    """
    canvas = np.array(rgb, dtype=np.uint8, copy=True)
    for (row, col, height, width), colour, label in boxes:
        top, left = row * scale - thickness, col * scale - thickness
        bottom, right = (row + height) * scale + thickness, (col + width) * scale + thickness
        outline_box(canvas, top, left, bottom, right, colour, thickness)
        if label:
            size = 16
            label_width, label_height = text_size(label, size)
            tag_top = max(top - label_height - 6, 0)
            tag_left = min(max(left, 0), canvas.shape[1] - label_width - 6)
            canvas[tag_top:tag_top + label_height + 6, tag_left:tag_left + label_width + 6] = colour
            stamp_text_left(canvas, label, tag_top + 3, tag_left + 3, size, (0, 0, 0))
    return canvas


def kernel_picture(kernel, *, binary=False, size=180):
    """The kernel as a picture at most ``size`` pixels on its long side, crisp cells.

    A 0/1 kernel is drawn black (0) and white (1); any other kernel with the signed blue-white-red map.
    """
    kernel = np.asarray(kernel, dtype=np.float32)
    rgb = grey_rgb(kernel, 0.0, 1.0) if binary else diverging_rgb(kernel)
    factor = max(1, int(size) // max(kernel.shape))
    return enlarge(rgb, factor) if factor > 1 else fit_into(rgb, size)


def tile_class_overlay(image, labels, margins, tile, *, scale=1, max_opacity=0.6):
    """Tiles tinted by the class they were given, more strongly the clearer the decision.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        In [0, 1].
    labels : ndarray of int, shape (R, C)
        Class per tile (0 = A, 1 = B).
    margins : ndarray, shape (R, C)
        How much the winning kernel beat the other (0 .. 2 for normalised scores); 0.5 and above is
        drawn at full strength.
    tile : int
        Tile size in image pixels.
    scale : int
        Display pixels per image pixel.

    Returns
    -------
    ndarray, shape (H * scale, W * scale, 3), uint8
    """
    labels = np.asarray(labels)
    base = grey_rgb(image)
    colours = np.asarray(CLASS_COLOURS, dtype=np.uint8)
    tint = np.array(base, copy=True)
    opacity = np.zeros(base.shape[:2], dtype=np.float32)
    tile_rows, tile_cols = labels.shape
    for i in range(tile_rows):
        for j in range(tile_cols):
            block = (slice(i * tile, (i + 1) * tile), slice(j * tile, (j + 1) * tile))
            tint[block] = colours[labels[i, j]]
            opacity[block] = max_opacity * (0.35 + 0.65 * min(float(margins[i, j]) / 0.5, 1.0))
    canvas = enlarge(blend(base, tint, opacity), scale)
    # Thin lines between tiles so each decision reads as one square.
    for i in range(tile_rows + 1):
        canvas[min(i * tile * scale, canvas.shape[0] - 1), :tile_cols * tile * scale] = (255, 255, 255)
    for j in range(tile_cols + 1):
        canvas[:tile_rows * tile * scale, min(j * tile * scale, canvas.shape[1] - 1)] = (255, 255, 255)
    return canvas
