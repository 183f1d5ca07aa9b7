"""Benchmark: what the convolution lesson's step players cost the server, now that stepping runs in the browser.

A "next", "previous", "play" or a drag of the scrubber costs the server nothing: the player has every
step already (tests/e2e/test_convolution_page.py counts the websocket messages the browser sends while
stepping: none). What is left is paid once per setting, when the region, the kernel or a setting changes:

- data: the trace, all its steps and the player's data (views/components/step_player/payload.py), and
  the JSON text Streamlit sends (its size in kB: what the browser downloads once per setting);
- page script: the whole lesson page run in AppTest after such a change (new trace, new data) and after a
  rerun that changes nothing (the data is remembered; Streamlit hashes and resends the JSON, which the
  browser's message cache answers without downloading it again).

Cases: the default 8 x 8 region with a 3 x 3 kernel, and the largest, a 32 x 32 region with a 9 x 9 kernel
("same" padding: 1024 steps of 81 products). Run: ``python -m bench.lesson_step`` (``--repeats N``).
Numbers vary with machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from kernels import conv2d_trace, make_kernel
from scans import apply_window, read_sample
from views.components.step_player import conv_payload
from tests.apptest import set_control  # a panel change as the browser sends it
from views.convolution_controls import REGION_PANEL

REPO = Path(__file__).resolve().parents[1]
PAGE = str(REPO / "views" / "convolution.py")
SAMPLE = "Head CT slice"
CASES = ((8, "sobel x", 1), (32, "box blur", "same"))  # region size, kernel, padding


def _median_ms(seconds):
    return 1000.0 * statistics.median(seconds)


def _data_cost(region_size, kernel_name, padding, repeats):
    """Seconds to build the trace and the player's data (and its JSON), and the JSON's size in bytes."""
    scan = read_sample(SAMPLE)
    image = apply_window(scan.pixels, *scan.default_window)
    region = image[240:240 + region_size, 240:240 + region_size]
    kernel = make_kernel(kernel_name, 9 if kernel_name == "box blur" else None)
    times, size = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        trace = conv2d_trace(region, kernel, 0.0, padding=padding, padding_mode="replicate")
        text = json.dumps(conv_payload(trace, titles={"input": "", "output": ""}, memory="bench"))
        times.append(time.perf_counter() - start)
        size = len(text)
    return times, size


def _page_cost(region_size, repeats):
    """Seconds of whole-page runs: after a new region (new trace and data), and after a rerun changing nothing."""
    app = AppTest.from_file(PAGE, default_timeout=300).run()
    app.selectbox(key="scan_source").set_value(SAMPLE).run()
    set_control(app, REGION_PANEL, "conv_region_size", region_size)
    assert not app.exception, app.exception
    changed, unchanged = [], []
    for index in range(repeats):
        start = time.perf_counter()
        set_control(app, REGION_PANEL, "conv_region_top", 200 + index % 2)  # a new region: a new trace
        changed.append(time.perf_counter() - start)
        start = time.perf_counter()
        app.run()
        unchanged.append(time.perf_counter() - start)
    assert not app.exception, app.exception
    return changed, unchanged


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed repetitions per case")
    arguments = parser.parse_args()
    os.chdir(REPO)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Convolution lesson's step players, server side: median ms over {arguments.repeats} repeats. "
          f"Load average at start: {load:.2f} on {os.cpu_count()} cores.")
    print(f"{'case':<36}{'data':>10}{'JSON kB':>10}")
    for region_size, kernel_name, padding in CASES:
        times, size = _data_cost(region_size, kernel_name, padding, arguments.repeats)
        label = f"region {region_size}x{region_size}, {kernel_name}, padding {padding}"
        print(f"{label:<36}{_median_ms(times):10.1f}{size / 1000:10.1f}")
    print(f"{'AppTest page run':<36}{'new region':>14}{'nothing new':>14}")
    for region_size in (8, 32):
        changed, unchanged = _page_cost(region_size, arguments.repeats)
        print(f"{f'region {region_size}x{region_size}':<36}{_median_ms(changed):14.1f}{_median_ms(unchanged):14.1f}")
    print("A step, play or scrub in the browser: no server work at all.")


if __name__ == "__main__":
    main()
