"""Lesions drawn by generators written apart from model.data.insert_lesion, from issue #18's description alone.

Issue #18's independent check draws its lesions with its own generator, following the same description
as ours: round or elliptical, radius 3-12 px, contrast 0.08-0.4 in windowed units, brighter or darker,
soft edge, texture. These two generators follow that description and nothing else of ours, so that
how far the classifier's answer depends on our generator's own choices (how an edge fades, whether the
lesion replaces the tissue or lies over it, what its texture is) can be measured before anyone else
finds out. Test sets only: training never draws them.
"""

from __future__ import annotations

import numpy as np

from model.data import CONTRAST_RANGE, RADIUS_RANGE, make_patch_set


def _elliptical_distance(rng, size, radius):
    """Pixels from a random centre in an elliptical metric (aspect 1-1.6, random angle): (size, size)."""
    aspect = rng.uniform(1.0, 1.6)
    angle = rng.uniform(0.0, np.pi)
    centre = rng.uniform(0.5 * radius, size - 1 - 0.5 * radius, 2)
    rows, cols = np.mgrid[0:size, 0:size]
    along = ((rows - centre[0]) * np.cos(angle) + (cols - centre[1]) * np.sin(angle)) / aspect
    across = (-(rows - centre[0]) * np.sin(angle) + (cols - centre[1]) * np.cos(angle)) * aspect
    return np.sqrt(along**2 + across**2)


def _signed_contrast(patch, mask, rng):
    """A magnitude in CONTRAST_RANGE, brighter or darker at random where both fit in [0, 1]."""
    magnitude = rng.uniform(*CONTRAST_RANGE)
    mean = float((patch * mask).sum() / max(float(mask.sum()), 1e-6))
    if mean - magnitude >= 0.0 and mean + magnitude <= 1.0:
        return magnitude * rng.choice((-1.0, 1.0)), mean
    return (magnitude if mean + magnitude <= 1.0 else -magnitude), mean


def _smooth_noise(rng, shape, sigma):
    """Gaussian noise smoothed by a Gaussian of ``sigma`` pixels, scaled to unit standard deviation."""
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return noise / (noise.std() + 1e-9)


def blurred_disc_lesion(patch, rng):
    """A filled ellipse blurred by a Gaussian of 0.5-1.5 px, added on top of the tissue (which stays
    visible through it), with a smooth texture up to 30 % of the contrast: float32, clipped to [0, 1]."""
    from scipy import ndimage

    size = patch.shape[0]
    radius = rng.uniform(*RADIUS_RANGE)
    inside = (_elliptical_distance(rng, size, radius) <= radius).astype(np.float64)
    mask = ndimage.gaussian_filter(inside, rng.uniform(0.5, 1.5))
    contrast, _ = _signed_contrast(patch, mask, rng)
    texture = _smooth_noise(rng, patch.shape, radius / 3.0) * rng.uniform(0.0, 0.3) * abs(contrast)
    return np.clip(patch + mask * (contrast + texture), 0.0, 1.0).astype(np.float32)


def ramp_edged_lesion(patch, rng):
    """An ellipse whose edge falls off along a half cosine 1-4 px wide, with a fine grain up to 25 % of
    the contrast; half of them added on top of the tissue, half blending it 50-100 % towards its mean
    plus the contrast: float32, clipped to [0, 1]."""
    size = patch.shape[0]
    radius = rng.uniform(*RADIUS_RANGE)
    ramp = rng.uniform(1.0, 4.0)
    distance = _elliptical_distance(rng, size, radius)
    mask = 0.5 * (1.0 + np.cos(np.pi * np.clip((distance - (radius - ramp / 2.0)) / ramp, 0.0, 1.0)))
    contrast, mean = _signed_contrast(patch, mask, rng)
    grain = _smooth_noise(rng, patch.shape, 1.0) * rng.uniform(0.0, 0.25) * abs(contrast)
    if rng.random() < 0.5:
        drawn = patch + mask * (contrast + grain)
    else:
        share = rng.uniform(0.5, 1.0) * mask
        drawn = patch * (1.0 - share) + share * (mean + contrast + grain)
    return np.clip(drawn, 0.0, 1.0).astype(np.float32)


OUTSIDE_GENERATORS = {
    "blurred disc laid over the tissue": blurred_disc_lesion,
    "cosine-ramp edge, laid over or blended": ramp_edged_lesion,
}


def outside_patch_set(images, count, seed, draw, *, as_shown=False):
    """``count`` patches of ``images``, half with a lesion drawn by ``draw`` (one of OUTSIDE_GENERATORS).

    The backgrounds are the lesion-free patches of :func:`model.data.make_patch_set` (seeded, the same
    crops and windows as our test sets cut). Returns (patches float32 (count, S, S), labels int64 (count,)).
    """
    backgrounds = make_patch_set(images, 2 * count, seed, as_shown=as_shown)
    patches = backgrounds.patches[backgrounds.labels == 0][:count].copy()
    rng = np.random.default_rng(seed)
    labels = _labels(rng, count)
    for index in np.flatnonzero(labels):
        patches[index] = draw(patches[index], rng)
    return patches, labels


def outside_labels(count, seed):
    """The labels :func:`outside_patch_set` gives ``count`` patches with ``seed``, without cutting them
    (they depend on the count and the seed alone)."""
    return _labels(np.random.default_rng(seed), count)


def _labels(rng, count):
    labels = np.zeros(count, dtype=np.int64)
    labels[rng.permutation(count)[: count // 2]] = 1
    return labels
