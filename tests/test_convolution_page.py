"""The convolution lesson page in AppTest: it runs on every sample and on uploads, and what it shows is kernels/'s.

The step-by-step parts are players in the browser: the page sends each one its whole trace as data. The
checks here read that data as the component receives it and recompute it on the region the page says it
uses: with kernels.reference (the definition the trace replays), comparing exact float32 values; with
kernels.conv2d and the pooling functions (the engine's fast paths), within float32 rounding and to the 4
decimals the player's equation shows; and with a trace computed here, array by array.
"""

import re
from pathlib import Path

import numpy as np
import pytest

from tests.apptest import (click_picture, component_data, open_tab, run_page_file, scan_uploader, send_component_event,
                           set_control, step_players)
from kernels import KERNELS, avg_pool2d, conv2d, conv2d_trace, make_kernel, max_pool2d, pool2d_trace, reference, relu
from scans import apply_window, list_samples, read_sample
from views.caching import SESSION_MEMOS, UPLOAD_MEMORY
from views.components.step_player import FORMAT, decode_array
from views.convolution_controls import (KERNEL_EDITOR, KERNEL_GRID, KERNEL_LIMIT, KERNEL_PANEL, REGION_PANEL,
                                        SETTINGS_PANEL, output_size_equation, random_kernel, stored_key)
from tests.naive import relative_error

PAGE = "views/convolution.py"
SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"


def _open():
    app = run_page_file(PAGE)
    assert not app.exception, app.exception
    return app


def _player(app, key="conv_player"):
    """The step player's data as sent to the browser, found by the player's key."""
    players = step_players(app)
    assert key in players, f"no step player {key!r} on the page; players: {sorted(players)}"
    assert players[key]["format"] == FORMAT
    return players[key]


def _state(app, key):
    return app.session_state[stored_key(key)]


def _image(app):
    """The windowed image the page works on, rebuilt from the picker's state."""
    choice = app.session_state["scan__choice"]
    scan = app.session_state["scan__upload_scan"] if choice.startswith("Your upload") else read_sample(choice)
    pixels = scan.slice(app.session_state["scan__slice"] if scan.is_volume else 0)
    return apply_window(pixels, app.session_state["scan__level"], app.session_state["scan__width"])


def _region_and_settings(app):
    """The page's region (pixels), kernel, bias and convolution settings, from its state."""
    top, left, size = (int(_state(app, key)) for key in ("conv_region_top", "conv_region_left", "conv_region_size"))
    region = _image(app)[top:top + size, left:left + size]
    kind = _state(app, "conv_padding_kind")
    padding = int(_state(app, "conv_padding")) if kind == "number" else kind
    kernel = np.asarray(app.session_state["conv_kernel_grid"], dtype=np.float32)
    settings = {"stride": int(_state(app, "conv_stride")), "padding": padding,
                "dilation": int(_state(app, "conv_dilation")), "padding_mode": _state(app, "conv_padding_mode"),
                "flip": bool(_state(app, "conv_flip"))}
    return region, kernel, float(_state(app, "conv_bias")), settings


def _expected_region_output(app):
    """kernels.reference.conv2d over the page's region with the page's kernel and settings."""
    region, kernel, bias, settings = _region_and_settings(app)
    flip = settings.pop("flip")
    return reference.conv2d(region, kernel[::-1, ::-1] if flip else kernel, bias, **settings)


def _assert_engine_agrees(shown, engine_values):
    """The engine's fast path against what the player shows: within float32 rounding, equal to 4 decimals."""
    assert relative_error(engine_values, shown) < 1e-5
    np.testing.assert_array_almost_equal(engine_values, shown, decimal=4)


def _assert_player_is_conv2d(app):
    """The convolution player's output map and every step's value are the reference's, bit for bit, and
    kernels.conv2d's within float32 rounding; returns the data."""
    data = _player(app)
    expected = _expected_region_output(app)
    np.testing.assert_array_equal(decode_array(data["output"]["values"]), expected)
    np.testing.assert_array_equal(decode_array(data["steps"]["values"]), expected.ravel())
    assert data["steps"]["count"] == expected.size
    region, kernel, bias, settings = _region_and_settings(app)
    _assert_engine_agrees(expected, conv2d(region, kernel, bias, **settings))
    return data


def _open_section(app, number):
    """Open the lesson's tab whose label starts with ``number`` (e.g. "5."); only the open tab runs."""
    open_tab(app, "conv_section", number)
    assert not app.exception, app.exception


