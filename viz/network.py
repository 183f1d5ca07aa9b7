"""Pictures for the trained-classifier lesson: the window on the scan, every layer's maps, the kernels,
the weighted sum behind the answer, the softmax bars and the class activation map.

Pure drawing: NumPy arrays in, RGB uint8 arrays (H, W, 3) out; no Streamlit. Signed maps use the
blue-white-red scale, non-negative ones (after ReLU and pooling) the dark-to-bright heat scale.
"""

from __future__ import annotations

import numpy as np

from viz.charts import NEGATIVE_COLOUR, POSITIVE_COLOUR, signed_sum_bars
from viz.detection import heat_overlay
from viz.images import diverging_rgb, grey_rgb, magnitude_percentile, upscale_nearest
from viz.steps import (
    BACKGROUND,
    WINDOW_COLOUR,
    feature_map_grid,
    region_overlay,
    stamp_text_left,
    text_size,
    value_grid_frame,
)

# Red for "lesion", blue for "no lesion": the two ends of the signed colour scale.
LESION_COLOUR = POSITIVE_COLOUR
CLEAR_COLOUR = NEGATIVE_COLOUR
LABEL_SIZE = 18


def layer_maps(values, layer_name, *, tile=150, columns=8, signed=None):
    """Every channel of one layer's output, side by side, on one colour scale shared by the layer.

    Parameters
    ----------
    values : ndarray (C, h, w)
        One layer's output for one patch (``Classifier.activations``).
    layer_name : str
        Used in each tile's title ("conv1 #3").
    tile : int
        Pixels per map (nearest-neighbour, aspect kept).
    columns : int
        Maps per row.
    signed : bool, optional
        Blue-white-red around zero (True) or dark-to-bright from zero (False); default: signed when
        any value is negative (convolution outputs), heat otherwise (after ReLU and pooling).

    Returns
    -------
    ndarray (rows * (tile + title), columns * tile + gaps, 3), uint8
    """
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 3:
        raise ValueError(f"layer_maps needs (C, h, w) maps, got shape {values.shape}")
    if signed is None:
        signed = bool((values < 0).any())
    limit = float(np.abs(values).max()) or 1.0  # one scale for the layer: channels can be compared
    titles = [f"{layer_name} #{index + 1}" for index in range(len(values))]
    return feature_map_grid(list(values), titles, columns=columns, tile=tile, limit=limit,
                            colour_map="diverging" if signed else "heat")


def kernel_bank(kernels, *, tile=110, columns=8):
    """First-layer kernels (K, k, k) as small signed pictures on one shared scale (red +, blue -)."""
    kernels = np.asarray(kernels, dtype=np.float32)
    if kernels.ndim != 3:
        raise ValueError(f"kernel_bank needs (K, k, k) kernels, got shape {kernels.shape}")
    limit = float(np.abs(kernels).max()) or 1.0
    titles = [f"kernel #{index + 1}" for index in range(len(kernels))]
    return feature_map_grid(list(kernels), titles, columns=columns, tile=tile, limit=limit)


def kernel_numbers(kernel, *, cell=64):
    """One kernel (k, k) as a grid of coloured cells with its weights written in."""
    kernel = np.asarray(kernel, dtype=np.float32)
    return value_grid_frame(kernel, cell=cell, colour_map="diverging", limit=float(np.abs(kernel).max()) or 1.0)


def window_on_image(image, top, left, size, *, scale=1, colour=WINDOW_COLOUR):
    """The grey image (H, W) in [0, 1], enlarged by ``scale``, with the size x size window outlined."""
    rgb = upscale_nearest(grey_rgb(image), scale) if scale > 1 else grey_rgb(image)
    return region_overlay(rgb, top, left, size, size, scale=scale, colour=colour, thickness=max(2, scale + 1))


def outline_window(rgb, top, left, size, *, scale=1, colour=WINDOW_COLOUR):
    """A copy of an RGB picture (already enlarged by ``scale``) with the size x size window outlined."""
    return region_overlay(rgb, top, left, size, size, scale=scale, colour=colour, thickness=max(2, scale + 1))


def cam_overlay(patch, cam, *, scale=4, max_opacity=0.8, where=None):
    """The class activation map laid over the patch as heat: where the evidence for "lesion" is strongest.

    Relative within the map: its lowest value is clear, its highest drawn at ``max_opacity``, with the
    opacity growing as the square of the relative value so that the peak stands out (the signed values
    themselves are drawn by :func:`signed_map`).

    Parameters
    ----------
    patch : ndarray (H, W) in [0, 1]
    cam : ndarray (H, W)
    scale : int
        Nearest-neighbour enlargement for display.
    where : ndarray of bool (H, W), optional
        Only these pixels carry the map (e.g. the window inside a whole image); elsewhere clear.
    """
    cam = np.asarray(cam, dtype=np.float32)
    inside = np.ones(cam.shape, dtype=bool) if where is None else np.asarray(where, dtype=bool)
    low, high = float(cam[inside].min()), float(cam[inside].max())
    strength = np.where(inside, ((cam - low) / (high - low)) ** 2 if high > low else 0.0, 0.0)
    picture = heat_overlay(patch, strength, low=0.0, high=1.0, max_opacity=max_opacity)
    return upscale_nearest(picture, scale) if scale > 1 else picture


