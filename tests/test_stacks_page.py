"""The "Deeper layers see larger things" page in Streamlit's AppTest: every sample, stacks of 1-4 stages, fields, uploads."""

import io
import re

import numpy as np
import pytest
from PIL import Image

from tests.apptest import BrowserSelectbox, click_picture, component_data, run_page_file, scan_uploader
from lessons.receptive_field import input_region, layer_shapes, pool_geometry, conv_geometry, receptive_field
from scans import list_samples

PAGE = "views/stacks.py"


@pytest.fixture
def app():
    page = run_page_file(PAGE)
    assert not page.exception, page.exception
    return page


def summary(page):
    return page.table[0].value


def markdown_text(page):
    return "\n".join(element.value for element in page.markdown)


def _default_layers(stage_count):
    # The page's default stages: 3x3 "same" convolutions, each followed by a 2x2 max pool.
    return [layer for _ in range(stage_count) for layer in (conv_geometry(3, padding="same"), pool_geometry(2))]


def _working_shape(image_shape, longer_side):
    scale = min(1.0, longer_side / max(image_shape))
    return tuple(max(1, round(n * scale)) for n in image_shape) if scale < 1 else tuple(image_shape)


@pytest.mark.parametrize("sample", list_samples())
def test_every_sample_builds_the_default_stack(sample):
    page = run_page_file(PAGE)
    page.selectbox(key="scan_source").set_value(sample).run()
    assert not page.exception, page.exception
    assert not page.error, [error.value for error in page.error]
    table = summary(page)
    assert list(table["stage"]) == ["input", "stage 1", "stage 2"]
    input_shape = tuple(int(n) for n in table["output (channels x height x width)"][0].split(" x ")[1:])
    shapes = layer_shapes(_default_layers(2), input_shape)
    assert table["output (channels x height x width)"][1] == f"3 x {shapes[2][0]} x {shapes[2][1]}"
    assert table["output (channels x height x width)"][2] == f"3 x {shapes[4][0]} x {shapes[4][1]}"
    # Stage 1: 3 kernels of 3x3 on 1 map; stage 2: 3 kernels of 3x3 on 3 maps, at the pooled size.
    expected_macs = input_shape[0] * input_shape[1] * 3 * 9
    assert table["multiply-adds"][1] in (f"{expected_macs / 1e6:.2f} M", f"{expected_macs:,}")


def test_three_stage_stack_field_matches_the_arithmetic(app):
    app.slider(key="stacks_stage_count").set_value(3).run()
    assert not app.exception, app.exception
    table = summary(app)
    assert list(table["one cell sees (pixels)"][1:4]) == ["4 x 4", "10 x 10", "22 x 22"]
    assert list(table["neighbouring cells (pixels apart)"][1:4]) == ["2", "4", "8"]

    assert app.radio(key="stacks_rf_stage").options == ["stage 1", "stage 2", "stage 3"]
    app.radio(key="stacks_rf_stage").set_value(3).run()
    app.number_input(key="stacks_rf_row").set_value(10).run()
    app.number_input(key="stacks_rf_col").set_value(12).run()
    assert not app.exception, app.exception
    text = markdown_text(app)
    input_shape = tuple(int(n) for n in table["output (channels x height x width)"][0].split(" x ")[1:])
    rows = input_region(_default_layers(3), input_shape, 10, 12)
    assert f"Cell (10, 12) of stage 3 depends on the **{rows[1] - rows[0]} x {rows[3] - rows[2]}** pixels" in text
    assert f"rows {rows[0]}-{rows[1] - 1}, columns {rows[2]}-{rows[3] - 1}" in text
    # The browser draws that box on the image, over a picture sent once per image.
    field = component_data(app, "stacks_field")["boxes"][-1]
    assert (field["top"], field["left"], field["height"], field["width"]) == (
        rows[0], rows[2], rows[1] - rows[0], rows[3] - rows[2])
    assert receptive_field(_default_layers(3)).size == (22, 22)