def _assert_pool_player_is(app, expected, mode):
    """The pooling player's map and steps are the engine's pooling of the same map (``expected``)."""
    data = _player(app, "pool_player")
    assert data["kind"] == "pool" and data["mode"] == mode
    _assert_engine_agrees(decode_array(data["output"]["values"]), expected)
    _assert_engine_agrees(decode_array(data["steps"]["values"]), expected.ravel())
    return data


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
    data = _assert_player_is_conv2d(app)
    region, kernel, bias, settings = _region_and_settings(app)
    whole = conv2d(_image(app), kernel, bias, **settings)
    whole_map = component_data(app, "conv_whole_map")
    assert tuple(whole_map["shape"]) == whole.shape
    assert (whole_map["ring"]["row"], whole_map["ring"]["col"]) == np.unravel_index(np.argmax(whole), whole.shape)
    # The activation's grids are text: every value of the region's map before and after ReLU, in its cell.
    _open_section(app, "4.")
    before_grid, after_grid = (element.proto.body for element in app.get("html")[:2])
    output = decode_array(data["output"]["values"])
    for grid, shown in ((before_grid, output), (after_grid, relu(output))):
        titles = re.findall(r'<div title="([^"]+)"', grid)
        assert len(titles) == output.size
        decimals = len(titles[0].split(".")[1]) if "." in titles[0] else 0
        assert titles == [f"{value:.{decimals}f}" for value in shown.reshape(-1)]
    _open_section(app, "6.")
    assert len(app.get("image")) >= 1, "the bank's maps"


def test_the_conv_player_receives_the_whole_trace():
    app = _open()
    data = _assert_player_is_conv2d(app)
    region, kernel, bias, settings = _region_and_settings(app)
    trace = conv2d_trace(region, kernel, bias, **settings)
    every = trace.all_steps()
    np.testing.assert_array_equal(decode_array(data["input"]["values"]), trace.padded)
    assert data["input"]["pad"] == list(trace.pad)
    top, _, left, _ = trace.pad
    np.testing.assert_array_equal(decode_array(data["input"]["values"])[top:top + region.shape[0],
                                                                         left:left + region.shape[1]], region)
    np.testing.assert_array_equal(decode_array(data["kernel"]["values"]), kernel)
    assert np.float32(data["bias"]) == np.float32(bias)
    steps = data["steps"]
    for name, expected in (("rows", every.rows), ("cols", every.cols), ("products", every.products),
                           ("sums", every.totals), ("values", every.values)):
        received = decode_array(steps[name])
        assert received.dtype == (np.int32 if name in ("rows", "cols") else np.float32), name
        np.testing.assert_array_equal(received, expected, err_msg=name)
    # What the browser shows for step i follows from these arrays alone: the window under rows[i], cols[i],
    # its products, and sum + bias = value in float32.
    padded = decode_array(data["input"]["values"])
    rows, cols = decode_array(steps["rows"]), decode_array(steps["cols"])
    products = decode_array(steps["products"])
    for i in range(steps["count"]):
        np.testing.assert_array_equal(products[i], padded[np.ix_(rows[i], cols[i])] * kernel)
    sums = decode_array(steps["sums"])
    np.testing.assert_array_equal(sums + np.float32(data["bias"]), decode_array(steps["values"]))
    assert steps["count"] == trace.num_steps == 64 and rows.shape == (64, 3)


def test_a_rerun_sends_the_same_data_so_the_browser_keeps_its_step():
    # The player keeps its step in the browser: the server holds no step, and a rerun that changes
    # nothing must send identical data (same key, same JSON), or the browser would reload the player.
    app = _open()
    for section, player in (("3.", "conv_player"), ("5.", "pool_player")):
        _open_section(app, section)
        before = _player(app, player)
        app.run()
        assert not app.exception, app.exception
        assert _player(app, player) == before
    for old_stepper_state in ("conv__step", "conv__playing", "pool__step", "pool__playing"):
        assert old_stepper_state not in app.session_state


