"""The "Where is it?" page in Streamlit's AppTest: detection on each sample, shifted copies, slices, 0/1 kernels, two classes."""

import io
import re

import numpy as np
import pytest
from PIL import Image

from tests.apptest import click_picture, component_data, run_page_file, scan_uploader


PAGE = "views/detection.py"


@pytest.fixture
def app():
    page = run_page_file(PAGE)
    assert not page.exception, page.exception
    return page


def markdown_text(page):
    return "\n".join(element.value for element in page.markdown)


def matches_table(page):
    """The matches as the page's table holds them, scores as numbers (the page writes them as text)."""
    table = page.table[0].value.copy()
    table["score"] = table["score"].astype(float)
    return table


def box(page, prefix="det"):
    return tuple(page.number_input(key=f"{prefix}_{name}").value for name in ("row", "col", "height", "width"))


# Every sample is run on the stacks page; here three kinds: radiograph, CT and MR.
@pytest.mark.parametrize("sample", ["Chest radiograph", "Abdomen CT slice", "Abdomen MR with a liver lesion"])
def test_samples_find_their_own_box_first(sample):
    page = run_page_file(PAGE)
    page.selectbox(key="scan_source").set_value(sample).run()
    assert not page.exception, page.exception
    assert not page.error, [error.value for error in page.error]
    row, col, _, _ = box(page)
    table = matches_table(page)
    assert (table["top row"][0], table["left column"][0]) == (row, col)
    assert table["score"][0] == pytest.approx(1.0, abs=1e-3)
    assert "found exactly." in markdown_text(page)


def test_shifted_copy_is_found_at_the_shifted_place(app):
    app.radio(key="det_target").set_value("shifted").run()
    app.slider(key="det_shift_rows").set_value(-30).run()
    app.slider(key="det_shift_cols").set_value(45).run()
    app.slider(key="det_noise").set_value(0.0).run()
    assert not app.exception, app.exception
    row, col, _, _ = box(app)
    table = matches_table(app)
    assert (table["top row"][0], table["left column"][0]) == (row - 30, col + 45)
    assert f"The structure is at row {row - 30}, column {col + 45}: found exactly." in markdown_text(app)
    # With noise the peak of a smooth pattern may move a pixel or two; the page says so.
    app.slider(key="det_noise").set_value(0.1).run()
    assert re.search(rf"The structure is at row {row - 30}, column {col + 45}: found(, \d pixels? off| exactly)",
                     markdown_text(app)), markdown_text(app)


def test_a_dragged_box_becomes_the_kernel(app):
    app.number_input(key="det_row").set_value(200).run()
    app.number_input(key="det_col").set_value(150).run()
    app.number_input(key="det_height").set_value(24).run()
    app.number_input(key="det_width").set_value(40).run()
    assert not app.exception, app.exception
    assert box(app) == (200, 150, 24, 40)
    assert any("The 24 x 40 kernel" in caption for image in app.get("image") for caption in image.captions)
    table = matches_table(app)
    assert (table["top row"][0], table["left column"][0]) == (200, 150)


def test_a_box_dragged_on_the_picture_becomes_the_kernel_and_a_click_moves_it(app):
    rows, cols = component_data(app, "det_drag")["shape"]  # the picture's pixels (the image may be enlarged)
    # The image's size, from the box inputs' ranges (a top row goes up to the last row).
    image_rows, image_cols = app.number_input(key="det_row").max + 1, app.number_input(key="det_col").max + 1
    to_image = image_rows / rows
    click_picture(app, "det_drag", 0.4 * cols, 0.26 * rows, x2=0.3 * cols, y2=0.2 * rows)  # up and to the left
    assert not app.exception, app.exception
    top, left, height, width = box(app)
    assert (top, left) == (int(0.2 * rows * to_image), int(0.3 * cols * to_image))
    assert abs(height - 0.06 * rows * to_image) <= 1 and abs(width - 0.1 * cols * to_image) <= 1
    table = matches_table(app)
    assert (table["top row"][0], table["left column"][0]) == (top, left)

    click_picture(app, "det_drag", 0.5 * cols, 0.5 * rows)  # a click: the same box, centred there
    assert box(app)[2:] == (height, width)
    assert box(app)[:2] == (int(0.5 * image_rows - height / 2), int(0.5 * image_cols - width / 2))


def test_binary_kernel_and_plain_scores(app):
    app.radio(key="det_kind").set_value("binary").run()
    assert not app.exception, app.exception
    threshold = app.slider(key="det_threshold")
    assert threshold.min < threshold.value < threshold.max
    app.radio(key="det_score").set_value("plain").run()
    assert not app.exception, app.exception
    assert any("bright regions score high" in info.value for info in app.info)
    scores = list(matches_table(app)["score"])
    assert scores == sorted(scores, reverse=True)


