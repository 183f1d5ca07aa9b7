"""Slide exports: GIF, MP4 and PNG frames of the step sequences, decoded and counted; figures as PNG; all in memory.

The frames are compared with viz.step_frames' own drawing (the ZIP's PNGs exactly, the GIF's within its
palette, the MP4's within H.264's loss), and their content with the trace: the output cell just computed
has the colour of its value, the window sits on the trace's rows and columns.
"""

import builtins
import io
import os
import tempfile
import zipfile

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image, ImageSequence

from kernels import conv2d_trace, make_kernel, pool2d_trace, relu
from lessons.exports import conv_steps, export, pool_steps, step_range
from scans import apply_window, read_sample
from tests.apptest import open_tab, run_page_file
from viz.images import COLOUR_SCHEMES, diverging_rgb
from viz.step_frames import SLIDE, StepFrames


def _region(size=8):
    scan = read_sample("Head CT slice")
    return apply_window(scan.pixels, *scan.default_window)[240:240 + size, 250:250 + size]


@pytest.fixture(scope="module")
def conv_trace():
    return conv2d_trace(_region(), make_kernel("sobel x"), 0.1, padding=1, padding_mode="zeros")


def test_gif_has_one_frame_per_step_of_the_range_and_loops(conv_trace):
    data = conv_steps(conv_trace)
    calls = []
    gif = export(data, "gif", first=5, last=24, fps=4, progress=lambda done, total: calls.append((done, total)))
    image = Image.open(io.BytesIO(gif))
    frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]
    assert len(frames) == 20
    assert image.info["loop"] == 0 and image.info["duration"] == 250
    assert frames[0].shape == (SLIDE[0], SLIDE[1], 3)
    drawer = StepFrames(data)
    for index, step in ((0, 4), (19, 23)):
        assert np.abs(frames[index].astype(int) - drawer.frame(step)).mean() < 3  # one 256-colour palette
    assert calls == [(done, 20) for done in range(1, 21)]


def test_mp4_decodes_to_one_frame_per_step(conv_trace):
    data = conv_steps(conv_trace)
    video = export(data, "mp4", first=1, last=12, fps=2)
    frames = iio.imread(video, extension=".mp4", index=None)
    assert frames.shape == (12, SLIDE[0], SLIDE[1], 3)
    expected = StepFrames(data).frame(11)
    assert np.abs(frames[11].astype(int) - expected).mean() < 6  # H.264's loss, yuv420p


def test_png_frames_are_exactly_the_drawn_frames(conv_trace):
    data = conv_steps(conv_trace)
    archive = zipfile.ZipFile(io.BytesIO(export(data, "zip", first=63, last=64)))
    assert archive.namelist() == ["step_0063.png", "step_0064.png"]
    drawer = StepFrames(data)
    for name, step in zip(archive.namelist(), (62, 63)):
        np.testing.assert_array_equal(np.asarray(Image.open(archive.open(name)).convert("RGB")), drawer.frame(step))


def test_natural_size_frames_have_even_sides_for_video(conv_trace):
    data = conv_steps(conv_trace)
    drawer = StepFrames(data, size=None)
    assert drawer.layout.cell == 64 and drawer.layout.height % 2 == 0 and drawer.layout.width % 2 == 0
    frames = iio.imread(export(data, "mp4", last=3, size=None), extension=".mp4", index=None)
    assert frames.shape == (3, drawer.layout.height, drawer.layout.width, 3)