def test_a_kernel_set_through_session_state_is_used():
    app = _open()
    even_kernel = np.arange(16, dtype=np.float32).reshape(4, 4) / 10 - 0.75  # a 4 x 4, as in the blog's figure
    app.session_state["conv_kernel_grid"] = even_kernel.tolist()
    app.run()
    assert not app.exception, app.exception
    data = _assert_player_is_conv2d(app)
    assert decode_array(data["kernel"]["values"]).shape == (4, 4)
    np.testing.assert_array_equal(np.asarray(app.session_state["conv_kernel_grid"], dtype=np.float32), even_kernel)
    assert any("The 4 x 4 kernel" in markdown.value for markdown in app.markdown)


def test_a_malformed_kernel_falls_back_with_a_warning():
    app = _open()
    app.session_state["conv_kernel_grid"] = [[1.0, float("nan")], [0.0, 1.0]]
    app.run()
    assert not app.exception, app.exception
    assert any("not usable" in warning.value for warning in app.warning)
    _assert_player_is_conv2d(app)


def test_bank_random_and_cut_kernels():
    app = _open()
    set_control(app, KERNEL_PANEL, "conv_kernel_size", 5)  # Sobel has one size: the slider is disabled
    assert _state(app, "conv_kernel_size") == 3
    set_control(app, KERNEL_PANEL, "conv_kernel_name", "gaussian blur")
    set_control(app, KERNEL_PANEL, "conv_kernel_size", 4)
    np.testing.assert_array_equal(np.asarray(app.session_state["conv_kernel_grid"], dtype=np.float32),
                                  make_kernel("gaussian blur", 4))
    about = [control["text"] for control in component_data(app, KERNEL_PANEL)["controls"] if control["kind"] == "fixed"]
    assert about == [KERNELS["gaussian blur"].description]
    _assert_player_is_conv2d(app)

    set_control(app, KERNEL_PANEL, "conv_kernel_source", "Random")
    np.testing.assert_array_equal(np.asarray(app.session_state["conv_kernel_grid"], dtype=np.float32),
                                  random_kernel(4, 0))
    set_control(app, KERNEL_PANEL, "conv_random_new", True)
    np.testing.assert_array_equal(np.asarray(app.session_state["conv_kernel_grid"], dtype=np.float32),
                                  random_kernel(4, 1))
    set_control(app, KERNEL_PANEL, "conv_random_seed", 7)
    np.testing.assert_array_equal(np.asarray(app.session_state["conv_kernel_grid"], dtype=np.float32),
                                  random_kernel(4, 7))
    _assert_player_is_conv2d(app)

    set_control(app, KERNEL_PANEL, "conv_kernel_source", "Cut from the image")
    assert not app.exception, app.exception
    cut = np.asarray(app.session_state["conv_kernel_grid"], dtype=np.float32)
    assert cut.shape == (4, 4) and abs(float(cut.sum())) < 1e-4 and abs(float((cut * cut).sum()) - 1.0) < 1e-4
    set_control(app, REGION_PANEL, "conv_region_top", _state(app, "conv_region_top") + 40)
    set_control(app, KERNEL_PANEL, "conv_cut", True)  # cut again, from the moved region
    assert not np.array_equal(np.asarray(app.session_state["conv_kernel_grid"], dtype=np.float32), cut)
    _assert_player_is_conv2d(app)


def test_stride_padding_dilation_flip_and_the_formula():
    app = _open()
    for name, chosen in (("conv_stride", 2), ("conv_padding_kind", "valid"), ("conv_dilation", 2),
                         ("conv_bias", 0.5), ("conv_flip", True), ("conv_padding_mode", "zeros")):
        set_control(app, SETTINGS_PANEL, name, chosen)
    assert not app.exception, app.exception
    size = int(_state(app, "conv_region_size"))
    expected_formula = output_size_equation(size, 3, 0, 0, 2, 2)
    assert any(expected_formula in markdown.value for markdown in app.markdown), expected_formula
    data = _assert_player_is_conv2d(app)
    # Stride 2 and dilation 2: each window's rows start two apart and skip every other row.
    np.testing.assert_array_equal(decode_array(data["steps"]["rows"])[:2], [[0, 2, 4], [0, 2, 4]])
    np.testing.assert_array_equal(decode_array(data["steps"]["cols"])[:2], [[0, 2, 4], [2, 4, 6]])
    np.testing.assert_array_equal(decode_array(data["kernel"]["values"]), make_kernel("sobel x")[::-1, ::-1])

    set_control(app, SETTINGS_PANEL, "conv_padding_kind", "same")  # "same" needs stride 1: a clear error
    assert not app.exception, app.exception
    assert any("stride 1" in error.value for error in app.error)


