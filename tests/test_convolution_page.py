"""The convolution lesson page in AppTest: it runs on every sample and on uploads, and what it shows is kernels/'s.

Each "shown value" check recomputes the convolution with kernels.conv2d (the engine's public function, not
the trace the page draws from) on the region the page says it uses, and compares the exact float32 value.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.apptest import run_page_file
from kernels import avg_pool2d, conv2d, make_kernel, max_pool2d, relu
from scans import apply_window, list_samples, read_sample
from views.convolution_controls import output_size_equation, random_kernel, stored_key

PAGE = "views/convolution.py"
SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"
SHOWN = re.compile(r"^output\[(\d+), (\d+)\] = (\S+)$")
POOLED = re.compile(r"^pooled\[(\d+), (\d+)\] = (\S+)$")


def _open():
    app = run_page_file(PAGE)
    assert not app.exception, app.exception
    return app


def _shown(app, pattern=SHOWN):
    """(row, col, value) of the output value the page shows (its exact-value caption)."""
    for caption in app.caption:
        match = pattern.match(caption.value)
        if match:
            return int(match[1]), int(match[2]), float(match[3])
    raise AssertionError(f"no caption matching {pattern.pattern}: {[c.value for c in app.caption]}")


def _state(app, key):
    return app.session_state[stored_key(key)]


def _image(app):
    """The windowed image the page works on, rebuilt from the picker's state."""
    choice = app.session_state["scan__choice"]
    scan = app.session_state["scan__upload_scan"] if choice.startswith("Your upload") else read_sample(choice)
    pixels = scan.slice(app.session_state["scan__slice"] if scan.is_volume else 0)
    return apply_window(pixels, app.session_state["scan__level"], app.session_state["scan__width"])


def _expected_region_output(app):
    """kernels.conv2d over the page's region with the page's kernel and settings."""
    top, left, size = (int(_state(app, key)) for key in ("conv_region_top", "conv_region_left", "conv_region_size"))
    region = _image(app)[top:top + size, left:left + size]
    kind = _state(app, "conv_padding_kind")
    padding = int(_state(app, "conv_padding")) if kind == "number" else kind
    kernel = np.asarray(app.session_state["conv_kernel_grid"], dtype=np.float32)
    return conv2d(region, kernel, float(_state(app, "conv_bias")), stride=int(_state(app, "conv_stride")),
                  padding=padding, dilation=int(_state(app, "conv_dilation")),
                  padding_mode=_state(app, "conv_padding_mode"), flip=bool(_state(app, "conv_flip")))


def _assert_shown_value_is_conv2d(app):
    row, col, shown = _shown(app)
    expected = _expected_region_output(app)
    assert shown == float(expected[row, col]), (row, col, shown, expected[row, col])
    return row, col


# ---------------------------------------------------------------------------------------------------------------


def test_output_size_equation_fills_in_the_numbers():
    assert output_size_equation(64, 3, 1, 1, 2, 1) == "floor((64 + 2*1 - 3) / 2) + 1 = 32"
    assert output_size_equation(64, 4, 1, 2, 1, 1) == "floor((64 + 1 + 2 - 4) / 1) + 1 = 64"
    assert output_size_equation(10, 3, 0, 0, 1, 2) == "floor((10 + 2*0 - 2*(3 - 1) - 1) / 1) + 1 = 6"
    with pytest.raises(ValueError, match="kernel spans"):
        output_size_equation(5, 9, 0, 0, 1, 1)


@pytest.mark.parametrize("sample", list_samples())
def test_lesson_runs_on_every_sample_and_shows_conv2d_values(sample):
    app = _open()
    app.selectbox(key="scan_source").set_value(sample).run()
    assert not app.exception, app.exception
    assert not app.error, [error.value for error in app.error]
    _assert_shown_value_is_conv2d(app)
    assert len(app.get("image")) >= 7, "region, output, arithmetic, activation and pooling frames"


def test_next_advances_the_step_and_the_value_follows():
    app = _open()
    first = _assert_shown_value_is_conv2d(app)
    for _ in range(3):
        app.button(key="conv_next").click().run()
        assert not app.exception, app.exception
    assert app.session_state["conv__step"] == 3
    row, col = _assert_shown_value_is_conv2d(app)
    assert (row, col) != first
    columns = _expected_region_output(app).shape[1]
    assert row * columns + col == 3, "steps go row by row over the output"
    assert app.metric[0].value == f"{_shown(app)[2]:.4f}"
    app.button(key="conv_previous").click().run()
    assert app.session_state["conv__step"] == 2
    app.slider(key="conv_scrubber").set_value(7).run()  # the scrubber counts from 1
    assert app.session_state["conv__step"] == 6
    _assert_shown_value_is_conv2d(app)


