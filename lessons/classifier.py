"""The classifier lesson's recipes: the working image, the window under a click, a synthetic lesion, the map.

No Streamlit: views/classifier.py holds the widgets; the network is model/.
"""

from __future__ import annotations

import numpy as np

from model import live, load
from model.data import CRISP_LESION_STYLE, LESION_STYLE, insert_lesion
from model.network import probability_picture
from viz.network import probability_overlay

MAP_STRIDE = 16  # pixels between the windows of the lesion-probability map
# A lesion's edge: soft as in most training lesions, or crisper than any (where the network is least sure).
LESION_EDGES = {"soft": LESION_STYLE, "crisp": CRISP_LESION_STYLE}


def fit_image(image):
    """The windowed image at the scale the classifier's pages show it (model.data.shown_shape), as "Watch it learn"."""
    return live.fit_image(image, size=load().input_size)


def window_for_click(event, image_shape, size):
    """(top, left) of the size x size window centred on a click, kept inside the image.

    ``event`` is a click as views.components.picture reports it: "x", "y" on a picture of "width" x
    "height" units (the picture may be the image enlarged).
    """
    row = event["y"] * image_shape[0] / event["height"]
    col = event["x"] * image_shape[1] / event["width"]
    top = int(np.clip(round(row - size / 2), 0, image_shape[0] - size))
    left = int(np.clip(round(col - size / 2), 0, image_shape[1] - size))
    return top, left


def image_with_lesion(image, lesion):
    """A copy of the image with the remembered lesion drawn in, and the lesion's mask (H, W) (or None)."""
    if lesion is None:
        return image, None
    size = load().input_size
    # The lesion is made inside a window-sized region around its centre, with that region's noise.
    top = int(np.clip(round(lesion["row"] - size / 2), 0, image.shape[0] - size))
    left = int(np.clip(round(lesion["col"] - size / 2), 0, image.shape[1] - size))
    region = image[top:top + size, left:left + size]
    centre = (lesion["row"] - top, lesion["col"] - left)
    local_mean = float(region[max(0, int(centre[0]) - 4):int(centre[0]) + 5,
                              max(0, int(centre[1]) - 4):int(centre[1]) + 5].mean())
    magnitude = lesion["contrast"]
    if lesion["polarity"] == "brighter" or (lesion["polarity"] == "auto" and local_mean + magnitude <= 1.0):
        contrast = magnitude
    else:
        contrast = -magnitude
    rng = np.random.default_rng(lesion["seed"])
    with_lesion, placed = insert_lesion(region, rng, center=centre, radius=lesion["radius"], contrast=contrast,
                                        style=LESION_EDGES[lesion["edge"]])
    result = np.array(image, dtype=np.float32, copy=True)
    result[top:top + size, left:left + size] = with_lesion
    mask = np.zeros(image.shape, dtype=bool)
    mask[top:top + size, left:left + size] = placed.mask > 0.5
    return result, mask


def probability_map(image, lesion_key):
    """(probabilities, tops, lefts) of the classifier on every window MAP_STRIDE apart.

    ``lesion_key`` names the lesion drawn into ``image`` (for a cache); the map depends on the image alone.
    """
    return load().probability_map(image, stride=MAP_STRIDE)


def probability_on_image(image, probabilities, tops, lefts, side):
    """The lesion-probability map (from :func:`probability_map`) as heat over the image, enlarged to about
    ``side`` pixels on its longer side (never reduced): RGB uint8."""
    picture = probability_picture(probabilities, tops, lefts, image.shape, load().input_size)
    return probability_overlay(image, picture, scale=max(1, side // max(image.shape)))