def test_pooling_player_matches_max_pool2d_of_the_relu():
    app = _open()
    activated = relu(_expected_region_output(app))
    _open_section(app, "5.")
    data = _assert_pool_player_is(app, max_pool2d(activated, 2, stride=2), "max")
    trace = pool2d_trace(activated, 2, stride=2)
    argmax = decode_array(data["steps"]["argmax"])
    np.testing.assert_array_equal(argmax, trace.all_steps().argmax)
    padded = decode_array(data["input"]["values"])
    np.testing.assert_array_equal(padded[argmax[:, 0], argmax[:, 1]], decode_array(data["steps"]["values"]))
    assert "sums" not in data["steps"]


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_padded_pooling_player_matches_the_engine_and_padding_follows_the_window(mode):
    app = _open()
    _open_section(app, "5.")
    app.radio(key="pool_mode").set_value(mode).run()
    app.select_slider(key="pool_size").set_value(3).run()
    app.select_slider(key="pool_padding").set_value(1).run()
    assert not app.exception, app.exception
    pool = max_pool2d if mode == "max" else avg_pool2d
    expected = pool(relu(_expected_region_output(app)), 3, stride=2, padding=1)
    data = _assert_pool_player_is(app, expected, mode)
    assert data["input"]["pad"] == [1, 1, 1, 1]
    corner = decode_array(data["input"]["values"])[0, 0]
    assert np.isneginf(corner) if mode == "max" else corner == 0.0  # -inf never wins; 0 counts in the mean
    if mode == "avg":
        sums = decode_array(data["steps"]["sums"])
        np.testing.assert_array_equal(sums / np.float32(9), decode_array(data["steps"]["values"]))
    # A window of 4 allows padding 2; back to a window of 2, the padding drops to 1 by itself.
    app.select_slider(key="pool_size").set_value(4).run()
    app.select_slider(key="pool_padding").set_value(2).run()
    app.select_slider(key="pool_size").set_value(2).run()
    assert not app.exception, app.exception
    assert app.select_slider(key="pool_padding").value == 1


def test_uploaded_png_and_dicom_are_used():
    app = _open()
    for name, mime in (("fundus_retina.png", "image/png"), ("ct_head.dcm", "application/dicom")):
        scan_uploader(app).set_value((name, (SAMPLES / name).read_bytes(), mime)).run()
        assert not app.exception, app.exception
        assert app.session_state["scan__choice"].startswith("Your upload")
        _assert_player_is_conv2d(app)


def test_typing_a_weight_in_the_kernel_grid_changes_the_kernel_and_the_steps():
    app = _open()
    assert component_data(app, KERNEL_EDITOR)["rows"] == app.session_state[KERNEL_GRID]
    send_component_event(app, KERNEL_EDITOR, "edit", {"row": 0, "col": 2, "values": [[2.5]]})
    assert not app.exception, app.exception
    assert app.session_state[KERNEL_GRID][0][2] == 2.5
    assert component_data(app, KERNEL_EDITOR)["rows"][0][2] == 2.5, "the grid shows the weight in use"
    data = _assert_player_is_conv2d(app)
    assert decode_array(data["kernel"]["values"])[0, 2] == np.float32(2.5)


def test_the_kernel_grid_cuts_large_weights_and_ignores_edits_that_make_no_sense():
    app = _open()
    before = [list(row) for row in app.session_state[KERNEL_GRID]]
    send_component_event(app, KERNEL_EDITOR, "edit", {"row": 1, "col": 1, "values": [[-1e9]]})
    assert app.session_state[KERNEL_GRID][1][1] == -KERNEL_LIMIT
    for nonsense in ({"row": 7, "col": 0, "values": [[1.0]]}, {"row": 0, "col": 0, "values": [["abc"]]},
                     {"row": 0}, "not an edit", {"row": 0, "col": 0, "values": [[float("nan")]]},
                     {"row": 0, "col": 0, "values": [[1.0, 2.0], [3.0]]}, {"row": 0, "col": 0, "values": []}):
        send_component_event(app, KERNEL_EDITOR, "edit", nonsense)
        assert not app.exception, app.exception
    after = app.session_state[KERNEL_GRID]
    assert after[0] == before[0] and after[2] == before[2] and after[1][1] == -KERNEL_LIMIT
    _assert_player_is_conv2d(app)