def test_step_survives_a_rerun_and_play_pause_toggle():
    app = _open()
    app.button(key="conv_next").click().run()
    app.run()
    assert app.session_state["conv__step"] == 1
    app.button(key="conv_play").click().run()
    assert not app.exception, app.exception
    assert app.session_state["conv__playing"] is True
    assert app.button(key="conv_play").label == "Pause"
    app.button(key="conv_play").click().run()
    assert app.session_state["conv__playing"] is False


def test_a_kernel_set_through_session_state_is_used():
    app = _open()
    even_kernel = np.arange(16, dtype=np.float32).reshape(4, 4) / 10 - 0.75  # a 4 x 4, as in the blog's figure
    app.session_state["conv_kernel_grid"] = even_kernel.tolist()
    app.run()
    assert not app.exception, app.exception
    app.button(key="conv_next").click().run()
    _assert_shown_value_is_conv2d(app)
    np.testing.assert_array_equal(np.asarray(app.session_state["conv_kernel_grid"], dtype=np.float32), even_kernel)
    assert any("The 4 x 4 kernel" in markdown.value for markdown in app.markdown)


def test_a_malformed_kernel_falls_back_with_a_warning():
    app = _open()
    app.session_state["conv_kernel_grid"] = [[1.0, float("nan")], [0.0, 1.0]]
    app.run()
    assert not app.exception, app.exception
    assert any("not usable" in warning.value for warning in app.warning)
    _assert_shown_value_is_conv2d(app)


def test_bank_random_and_cut_kernels():
    app = _open()
    app.selectbox(key="conv_kernel_name").set_value("gaussian blur").run()
    app.slider(key="conv_kernel_size").set_value(4).run()
    np.testing.assert_array_equal(np.asarray(app.session_state["conv_kernel_grid"], dtype=np.float32),
                                  make_kernel("gaussian blur", 4))
    _assert_shown_value_is_conv2d(app)

    app.radio(key="conv_kernel_source").set_value("Random").run()
    np.testing.assert_array_equal(np.asarray(app.session_state["conv_kernel_grid"], dtype=np.float32),
                                  random_kernel(4, 0))
    app.button(key="conv_random_new").click().run()
    np.testing.assert_array_equal(np.asarray(app.session_state["conv_kernel_grid"], dtype=np.float32),
                                  random_kernel(4, 1))
    _assert_shown_value_is_conv2d(app)

    app.radio(key="conv_kernel_source").set_value("Cut from the image").run()
    assert not app.exception, app.exception
    cut = np.asarray(app.session_state["conv_kernel_grid"], dtype=np.float32)
    assert cut.shape == (4, 4) and abs(float(cut.sum())) < 1e-4 and abs(float((cut * cut).sum()) - 1.0) < 1e-4
    _assert_shown_value_is_conv2d(app)


def test_stride_padding_dilation_flip_and_the_formula():
    app = _open()
    app.select_slider(key="conv_stride").set_value(2).run()
    app.radio(key="conv_padding_kind").set_value("valid").run()
    app.select_slider(key="conv_dilation").set_value(2).run()
    app.number_input(key="conv_bias").set_value(0.5).run()
    app.toggle(key="conv_flip").set_value(True).run()
    app.selectbox(key="conv_padding_mode").set_value("zeros").run()
    assert not app.exception, app.exception
    size = int(_state(app, "conv_region_size"))
    expected_formula = output_size_equation(size, 3, 0, 0, 2, 2)
    assert any(expected_formula in markdown.value for markdown in app.markdown), expected_formula
    app.button(key="conv_next").click().run()
    _assert_shown_value_is_conv2d(app)

    app.radio(key="conv_padding_kind").set_value("same").run()  # "same" needs stride 1: a clear error
    assert not app.exception, app.exception
    assert any("stride 1" in error.value for error in app.error)


def test_pooling_steps_match_max_pool2d_of_the_relu():
    app = _open()
    app.button(key="pool_next").click().run()
    app.button(key="pool_next").click().run()
    assert not app.exception, app.exception
    row, col, shown = _shown(app, POOLED)
    expected = max_pool2d(relu(_expected_region_output(app)), 2, stride=2)
    assert shown == float(expected[row, col])
    assert row * expected.shape[1] + col == 2


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_padded_pooling_steps_match_the_engine_and_padding_follows_the_window(mode):
    app = _open()
    app.radio(key="pool_mode").set_value(mode).run()
    app.select_slider(key="pool_size").set_value(3).run()
    app.select_slider(key="pool_padding").set_value(1).run()
    app.button(key="pool_next").click().run()
    assert not app.exception, app.exception
    row, col, shown = _shown(app, POOLED)
    pool = max_pool2d if mode == "max" else avg_pool2d
    expected = pool(relu(_expected_region_output(app)), 3, stride=2, padding=1)
    assert (row, col) == (0, 1)
    assert shown == float(expected[row, col])
    # A window of 4 allows padding 2; back to a window of 2, the padding drops to 1 by itself.
    app.select_slider(key="pool_size").set_value(4).run()
    app.select_slider(key="pool_padding").set_value(2).run()
    app.select_slider(key="pool_size").set_value(2).run()
    assert not app.exception, app.exception
    assert app.select_slider(key="pool_padding").value == 1


