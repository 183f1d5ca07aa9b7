"""Template matching with the engine: a box of the image becomes a kernel that finds its own kind.

A kernel shaped like what you look for answers most strongly where that shape is. This module turns a
box cut from an image into such a kernel (zero-mean and unit-norm, or a 0/1 mask from a threshold),
scores every position of an image with :func:`kernels.conv2d` (the engine picks its FFT path for
large kernels), and reads the answer: the best non-overlapping matches, and a two-kernel, two-class
decision per tile.

Scores (``response_map``):

- normalised (the default, "normalised cross-correlation"): for the window W at each position,
  ``sum((W - mean W) * (K - mean K)) / (||W - mean W|| * ||K - mean K||)``, a number in [-1, 1] that
  is 1 where the window is the template up to brightness and contrast. The numerator is one
  convolution with the zero-mean kernel (its sum is zero, so the window's mean drops out); the
  window energies come from running sums (an integral image), so the cost is one convolution.
- plain: the raw sum of products ``sum(W * K)``, what a convolution layer computes and what the
  0/1-kernel figure of the source article shows. It also grows with brightness, which is why
  template matching normalises.

Positions are the windows' top-left corners: ``response[r, c]`` scores ``image[r:r+kh, c:c+kw]``, so
the map is a "valid" convolution's, ``kernels.output_size`` along each axis: (H - kh + 1, W - kw + 1).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from kernels import conv2d, output_size

# A window whose pixels vary less than this (standard deviation, as a fraction of the image's value
# range) is "flat": its normalised score is undefined (0 / 0), so it is set to 0, not to noise.
FLAT_WINDOW_TOLERANCE = 1e-4


class Box(NamedTuple):
    """A rectangle of pixels: top-left (row, col) and size (height, width), all ints."""

    row: int
    col: int
    height: int
    width: int

    def clipped(self, image_shape):
        """The same box moved (not shrunk) to lie inside an image of ``image_shape``, and no larger."""
        rows, cols = image_shape
        height, width = min(self.height, rows), min(self.width, cols)
        row = min(max(self.row, 0), rows - height)
        col = min(max(self.col, 0), cols - width)
        return Box(int(row), int(col), int(height), int(width))


class Match(NamedTuple):
    """One detected position: the box the kernel covers there, and its score."""

    row: int
    col: int
    height: int
    width: int
    score: float

    @property
    def box(self):
        return Box(self.row, self.col, self.height, self.width)


def _checked_image(image, name="image"):
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (H, W), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values: window or clean it first")
    return array


def cut_box(image, box):
    """A copy of the pixels inside ``box``.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    box : Box

    Returns
    -------
    ndarray, shape (box.height, box.width), float32

    Raises
    ------
    ValueError
        If the box is empty or reaches outside the image.
    """
    image = _checked_image(image)
    row, col, height, width = (int(v) for v in box)
    if height < 1 or width < 1:
        raise ValueError(f"the box must be at least 1 x 1 pixels, got {height} x {width}")
    if row < 0 or col < 0 or row + height > image.shape[0] or col + width > image.shape[1]:
        raise ValueError(f"box {tuple(box)} reaches outside the {image.shape[0]} x {image.shape[1]} image: "
                         "move it inside or make it smaller")
    return image[row:row + height, col:col + width].copy()


def zero_mean_kernel(patch):
    """The template-matching kernel of a patch: its mean subtracted, scaled to unit length.

    Parameters
    ----------
    patch : ndarray, shape (kh, kw)

    Returns
    -------
    ndarray, shape (kh, kw), float32
        Sums to 0 and its squares to 1.

    Raises
    ------
    ValueError
        If the patch is flat (one value everywhere): it has no shape to look for.
    """
    patch = _checked_image(patch, "patch").astype(np.float64)
    centred = patch - patch.mean()
    length = np.sqrt(np.sum(centred * centred))
    if length <= 1e-12 * max(1.0, float(np.abs(patch).max())):
        raise ValueError("the box is flat (all its pixels have the same value), so it has no shape to look "
                         "for: put it around a structure with some contrast")
    return (centred / length).astype(np.float32)


def binary_kernel(patch, threshold):
    """A 0/1 kernel: 1 where the patch is at least ``threshold``, 0 elsewhere (the article's mask kernel).

    Parameters
    ----------
    patch : ndarray, shape (kh, kw)
    threshold : float
        In the patch's units (for a windowed image, between 0 and 1).

    Returns
    -------
    ndarray, shape (kh, kw), float32 of 0.0 and 1.0

    Raises
    ------
    ValueError
        If the threshold leaves every pixel on the same side (an all-0 or all-1 kernel has no shape).
    """
    patch = _checked_image(patch, "patch")
    mask = (patch >= threshold).astype(np.float32)
    ones = int(mask.sum())
    if ones == 0 or ones == mask.size:
        side = "below" if ones == 0 else "at or above"
        raise ValueError(f"threshold {threshold:.3g} leaves every pixel of the box {side} it, so the 0/1 "
                         f"kernel has no shape: choose a threshold between {float(patch.min()):.3g} and "
                         f"{float(patch.max()):.3g}")
    return mask


def window_sums(image, shape):
    """Sum and sum of squares of every (kh, kw) window, by running sums (an integral image).

    Parameters
    ----------
    image : ndarray, shape (H, W)
    shape : (int, int)
        Window (kh, kw), at most the image's size.

    Returns
    -------
    sums, sums_of_squares : ndarray, shape (H - kh + 1, W - kw + 1), float64
        Of the image minus its mean (which keeps the float64 differences small and exact enough).
    """
    image = _checked_image(image).astype(np.float64)
    window_rows, window_cols = (int(n) for n in shape)
    if not (1 <= window_rows <= image.shape[0] and 1 <= window_cols <= image.shape[1]):
        raise ValueError(f"window {shape} does not fit the {image.shape[0]} x {image.shape[1]} image")
    rows, cols = output_size(image.shape[0], window_rows), output_size(image.shape[1], window_cols)
    centred = image - image.mean()

    def box_sums(values):
        # integral[r, c] is the sum of values[:r, :c]; a window's sum is four of its corners.
        integral = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
        integral[1:, 1:] = values.cumsum(axis=0).cumsum(axis=1)
        return (integral[window_rows:window_rows + rows, window_cols:window_cols + cols]
                - integral[:rows, window_cols:window_cols + cols]
                - integral[window_rows:window_rows + rows, :cols] + integral[:rows, :cols])

    return box_sums(centred), box_sums(centred * centred)


def _window_spread(image, shape):
    """Root of the summed squared deviation of every window from its own mean (float64)."""
    sums, sums_of_squares = window_sums(image, shape)
    count = shape[0] * shape[1]
    return np.sqrt(np.maximum(sums_of_squares - sums * sums / count, 0.0))


def response_map(image, kernel, *, normalise=True):
    """Score every position of ``kernel`` over ``image``.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    kernel : ndarray, shape (kh, kw)
        A template (any kernel: from :func:`zero_mean_kernel`, :func:`binary_kernel`, or raw pixels).
    normalise : bool, default True
        True: normalised cross-correlation in [-1, 1] (flat windows score 0). False: the plain sum of
        products, as a convolution layer computes it.

    Returns
    -------
    ndarray, shape (H - kh + 1, W - kw + 1), float32
        ``response[r, c]`` scores the window whose top-left pixel is (r, c).

    Raises
    ------
    ValueError
        If the kernel is larger than the image, or (normalise=True) flat.
    """
    image = _checked_image(image)
    kernel = _checked_image(kernel, "kernel")
    if kernel.shape[0] > image.shape[0] or kernel.shape[1] > image.shape[1]:
        raise ValueError(f"the {kernel.shape[0]} x {kernel.shape[1]} kernel is larger than the "
                         f"{image.shape[0]} x {image.shape[1]} image: choose a smaller box")
    if not normalise:
        return conv2d(image, kernel, padding="valid")
    unit_kernel = zero_mean_kernel(kernel)
    # The kernel sums to zero, so correlating with the raw image equals correlating with the window
    # minus its mean: the numerator of the normalised score.
    numerator = conv2d(image, unit_kernel, padding="valid").astype(np.float64)
    spread = _window_spread(image, kernel.shape)
    value_range = float(image.max() - image.min())
    flat = spread <= FLAT_WINDOW_TOLERANCE * value_range * np.sqrt(kernel.size)
    scores = np.divide(numerator, spread, out=np.zeros_like(numerator), where=~flat)
    return np.clip(scores, -1.0, 1.0).astype(np.float32)


def find_matches(response, kernel_shape, *, count=5, max_overlap=0.25):
    """The best positions of a response map whose boxes do not overlap much (non-maximum suppression).

    Greedy: take the highest score, drop every position whose box overlaps it by more than
    ``max_overlap`` (intersection over union), repeat.

    Parameters
    ----------
    response : ndarray, shape (H', W')
        From :func:`response_map`.
    kernel_shape : (int, int)
        (kh, kw): the size of each match's box.
    count : int, default 5
        At most this many matches.
    max_overlap : float in [0, 1), default 0.25

    Returns
    -------
    list of Match
        Best first; fewer than ``count`` if the map runs out of positions.
    """
    response = np.asarray(response, dtype=np.float64)
    if response.ndim != 2 or response.size == 0:
        raise ValueError(f"response must be a non-empty 2-D map, got shape {response.shape}")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if not 0.0 <= max_overlap < 1.0:
        raise ValueError(f"max_overlap must be in [0, 1), got {max_overlap}")
    kernel_rows, kernel_cols = (int(n) for n in kernel_shape)
    scores = response.copy()
    map_rows, map_cols = scores.shape
    matches = []
    for _ in range(count):
        flat_index = int(np.argmax(scores))
        row, col = divmod(flat_index, map_cols)
        best = scores[row, col]
        if best == -np.inf:
            break
        matches.append(Match(row, col, kernel_rows, kernel_cols, float(response[row, col])))
        # Only boxes closer than one kernel size can overlap this one.
        row_start, row_stop = max(0, row - kernel_rows + 1), min(map_rows, row + kernel_rows)
        col_start, col_stop = max(0, col - kernel_cols + 1), min(map_cols, col + kernel_cols)
        row_overlap = kernel_rows - np.abs(np.arange(row_start, row_stop) - row)
        col_overlap = kernel_cols - np.abs(np.arange(col_start, col_stop) - col)
        intersection = row_overlap[:, None] * col_overlap[None, :]
        union = 2 * kernel_rows * kernel_cols - intersection
        window = scores[row_start:row_stop, col_start:col_stop]
        window[intersection / union > max_overlap] = -np.inf
    return matches


class TileScores(NamedTuple):
    """Per-tile scores of several kernels and the class each tile gets.

    ``scores[k, i, j]``: the best score of kernel k with its box inside tile (i, j);
    ``labels[i, j]``: the kernel (class) with the highest score; ``tile``: the tile size in pixels;
    ``image_scores[k]``: the best score of kernel k anywhere in the image (the whole image's evidence).
    """

    scores: np.ndarray
    labels: np.ndarray
    tile: int
    image_scores: np.ndarray


def classify_tiles(image, kernels, tile):
    """Two (or more) kernels, as many classes: each tile goes to the kernel that responds most in it.

    The image is cut into ``tile`` x ``tile`` squares (a remainder at the bottom/right is left out).
    Kernel k's score for a tile is its highest normalised score over the positions where its box
    lies entirely inside the tile; the tile's class is the kernel with the highest score. This is the
    source article's "kernel A for class A, kernel B for class B" in miniature.

    Parameters
    ----------
    image : ndarray, shape (H, W)
    kernels : sequence of ndarray, each (kh, kw)
        Templates, each at most ``tile`` in both directions.
    tile : int

    Returns
    -------
    TileScores
        ``scores`` (len(kernels), H // tile, W // tile) float32, ``labels`` (H // tile, W // tile) int,
        ``image_scores`` (len(kernels),) float32.
    """
    image = _checked_image(image)
    if len(kernels) < 2:
        raise ValueError(f"classify_tiles needs at least two kernels (one per class), got {len(kernels)}")
    tile = int(tile)
    if not 1 <= tile <= min(image.shape):
        raise ValueError(f"tile must be between 1 and {min(image.shape)} pixels for this image, got {tile}")
    tile_rows, tile_cols = image.shape[0] // tile, image.shape[1] // tile
    scores = np.empty((len(kernels), tile_rows, tile_cols), dtype=np.float32)
    image_scores = np.empty(len(kernels), dtype=np.float32)
    for index, kernel in enumerate(kernels):
        kernel_rows, kernel_cols = np.shape(kernel)
        if kernel_rows > tile or kernel_cols > tile:
            raise ValueError(f"kernel {index} is {kernel_rows} x {kernel_cols}, larger than the {tile}-pixel "
                             "tiles: use larger tiles or a smaller box")
        response = response_map(image, kernel)
        image_scores[index] = response.max()
        # Positions whose box fits inside tile (i, j): a "valid" convolution's over the tile.
        rows_inside, cols_inside = output_size(tile, kernel_rows), output_size(tile, kernel_cols)
        for i in range(tile_rows):
            for j in range(tile_cols):
                scores[index, i, j] = response[i * tile:i * tile + rows_inside, j * tile:j * tile + cols_inside].max()
    return TileScores(scores, np.argmax(scores, axis=0), tile, image_scores)


def shifted_copy(image, rows, cols, *, fill=0.0):
    """The image moved by ``rows`` down and ``cols`` right (negative: up/left); uncovered pixels get ``fill``.

    Returns
    -------
    ndarray, same shape as ``image``, float32
    """
    image = _checked_image(image)
    rows, cols = int(rows), int(cols)
    height, width = image.shape
    shifted = np.full_like(image, fill)
    if abs(rows) >= height or abs(cols) >= width:
        return shifted
    shifted[max(rows, 0):height + min(rows, 0), max(cols, 0):width + min(cols, 0)] = \
        image[max(-rows, 0):height - max(rows, 0), max(-cols, 0):width - max(cols, 0)]
    return shifted


def structured_boxes(image, box_shape, count=2, *, margin=0.1, saturated=0.2):
    """Boxes of ``box_shape`` around the image's most varied (most structured) places, not overlapping.

    A starting suggestion for where to cut a template: flat background makes a poor one, and so do
    the image's border (often the edge of the field of view) and regions the window clips to black or
    white (their shape is the window's, not the anatomy's).

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Windowed, in [0, 1].
    box_shape : (int, int)
    count : int
    margin : float
        Boxes keep this fraction of the image's height and width away from its edges.
    saturated : float
        Boxes with more than this fraction of pixels at 0 or 1 (within 0.02) are passed over.
        Both rules are dropped if no box would be left.

    Returns
    -------
    list of Box
        Most varied first.
    """
    image = _checked_image(image)
    box_rows, box_cols = (int(n) for n in box_shape)
    spread = _window_spread(image, (box_rows, box_cols))
    candidates = spread.copy()
    row_margin, col_margin = int(margin * image.shape[0]), int(margin * image.shape[1])
    allowed = np.zeros(spread.shape, dtype=bool)
    allowed[row_margin:spread.shape[0] - row_margin, col_margin:spread.shape[1] - col_margin] = True
    clipped = ((image <= 0.02) | (image >= 0.98)).astype(np.float32)
    clipped_sums, _ = window_sums(clipped, (box_rows, box_cols))
    clipped_fraction = (clipped_sums + clipped.mean() * box_rows * box_cols) / (box_rows * box_cols)
    allowed &= clipped_fraction <= saturated
    if allowed.any():
        candidates[~allowed] = -np.inf
    matches = find_matches(candidates, (box_rows, box_cols), count=count, max_overlap=0.0)
    return [match.box for match in matches if np.isfinite(match.score)]


def contrasting_boxes(image, box_shape, *, candidates=8, **options):
    """Two structured boxes that differ most in mean brightness: examples of two different tissues.

    Among the ``candidates`` most structured boxes (see :func:`structured_boxes`, which takes the
    same ``options``), the first is the most structured one and the second the one whose mean is
    furthest from it.

    Returns
    -------
    list of Box
        Two boxes (fewer only if the image has room for fewer).
    """
    image = _checked_image(image)
    boxes = structured_boxes(image, box_shape, count=candidates, **options)
    if len(boxes) < 2:
        return boxes
    means = [float(cut_box(image, box).mean()) for box in boxes]
    second = int(np.argmax([abs(mean - means[0]) for mean in means]))
    return [boxes[0], boxes[second]]