def signed_map(values, *, size=256):
    """A small signed map (h, w) as blue-white-red cells enlarged to about ``size`` pixels, scale symmetric."""
    values = np.asarray(values, dtype=np.float32)
    factor = max(1, size // max(values.shape))
    return upscale_nearest(diverging_rgb(values, float(np.abs(values).max()) or 1.0), factor)


def probability_overlay(image, probability_map, *, scale=1, max_opacity=0.65):
    """A lesion-probability map (H, W) in [0, 1] over the grey image (H, W): clear below 0.5,
    increasingly red-yellow heat from 0.5 (undecided) to 1 (sure there is a lesion)."""
    probability_map = np.asarray(probability_map, dtype=np.float32)
    if probability_map.shape != np.shape(image):
        raise ValueError(f"probability map {probability_map.shape} and image {np.shape(image)} must match")
    picture = heat_overlay(image, probability_map, low=0.5, high=1.0, max_opacity=max_opacity)
    return upscale_nearest(picture, scale) if scale > 1 else picture


def probability_bars(probabilities, class_names, *, width=560, bar_height=40):
    """Softmax output [no lesion, lesion] as two labelled horizontal bars (blue, red)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = list(class_names)
    colours = (CLEAR_COLOUR, LESION_COLOUR)
    label_width = max(text_size(label, LABEL_SIZE)[0] for label in labels) + 16
    number_width = text_size("100.0 %", LABEL_SIZE)[0] + 16
    bar_space = width - label_width - number_width
    row_height = bar_height + 10
    canvas = np.full((len(labels) * row_height, width, 3), BACKGROUND, dtype=np.uint8)
    for index, (label, probability) in enumerate(zip(labels, probabilities)):
        top = index * row_height + 5
        colour = colours[index % 2]
        canvas[top:top + bar_height, label_width:label_width + bar_space] = (236, 236, 236)
        canvas[top:top + bar_height, label_width:label_width + int(round(probability * bar_space))] = colour
        stamp_text_left(canvas, label, top + bar_height // 2 - LABEL_SIZE // 2, 4, LABEL_SIZE)
        stamp_text_left(canvas, f"{100 * probability:.1f} %", top + bar_height // 2 - LABEL_SIZE // 2,
                        width - number_width + 8, LABEL_SIZE)
    return canvas


def contribution_bars(contributions, bias, *, top=10, width=640, bar_height=24):
    """How the lesion score adds up: each channel's pooled value times its weight difference.

    Parameters
    ----------
    contributions : ndarray (C,)
        pooled_k * (w[k, lesion] - w[k, no lesion]) for each channel k.
    bias : float
        b[lesion] - b[no lesion].
    top : int
        The ``top`` largest contributions get a bar each; the rest are summed in one "others" bar.

    Returns
    -------
    ndarray, uint8: bars to the right (red) push towards "lesion", to the left (blue) towards
    "no lesion"; the last bar is the total (the lesion score minus the no-lesion score).
    """
    contributions = np.asarray(contributions, dtype=np.float64)
    order = np.argsort(-np.abs(contributions))
    shown = order[:top]
    entries = [(f"channel {index + 1}", float(contributions[index])) for index in shown]
    if len(order) > top:
        entries.append((f"{len(order) - top} other channels", float(contributions[order[top:]].sum())))
    entries.append(("bias", float(bias)))
    total = float(contributions.sum() + bias)
    entries.append(("total (lesion - no lesion)", total))
    return signed_sum_bars(entries, width=width, bar_height=bar_height, text_px=15, decimals=3)


def filtered_scan(response, *, limit=None):
    """A first-layer kernel applied to the whole scan (H, W) as a signed picture."""
    response = np.asarray(response, dtype=np.float32)
    if limit is None:
        # The 99.5th percentile: one bright edge must not wash out the rest of the scan.
        limit = magnitude_percentile(response, 99.5) or 1.0
    return diverging_rgb(response, limit)


def lesion_outline(rgb, mask, *, scale=1, colour=(0, 170, 60)):
    """A copy of ``rgb`` with the boundary of a boolean mask (H, W) drawn (enlarged by ``scale``)."""
    mask = np.asarray(mask, dtype=bool)
    if scale > 1:
        mask = np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1)
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    edge = mask & ~inner
    canvas = np.array(rgb, dtype=np.uint8, copy=True)
    canvas[edge] = colour
    return canvas



def mistakes_gallery(sections, *, scale=3, columns=8, gap=10):
    """Rows of patches under titles, each with a caption: the classifier's worst mistakes.

    Parameters
    ----------
    sections : list of (title, items)
        ``items``: list of (patch (S, S) in [0, 1], lesion mask (S, S) bool or None, caption str);
        a mask is outlined in green (where the missed lesion is).
    scale : int
        Screen pixels per patch pixel.
    columns : int
        Patches per row.

    Returns
    -------
    uint8 (H, W, 3)
    """
    if not sections or not any(items for _, items in sections):
        raise ValueError("the gallery needs at least one patch")
    tile = max(len(patch) for _, items in sections for patch, _, _ in items) * scale
    caption_height = text_size("0", 14)[1] + 8
    title_height = text_size("Ag", LABEL_SIZE)[1] + 14
    width = columns * tile + (columns + 1) * gap
    bands = []
    for title, items in sections:
        rows = max(1, -(-len(items) // columns))
        band = np.full((title_height + rows * (tile + caption_height + gap), width, 3), BACKGROUND, dtype=np.uint8)
        stamp_text_left(band, title, 6, gap, LABEL_SIZE)
        for index, (patch, mask, caption) in enumerate(items):
            row, column = divmod(index, columns)
            top = title_height + row * (tile + caption_height + gap)
            left = gap + column * (tile + gap)
            picture = upscale_nearest(grey_rgb(patch), scale)
            if mask is not None:
                picture = lesion_outline(picture, mask, scale=scale)
            band[top:top + picture.shape[0], left:left + picture.shape[1]] = picture
            while len(caption) > 1 and text_size(caption, 14)[0] > tile:
                caption = caption[:-1]
            stamp_text_left(band, caption, top + tile + 4, left, 14)
        bands.append(band)
    return np.concatenate(bands, axis=0)
