"""The pages' recipes in lessons/ (no Streamlit): the stacks' stages and summary, the search image of "Where is it?"."""

import numpy as np
import pytest

from lessons import detection, stacks
from lessons.matching import structured_boxes
from lessons.receptive_field import receptive_field, stack_geometries
from scans import read_sample


def test_a_stage_from_the_pages_choices_and_its_description():
    assert "sobel x" not in stacks.allowed_kernels(5) and "gaussian blur" in stacks.allowed_kernels(5)
    stage = stacks.stage_from_spec(("bank", ("box blur", "gaussian blur"), 5, 1, 2, "leaky ReLU", "avg", 3, None))
    assert stage.bank.shape == (2, 5, 5)
    assert stage.names == ("box blur", "gaussian blur") and not stacks.is_learned(stage)
    assert stacks.describe(stage) == "conv 5x5 x2 dilation 2, leaky ReLU, avg pool 3"
    learned = stacks.stage_from_spec(("learned", (2, 0), 0, 1, 1, "ReLU", "max", 2, None))
    assert learned.names == ("learned #3", "learned #1") and stacks.is_learned(learned)
    np.testing.assert_array_equal(learned.bank, stacks.learned_kernels()[[2, 0]])
    with pytest.raises(ValueError, match=r"learned kernel indices \[999\] do not exist"):
        stacks.learned_bank([999])


def test_the_working_image_and_the_summary_rows():
    image = np.random.default_rng(0).random((300, 200)).astype(np.float32)
    assert stacks.working_shape(image.shape, 128) == (128, 85)
    assert stacks.working_shape((100, 60), 256) == (100, 60)  # never enlarged
    specs = (("bank", ("sobel x",), 3, 1, 1, "ReLU", "max", 2, None),
             ("bank", ("laplacian", "box blur"), 3, 1, 1, "none", "none", 2, None))
    working, stages, results = stacks.working_stack(image, (128, specs))
    assert working.shape == (128, 85) and 0 <= working.min() and working.max() <= 1
    rows = stacks.summary_rows(working, stages, results, mm_per_pixel=None)
    assert [row["output (channels x height x width)"] for row in rows] == ["1 x 128 x 85", "1 x 64 x 42",
                                                                           "2 x 64 x 42"]
    layers, ends = stack_geometries(stages)
    assert rows[2]["one cell sees (pixels)"] == "{} x {}".format(*receptive_field(layers[:ends[1]]).size)
    assert stacks.millions(123_456) == "0.12 M" and stacks.millions(99_999) == "99,999"


def test_the_search_image_of_where_is_it():
    image = np.random.default_rng(1).random((60, 80)).astype(np.float32)
    assert detection.image_to_search(None, image, "same", 0, 0, 0.0, None) is image
    shifted = detection.image_to_search(None, image, "shifted", 5, -3, 0.0, None)
    np.testing.assert_array_equal(shifted[5:, :-3], image[:-5, 3:])
    noisy = detection.image_to_search(None, image, "shifted", 5, -3, 0.05, None)
    np.testing.assert_array_equal(noisy, detection.image_to_search(None, image, "shifted", 5, -3, 0.05, None))
    assert not np.array_equal(noisy, shifted)  # noise, the same for every rerun and every student
    large = detection.fit_image(np.random.default_rng(2).random((1280, 960)).astype(np.float32))
    assert large.shape == (detection.MAX_SIDE, 480)
    assert detection.default_side(np.zeros((10, 10))) == 5  # never more than half a small image
    assert detection.default_side(np.zeros((512, 400))) == 48


def test_the_search_finds_the_box_it_was_cut_from():
    image = read_sample("Head CT slice").slice(0)
    image = np.clip((image + 100) / 300, 0, 1).astype(np.float32)
    box = structured_boxes(image, (24, 24), count=1)[0]
    kernel, response, matches = detection.detect((image, image), ("same", box, "zero-mean", 0.5, "normalised", 3))
    assert kernel.shape == (24, 24) and response.shape == (image.shape[0] - 23, image.shape[1] - 23)
    assert (matches[0].row, matches[0].col) == (box.row, box.col) and matches[0].score == pytest.approx(1.0, abs=1e-4)