def test_a_block_of_weights_pasted_into_the_grid_fills_it_from_there_and_what_overflows_is_left_out():
    app = _open()
    before = np.asarray(app.session_state[KERNEL_GRID])
    block = [[1, 2, 9], [3, 4, 9], [9, 9, 9]]
    send_component_event(app, KERNEL_EDITOR, "edit", {"row": 1, "col": 1, "values": block})
    assert not app.exception, app.exception
    after = np.asarray(app.session_state[KERNEL_GRID])
    np.testing.assert_array_equal(after[1:, 1:], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[:, 0], before[:, 0])
    _assert_player_is_conv2d(app)


def test_a_10_by_10_dose_grid_works_with_a_region_as_large_as_the_image():
    # pydicom's rtdose.dcm: 15 slices of 10 x 10. A region of 10 leaves the position sliders no range.
    rtdose = Path(pytest.importorskip("pydicom.data").get_testdata_file("rtdose.dcm"))
    app = _open()
    scan_uploader(app).set_value(("rtdose.dcm", rtdose.read_bytes(), "application/dicom")).run()
    assert not app.exception, app.exception
    assert any(element.value.startswith("**rtdose.dcm**, 10 x 10 pixels") for element in app.markdown)
    _assert_player_is_conv2d(app)
    set_control(app, REGION_PANEL, "conv_region_size", 10)
    assert not app.exception, app.exception
    sentences = [control.get("text") for control in component_data(app, REGION_PANEL)["controls"]]
    assert "Top row: 0, the region is as tall as the image." in sentences
    assert "Left column: 0, the region is as wide as the image." in sentences
    region = tuple(_state(app, key) for key in ("conv_region_top", "conv_region_left", "conv_region_size"))
    assert region == (0, 0, 10)
    _assert_player_is_conv2d(app)


def test_forgetting_the_upload_forgets_everything_the_session_computed_from_it():
    def memo_keys():  # what views.caching.session_memo remembers results by; an upload's name "upload:..."
        pages = app.session_state[SESSION_MEMOS] if SESSION_MEMOS in app.session_state else {}
        return [repr(key) for memo in pages.values() for key, _ in memo.values()]

    app = _open()
    scan_uploader(app).set_value(("ct_head.dcm", (SAMPLES / "ct_head.dcm").read_bytes(), "application/dicom")).run()
    assert not app.exception, app.exception
    assert any("upload:" in key for key in memo_keys()) and app.session_state[UPLOAD_MEMORY]
    app.button(key="scan_forget_upload").click().run()
    assert not app.exception, app.exception
    assert not app.session_state["scan__choice"].startswith("Your upload")
    assert not any("upload:" in key for key in memo_keys()), memo_keys()
    assert UPLOAD_MEMORY not in app.session_state and "cache__upload_digest" not in app.session_state
    _assert_player_is_conv2d(app)


def test_garbage_upload_shows_the_scan_error_and_the_lesson_keeps_working():
    app = _open()
    scan_uploader(app).set_value(("notes.dcm", b"this is not a scan at all", "application/dicom"))
    app.run()
    assert not app.exception, app.exception
    assert any("Could not read notes.dcm" in error.value for error in app.error)
    _assert_player_is_conv2d(app)


def test_region_follows_the_sliders():
    app = _open()
    set_control(app, REGION_PANEL, "conv_region_size", 6)
    set_control(app, REGION_PANEL, "conv_region_top", 20)
    set_control(app, REGION_PANEL, "conv_region_left", 30)
    assert (_state(app, "conv_region_top"), _state(app, "conv_region_left"), _state(app, "conv_region_size")) == (
        20, 30, 6)
    _assert_player_is_conv2d(app)
    assert any("floor((6 + 2*1 - 3) / 1) + 1 = 6" in markdown.value for markdown in app.markdown)


