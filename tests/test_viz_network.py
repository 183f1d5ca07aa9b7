"""viz.network's gallery of the classifier's mistakes: patches at scale under their titles, captions, outlines."""

import numpy as np
import pytest

from viz.network import mistakes_gallery
from viz.steps import BACKGROUND


def test_gallery_places_each_patch_enlarged_and_outlines_only_given_masks():
    patch = np.linspace(0.0, 1.0, 16 * 16, dtype=np.float32).reshape(16, 16)
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:9, 4:9] = True
    picture = mistakes_gallery([("false positives", [(patch, None, "0.97 a"), (patch, None, "0.91 b")]),
                                ("false negatives", [(patch, mask, "0.03 c")])], scale=2, columns=4, gap=10)
    assert picture.dtype == np.uint8 and picture.shape[1] == 4 * 32 + 5 * 10
    green = np.all(picture == (0, 170, 60), axis=2)
    rows_with_green = np.flatnonzero(green.any(axis=1))
    # Only the second section's patch carries an outline: its rows lie below the first section.
    first_band_bottom = picture.shape[0] // 2
    assert rows_with_green.size and rows_with_green.min() > first_band_bottom - 40
    # Two patches in the first band, none in its third and fourth places.
    grey_columns = [np.any(np.all(picture[:, left + 8:left + 9] != BACKGROUND, axis=2)) for left in (10, 52, 94, 136)]
    assert grey_columns[:2] == [True, True]


def test_gallery_needs_at_least_one_patch():
    with pytest.raises(ValueError, match="at least one patch"):
        mistakes_gallery([("empty", [])])
