"""Benchmark: the server-side time of one "next" in the convolution lesson on a 512 x 512 scan (target < 100 ms).

A "next" click in the browser reruns only the stepping fragment (views/convolution_lesson.py,
``_conv_stepper``): the step's frames are drawn, PNG-encoded and sent. This script drives the page with
Streamlit's AppTest, which reruns the whole page on every click, and times three things per click:

- fragment: the stepping fragment's body alone (what a real "next" click costs the server);
- page script: the whole page run in its script thread (what a click would cost without the fragment,
  including the whole-image feature map, which comes from the cache when nothing else changed);
- AppTest run(): the wall time of AppTest's run(), harness overhead included (an upper bound).

Cases: the "Head CT slice" sample (512 x 512, shared cache) and the same file uploaded (session memory
only), each with the default 8 x 8 region and the largest, 32 x 32. It also times the drawing alone.
Run: ``python -m bench.lesson_step`` (``--clicks N`` for more clicks). Numbers vary with machine load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from streamlit.runtime.scriptrunner import script_runner
from streamlit.testing.v1 import AppTest

import views.convolution_lesson as lesson
from kernels import conv2d_trace, make_kernel
from scans import apply_window, read_sample
from viz import steps
from viz.images import jpeg_bytes

TARGET_MS = 100.0
REPO = Path(__file__).resolve().parents[1]
PAGE = str(REPO / "views" / "convolution.py")
SAMPLE = "Head CT slice"


class _Timings:
    """Collects the page script's and the fragment's run times (seconds) while enabled."""

    def __init__(self):
        self.script, self.fragment, self.enabled = [], [], False

    def install(self):
        original_run = script_runner.ScriptRunner._run_script
        original_stepper = lesson._conv_stepper
        timings = self

        def timed_run(runner, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original_run(runner, *args, **kwargs)
            finally:
                if timings.enabled:
                    timings.script.append(time.perf_counter() - start)

        def timed_stepper(trace):
            start = time.perf_counter()
            try:
                return original_stepper(trace)
            finally:
                if timings.enabled:
                    timings.fragment.append(time.perf_counter() - start)

        # The page looks both names up at call time, so the wrappers are what it runs.
        timed_stepper.__qualname__ = original_stepper.__qualname__
        script_runner.ScriptRunner._run_script = timed_run
        lesson._conv_stepper = timed_stepper


def _median_ms(seconds):
    return 1000.0 * statistics.median(seconds)


def _p90_ms(seconds):
    return 1000.0 * float(np.percentile(seconds, 90))


def _measure(timings, clicks, *, upload, region_size):
    app = AppTest.from_file(PAGE, default_timeout=300).run()
    if upload:
        data = (REPO / "sample_images" / "ct_head.dcm").read_bytes()
        app.sidebar.file_uploader[0].set_value(("ct_head.dcm", data, "application/dicom")).run()
    else:
        app.selectbox(key="scan_source").set_value(SAMPLE).run()
    app.slider(key="conv_region_size").set_value(region_size).run()
    for _ in range(3):  # warm: caches filled, frames' glyphs rendered once
        app.button(key="conv_next").click().run()
    assert not app.exception, app.exception
    shape = app.session_state["conv__image_shape"]
    timings.script.clear()
    timings.fragment.clear()
    timings.enabled = True
    wall = []
    for _ in range(clicks):
        start = time.perf_counter()
        app.button(key="conv_next").click().run()
        wall.append(time.perf_counter() - start)
    timings.enabled = False
    assert not app.exception, app.exception
    return shape, list(timings.fragment), list(timings.script), wall


def _drawing_only(region_size, repeats):
    """The step's frames and their encoding alone, without Streamlit."""
    scan = read_sample(SAMPLE)
    image = apply_window(scan.pixels, *scan.default_window)
    region = image[240:240 + region_size, 240:240 + region_size]
    trace = conv2d_trace(region, make_kernel("sobel x"), 0.0, padding=1, padding_mode="replicate")
    limit = float(np.max(np.abs(trace.output)))
    times = []
    for index in range(repeats):
        step = trace.step(index % trace.num_steps)
        start = time.perf_counter()
        window = steps.window_frame(trace.padded, trace.pad, step.rows, step.cols,
                                    cell=steps.fit_cell(*trace.padded.shape, lesson.FRAME_SIZE))
        output = steps.value_grid_frame(trace.output, cell=steps.fit_cell(*trace.output.shape, lesson.FRAME_SIZE),
                                        limit=limit, visible=steps.filled_mask(trace.output.shape, index + 1),
                                        highlight=(step.out_row, step.out_col))
        arithmetic = steps.arithmetic_frame(step.patch, trace.kernel, step.products,
                                            max_width=lesson.ARITHMETIC_WIDTH,
                                            result_line=f"sum {step.total:.4f} + bias 0 = {step.value:.4f}")
        for frame in (window, output, arithmetic):
            jpeg_bytes(frame, sharp_text=True)
        times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=25, help="timed 'next' clicks per case")
    arguments = parser.parse_args()
    os.chdir(REPO)
    timings = _Timings()
    timings.install()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Convolution lesson, one 'next' click: median (90th percentile) in ms over {arguments.clicks} clicks; "
          f"target: fragment median < {TARGET_MS:.0f} ms. Load average at start: {load:.2f} on {os.cpu_count()} cores.")
    print(f"{'case':<34}{'fragment':>18}{'page script':>18}{'AppTest run()':>18}")
    verdicts = []
    for upload in (False, True):
        for region_size in (8, 32):
            shape, fragment, script, wall = _measure(timings, arguments.clicks, upload=upload,
                                                     region_size=region_size)
            source = "upload" if upload else "sample"
            label = f"{source} {shape[0]}x{shape[1]}, region {region_size}x{region_size}"
            cells = [f"{_median_ms(values):7.1f} ({_p90_ms(values):5.1f})" for values in (fragment, script, wall)]
            print(f"{label:<34}" + "".join(f"{cell:>18}" for cell in cells))
            verdicts.append(_median_ms(fragment) < TARGET_MS)
    drawing = _drawing_only(32, 40)
    print(f"drawing + encoding of the 3 frames alone (region 32x32): median {_median_ms(drawing):.1f} ms")
    print("fragment median under target in every case: " + ("yes" if all(verdicts) else "NO"))


if __name__ == "__main__":
    main()
