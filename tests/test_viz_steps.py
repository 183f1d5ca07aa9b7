"""viz/steps.py: frame shapes and dtype, and that marks and outlines land on the right cells."""

import re

import numpy as np
import pytest

from viz import steps


def _cell_pixels(frame, row, col, cell):
    top, left, bottom, right = steps.cell_box(row, col, cell)
    return frame[top:bottom, left:right]


def _has_colour(pixels, colour):
    return bool(np.any(np.all(pixels == np.asarray(colour, dtype=np.uint8), axis=-1)))


# ---------------------------------------------------------------- numbers ------------------------------------


def test_format_grid_shares_decimals_and_never_prints_minus_zero():
    texts = steps.format_grid(np.array([[0.5, -0.00001], [0.25, 0.125]]))
    assert texts == [["0.500", "0.000"], ["0.250", "0.125"]]
    assert steps.format_grid(np.array([[1.0, -2.0], [0.0, 4.0]])) == [["1", "-2"], ["0", "4"]]
    assert steps.grid_decimals(np.array([[12.5, 3.0]])) == 1


def test_stamped_text_changes_only_pixels_near_its_centre():
    canvas = np.full((60, 120, 3), 255, dtype=np.uint8)
    steps.stamp_text(canvas, "-0.25", 30, 60, 20)
    inked_rows, inked_cols = np.nonzero(canvas.min(axis=-1) < 128)
    assert inked_rows.size > 0
    assert abs(inked_rows.mean() - 30) < 4 and abs(inked_cols.mean() - 60) < 8
    width, height = steps.text_size("-0.25", 20)
    assert inked_cols.max() - inked_cols.min() + 1 <= width and inked_rows.max() - inked_rows.min() + 1 <= height


def test_stamped_text_is_clipped_at_the_canvas_edge():
    canvas = np.full((10, 10, 3), 255, dtype=np.uint8)
    steps.stamp_text(canvas, "123456", 0, 0, 24)  # mostly outside: must not raise
    assert canvas.dtype == np.uint8 and canvas.shape == (10, 10, 3)


# ---------------------------------------------------------------- value grids --------------------------------


def test_value_grid_marks_only_the_marked_cells():
    values = np.array([[-1.0, 2.0], [3.0, -4.0]], dtype=np.float32)
    cell = 40
    frame = steps.value_grid_frame(np.maximum(values, 0), cell=cell, marked=values < 0, show_numbers=False)
    assert _has_colour(_cell_pixels(frame, 0, 0, cell), steps.MARK_COLOUR)
    assert _has_colour(_cell_pixels(frame, 1, 1, cell), steps.MARK_COLOUR)
    assert not _has_colour(_cell_pixels(frame, 0, 1, cell), steps.MARK_COLOUR)
    tiny = steps.value_grid_frame(values, cell=4, marked=values < 0)
    assert np.all(_cell_pixels(tiny, 0, 0, 4) == np.asarray(steps.MARK_COLOUR, dtype=np.uint8))


def test_value_grid_colours_follow_the_sign():
    values = np.array([[-1.0, 0.0, 1.0]], dtype=np.float32)
    frame = steps.value_grid_frame(values, cell=20, show_numbers=False)
    negative, zero, positive = (_cell_pixels(frame, 0, col, 20)[10, 10].astype(int) for col in range(3))
    assert negative[2] > negative[0], "negative is blue"
    assert positive[0] > positive[2], "positive is red"
    assert zero.min() > 230, "zero is white"


def test_colour_cells_rejects_unknown_map():
    with pytest.raises(ValueError, match="colour_map"):
        steps.colour_cells(np.zeros((2, 2)), "rainbow")


# ---------------------------------------------------------------- arithmetic ---------------------------------


@pytest.mark.parametrize("size", [1, 3, 4, 9])
def test_arithmetic_html_writes_every_number_as_text_to_three_significant_digits(size):
    rng = np.random.default_rng(size)
    patch = rng.random((size, size)).astype(np.float32)
    kernel = (rng.normal(size=(size, size)) / 24).astype(np.float32)
    products = patch * kernel
    html = steps.arithmetic_html(patch, kernel, products)
    titles = re.findall(r'<div title="([^"]+)"', html)
    assert len(titles) == 3 * size * size
    for grid, texts in zip((patch, kernel, products), (titles[:size * size], titles[size * size:2 * size * size],
                                                       titles[2 * size * size:])):
        decimals = steps.grid_decimals(grid, steps.WORK_SIGNIFICANT)
        assert texts == [f"{value:.{decimals}f}" for value in grid.reshape(-1)]
    assert [caption for caption in re.findall(r"<figcaption[^>]*>([^<]*)<", html)] == ["input patch", "kernel",
                                                                                        "products"]


def test_arithmetic_html_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        steps.arithmetic_html(np.ones((3, 3)), np.ones((2, 2)), np.ones((3, 3)))


# ---------------------------------------------------------------- maps and overlays --------------------------


def test_feature_map_grid_layout():
    maps = [np.random.default_rng(i).normal(size=(50, 80)) for i in range(5)]
    maps.append(np.ones((10, 10)))  # a pooled map: a different shape is fine
    grid = steps.feature_map_grid(maps, [f"map {i}" for i in range(6)], columns=3, tile=100)
    assert grid.dtype == np.uint8
    assert grid.shape[1] == 3 * 100 + 2 * 10
    assert grid.shape[0] > 2 * 100


def test_feature_map_grid_shared_scale_changes_colours():
    small, large = np.full((4, 4), 0.5), np.full((4, 4), 5.0)
    own = steps.feature_map_grid([small, large], ["a", "b"], columns=2, tile=40)
    shared = steps.feature_map_grid([small, large], ["a", "b"], columns=2, tile=40, limit=5.0)
    assert not np.array_equal(own, shared)


