"""The "Where is it?" lesson's recipes: the working image, the first box, the kernel and the search.

No Streamlit: views/detection.py holds the widgets; the template matching itself is lessons/matching.py.
"""

from __future__ import annotations

import numpy as np

from lessons.matching import binary_kernel, cut_box, find_matches, response_map, shifted_copy, zero_mean_kernel
from scans import apply_window
from scans.preprocess import resize

MAX_SIDE = 640  # larger images are reduced first, so a response map stays well under half a second
MIN_BOX, MAX_BOX = 4, 96


def fit_image(image):
    """The image reduced to MAX_SIDE on its longer side (unchanged if already small enough)."""
    rows, cols = image.shape
    if max(rows, cols) <= MAX_SIDE:
        return np.asarray(image, dtype=np.float32)
    factor = MAX_SIDE / max(rows, cols)
    shape = (max(1, round(rows * factor)), max(1, round(cols * factor)))
    return np.clip(resize(image, shape), 0.0, 1.0).astype(np.float32)


def default_side(image):
    """The first box's side: an eighth of the image (16 to 48 pixels), and never more than half a small image."""
    return int(max(MIN_BOX, min(np.clip(min(image.shape) // 8, 16, 48), min(image.shape) // 2)))


def image_to_search(chosen, image, target, shift_rows, shift_cols, noise, other_slice):
    """The image to search: ``image`` itself ("same"), a shifted noisy copy ("shifted"), or another slice of
    the chosen volume through the same window ("slice")."""
    if target == "shifted":
        moved = shifted_copy(image, shift_rows, shift_cols)
        if noise > 0:
            # A fixed seed: the same settings give the same copy on every rerun and for every student.
            moved = moved + np.random.default_rng(0).normal(0.0, noise, moved.shape).astype(np.float32)
        return moved
    if target == "slice":
        pixels = chosen.scan.slice(other_slice)
        return fit_image(apply_window(pixels, chosen.level, chosen.width))
    return image


def matching_kernel(patch, kind, threshold):
    """The kernel of a box's pixels: "binary" (0/1 from a threshold) or zero-mean and normalised."""
    return binary_kernel(patch, threshold) if kind == "binary" else zero_mean_kernel(patch)


def detect(images, parameters):
    """(kernel, response, matches): the kernel cut from the image, its response over the target image, and
    the best matches. ``images`` is (image, target image); ``parameters`` (target, box, kind, threshold,
    score, count), the first naming the target image for a cache."""
    image, target_image = images
    _, box, kind, threshold, score, count = parameters  # the first names the target image
    kernel = matching_kernel(cut_box(image, box), kind, threshold)
    response = response_map(target_image, kernel, normalise=score == "normalised")
    return kernel, response, find_matches(response, kernel.shape, count=count)