def test_a_click_on_a_cell_of_the_maps_chooses_that_cell(app):
    from viz.stacks import StripLayout

    app.radio(key="stacks_rf_stage").set_value(1).run()
    strip_rows, strip_cols = component_data(app, "stacks_rf_click")["shape"]
    maps = len(app.selectbox(key="stacks_rf_map").options)
    rows, cols = app.number_input(key="stacks_rf_row").max + 1, app.number_input(key="stacks_rf_col").max + 1
    scale = max(1, 900 // (maps * cols + (maps - 1) * 8))  # views/stacks.py STRIP_TARGET_WIDTH, gaps of 8
    layout = StripLayout(maps, (rows, cols), scale, 8, strip_rows - rows * scale)
    assert layout.size == (strip_rows, strip_cols)
    top, left, bottom, right = layout.cell_box(maps - 1, rows // 3, cols // 4)
    click_picture(app, "stacks_rf_click", (left + right) / 2, (top + bottom) / 2)
    assert not app.exception, app.exception
    chosen = tuple(app.session_state[key] for key in ("stacks_rf_map", "stacks_rf_row", "stacks_rf_col"))
    assert chosen == (maps - 1, rows // 3, cols // 4)
    click_picture(app, "stacks_rf_click", 1, 1)  # the title band: nothing changes
    assert tuple(app.session_state[key] for key in ("stacks_rf_map", "stacks_rf_row", "stacks_rf_col")) == chosen


def test_channel_sums_add_up_to_the_convolution_output(app):
    app.radio(key="stacks_rf_stage").set_value(2).run()
    app.selectbox(key="stacks_rf_map").set_value(1).run()
    assert not app.exception, app.exception
    equation = next(element.value for element in app.markdown if element.value.startswith("("))
    terms = [float(value) for value in re.findall(r"\((-?\d+\.\d+)\)", equation.split("=")[0])]
    total = float(re.search(r"= \*\*(-?\d+\.\d+)\*\*", equation).group(1))
    assert len(terms) == 3  # stage 2 reads the 3 maps of stage 1
    assert sum(terms) == pytest.approx(total, abs=2e-4)
    assert len(app.tabs) == 3
    # Each input map's multiply step is text: its products (the last 9 numbers) add up to that map's sum.
    arithmetic = [element.proto.body for element in app.get("html") if 'class="arithmetic"' in element.proto.body]
    assert len(arithmetic) == 3
    for html, term in zip(arithmetic, terms):
        products = re.findall(r'<div title="([^"]+)"', html)[-9:]
        decimals = max(len(text.partition(".")[2]) for text in products)
        assert sum(map(float, products)) == pytest.approx(term, abs=9 * 0.5 * 10.0 ** -decimals + 1e-4)


def test_four_stages_with_other_kernels_pooling_and_dilation(app):
    app.slider(key="stacks_stage_count").set_value(4).run()
    app.selectbox(key="stacks_s0_size").set_value(5).run()
    app.multiselect(key="stacks_s0_kernels").set_value(["gaussian blur", "laplacian of gaussian"]).run()
    app.selectbox(key="stacks_s1_pool").set_value("avg").run()
    app.selectbox(key="stacks_s2_dilation").set_value(2).run()
    app.selectbox(key="stacks_s3_activation").set_value("tanh").run()
    app.selectbox(key="stacks_s3_pool").set_value("none").run()
    assert not app.exception, app.exception
    table = summary(app)
    assert len(table) == 5
    assert table["what it does"][1].startswith("conv 5x5 x2")
    assert "dilation 2" in table["what it does"][3]
    layers = [conv_geometry(5, padding="same"), pool_geometry(2), conv_geometry(3, padding="same"), pool_geometry(2),
              conv_geometry(3, padding="same", dilation=2), pool_geometry(2), conv_geometry(3, padding="same")]
    field = receptive_field(layers)
    assert table["one cell sees (pixels)"][4].startswith(f"{field.size[0]} x {field.size[1]}")
    assert table["output (channels x height x width)"][2].startswith("3 x ")
    # The dilated stage's per-channel sums come from the engine's trace with the same dilation.
    app.radio(key="stacks_rf_stage").set_value(3).run()
    assert not app.exception, app.exception
    equation = next(element.value for element in app.markdown if element.value.startswith("("))
    terms = [float(value) for value in re.findall(r"\((-?\d+\.\d+)\)", equation.split("=")[0])]
    assert len(terms) == 3
    assert sum(terms) == pytest.approx(float(re.search(r"= \*\*(-?\d+\.\d+)\*\*", equation).group(1)), abs=2e-4)


def test_changing_the_kernel_size_keeps_only_kernels_that_exist_at_that_size(app):
    app.selectbox(key="stacks_s0_size").set_value(7).run()
    assert not app.exception, app.exception
    chosen = app.multiselect(key="stacks_s0_kernels").value
    assert chosen and "sobel x" not in chosen
    assert summary(app)["what it does"][1].startswith("conv 7x7")


def test_a_stack_too_deep_for_a_small_image_is_refused_with_a_message(app):
    app.selectbox(key="scan_source").set_value("Head MR volume").run()  # 64 x 64 slices
    app.slider(key="stacks_stage_count").set_value(4).run()
    for stage in range(4):
        app.selectbox(key=f"stacks_s{stage}_pool_size").set_value(4).run()
    assert not app.exception, app.exception
    assert any("does not fit" in error.value for error in app.error)


def test_an_uploaded_image_runs_without_the_shared_cache(app):
    gradient = np.tile(np.linspace(0, 255, 200, dtype=np.uint8), (150, 1))
    gradient[60:90, 80:120] = 255
    buffer = io.BytesIO()
    Image.fromarray(gradient).save(buffer, format="PNG")
    scan_uploader(app).set_value(("square.png", buffer.getvalue(), "image/png")).run()
    assert not app.exception, app.exception
    assert summary(app)["output (channels x height x width)"][0] == "1 x 150 x 200"


def test_learned_kernels_of_the_classifier_make_stage_one_maps(app):
    from kernels import conv2d
    from model import load

    learned = load().first_layer_kernels()
    # A two-level picture: whatever window the scan picker applies, its levels become 0 and 1.
    picture = np.zeros((96, 120), dtype=np.uint8)
    picture[20:60, 30:75] = 255
    picture[70:90, 10:40] = 255
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    scan_uploader(app).set_value(("blocks.png", buffer.getvalue(), "image/png")).run()
    app.radio(key="stacks_s0_source").set_value("learned").run()
    app.multiselect(key="stacks_s0_learned").set_value([1, 4, 6]).run()
    app.selectbox(key="stacks_s0_activation").set_value("none").run()
    app.selectbox(key="stacks_s0_pool").set_value("none").run()
    assert not app.exception, app.exception
    table = summary(app)
    assert table["what it does"][1].startswith("conv 5x5 x3 learned")
    assert table["output (channels x height x width)"][1] == "3 x 96 x 120"
    assert table["multiply-adds"][1] in (f"{96 * 120 * 3 * 25 / 1e6:.2f} M", f"{96 * 120 * 3 * 25:,}")
    assert any("nobody designed" in text for text in (element.value for element in app.markdown))

    app.radio(key="stacks_rf_stage").set_value(1).run()
    map_box = app.selectbox(key="stacks_rf_map")
    assert map_box.options == [
        "1: learned #2", "2: learned #5", "3: learned #7"]
    map_box.set_value(2).run()
    app.number_input(key="stacks_rf_row").set_value(21).run()
    app.number_input(key="stacks_rf_col").set_value(31).run()
    assert not app.exception, app.exception
    equation = next(element.value for element in app.markdown if element.value.startswith("("))
    shown = float(re.search(r"output at \(21, 31\) is \*\*(-?\d+\.\d+)\*\*", equation).group(1))
    expected = conv2d(picture.astype(np.float32) / 255.0, learned[6], padding="same")[21, 31]
    assert abs(expected) > 0.05  # a corner of a block: the kernel answers, so the check means something
    assert shown == pytest.approx(float(expected), abs=2e-4)

    # A later stage of learned kernels reads all 3 maps below through the page's (k + c) mod K arrangement.
    app.radio(key="stacks_s1_source").set_value("learned").run()
    app.radio(key="stacks_rf_stage").set_value(2).run()
    assert not app.exception, app.exception
    assert summary(app)["what it does"][2].startswith("conv 5x5 x3 learned")
    equation = next(element.value for element in app.markdown if element.value.startswith("("))
    terms = [float(value) for value in re.findall(r"\((-?\d+\.\d+)\)", equation.split("=")[0])]
    assert len(terms) == 3
    assert sum(terms) == pytest.approx(float(re.search(r"= \*\*(-?\d+\.\d+)\*\*", equation).group(1)), abs=2e-4)

    # Back to the filter bank: the stage's earlier choices are still there.
    app.radio(key="stacks_s0_source").set_value("bank").run()
    assert not app.exception, app.exception
    assert app.multiselect(key="stacks_s0_kernels").value == ["sobel x", "sobel y", "laplacian"]
    assert summary(app)["what it does"][1].startswith("conv 3x3 x3,")


def _kernel_names(page, stage_index):
    """The kernel names stage ``stage_index`` (0-based) runs, read from its own widgets."""
    if page.radio(key=f"stacks_s{stage_index}_source").value == "learned":
        return [f"learned #{index + 1}" for index in sorted(page.multiselect(key=f"stacks_s{stage_index}_learned").value)]
    return list(page.multiselect(key=f"stacks_s{stage_index}_kernels").value)


def _another(widget, choices):
    return next(choice for choice in choices if choice != widget.value)


# Every control above the cell picker, each set to a value other than its current one. Three stages or more
# throughout, so every stage choice survives every change.
STACK_CHANGES = {
    "number of stages": lambda page: page.slider(key="stacks_stage_count").set_value(
        _another(page.slider(key="stacks_stage_count"), (4, 3))),
    "working size": lambda page: page.selectbox(key="stacks_working_size").set_value(
        _another(page.selectbox(key="stacks_working_size"), (128, 256))),
    "stage 1 kernels": lambda page: page.multiselect(key="stacks_s0_kernels").set_value(
        _another(page.multiselect(key="stacks_s0_kernels"), (["gaussian blur", "laplacian"], ["sobel x", "sobel y", "laplacian"]))),
    "stage 1 kernel size": lambda page: page.selectbox(key="stacks_s0_size").set_value(
        _another(page.selectbox(key="stacks_s0_size"), (5, 3))),
    "stage 2 pooling": lambda page: page.selectbox(key="stacks_s1_pool").set_value(
        _another(page.selectbox(key="stacks_s1_pool"), ("avg", "none", "max"))),
    "stage 3 kernel source": lambda page: page.radio(key="stacks_s2_source").set_value(
        _another(page.radio(key="stacks_s2_source"), ("learned", "bank"))),
}


def _assert_map_box_shows_stage(page, held, stage_number):
    assert not page.exception, page.exception
    box = page.selectbox(key="stacks_rf_map")
    names = _kernel_names(page, stage_number - 1)
    assert box.options == [f"{index + 1}: {name}" for index, name in enumerate(names)]
    assert held.label in box.options, f"the Map box shows {held.label!r}, not a kernel of stage {stage_number}"
    assert box.value in range(len(names))


@pytest.mark.parametrize("change", list(STACK_CHANGES))
def test_every_stage_choice_survives_every_change_above_it(app, change):
    # A person chooses a stage, then changes the stack: the browser still holds the Map box's
    # label from before, which names a kernel of the stage shown earlier.
    app.slider(key="stacks_stage_count").set_value(3).run()
    held = BrowserSelectbox(app, "stacks_rf_map")
    for stage_number in (1, 2, 3, 1):
        app.radio(key="stacks_rf_stage").set_value(stage_number)
        held.run(app)
        _assert_map_box_shows_stage(app, held, stage_number)
        STACK_CHANGES[change](app)
        held.run(app)
        _assert_map_box_shows_stage(app, held, stage_number)
        assert app.radio(key="stacks_rf_stage").value == stage_number
        # The last map, so that the next stage starts from a label other than "1: ...".
        held.choose(app, app.selectbox(key="stacks_rf_map").options[-1])
        _assert_map_box_shows_stage(app, held, stage_number)


# ----------------------------------------------------------------------- the page's drawings (viz/stacks.py)


def test_strip_layout_turns_every_cell_centre_back_into_its_cell():
    from viz.stacks import maps_strip

    maps = np.random.default_rng(0).normal(size=(3, 5, 7)).astype(np.float32)
    strip, layout = maps_strip(maps, scale=6, titles=["a", "b", "c"], highlight=(1, 2, 3))
    assert strip.shape == layout.size + (3,) and strip.dtype == np.uint8
    for map_index in range(3):
        for row in range(5):
            for col in range(7):
                top, left, bottom, right = layout.cell_box(map_index, row, col)
                assert layout.cell_at((top + bottom - 1) / 2, (left + right - 1) / 2) == (map_index, row, col)
    gap_x = layout.cell_box(0, 0, 6)[3] + 1  # between map 1 and map 2
    assert layout.cell_at(layout.top + 1, gap_x) is None
    assert layout.cell_at(0, 1) is None  # the title band


def test_overview_draws_every_stage_at_the_same_cell_size():
    from viz.stacks import stack_overview

    image = np.random.default_rng(1).random((40, 30)).astype(np.float32)
    stage_maps = [np.ones((2, 20, 15)), np.ones((2, 10, 7))]
    frame = stack_overview(image, stage_maps, ["input", "stage 1", "stage 2"], scale=3)
    # Three rows, each below a label band: 40*3 + 20*3 + 10*3 pixels of maps, plus bands and gaps.
    assert frame.shape[1] >= 2 * 15 * 3 and frame.dtype == np.uint8
    assert frame.shape[0] > (40 + 20 + 10) * 3
    with pytest.raises(ValueError, match="need 3 labels"):
        stack_overview(image, stage_maps, ["input"], scale=1)


def test_field_overlay_outlines_just_outside_the_field():
    from viz.stacks import field_overlay

    image = np.full((20, 20), 0.5, dtype=np.float32)
    frame = field_overlay(image, [((5, 9, 6, 12), (255, 0, 0), 1)], scale=2)
    assert frame.shape == (40, 40, 3)
    assert tuple(frame[9, 20]) == (255, 0, 0)   # the line one pixel above row 5 (pixel row 10)
    assert tuple(frame[12, 14]) == (128, 128, 128)  # inside the field: untouched