def test_the_same_structure_on_another_slice_of_a_volume(app):
    app.selectbox(key="scan_source").set_value("Head MR volume").run()
    assert "another slice of the volume" in app.radio(key="det_target").options
    app.radio(key="det_target").set_value("slice").run()
    assert not app.exception, app.exception
    text = markdown_text(app)
    moved = re.search(r"moved by \((-?\d+), (-?\d+)\) pixels", text)
    assert moved, text
    # Neighbouring slices 1.2 mm apart: the default structure moves by at most a pixel.
    assert abs(int(moved.group(1))) <= 1 and abs(int(moved.group(2))) <= 1


def test_two_kernels_two_classes_table_and_counts(app):
    tiles = app.dataframe[0].value
    counts = re.search(r"\*\*(\d+)\*\* tiles went to class A and \*\*(\d+)\*\* to class B", markdown_text(app))
    assert counts and int(counts.group(1)) + int(counts.group(2)) == len(tiles)
    for _, tile in tiles.iterrows():
        assert tile["class"] == ("A" if tile["kernel A"] >= tile["kernel B"] else "B")
    # Box A's own tile must go to class A when the tile holds all of box A.
    row, col, height, width = box(app, "cls_a")
    tile_size = app.select_slider(key="cls_tile").value
    if row // tile_size == (row + height - 1) // tile_size and col // tile_size == (col + width - 1) // tile_size:
        own = tiles[tiles["tile"] == f"({row // tile_size}, {col // tile_size})"].iloc[0]
        assert own["class"] == "A" and own["kernel A"] == pytest.approx(1.0, abs=1e-3)
    app.select_slider(key="cls_tile").set_value(app.select_slider(key="cls_tile").options[-1]).run()
    assert not app.exception, app.exception


def test_a_flat_box_is_refused_for_a_binary_kernel(app):
    app.selectbox(key="scan_source").set_value("Head CT slice").run()
    app.number_input(key="det_row").set_value(0).run()
    app.number_input(key="det_col").set_value(0).run()  # the black air in the corner
    app.radio(key="det_kind").set_value("binary").run()
    assert not app.exception, app.exception
    assert any("flat" in error.value for error in app.error)


def test_an_uploaded_image_is_searched_without_the_shared_cache(app):
    rng = np.random.default_rng(0)
    picture = (rng.random((180, 220)) * 60).astype(np.uint8)
    picture[50:80, 100:130] = 220
    picture[60:70, 110:120] = 120
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    scan_uploader(app).set_value(("upload.png", buffer.getvalue(), "image/png")).run()
    assert not app.exception, app.exception
    row, col, _, _ = box(app)
    table = matches_table(app)
    assert (table["top row"][0], table["left column"][0]) == (row, col)


def test_a_10_by_10_dose_grid_gets_a_box_that_fits(app):
    # pydicom's rtdose.dcm (15 slices of 10 x 10): the default box once was 16 pixels, larger than the image.
    rtdose = pytest.importorskip("pydicom.data").get_testdata_file("rtdose.dcm")
    with open(rtdose, "rb") as file:
        scan_uploader(app).set_value(("rtdose.dcm", file.read(), "application/dicom")).run()
    assert not app.exception, app.exception
    row, col, height, width = box(app)
    assert 4 <= height <= 10 and 4 <= width <= 10 and row + height <= 10 and col + width <= 10
    table = matches_table(app)
    assert (table["top row"][0], table["left column"][0]) == (row, col)
    for prefix in ("cls_a", "cls_b"):
        row, col, height, width = box(app, prefix)
        assert row + height <= 10 and col + width <= 10


# ----------------------------------------------------------------------- the page's drawings (viz/detection.py)


def test_response_is_placed_at_the_centre_of_each_window():
    from viz.detection import response_on_image

    response = np.arange(12, dtype=np.float32).reshape(3, 4)
    placed = response_on_image(response, (5, 4), (7, 7), fill=-1)
    assert placed.shape == (7, 7)
    assert placed[2, 1] == 0 and placed[4, 4] == 11  # window (0, 0) centred at (2, 1)
    assert placed[0, 0] == -1 and placed[6, 6] == -1
    with pytest.raises(ValueError, match="gives a 3 x 4 map"):
        response_on_image(np.zeros((2, 2)), (5, 4), (7, 7))


def test_boxes_and_tiles_are_drawn_where_they_belong():
    from viz.detection import CLASS_COLOURS, boxes_overlay, tile_class_overlay

    rgb = np.zeros((50, 60, 3), dtype=np.uint8)
    framed = boxes_overlay(rgb, [((10, 20, 8, 6), (0, 255, 0), "")], scale=1, thickness=1)
    assert tuple(framed[9, 22]) == (0, 255, 0) and tuple(framed[12, 22]) == (0, 0, 0)
    tiles = tile_class_overlay(np.full((40, 60), 0.5), np.array([[0, 1, 0], [1, 1, 0]]), np.ones((2, 3)), 20, scale=2)
    assert tiles.shape == (80, 120, 3)
    # A class-B tile is tinted towards blue, a class-A tile towards orange.
    assert tiles[10, 50, 2] > tiles[10, 50, 0]
    assert tiles[10, 10, 0] > tiles[10, 10, 2]
    assert CLASS_COLOURS[0] != CLASS_COLOURS[1]