def test_feature_map_grid_takes_one_limit_per_map():
    maps = [np.full((4, 4), 0.5), np.full((4, 4), 0.5)]
    grid = steps.feature_map_grid(maps, ["a", "b"], columns=2, tile=40, limit=[0.5, 5.0])
    left, right = grid[-20, 20].astype(int), grid[-20, 70].astype(int)
    assert left[1] < right[1], "0.5 at full strength is a deeper red than 0.5 of 5"
    with pytest.raises(ValueError, match="one limit per map"):
        steps.feature_map_grid(maps, ["a", "b"], limit=[1.0])


def test_feature_map_grid_needs_matching_titles():
    with pytest.raises(ValueError, match="one title per map"):
        steps.feature_map_grid([np.zeros((2, 2))], ["a", "b"])


def test_fit_into_keeps_aspect_and_pixels():
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    image[:, 20:] = 255
    fitted = steps.fit_into(image, 100)
    assert fitted.shape == (50, 100, 3)
    assert fitted[:, :50].max() == 0 and fitted[:, 50:].min() == 255
    with pytest.raises(ValueError, match="box"):
        steps.fit_into(image, 0)


def test_region_overlay_draws_outside_the_region():
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    framed = steps.region_overlay(image, 40, 30, 10, 20, thickness=2)
    assert np.all(framed[40:50, 30:50] == 0), "the region's own pixels stay visible"
    assert np.all(framed[38, 28:52] == np.asarray(steps.WINDOW_COLOUR, dtype=np.uint8))
    assert image.max() == 0, "the input is not modified"


def test_point_marker_rings_the_point():
    image = np.zeros((50, 50, 3), dtype=np.uint8)
    marked = steps.point_marker(image, 25, 25, radius=5, thickness=1)
    assert np.all(marked[20, 20:31] == np.asarray(steps.CHOSEN_COLOUR, dtype=np.uint8))
    assert marked[25, 25].max() == 0


def test_boxes_and_ring_leave_a_tiny_image_visible():
    # pydicom's rtdose.dcm is 10 x 10: the lesson's region box and peak ring once covered most of it.
    values = np.random.default_rng(3).random((10, 10)).astype(np.float32)
    rgb = steps.colour_cells(values, "grey")
    picture = steps.marked_picture(rgb, boxes=[((1, 1, 8, 8), steps.WINDOW_COLOUR)], peak=(4, 5))
    factor = picture.shape[0] // 10
    assert picture.shape == (10 * factor, 10 * factor, 3) and factor >= 20, "enlarged before drawing"
    original = np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)
    kept = np.all(picture == original, axis=-1)
    assert kept.mean() > 0.9, f"only {kept.mean():.0%} of the picture keeps the image's colours"
    per_pixel = kept.reshape(10, factor, 10, factor).mean(axis=(1, 3))
    assert per_pixel.min() > 0.5, "every image pixel stays mostly visible, the ringed one included"
    assert _has_colour(picture, steps.WINDOW_COLOUR) and _has_colour(picture, steps.CHOSEN_COLOUR)


def test_marked_picture_leaves_a_large_image_its_size():
    rgb = np.zeros((600, 800, 3), dtype=np.uint8)
    picture = steps.marked_picture(rgb, boxes=[((100, 200, 32, 32), steps.WINDOW_COLOUR)], peak=(300, 400))
    assert picture.shape == rgb.shape
    assert np.all(picture[100:132, 200:232] == 0), "the region's own pixels stay visible"
    assert picture[300, 400].max() == 0, "the ring lies around the peak, not on it"
    kept = np.all(picture == 0, axis=-1)
    assert kept.mean() > 0.97


def test_long_map_titles_wrap_onto_a_second_line_instead_of_being_cut():
    # The convolution lesson's bank showed "laplacian of gaussian..." and "gaussian blur (640 x ...".
    title = "laplacian of gaussian (640 x 603)"
    lines = steps.wrap_text(title, 20, 260)
    assert " ".join(lines) == title and len(lines) == 2
    assert all(steps.text_size(line, 20)[0] <= 260 for line in lines)
    assert steps.wrap_text("sobel x (640 x 603)", 20, 260) == ["sobel x (640 x 603)"]
    shape = "(640\u00a0x\u00a0603)"  # no-break spaces: a shape is never split
    assert steps.wrap_text(f"gaussian blur {shape}", 20, 260) == ["gaussian blur", shape]
    maps = [np.zeros((20, 20))] * 2
    short = steps.feature_map_grid(maps, ["a", "b"], columns=2, tile=260)
    wrapped = steps.feature_map_grid(maps, ["a", title], columns=2, tile=260)
    assert wrapped.shape[1] == short.shape[1] and wrapped.shape[0] > short.shape[0], "a taller title band"


def test_value_grid_html_writes_every_number_as_text_and_crosses_marked_cells():
    values = np.array([[-1.234, 0.0], [0.5, 2.0]], dtype=np.float32)
    grid = steps.value_grid_html(values, marked=values < 0, caption="a < b")
    assert grid.count("<div title=") == 4
    for text in ("-1.23", "0.00", "0.50", "2.00"):
        assert f">{text}</div>" in grid
    assert grid.count("linear-gradient(to top right") == 1  # only the negative cell is crossed
    assert "a &lt; b" in grid
    wide = steps.value_grid_html(np.zeros((2, 20), dtype=np.float32))
    assert ">0.00</div>" not in wide and 'title="0.00"' in wide  # too many columns: tooltips only