def test_uploaded_png_and_dicom_are_used():
    app = _open()
    for name, mime in (("fundus_retina.png", "image/png"), ("ct_head.dcm", "application/dicom")):
        app.file_uploader(key="scan_uploader").set_value((name, (SAMPLES / name).read_bytes(), mime)).run()
        assert not app.exception, app.exception
        assert app.session_state["scan__choice"].startswith("Your upload")
        app.button(key="conv_next").click().run()
        _assert_shown_value_is_conv2d(app)


def test_the_kernel_editor_rounds_its_weights_instead_of_truncating_them():
    # Streamlit's grid cuts a number column's values to its step's decimals (it truncates, not rounds):
    # with step 0.001 a random kernel's float32 0.63 (0.6299999952) showed as "0.629" at 1280 x 720.
    app = _open()
    columns = json.loads(app.dataframe[0].proto.columns)
    number_columns = [column["type_config"] for column in columns.values()
                      if column.get("type_config", {}).get("type") == "number"]
    assert len(number_columns) == len(app.session_state["conv_kernel_grid"][0])
    for config in number_columns:
        assert config["format"] == "%.3f", "three decimals, rounded by the format"
        assert "step" not in config, "a step makes the grid truncate to its decimals"


def test_a_10_by_10_dose_grid_works_with_a_region_as_large_as_the_image():
    # pydicom's rtdose.dcm: 15 slices of 10 x 10. A region of 10 leaves the position sliders no range.
    rtdose = Path(pytest.importorskip("pydicom.data").get_testdata_file("rtdose.dcm"))
    app = _open()
    app.file_uploader(key="scan_uploader").set_value(("rtdose.dcm", rtdose.read_bytes(), "application/dicom")).run()
    assert not app.exception, app.exception
    assert any(element.value.startswith("**rtdose.dcm**, 10 x 10 pixels") for element in app.markdown)
    _assert_shown_value_is_conv2d(app)
    app.slider(key="conv_region_size").set_value(10).run()
    assert not app.exception, app.exception
    captions = [caption.value for caption in app.caption]
    assert "Top row: 0, the region is as tall as the image." in captions
    assert "Left column: 0, the region is as wide as the image." in captions
    app.button(key="conv_next").click().run()
    assert not app.exception, app.exception
    region = tuple(_state(app, key) for key in ("conv_region_top", "conv_region_left", "conv_region_size"))
    assert region == (0, 0, 10)
    _assert_shown_value_is_conv2d(app)


def test_garbage_upload_shows_the_scan_error_and_the_lesson_keeps_working():
    app = _open()
    app.file_uploader(key="scan_uploader").set_value(("notes.dcm", b"this is not a scan at all", "application/dicom"))
    app.run()
    assert not app.exception, app.exception
    assert any("Could not read notes.dcm" in error.value for error in app.error)
    app.button(key="conv_next").click().run()
    assert not app.exception, app.exception
    _assert_shown_value_is_conv2d(app)


def test_region_follows_the_sliders():
    app = _open()
    app.slider(key="conv_region_size").set_value(6).run()
    app.slider(key="conv_region_top").set_value(20).run()
    app.slider(key="conv_region_left").set_value(30).run()
    assert (_state(app, "conv_region_top"), _state(app, "conv_region_left"), _state(app, "conv_region_size")) == (
        20, 30, 6)
    _assert_shown_value_is_conv2d(app)
    assert any("floor((6 + 2*1 - 3) / 1) + 1 = 6" in markdown.value for markdown in app.markdown)


def test_a_new_window_changes_the_numbers():
    app = _open()
    app.selectbox(key="scan_source").set_value("Head CT slice").run()
    app.slider(key="conv_region_top").set_value(200).run()  # brain tissue: grey values inside the window
    app.slider(key="conv_region_left").set_value(300).run()
    _, _, before = _shown(app)
    assert before != 0.0
    app.slider(key="scan_level").set_value(80.0).run()  # the brain window moved up by 40 HU
    assert not app.exception, app.exception
    assert app.session_state["scan__level"] == 80.0
    _assert_shown_value_is_conv2d(app)
    assert _shown(app)[2] != before