def test_frames_show_the_traces_numbers_large_enough(conv_trace):
    data = conv_steps(conv_trace)
    drawer = StepFrames(data)
    layout = drawer.layout
    assert layout.number_font >= 20 and layout.work_font >= 28 and layout.equation_font >= 28
    step = 13
    frame = drawer.frame(step)
    out_row, out_col = divmod(step, conv_trace.output.shape[1])
    top, left = layout.output_origin
    cell = layout.cell
    # Inside the cell just computed, under its outline and above its digits: the value's colour.
    colour = diverging_rgb(conv_trace.output, float(np.abs(conv_trace.output).max()))[out_row, out_col]
    inner = frame[top + out_row * cell + cell // 10 + 3, left + out_col * cell + cell // 2]
    np.testing.assert_array_equal(inner, colour)
    # The window's outline on the trace's rows and columns of the padded input.
    rows, cols = data.rows[step], data.cols[step]
    top, left = layout.input_origin
    window = np.asarray(COLOUR_SCHEMES["standard"].window, dtype=np.uint8)
    np.testing.assert_array_equal(frame[top + rows[0] * cell + 1, left + (cols[0] + cols[-1] + 1) * cell // 2], window)
    # A later step's cell is still pending.
    later = divmod(step + 1, conv_trace.output.shape[1])
    pending = frame[layout.output_origin[0] + later[0] * cell + cell // 2, layout.output_origin[1] + later[1] * cell + 3]
    np.testing.assert_array_equal(pending, COLOUR_SCHEMES["standard"].pending)


def test_a_big_region_keeps_its_arithmetic_legible():
    trace = conv2d_trace(_region(32), make_kernel("sobel x"), 0.0, padding=1)
    layout = StepFrames(conv_steps(trace)).layout
    assert layout.number_font == 0  # 34 x 34 cells: colours only, as in the browser
    assert layout.work_font >= 28 and layout.equation_font >= 28


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pooling_frames_mark_the_kept_value(conv_trace, mode):
    trace = pool2d_trace(relu(conv_trace.output), 3, stride=2, padding=1, mode=mode)
    data = pool_steps(trace)
    drawer = StepFrames(data, scheme="colourblind")
    frame = drawer.frame(0)
    assert frame.shape == (SLIDE[0], SLIDE[1], 3)
    if mode == "max":
        row, col = data.argmax[0]
        top, left = drawer.layout.input_origin
        cell = drawer.layout.cell
        np.testing.assert_array_equal(frame[top + row * cell + 1, left + col * cell + cell // 2],
                                      COLOUR_SCHEMES["colourblind"].kept)
    gif = export(data, "gif", fps=8, scheme="colourblind")
    assert sum(1 for _ in ImageSequence.Iterator(Image.open(io.BytesIO(gif)))) == trace.num_steps


def test_exports_never_touch_the_disk(conv_trace, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"an export tried to write a file: {args[:1]}")

    real_open = builtins.open

    def open_for_reading_only(file, mode="r", *args, **kwargs):
        # imageio-ffmpeg checks its binary once with its output sent to /dev/null: not a file on disk.
        if any(flag in mode for flag in "wax+") and file != os.devnull:
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_for_reading_only)
    for name in ("mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile"):
        monkeypatch.setattr(tempfile, name, refuse)
    data = conv_steps(conv_trace)
    for kind in ("gif", "mp4", "zip"):
        assert len(export(data, kind, last=3)) > 1000


def test_bad_ranges_and_formats_are_refused_with_the_bounds(conv_trace):
    data = conv_steps(conv_trace)
    with pytest.raises(ValueError, match="from 1 to 64"):
        step_range(64, 0, 3)
    with pytest.raises(ValueError, match="from 1 to 64"):
        export(data, "gif", first=10, last=5)
    with pytest.raises(ValueError, match="gif, mp4, zip"):
        export(data, "avi")
    with pytest.raises(ValueError, match="fps"):
        export(data, "mp4", fps=3)


def test_the_lesson_makes_a_gif_of_a_chosen_range_and_offers_it():
    app = run_page_file("views/convolution.py")
    assert not app.exception, app.exception
    app.session_state["conv_export_open"] = True  # the panel draws its widgets only while open
    app.run()
    app.slider(key="conv_export_range_64").set_value((3, 10)).run()
    app.button(key="conv_export_make").click().run()
    assert not app.exception, app.exception
    settings, data = app.session_state["conv_export__file"]
    assert settings[:3] == ("gif", 3, 10)
    assert sum(1 for _ in ImageSequence.Iterator(Image.open(io.BytesIO(data)))) == 8
    # The GIF and the whole-image map; in their tabs the region's maps before and after, the whole-image
    # activation once it is shown, and the bank.
    assert len(app.get("download_button")) >= 2
    open_tab(app, "conv_section", "4.")
    assert {"conv_before_png", "conv_after_png"} <= {button.key for button in app.get("download_button")}
    app.toggle(key="conv_whole_activation").set_value(True).run()
    assert "conv_activation_png" in [button.key for button in app.get("download_button")]
    open_tab(app, "conv_section", "6.")
    assert "conv_bank_png" in [button.key for button in app.get("download_button")]


def test_the_pooling_player_exports_mp4():
    app = run_page_file("views/convolution.py")
    open_tab(app, "conv_section", "5.")
    app.session_state["pool_export_open"] = True
    app.run()
    app.radio(key="pool_export_kind").set_value("mp4").run()
    app.button(key="pool_export_make").click().run()
    assert not app.exception, app.exception
    settings, video = app.session_state["pool_export__file"]
    assert settings[0] == "mp4"
    assert iio.imread(video, extension=".mp4", index=None).shape[0] == 16


@pytest.mark.parametrize("page, at_least", [("views/stacks.py", 3), ("views/classifier.py", 8),
                                            ("views/detection.py", 2)])
def test_figures_have_png_downloads(page, at_least):
    app = run_page_file(page)
    assert not app.exception, app.exception
    downloads = app.get("download_button")
    assert len(downloads) >= at_least
