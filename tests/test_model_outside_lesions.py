"""The lesion generators written from issue #18's description alone (model.outside_lesions): each draws
what the description says, and nothing our generator draws beyond it."""

import numpy as np
import pytest

from model.data import CONTRAST_RANGE, SourceImage
from model.outside_lesions import OUTSIDE_GENERATORS, outside_labels, outside_patch_set


def flat_patch(level=0.5, size=64):
    return np.full((size, size), level, dtype=np.float32)


@pytest.mark.parametrize("name", list(OUTSIDE_GENERATORS))
def test_a_lesion_is_one_blob_of_the_described_size_and_contrast(name):
    draw = OUTSIDE_GENERATORS[name]
    for seed in range(40):
        drawn = draw(flat_patch(), np.random.default_rng(seed))
        assert drawn.dtype == np.float32 and drawn.shape == (64, 64)
        assert 0.0 <= drawn.min() and drawn.max() <= 1.0
        change = drawn - 0.5
        # The peak change (texture aside) is the contrast: within the described range, with some texture on top.
        peak = np.abs(change).max()
        assert CONTRAST_RANGE[0] * 0.5 < peak < CONTRAST_RANGE[1] * 1.5, (seed, peak)
        # The changed area is that of an ellipse of radius 3-12 px (soft edge included): pi r^2 within reach.
        changed = int((np.abs(change) > 0.5 * peak).sum())
        assert np.pi * 2.0**2 < changed < np.pi * 16.0**2, (seed, changed)
        # One blob: every strongly changed pixel lies within 2 x 12 x 1.6 px of the strongest change.
        rows, cols = np.nonzero(np.abs(change) > 0.5 * peak)
        centre = np.unravel_index(np.abs(change).argmax(), change.shape)
        assert np.hypot(rows - centre[0], cols - centre[1]).max() < 2 * 12 * 1.6


@pytest.mark.parametrize("name", list(OUTSIDE_GENERATORS))
def test_lesions_are_brighter_or_darker_and_fit_the_grey_scale(name):
    draw = OUTSIDE_GENERATORS[name]
    signs = {np.sign((draw(flat_patch(), np.random.default_rng(seed)) - 0.5).sum()) for seed in range(30)}
    assert signs == {-1.0, 1.0}
    # On a bright patch there is only room to be darker, on a dark one only to be brighter.
    assert all((draw(flat_patch(0.95), np.random.default_rng(seed)) - 0.95).sum() < 0 for seed in range(10))
    assert all((draw(flat_patch(0.05), np.random.default_rng(seed)) - 0.05).sum() > 0 for seed in range(10))


def test_the_blurred_disc_leaves_the_tissue_visible_through_it():
    stripes = np.tile(np.where(np.arange(64) % 8 < 4, 0.4, 0.6).astype(np.float32), (64, 1))
    drawn = OUTSIDE_GENERATORS["blurred disc laid over the tissue"](stripes, np.random.default_rng(3))
    change = drawn - stripes
    inside = np.abs(change) > 0.9 * np.abs(change).max()
    # Laid over, not replacing: the stripes' light and dark columns still differ inside the lesion.
    light, dark = inside & (stripes > 0.5), inside & (stripes < 0.5)
    assert light.any() and dark.any()
    assert drawn[light].mean() - drawn[dark].mean() > 0.1


def test_outside_patch_sets_are_seeded_and_half_lesion():
    rng = np.random.default_rng(0)
    image = SourceImage("noise.dcm", "MR", rng.random((200, 200)).astype(np.float32), (0.5, 1.0))
    for draw in OUTSIDE_GENERATORS.values():
        patches, labels = outside_patch_set([image], 40, 5, draw)
        again, labels_again = outside_patch_set([image], 40, 5, draw)
        assert patches.shape == (40, 64, 64) and labels.sum() == 20
        np.testing.assert_array_equal(patches, again)
        np.testing.assert_array_equal(labels, labels_again)
        # The recorded cross-validation checks its answers against these labels without cutting the patches.
        np.testing.assert_array_equal(labels, outside_labels(40, 5))
        assert not np.array_equal(labels, outside_labels(40, 6))