def test_a_click_on_the_image_centres_the_region_there_and_the_browser_draws_the_boxes():
    app = _open()
    height, width = _image(app).shape
    before = component_data(app, "conv_click")
    assert before["shape"] == [height, width] and before["pointing"]
    click_picture(app, "conv_click", 150.7, 90.2)  # x is the column, y the row
    assert not app.exception, app.exception
    size = _state(app, "conv_region_size")
    assert (_state(app, "conv_region_top"), _state(app, "conv_region_left")) == (90 - size // 2, 150 - size // 2)
    after = component_data(app, "conv_click")
    # The same picture (the same media URL): only the box moved, as numbers.
    assert after["src"] == before["src"] and "/media/" in after["src"]
    assert [(box["top"], box["left"], box["height"]) for box in after["boxes"]] == [(90 - size // 2, 150 - size // 2,
                                                                                      size)]
    map_data = component_data(app, "conv_whole_map")
    peak = conv2d(_image(app), *_region_and_settings(app)[1:3], **_region_and_settings(app)[3])
    assert tuple(map_data["ring"][axis] for axis in ("row", "col")) == np.unravel_index(np.argmax(peak), peak.shape)
    _assert_player_is_conv2d(app)


def test_a_click_on_the_whole_map_moves_the_region_to_where_that_value_comes_from():
    app = _open()
    set_control(app, SETTINGS_PANEL, "conv_stride", 2)
    set_control(app, REGION_PANEL, "conv_region_size", 8)
    ring = component_data(app, "conv_whole_map")["ring"]
    click_picture(app, "conv_whole_map", ring["col"] + 0.5, ring["row"] + 0.5)  # the peak
    assert not app.exception, app.exception
    # A 3 x 3 kernel, stride 2, one pixel of padding: map cell (r, c) is computed from image rows 2r-1..2r+1.
    # The region (8 pixels) is centred on that window, kept inside the image.
    height, width = _image(app).shape
    top, left = _state(app, "conv_region_top"), _state(app, "conv_region_left")
    assert (top, left) == (min(max(2 * ring["row"] - 4, 0), height - 8), min(max(2 * ring["col"] - 4, 0), width - 8))
    # The map's orange box follows the region.
    assert component_data(app, "conv_whole_map")["boxes"][0]["top"] == top / 2


def test_clicks_outside_or_malformed_stay_on_the_image_or_are_ignored():
    app = _open()
    height, width = _image(app).shape
    size = _state(app, "conv_region_size")
    click_picture(app, "conv_click", 10**6, -50)
    assert (_state(app, "conv_region_top"), _state(app, "conv_region_left")) == (0, width - size)
    send_component_event(app, "conv_click", "click", {"x": "middle", "y": 3, "width": width, "height": height})
    send_component_event(app, "conv_click", "click", {"x": float("nan"), "y": 3, "width": width, "height": height})
    assert not app.exception, app.exception
    assert (_state(app, "conv_region_top"), _state(app, "conv_region_left")) == (0, width - size)


def test_a_new_window_changes_the_numbers():
    app = _open()
    app.selectbox(key="scan_source").set_value("Head CT slice").run()
    set_control(app, REGION_PANEL, "conv_region_top", 200)  # brain tissue: grey values inside the window
    set_control(app, REGION_PANEL, "conv_region_left", 300)
    before = decode_array(_player(app)["output"]["values"])
    assert np.any(before != 0.0)
    app.slider(key="scan_level").set_value(80.0).run()  # the brain window moved up by 40 HU
    assert not app.exception, app.exception
    assert app.session_state["scan__level"] == 80.0
    after = decode_array(_assert_player_is_conv2d(app)["output"]["values"])
    assert np.any(after != before)


def test_the_whole_image_activation_is_drawn_only_when_asked_for():
    caption = "Grey: pixels that were negative before the activation."
    app = _open()
    _open_section(app, "4.")
    images_before = len(app.get("image"))
    assert not any(caption in image.captions for image in app.get("image"))
    app.toggle(key="conv_whole_activation").set_value(True).run()
    assert not app.exception, app.exception
    assert len(app.get("image")) == images_before + 1
    assert any(caption in image.captions for image in app.get("image"))


def test_only_the_open_tab_and_an_open_export_panel_are_drawn():
    # Every student's click reruns the page on the one server they share: a closed tab or a closed
    # export panel must cost that rerun nothing (no widgets of its own drawn).
    app = _open()
    keys = {widget.key for widget in app.radio} | {widget.key for widget in app.select_slider}
    assert "conv_activation" not in keys and "pool_mode" not in keys and "conv_export_kind" not in keys
    assert not app.multiselect and list(step_players(app)) == ["conv_player"]
    app.session_state["conv_export_open"] = True
    app.run()
    assert [radio.key for radio in app.radio if radio.key.startswith("conv_export")] == [
        "conv_export_kind", "conv_export_size"]
    _open_section(app, "5.")
    assert list(step_players(app)) == ["pool_player"]
    assert "pool_mode" in {radio.key for radio in app.radio}
    _open_section(app, "6.")
    assert app.multiselect(key="bank_names").value and not list(step_players(app))


def test_the_code_that_computed_the_steps_is_shown_under_the_player():
    # A student who asks "how is this number computed?" reads the function the player's numbers come from.
    import inspect

    app = _open()
    app.session_state["conv_code_open"] = True  # drawn only while open, like the export panels
    app.run()
    expanders = [expander for expander in app.expander if expander.label == "The code that computed this"]
    assert len(expanders) == 1
    codes = expanders[0].get("code")
    assert len(codes) == 1
    assert codes[0].proto.code_text.strip() == inspect.getsource(reference.conv2d_pixel).strip()
    assert codes[0].proto.language == "python"
    data = _player(app)
    out_cols = decode_array(data["output"]["values"]).shape[1]
    sentence = " ".join(markdown.value for markdown in expanders[0].markdown)
    assert f"out_row, out_col = divmod(i - 1, {out_cols})" in sentence


def test_the_settings_panel_keeps_every_change_to_what_its_controls_allow():
    # The browser sends what the person chose; the server checks it against the controls it drew.
    app = _open()
    for name, sent, kept in (("conv_bias", 55.5, 10.0), ("conv_bias", -0.123, -0.12), ("conv_padding", 9, 4),
                             ("conv_padding", 1.6, 2), ("conv_stride", 7, 1), ("conv_stride", True, 1),
                             ("conv_stride", "2", 1), ("conv_padding_mode", "mirror", "replicate"),
                             ("conv_flip", "yes", False), ("conv_dilation", 3, 3)):
        set_control(app, SETTINGS_PANEL, name, sent)
        assert not app.exception, app.exception
        assert _state(app, name) == kept and type(_state(app, name)) is type(kept), (name, sent)
    set_control(app, SETTINGS_PANEL, "conv_padding_kind", "valid")
    set_control(app, SETTINGS_PANEL, "conv_padding", 3)  # disabled while the padding is "valid"
    assert _state(app, "conv_padding") == 2
    send_component_event(app, SETTINGS_PANEL, "change", "not a change")
    set_control(app, SETTINGS_PANEL, "no such control", 1)
    assert not app.exception, app.exception
    _assert_player_is_conv2d(app)


def test_the_region_panel_keeps_the_region_inside_the_image():
    app = _open()
    height, width = _image(app).shape
    set_control(app, REGION_PANEL, "conv_region_size", 500)
    set_control(app, REGION_PANEL, "conv_region_top", 10**6)
    set_control(app, REGION_PANEL, "conv_region_left", -5)
    region = tuple(_state(app, key) for key in ("conv_region_top", "conv_region_left", "conv_region_size"))
    assert region == (height - 32, 0, 32)
    sliders = {control["name"]: control for control in component_data(app, REGION_PANEL)["controls"]}
    assert (sliders["conv_region_top"]["low"], sliders["conv_region_top"]["high"]) == (0, height - 32)
    assert (sliders["conv_region_left"]["high"], sliders["conv_region_size"]["high"]) == (width - 32, 32)
    _assert_player_is_conv2d(app)


def test_a_class_on_one_sample_encodes_each_picture_and_trace_once(monkeypatch):
    """Students open the lesson on the same sample and pick the same preset: the picture, the whole map and
    the region's trace are made for the first of them; the others read them from the shared cache."""
    from views import caching, convolution_lesson

    caching.clear_shared()
    encoded, traced = [], []
    for name, calls in (("jpeg_bytes", encoded), ("conv_payload", traced)):
        real = getattr(convolution_lesson, name)
        monkeypatch.setattr(convolution_lesson, name,
                            lambda *args, _real=real, _calls=calls, **options: _calls.append(1) or _real(*args, **options))
    first = _open()
    assert (len(encoded), len(traced)) == (2, 1), "the first student's image, whole map and trace are made"
    second = _open()
    assert (len(encoded), len(traced)) == (2, 1), "a second student on the same sample makes none of them"
    assert component_data(second, "conv_whole_map") == component_data(first, "conv_whole_map")
    assert _player(second) == _player(first)
    for app in (first, second):
        set_control(app, KERNEL_PANEL, "conv_kernel_name", "gaussian blur")
        assert not app.exception, app.exception
    assert (len(encoded), len(traced)) == (3, 2), "the blur's map and trace are made once for both"
    assert _player(second) == _player(first)
